"""Stability across seeds: does a hypothesis' latent come back with another SAE?

A sparse autoencoder's latents depend on its random initialisation, so a
finding could be an accident of the seed. :func:`seed_stability` fits the SAE
and the latent selection again with other seeds on the same embeddings and
asks, for each hypothesis' latent, whether one of the latents selected with
each other seed fires on the same training texts in the same way. It compares
activations only: no description and no LLM call is needed.

Recurrence is judged by the Pearson correlation of activations over the
training texts. Two latents of one concept fire on the same texts with
similar strength (correlation near 1); two unrelated sparse latents almost
never fire together (near 0). The threshold, 0.5 by default, asks that the
best match explains at least a quarter of the latent's variance across texts:
a split of one concept into two halves (each about 0.7) still recurs, a latent
that shares a minority of its texts with another does not. Only the *selected*
latents of another seed count, so that "recurs" means "would again be a
hypothesis", not merely "exists somewhere in the dictionary".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.base import clone
from sklearn.pipeline import Pipeline

__all__ = ["RECURRENCE_THRESHOLD", "SeedStability", "recurrence", "seed_stability"]

#: Pearson correlation of activations at which a latent counts as recurring.
RECURRENCE_THRESHOLD = 0.5


@dataclass
class SeedStability:
    """How often each latent recurs with other seeds.

    Attributes
    ----------
    stability : ndarray of shape (n_columns,)
        Per column of the reference activations, the share of the other seeds
        with a selected latent correlated at least ``threshold`` with it.
    correlation : ndarray of shape (n_columns, n_seeds)
        The best correlation with each seed's selected latents (0 for a latent
        that never fires).
    seeds : list of int
        The other seeds.
    threshold : float
        The correlation at which a latent recurs.
    """

    stability: np.ndarray
    correlation: np.ndarray
    seeds: list
    threshold: float


def _dense(Z) -> np.ndarray:
    Z = Z.toarray() if hasattr(Z, "toarray") else Z
    return np.asarray(Z, dtype=np.float64)


def best_correlation(reference, other) -> np.ndarray:
    """For each column of ``reference``, its largest Pearson correlation with a
    column of ``other`` (same rows); 0 where either column is constant."""
    A, B = _dense(reference), _dense(other)
    A = A - A.mean(axis=0)
    B = B - B.mean(axis=0)
    norm_a, norm_b = np.linalg.norm(A, axis=0), np.linalg.norm(B, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = (A.T @ B) / np.outer(norm_a, norm_b)
    corr = np.where(np.isfinite(corr), corr, 0.0)
    if corr.shape[1] == 0:
        return np.zeros(A.shape[1])
    return corr.max(axis=1)


def recurrence(reference, others, threshold=RECURRENCE_THRESHOLD):
    """Share of ``others`` in which each column of ``reference`` recurs.

    Parameters
    ----------
    reference : array-like of shape (n_texts, n_columns)
        Activations of the latents to judge (e.g. each hypothesis' latent).
    others : list of array-like of shape (n_texts, n_selected_s)
        Activations of the selected latents of each other seed, same texts.
    threshold : float, default=RECURRENCE_THRESHOLD
        A column recurs in one of ``others`` when its best Pearson correlation
        with a column there is at least this.

    Returns
    -------
    stability : ndarray of shape (n_columns,)
        NaN for every column when ``others`` is empty.
    correlation : ndarray of shape (n_columns, len(others))

    Examples
    --------
    >>> import numpy as np
    >>> planted = np.array([0, 1, 0, 2, 0, 1.0])
    >>> noise = np.array([1, 0, 0, 0, 1, 0.0])
    >>> other = np.column_stack([planted * 3, [0, 0, 1, 0, 0, 1.0]])
    >>> stability, corr = recurrence(np.column_stack([planted, noise]), [other])
    >>> stability.tolist(), corr.round(2).ravel().tolist()
    ([1.0, 0.0], [1.0, -0.5])
    """
    reference = _dense(reference)
    corr = np.column_stack(
        [best_correlation(reference, other) for other in others]
        or [np.empty((reference.shape[1], 0))]
    )
    if corr.shape[1] == 0:
        return np.full(reference.shape[1], np.nan), corr
    return (corr >= threshold).mean(axis=1), corr


def other_seeds(seed, n_seeds) -> list:
    """The ``n_seeds - 1`` seeds after ``seed``: ``seed + 1``, ``seed + 2``, ...
    (modulo 2**32), so a run is reproducible from its own seed alone."""
    return [int((seed + i) % 2**32) for i in range(1, n_seeds)]


def seed_stability(
    embeddings,
    y,
    reference,
    *,
    sae,
    selector,
    seeds,
    threshold=RECURRENCE_THRESHOLD,
    memory=None,
    pairs=None,
) -> SeedStability:
    """Refit the SAE and the selection with other seeds; judge recurrence.

    Parameters
    ----------
    embeddings : array-like of shape (n_texts, n_dims)
        The training embeddings the reference SAE was fit on.
    y : array-like of shape (n_texts,)
        The training targets (the selection uses them).
    reference : array-like of shape (n_texts, n_columns)
        Activations of the latents to judge, on ``embeddings``.
    sae : SparseAutoencoder
        The reference SAE's settings; cloned, with ``random_state`` set to
        each seed.
    selector : estimator with ``fit`` and ``transform``
        The selection; cloned.
    seeds : list of int
        The other seeds.
    threshold : float, default=RECURRENCE_THRESHOLD
        See :func:`recurrence`.
    memory : object with ``cache`` or None, default=None
        The Pipeline cache of the run (an ArrayMemory stores each seed's SAE).
    pairs : tuple of two int arrays or None, default=None
        A pairwise task: ``(first, second)``, the rows of ``embeddings`` (the
        distinct texts) of each pair's two texts. Each seed's SAE is then fit
        on the texts, the selection on the differences of the pairs'
        activations, and ``reference`` and ``y`` are per pair.

    Returns
    -------
    stability : SeedStability
    """
    others = []
    for seed in seeds:
        seeded = clone(sae).set_params(random_state=seed)
        if pairs is None:
            refit = Pipeline(
                [("sae", seeded), ("select", clone(selector))], memory=memory
            )
            others.append(refit.fit_transform(embeddings, y))
            continue
        # A passthrough last step lets the memory cache the SAE.
        refit = Pipeline([("sae", seeded), ("output", "passthrough")], memory=memory)
        Z = _dense(refit.fit_transform(embeddings))
        first, second = pairs
        others.append(clone(selector).fit_transform(Z[first] - Z[second], y))
    share, corr = recurrence(reference, others, threshold)
    return SeedStability(
        stability=share, correlation=corr, seeds=list(seeds), threshold=threshold
    )
