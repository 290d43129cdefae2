"""Annotation protocol: accuracy and tokens of 1, 5, 10 and 20 concepts per request.

Annotates real review snippets (Rotten Tomatoes, the held-out split) with 20
concepts through LLMAnnotator against the loopback OpenAI-compatible server
(tests/fake_openai.py), whose judge (tests/judges.py) knows the right answer
(a concept "mentions w" holds when w occurs in the text) and errs with a
probability that grows with the concept's position in the request: by default
2% at position 1, plus 0.5 points per position (6.5% at 10, 11.5% at 20). That
bias is an assumption, not a measurement of a model: what this benchmark
measures exactly is the protocol's side of the trade-off, the requests and
tokens each choice sends, and how the shuffled order spreads a position bias
over the concepts (the worst concept's accuracy). Measure your own model's
accuracy with sklearn_hypothesaes.annotation_agreement.

Tokens are estimated from the exact prompts and answers sent, at 4 characters
per token (OpenAI's rule of thumb for English; tiktoken cannot run offline).
Cost is per 1,000 texts x 20 hypotheses at gpt-4o-mini's list price, USD 0.15
per million input and 0.60 per million output tokens (OpenAI, July 2024).

Run:  .venv/bin/python benchmarks/bench_annotation_protocol.py [--n-texts 200]
      [--base-error 0.02] [--error-per-position 0.005]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fake_openai import FakeOpenAIServer, concept_present  # noqa: E402
from judges import position_biased_judge  # noqa: E402

from sklearn_hypothesaes import LLMAnnotator, LLMClient  # noqa: E402
from sklearn_hypothesaes.datasets import load_rotten_tomatoes  # noqa: E402
from sklearn_hypothesaes.hypotheses._annotate import (  # noqa: E402
    annotation_agreement,
)

# The 20 commonest content words of the snippets but "like", "just", "little"
# and "make": each holds for 1.5% to 14% of them.
WORDS = [
    "film",
    "movie",
    "story",
    "good",
    "comedy",
    "director",
    "time",
    "characters",
    "funny",
    "life",
    "best",
    "love",
    "work",
    "action",
    "people",
    "drama",
    "plot",
    "great",
    "performance",
    "entertaining",
]
CONCEPTS = [f"mentions {w}" for w in WORDS]
PRICE = {"model": "gpt-4o-mini", "input": 0.15, "output": 0.60, "as of": "2024-07"}
SIZES = (1, 5, 10, 20)


def tokens(text: str) -> int:
    return max(1, round(len(text) / 4))


def run(texts, sizes, judge_kwargs):
    truth = np.array([[concept_present(c, t) for c in CONCEPTS] for t in texts])
    rows = []
    for size in sizes:
        replies = []
        judge = position_biased_judge(**judge_kwargs)

        def chat(body, judge=judge, replies=replies):
            reply = judge(body)
            replies.append(reply)
            return reply

        with FakeOpenAIServer(chat=chat) as server:
            client = LLMClient(
                model="gpt-4o-mini",
                base_url=server.base_url,
                cache_dir=False,
                n_concurrent=16,
            )
            start = time.perf_counter()
            found = LLMAnnotator(
                client, concepts_per_request=size, random_state=0
            ).annotate(texts, CONCEPTS)
            seconds = time.perf_counter() - start
            prompts = [r["body"]["messages"][0]["content"] for r in server.requests]
        values = np.asarray(found.values)
        right = values == truth
        per_concept = right.mean(axis=0)
        rows.append(
            {
                "size": size,
                "requests": len(prompts),
                "accuracy": right.mean(),
                "worst": per_concept.min(),
                "best": per_concept.max(),
                "missing": np.isnan(values).mean(),
                "prompt_tokens": sum(tokens(p) for p in prompts),
                "completion_tokens": sum(tokens(r) for r in replies),
                "seconds": seconds,
            }
        )
    return truth, rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-texts", type=int, default=200)
    parser.add_argument("--base-error", type=float, default=0.02)
    parser.add_argument("--error-per-position", type=float, default=0.005)
    args = parser.parse_args()
    data = load_rotten_tomatoes(split="holdout")
    pick = np.random.default_rng(0).choice(len(data.texts), args.n_texts, False)
    texts = [data.texts[i] for i in np.sort(pick)]
    judge_kwargs = dict(
        base_error=args.base_error, error_per_position=args.error_per_position
    )
    truth, rows = run(texts, SIZES, judge_kwargs)
    scale = 1000 / len(texts)
    mean_chars = np.mean([len(t) for t in texts])
    print(
        f"{len(texts)} Rotten Tomatoes snippets (mean {mean_chars:.0f} characters)"
        f" x {len(CONCEPTS)} concepts, prevalence "
        f"{truth.mean():.1%} (per concept {truth.mean(axis=0).min():.1%} to "
        f"{truth.mean(axis=0).max():.1%}); judge error {args.base_error:.1%} at "
        f"position 1 + {args.error_per_position:.1%} per position; "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"
    )
    print(
        f"Tokens at 4 characters each; cost per 1,000 texts x 20 hypotheses at "
        f"{PRICE['model']} list price (USD {PRICE['input']}/M input, "
        f"{PRICE['output']}/M output, as of {PRICE['as of']})."
    )
    header = (
        f"{'concepts/request':>16} {'requests':>8} {'accuracy':>8} {'worst':>6} "
        f"{'best':>6} {'missing':>7} {'prompt tok':>10} {'answer tok':>10} "
        f"{'tok/annot':>9} {'USD/1k x 20':>11}"
    )
    print(header)
    for r in rows:
        cost = (
            r["prompt_tokens"] * PRICE["input"]
            + r["completion_tokens"] * PRICE["output"]
        ) / 1e6
        n_annotations = len(texts) * len(CONCEPTS)
        print(
            f"{r['size']:>16} {r['requests']:>8} {r['accuracy']:>8.4f} "
            f"{r['worst']:>6.3f} {r['best']:>6.3f} {r['missing']:>7.1%} "
            f"{r['prompt_tokens']:>10} {r['completion_tokens']:>10} "
            f"{(r['prompt_tokens'] + r['completion_tokens']) / n_annotations:>9.1f} "
            f"{cost * scale:>11.3f}"
        )
    # What a user runs on their own texts and model: agreement with one
    # concept per request, kappa, and the tokens (server-counted: whitespace
    # words) of each protocol.
    with FakeOpenAIServer(chat=position_biased_judge(**judge_kwargs)) as server:
        client = LLMClient(base_url=server.base_url, cache_dir=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = annotation_agreement(
                texts, CONCEPTS, client, concepts_per_request=SIZES, n_texts=50
            )
    print(
        "\nannotation_agreement(texts, concepts, client, concepts_per_request="
        f"{SIZES}, n_texts=50):"
    )
    print(
        table[
            [
                "concepts_per_request",
                "agreement",
                "kappa",
                "worst_concept_agreement",
                "calls",
                "prompt_tokens",
                "completion_tokens",
            ]
        ].to_string(index=False, float_format=lambda v: f"{v:.3f}")
    )


if __name__ == "__main__":
    main()
