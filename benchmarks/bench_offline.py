"""How much of the selected latents' signal the offline hypotheses keep.

On each dataset the project ships (four classification tasks, two regressions:
``trump_tweets``, strong signal, and ``movie_ratings``, weak), with its fixed
train/holdout split and
MiniLM embeddings from TextEmbedder (cached durably under
``$SKLEARN_HYPOTHESAES_CACHE_DIR``), a SparseAutoencoder (M=256, K=8) and a
LatentSelector (20 latents) are fit on the training split for each seed. Then,
on the holdout:

- latents: a logistic (linear for a continuous target) model on the 20 selected
  latents' activations, ROC AUC (R^2);
- hypotheses: HypothesisGenerator with its offline defaults (TermDescriber and
  PhraseAnnotator) fit on the same activations and training texts, its
  ``score`` (ROC AUC, or R^2) and ``evaluate(...).metrics["n_significant"]``;
- kept: the share of the latents' signal the hypotheses keep, above chance
  ((hyp - 0.5) / (lat - 0.5) for AUC, hyp / lat for R^2).

``--save results.json`` writes the rows; ``--before results.json`` (a run of
an earlier version) adds the share of that run's gap (latents minus
hypotheses) closed by this one. To run an earlier version, put its tree first on
``PYTHONPATH`` (``git worktree add /tmp/old <commit>``, then
``PYTHONPATH=/tmp/old``): the datasets are always read with this checkout's
``datasets.py``, so both runs see the same rows.

Run:
    OMP_NUM_THREADS=1 SKLEARN_HYPOTHESAES_CACHE_DIR=/tmp/benchcache \\
        .venv/bin/python benchmarks/bench_offline.py [--datasets rotten_tomatoes]
        [--seeds 0 1 2] [--save after.json] [--before before.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import r2_score, roc_auc_score

import sklearn_hypothesaes
from sklearn_hypothesaes import (
    HypothesisGenerator,
    LatentSelector,
    SparseAutoencoder,
    TextEmbedder,
)


def _this_checkouts_datasets():
    """This checkout's datasets.py, whatever sklearn_hypothesaes is imported.

    A run of an older package (PYTHONPATH) lacks the newer loaders; the module
    imports only numpy, pandas and sklearn, so it loads on its own.
    """
    path = Path(__file__).resolve().parents[1] / "sklearn_hypothesaes" / "datasets.py"
    spec = importlib.util.spec_from_file_location("bench_datasets", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


datasets = _this_checkouts_datasets()

DATASETS = {
    "rotten_tomatoes": (datasets.load_rotten_tomatoes, None),
    "amazon_fine_food": (datasets.load_amazon_fine_food, None),
    # About 700 words a speech: MiniLM would read only the first 256 tokens.
    "convention_speeches": (datasets.load_convention_speeches, 200),
    "debates_2016": (datasets.load_debates_2016, None),
    "trump_tweets": (datasets.load_trump_tweets, None),
    "movie_ratings": (datasets.load_movie_ratings, None),
}


def load(name):
    loader, chunk_words = DATASETS[name]
    train, hold = loader(split="train"), loader(split="holdout")
    embedder = TextEmbedder(chunk_words=chunk_words)
    texts, texts_hold = list(train.texts), list(hold.texts)
    X, X_hold = embedder.fit_transform(texts), embedder.transform(texts_hold)
    y, y_hold = np.asarray(train.target), np.asarray(hold.target)
    return texts, X, y, texts_hold, X_hold, y_hold


def latent_score(Z, y, Z_hold, y_hold, regression):
    if regression:
        model = LinearRegression().fit(Z, y)
        return r2_score(y_hold, model.predict(Z_hold))
    model = LogisticRegression(max_iter=2000).fit(Z, y)
    return roc_auc_score(y_hold, model.predict_proba(Z_hold)[:, 1])


def run(name, data, seed, n_select):
    texts, X, y, texts_hold, X_hold, y_hold = data
    regression = len(np.unique(y)) > 10
    start = time.perf_counter()
    sae = SparseAutoencoder(n_latents=256, k=8, random_state=seed).fit(X)
    Z, Z_hold = sae.transform(X), sae.transform(X_hold)
    selector = LatentSelector(n_latents=n_select).fit(Z, y)
    S, S_hold = selector.transform(Z), selector.transform(Z_hold)
    lat = latent_score(S, y, S_hold, y_hold, regression)
    with warnings.catch_warnings():
        # Latents without a hypothesis are counted below, not warned about.
        warnings.simplefilter("ignore", UserWarning)
        gen = HypothesisGenerator(random_state=seed).fit(S, y, texts=texts)
        hyp = gen.score(None, y_hold, texts=texts_hold)
        n_sig = int(gen.evaluate(texts_hold, y_hold).metrics["n_significant"])
    chance = 0.0 if regression else 0.5
    return {
        "dataset": name,
        "seed": seed,
        "metric": "R2" if regression else "AUC",
        "latents": float(lat),
        "hypotheses": float(hyp),
        "kept": float((hyp - chance) / (lat - chance)),
        "n_hypotheses": len(gen.hypotheses_),
        "n_significant": n_sig,
        "seconds": time.perf_counter() - start,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--datasets", nargs="+", choices=sorted(DATASETS), default=list(DATASETS)
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--n-select", type=int, default=20)
    parser.add_argument("--save", help="write the rows to this JSON file")
    parser.add_argument("--before", help="JSON rows of an earlier run to compare")
    args = parser.parse_args()
    # Which tree runs: the checkout, or an older one put first on PYTHONPATH.
    print(f"sklearn_hypothesaes from {Path(sklearn_hypothesaes.__file__).parent}")

    before = {}
    if args.before:
        with open(args.before) as f:
            before = {(r["dataset"], r["seed"]): r for r in json.load(f)}
    header = (
        f"{'dataset':<20} {'seed':>4} {'metric':>6} {'latents':>8} "
        f"{'hypoth.':>8} {'kept':>6} {'n_hyp':>5} {'n_sig':>5} {'s':>6}"
    )
    if before:
        header += f" {'before':>8} {'sig_bef':>7} {'gap closed':>10}"
    rows = []
    for name in args.datasets:
        data = load(name)
        for seed in args.seeds:
            row = run(name, data, seed, args.n_select)
            rows.append(row)
            if len(rows) == 1:
                print(header)
            line = (
                f"{name:<20} {seed:>4} {row['metric']:>6} {row['latents']:>8.3f} "
                f"{row['hypotheses']:>8.3f} {row['kept']:>6.2f} "
                f"{row['n_hypotheses']:>5} {row['n_significant']:>5} "
                f"{row['seconds']:>6.1f}"
            )
            old = before.get((name, seed))
            if old:
                gap = old["latents"] - old["hypotheses"]
                closed = (row["hypotheses"] - old["hypotheses"]) / gap
                line += (
                    f" {old['hypotheses']:>8.3f} {old['n_significant']:>7} "
                    f"{closed:>10.0%}"
                )
            print(line, flush=True)
    if args.save:
        with open(args.save, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
