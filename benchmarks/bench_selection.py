"""Selection quality vs the peer (PyPI ``hypothesaes``), and our offline method.

Both sides get the same rotten-tomatoes MiniLM embeddings (our fixed
train/holdout split, embedded by TextEmbedder, cached durably). Each trains
its SAE with its defaults (M=256, K=8; the peer validates on 10% of the
training rows, as ours does internally), selects 20 latents by correlation,
and a logistic regression on those 20 latents' activations is scored on the
holdout (ROC AUC). Then our offline method runs end to end: hypotheses from
contrastive terms on the training split, annotated by phrase matching on the
holdout, tested with Bonferroni.

Run: .venv/bin/python benchmarks/bench_selection.py [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from sklearn_hypothesaes import (
    HypothesisGenerator,
    LatentSelector,
    SparseAutoencoder,
    TextEmbedder,
)
from sklearn_hypothesaes.datasets import load_rotten_tomatoes


def holdout_auc(Z, y, Z_hold, y_hold):
    model = LogisticRegression(max_iter=2000).fit(Z, y)
    return roc_auc_score(y_hold, model.predict_proba(Z_hold)[:, 1])


def ours(X, y, X_hold, y_hold, n_select, seed):
    start = time.perf_counter()
    sae = SparseAutoencoder(n_latents=256, k=8, random_state=seed).fit(X)
    Z, Z_hold = sae.transform(X), sae.transform(X_hold)
    selector = LatentSelector(n_latents=n_select).fit(Z, y)
    cols = selector.selected_
    auc = holdout_auc(Z[:, cols], y, Z_hold[:, cols], y_hold)
    return auc, time.perf_counter() - start, sae, selector


def peer(X, y, X_hold, y_hold, n_select, seed):
    import torch
    from hypothesaes.quickstart import train_sae
    from hypothesaes.select_neurons import select_neurons

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(X))
    n_val = len(X) // 10
    start = time.perf_counter()
    sae = train_sae(
        embeddings=X[order[n_val:]],
        M=256,
        K=8,
        val_embeddings=X[order[:n_val]],
        show_progress=False,
    )
    sae.eval()
    Z = sae.get_activations(X, show_progress=False)
    Z_hold = sae.get_activations(X_hold, show_progress=False)
    cols, _ = select_neurons(Z, y, n_select, method="correlation", classification=True)
    auc = holdout_auc(Z[:, cols], y, Z_hold[:, cols], y_hold)
    return auc, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--n-select", type=int, default=20)
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args()

    train = load_rotten_tomatoes(split="train")
    hold = load_rotten_tomatoes(split="holdout")
    embedder = TextEmbedder(cache_dir=args.cache_dir)
    X = embedder.fit_transform(list(train.texts))
    X_hold = embedder.transform(list(hold.texts))
    y, y_hold = np.asarray(train.target), np.asarray(hold.target)
    print(f"rotten tomatoes: {len(X)} train, {len(X_hold)} holdout, dim {X.shape[1]}")
    full = holdout_auc(X, y, X_hold, y_hold)
    print(f"full embedding holdout AUC: {full:.3f}\n")

    print(
        f"{'seed':>4}  {'ours AUC':>8}  {'peer AUC':>8}  {'ratio':>6}  "
        f"{'ours s':>7}  {'peer s':>7}"
    )
    rows = []
    for seed in args.seeds:
        a_ours, t_ours, sae, selector = ours(X, y, X_hold, y_hold, args.n_select, seed)
        a_peer, t_peer = peer(X, y, X_hold, y_hold, args.n_select, seed)
        rows.append((a_ours, a_peer))
        print(
            f"{seed:>4}  {a_ours:>8.3f}  {a_peer:>8.3f}  {a_ours / a_peer:>6.3f}  "
            f"{t_ours:>7.1f}  {t_peer:>7.1f}"
        )
    mean_ours, mean_peer = np.mean(rows, axis=0)
    print(f"mean  {mean_ours:>8.3f}  {mean_peer:>8.3f}  {mean_ours / mean_peer:>6.3f}")

    # Our offline method end to end, on the last seed's SAE and selection.
    start = time.perf_counter()
    S = selector.transform(sae.transform(X))
    gen = HypothesisGenerator(random_state=args.seeds[-1])
    gen.fit(S, y, texts=list(train.texts))
    result = gen.evaluate(list(hold.texts), y_hold)
    seconds = time.perf_counter() - start
    metrics = result.metrics
    print(
        f"\noffline hypotheses: {len(gen.hypotheses_)} of {args.n_select} latents, "
        f"{metrics['n_significant']} significant on the holdout (Bonferroni, "
        f"alpha {metrics['alpha']}), joint holdout AUC {metrics['auc']:.3f}, "
        f"{seconds:.1f} s"
    )
    table = result.table.assign(fidelity=gen.hypotheses_["fidelity"].to_numpy())
    cols = ["hypothesis", "fidelity", "prevalence", "separation", "pvalue_corrected"]
    with np.printoptions(precision=3):
        print(table[cols].round(3).to_string(max_colwidth=60))


if __name__ == "__main__":
    main()
