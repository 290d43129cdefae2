"""Offline labelling of every latent: describe time before and after, one process.

InterpretableEmbedder labels every live latent of a 4,096-latent sparse
autoencoder with its offline describer (TermDescriber, 8 terms, not exclusive;
PhraseAnnotator), in batches of 256 latents, on Rotten Tomatoes review
snippets (the first ``--n-texts`` of the train split). The embeddings are
MiniLM's (TextEmbedder, cached durably under ``$SKLEARN_HYPOTHESAES_CACHE_DIR``)
or, with ``--embeddings tfidf``, TF-IDF + truncated SVD (384 dimensions, no
model); the autoencoder (TopK) is fit once with a fixed seed.

The same fit runs twice on the same activations:

- before: TermDescriber, contrastive_terms and PhraseMatcher as at git revision
  ``--old`` (loaded from git into this process), used by the describer and by
  the held-out scoring of the labels;
- after: this working tree.

It prints the seconds spent in ``describe`` and in the whole labelling fit,
and asserts that ``labels_`` (labels, fidelity, precision, recall, reasons)
are identical.

Run:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_labelling.py
        [--n-texts 4000] [--embeddings minilm|tfidf] [--old 9625776]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.preprocessing import FunctionTransformer

import sklearn_hypothesaes.hypotheses._annotators as annotators
from sklearn_hypothesaes import InterpretableEmbedder, SparseAutoencoder, TermDescriber
from sklearn_hypothesaes.datasets import load_rotten_tomatoes

ROOT = Path(__file__).resolve().parents[1]
# The last revision before the labelling speed-up.
OLD = "9625776"


def load_old(revision, path, name):
    """A module of the package as it was at ``revision``, imported under
    ``name`` (its relative imports resolve to this checkout)."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{revision}:{path}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    spec = importlib.util.spec_from_loader(name, loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = name.rsplit(".", 1)[0]
    sys.modules[name] = module
    exec(compile(source, f"{revision}:{path}", "exec"), module.__dict__)
    return module


def embed(texts, kind, seed):
    if kind == "minilm":
        from sklearn_hypothesaes import TextEmbedder

        return TextEmbedder(verbose=True).fit_transform(texts)
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    tfidf = TfidfVectorizer(min_df=2, sublinear_tf=True).fit_transform(texts)
    svd = TruncatedSVD(384, random_state=seed).fit_transform(tfidf)
    return normalize(svd).astype(np.float32)


def timed_fit(describer_cls, texts, embedder, sae, seed):
    """Fit the embedder with ``describer_cls``; seconds in describe and in fit."""
    spent = {"describe": 0.0}
    original = describer_cls.describe

    def describe(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            spent["describe"] += time.perf_counter() - start

    describer_cls.describe = describe
    try:
        start = time.perf_counter()
        fitted = InterpretableEmbedder(
            embedder,
            sae,
            describer=describer_cls(n_terms=8, exclusive=False),
            random_state=seed,
        ).fit(texts)
        total = time.perf_counter() - start
    finally:
        describer_cls.describe = original
    return fitted, spent["describe"], total


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-texts", type=int, default=4000)
    parser.add_argument("--n-latents", type=int, default=4096)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--embeddings", choices=["minilm", "tfidf"], default="minilm")
    parser.add_argument("--old", default=OLD, help="git revision of 'before'")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    old_terms = load_old(
        args.old,
        "sklearn_hypothesaes/hypotheses/_terms.py",
        "sklearn_hypothesaes.hypotheses._terms_before",
    )
    old_describers = load_old(
        args.old,
        "sklearn_hypothesaes/hypotheses/_describers.py",
        "sklearn_hypothesaes.hypotheses._describers_before",
    )
    old_describers.contrastive_terms = old_terms.contrastive_terms

    texts = list(load_rotten_tomatoes(split="train").texts[: args.n_texts])
    start = time.perf_counter()
    E = embed(texts, args.embeddings, args.seed)
    print(
        f"{args.embeddings} embeddings {E.shape}: {time.perf_counter() - start:.0f} s"
    )
    start = time.perf_counter()
    sae = SparseAutoencoder(
        n_latents=args.n_latents,
        k=args.k,
        max_epochs=args.epochs,
        early_stopping=False,
        sparse_output=True,
        device="cpu",
        random_state=args.seed,
    ).fit(E)
    print(
        f"SparseAutoencoder(n_latents={args.n_latents}, k={args.k}), "
        f"{args.epochs} epochs: {time.perf_counter() - start:.0f} s"
    )
    row = {text: i for i, text in enumerate(texts)}
    # The embedder looks the texts up: both fits see the same activations.
    embedder = FunctionTransformer(lambda X: E[[row[t] for t in X]])

    # Before: the old describer, and the old matcher in the held-out scoring.
    new_matcher = annotators.PhraseMatcher
    annotators.PhraseMatcher = old_terms.PhraseMatcher
    try:
        before, before_describe, before_fit = timed_fit(
            old_describers.TermDescriber, texts, embedder, sae, args.seed
        )
    finally:
        annotators.PhraseMatcher = new_matcher
    after, after_describe, after_fit = timed_fit(
        TermDescriber, texts, embedder, sae, args.seed
    )

    pd.testing.assert_frame_equal(before.labels_, after.labels_, check_exact=True)
    labels = after.labels_
    print(
        f"{len(texts):,} texts, {args.n_latents:,} latents: "
        f"{int(labels['live'].sum()):,} live, {int(labels['label'].notna().sum()):,} "
        f"labelled (batches of 256); OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}"
    )
    print("labels_ identical before/after (labels, fidelity, reasons): True")
    print(
        f"describe: before {before_describe:.1f} s, after {after_describe:.1f} s "
        f"({before_describe / after_describe:.1f}x)"
    )
    print(
        f"fit (labelling included): before {before_fit:.1f} s, after "
        f"{after_fit:.1f} s ({before_fit / after_fit:.1f}x)"
    )


if __name__ == "__main__":
    main()
