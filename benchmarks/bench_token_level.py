"""Token-level SAE features vs sentence-embedding SAE features, same protocol
as bench_selection.py.

For each shipped classification dataset (rotten tomatoes, as in
bench_selection.py, and the Amazon fine-food reviews), on a stratified subset
of the fixed train/holdout split:

- sentence route: MiniLM sentence embeddings (TextEmbedder) -> SparseAutoencoder
  (M=256, K=8, defaults) -> LatentSelector(20, correlation);
- token route: MiniLM hidden states of every token at a layer (TokenEmbedder,
  special tokens dropped) -> the same SparseAutoencoder trained on the token
  rows (at most --max-tokens-per-document tokens of each text) and applied to
  every token -> max over each text's tokens (DocumentPooler) ->
  LatentSelector(20, correlation).

Each route is scored as in bench_selection.py: a logistic regression on the
20 selected latents of the training texts, ROC AUC on the holdout texts. Times
are wall-clock seconds of SAE training + transform + selection (embedding is
timed separately, once per dataset and layer).

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_token_level.py \\
        [--n-train 3000] [--n-holdout 1000] [--seeds 0 1 2] [--layers -1 3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from sklearn_hypothesaes import LatentSelector, SparseAutoencoder, TextEmbedder
from sklearn_hypothesaes.datasets import load_amazon_fine_food, load_rotten_tomatoes
from sklearn_hypothesaes.sae._pooling import DocumentPooler, TokenwiseTransformer
from sklearn_hypothesaes.text import TokenEmbedder, TokenStates

DATASETS = {
    "rotten_tomatoes": load_rotten_tomatoes,
    "amazon_fine_food": load_amazon_fine_food,
}


def subset(bunch, n, seed=0):
    """A stratified subset of n texts (all of them when n is larger)."""
    texts, y = np.asarray(bunch.texts, dtype=object), np.asarray(bunch.target)
    if n >= len(texts):
        return list(texts), y
    keep, _ = train_test_split(
        np.arange(len(texts)), train_size=n, stratify=y, random_state=seed
    )
    keep = np.sort(keep)
    return list(texts[keep]), y[keep]


def holdout_auc(Z, y, Z_hold, y_hold):
    model = LogisticRegression(max_iter=2000).fit(Z, y)
    return roc_auc_score(y_hold, model.predict_proba(Z_hold)[:, 1])


def selected_auc(Z, y, Z_hold, y_hold, n_select):
    cols = LatentSelector(n_latents=n_select).fit(Z, y).selected_
    return holdout_auc(Z[:, cols], y, Z_hold[:, cols], y_hold)


def token_states(texts, layer, max_tokens, cache_file):
    """TokenEmbedder's states, kept in an .npz (no pickle) between runs."""
    if cache_file is not None and cache_file.exists():
        with np.load(cache_file, allow_pickle=False) as f:
            return TokenStates(f["values"], f["offsets"], f["token_ids"]), 0.0
    start = time.perf_counter()
    states = TokenEmbedder(layer=layer, max_tokens=max_tokens).transform(texts)
    seconds = time.perf_counter() - start
    if cache_file is not None:
        np.savez(
            cache_file,
            values=states.values,
            offsets=states.offsets,
            token_ids=states.token_ids,
        )
    return states, seconds


def sentence_route(X, y, X_hold, y_hold, n_select, seed):
    start = time.perf_counter()
    sae = SparseAutoencoder(n_latents=256, k=8, random_state=seed).fit(X)
    auc = selected_auc(sae.transform(X), y, sae.transform(X_hold), y_hold, n_select)
    return auc, time.perf_counter() - start


def token_route(states, y, states_hold, y_hold, n_select, seed, per_doc):
    start = time.perf_counter()
    tokenwise = TokenwiseTransformer(
        SparseAutoencoder(n_latents=256, k=8, random_state=seed),
        max_tokens_per_document=per_doc,
        random_state=seed,
    ).fit(states)
    acts, acts_hold = tokenwise.transform(states), tokenwise.transform(states_hold)
    aucs = {}
    for method in ("max", "mean"):
        pooler = DocumentPooler(method).fit(acts)
        Z, Z_hold = pooler.transform(acts), pooler.transform(acts_hold)
        aucs[method] = selected_auc(Z, y, Z_hold, y_hold, n_select)
    return aucs, time.perf_counter() - start, tokenwise.n_training_tokens_


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--n-train", type=int, default=3000)
    parser.add_argument("--n-holdout", type=int, default=1000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--layers", type=int, nargs="+", default=[-1, 3])
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--max-tokens-per-document", type=int, default=32)
    parser.add_argument("--n-select", type=int, default=20)
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args()
    cache = Path(args.cache_dir) if args.cache_dir else None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    print(
        f"torch threads {torch.get_num_threads()}; {args.n_train} train / "
        f"{args.n_holdout} holdout texts per dataset (stratified subsets of the "
        f"fixed split); SAE M=256 K=8; {args.n_select} latents selected by "
        f"correlation; token states: special tokens dropped, max_tokens "
        f"{args.max_tokens}, SAE trained on at most "
        f"{args.max_tokens_per_document} tokens per text"
    )
    summary = []
    for name in args.datasets:
        texts, y = subset(DATASETS[name](split="train"), args.n_train)
        texts_hold, y_hold = subset(DATASETS[name](split="holdout"), args.n_holdout)
        embedder = TextEmbedder(cache_dir=args.cache_dir)
        start = time.perf_counter()
        X, X_hold = embedder.fit_transform(texts), embedder.transform(texts_hold)
        print(
            f"\n{name}: {len(texts)} train, {len(texts_hold)} holdout; sentence "
            f"embeddings {time.perf_counter() - start:.1f} s; full 384-d embedding "
            f"AUC {holdout_auc(X, y, X_hold, y_hold):.3f}"
        )
        states = {}
        for layer in args.layers:
            files = [
                cache / f"tokens_{name}_{split}_{n}_{layer}_{args.max_tokens}.npz"
                if cache
                else None
                for split, n in [("train", args.n_train), ("hold", args.n_holdout)]
            ]
            train_states, t1 = token_states(texts, layer, args.max_tokens, files[0])
            hold_states, t2 = token_states(texts_hold, layer, args.max_tokens, files[1])
            states[layer] = (train_states, hold_states)
            print(
                f"  layer {layer}: {train_states.n_tokens} train tokens "
                f"({np.median(train_states.lengths):.0f} per text, median), token "
                f"states {t1 + t2:.1f} s" + (" (cached)" if t1 + t2 == 0 else "")
            )
        header = f"  {'seed':>4}  {'sentence':>8}"
        for layer in args.layers:
            header += f"  {f'L{layer} max':>8}  {f'L{layer} mean':>9}"
        header += "  seconds (sentence, " + ", ".join(f"L{v}" for v in args.layers)
        print(header + ")")
        for seed in args.seeds:
            auc_s, t_s = sentence_route(X, y, X_hold, y_hold, args.n_select, seed)
            row = [auc_s]
            line = f"  {seed:>4}  {auc_s:>8.3f}"
            times = [f"{t_s:.1f}"]
            for layer in args.layers:
                aucs, t_tok, n_rows = token_route(
                    *states[layer][:1],
                    y,
                    states[layer][1],
                    y_hold,
                    args.n_select,
                    seed,
                    args.max_tokens_per_document,
                )
                row += [aucs["max"], aucs["mean"]]
                line += f"  {aucs['max']:>8.3f}  {aucs['mean']:>9.3f}"
                times.append(f"{t_tok:.1f} ({n_rows} rows)")
            summary.append((name, row))
            print(line + "  " + ", ".join(times), flush=True)
        rows = np.array([r for n, r in summary if n == name])
        widths = [8] + [8, 9] * len(args.layers)
        means = "".join(
            f"  {v:>{w}.3f}" for v, w in zip(rows.mean(axis=0), widths, strict=True)
        )
        print(f"  {'mean':>4}{means}")


if __name__ == "__main__":
    main()
