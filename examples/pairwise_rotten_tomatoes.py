"""Pairwise task: which of two film reviews is the fresh one?

Many questions compare two texts: which headline gets more clicks, which
answer a rater prefers. Here the shipped Rotten Tomatoes snippets are turned
into such a task: each row pairs a fresh snippet with a rotten one, in random
order, and the target is 1 when the first is the fresh one, 0 the other way
round.

Given rows of shape (n_pairs, 2), :func:`run_method` builds the pairwise
pipeline: a :class:`PairwiseDifference` of embed -> sparse autoencoder (the
first text's latents minus the second's), the selection of latents that
predict which text wins, and ``HypothesisGenerator(pairwise=True)``, whose
hypotheses are concepts present in one text and not the other, tested on the
differences of the two texts' annotations. Offline: no LLM, no network.

A subset keeps it under a minute on a laptop CPU; set ``HYPOTHESAES_N_TRAIN``
and ``HYPOTHESAES_N_HOLDOUT`` (pairs) for more.

Run: ``python examples/pairwise_rotten_tomatoes.py``
"""

import os

import numpy as np

from sklearn_hypothesaes import (
    HypothesisGenerator,
    LatentSelector,
    SparseAutoencoder,
    TermDescriber,
    TextEmbedder,
    run_method,
)
from sklearn_hypothesaes.datasets import load_rotten_tomatoes

N_TRAIN = int(os.environ.get("HYPOTHESAES_N_TRAIN", 1200))
N_HOLDOUT = int(os.environ.get("HYPOTHESAES_N_HOLDOUT", 500))


def fresh_vs_rotten_pairs(texts, target, n_pairs, seed):
    """Pair the i-th fresh snippet with the i-th rotten one, in random order;
    y is 1 when the first text of the pair is the fresh one."""
    rng = np.random.default_rng(seed)
    fresh, rotten = texts[target == 1][:n_pairs], texts[target == 0][:n_pairs]
    n = min(len(fresh), len(rotten))
    first_is_fresh = rng.random(n) < 0.5
    pairs = np.empty((n, 2), dtype=object)
    pairs[:, 0] = np.where(first_is_fresh, fresh[:n], rotten[:n])
    pairs[:, 1] = np.where(first_is_fresh, rotten[:n], fresh[:n])
    return pairs, first_is_fresh.astype(int)


train = load_rotten_tomatoes(split="train")
holdout = load_rotten_tomatoes(split="holdout")
X, y = fresh_vs_rotten_pairs(train.texts, train.target, N_TRAIN, seed=0)
X_holdout, y_holdout = fresh_vs_rotten_pairs(
    holdout.texts, holdout.target, N_HOLDOUT, seed=1
)

result = run_method(
    X,  # shape (n_pairs, 2): run_method builds the pairwise pipeline
    y,
    holdout_texts=X_holdout,
    holdout_y=y_holdout,
    embedder=TextEmbedder(),  # cached on disk: a rerun does no model work
    sae=SparseAutoencoder(n_latents=64, k=4, random_state=0),
    selector=LatentSelector(n_latents=10),
    # Offline; a lower term threshold finds words on a few thousand texts.
    generator=HypothesisGenerator(
        TermDescriber(min_score=3.0), pairwise=True, random_state=0
    ),
)

columns = ["hypothesis", "prevalence", "mean_with", "mean_without", "coef"]
columns += ["pvalue_corrected"]
table = result.hypotheses.sort_values("coef", key=abs, ascending=False)
print(table[columns].to_string(index=False, float_format="{:.3f}".format))
print(
    f"\n{len(X)} training and {len(X_holdout)} held-out pairs; mean_with is the "
    "share of pairs won by the first text where only it has the concept."
)
print(
    f"held-out AUC {result.metrics['score']:.3f}; "
    f"{result.metrics['n_significant']} of {len(table)} hypotheses significant"
)
