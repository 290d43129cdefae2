"""Fidelity: how well a description's annotations agree with a latent firing.

:func:`fidelity_scores` scores one latent; :func:`column_fidelity_scores`
scores many at once, one per column of two matrices, with the same numbers.
Both count with numpy: scikit-learn's ``precision_recall_fscore_support``
gives the same precision, recall and F1, but its input checks cost
milliseconds a call, minutes over the thousands of latents of a sparse
autoencoder.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.utils._param_validation import validate_params

FIDELITY_KEYS = ("precision", "recall", "f1", "correlation")


@validate_params(
    {"annotations": ["array-like"], "activations": ["array-like"]},
    prefer_skip_nested_validation=True,
)
def fidelity_scores(annotations, activations) -> dict:
    """Precision, recall and F1 of annotations against "the latent fires".

    Parameters
    ----------
    annotations : array-like of shape (n_texts,)
        An annotator's labels of the texts (> 0.5 is "has the concept"); NaN
        (no usable answer) is left out.
    activations : array-like of shape (n_texts,)
        The latent's activations on the same texts (> 0 is "fires").

    Returns
    -------
    scores : dict
        ``precision``, ``recall``, ``f1`` and ``correlation`` (Pearson r of the
        labels with the activations; 0.0 where either side is constant). All
        NaN when every annotation is missing. Precision, recall and F1 are
        those of :func:`sklearn.metrics.precision_recall_fscore_support`
        (binary, ``zero_division=0``).

    See Also
    --------
    column_fidelity_scores : The same scores for many latents at once.

    Examples
    --------
    >>> scores = fidelity_scores([1, 1, 0, 0], [2.0, 0.0, 1.0, 0.0])
    >>> scores["precision"], scores["recall"], scores["f1"]
    (0.5, 0.5, 0.5)
    """
    annotations = np.asarray(annotations, dtype=float).ravel()
    activations = np.asarray(activations, dtype=float).ravel()
    _check_same_shape(annotations, activations, "fidelity_scores")
    keep = ~np.isnan(annotations)
    if not keep.any():
        return dict.fromkeys(FIDELITY_KEYS, np.nan)
    pred, acts = annotations[keep] > 0.5, activations[keep]
    precision, recall, f1 = _binary_scores(pred[:, None], acts[:, None] > 0)
    return {
        "precision": float(precision[0]),
        "recall": float(recall[0]),
        "f1": float(f1[0]),
        "correlation": label_correlation(pred, acts),
    }


def label_correlation(labels, activations) -> float:
    """Pearson r of 0/1 labels with activations, as :func:`fidelity_scores`
    reports it: 0.0 where either side is constant (like the reference
    package), else ``np.corrcoef``.

    Parameters
    ----------
    labels : ndarray of bool of shape (n_texts,)
        "Has the concept", for the texts answered.
    activations : ndarray of shape (n_texts,)
        The latent's activations on the same texts.

    Returns
    -------
    correlation : float
    """
    if labels.min() == labels.max() or activations.min() == activations.max():
        return 0.0
    return float(np.corrcoef(labels.astype(float), activations)[0, 1])


@validate_params(
    {
        "annotations": ["array-like"],
        "activations": ["array-like", "sparse matrix"],
    },
    prefer_skip_nested_validation=True,
)
def column_fidelity_scores(annotations, activations) -> dict:
    """:func:`fidelity_scores` of every column at once.

    Column ``j`` of the result is ``fidelity_scores(annotations[:, j],
    activations[:, j])``: precision, recall and F1 equal, correlation to
    rounding (about 1e-15). NaN annotations are left out of their own
    column only, so columns may have different texts answered (for
    different samples per latent, pad the shorter columns with NaN).

    Parameters
    ----------
    annotations : array-like of shape (n_texts, n_latents)
        An annotator's labels (> 0.5 is "has the concept"), NaN where it
        gave no usable answer.
    activations : {array-like, sparse matrix} of shape (n_texts, n_latents)
        The latents' activations on the same texts (> 0 is "fires"); a
        sparse matrix is made dense, so pass blocks of columns for large
        ones.

    Returns
    -------
    scores : dict of ndarray of shape (n_latents,)
        ``precision``, ``recall``, ``f1`` and ``correlation``, as in
        :func:`fidelity_scores`; NaN in the columns where every annotation
        is missing.

    See Also
    --------
    fidelity_scores : One latent.

    Examples
    --------
    >>> import numpy as np
    >>> annotations = np.array([[1, 1], [1, 0], [0, np.nan], [0, 0]])
    >>> activations = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    >>> scores = column_fidelity_scores(annotations, activations)
    >>> scores["precision"], scores["recall"], scores["f1"]
    (array([0.5, 0. ]), array([0.5, 0. ]), array([0.5, 0. ]))
    """
    annotations = np.asarray(annotations, dtype=float)
    if sp.issparse(activations):
        activations = activations.toarray()
    activations = np.asarray(activations, dtype=float)
    if annotations.ndim != 2:
        raise ValueError(
            "The 'annotations' parameter of column_fidelity_scores must be a 2-d "
            f"array of texts x latents. Got shape {annotations.shape} instead."
        )
    _check_same_shape(annotations, activations, "column_fidelity_scores")
    keep = ~np.isnan(annotations)
    pred = annotations > 0.5  # NaN compares False
    fires = (activations > 0) & keep
    precision, recall, f1 = _binary_scores(pred, fires)
    scores = {"precision": precision, "recall": recall, "f1": f1}
    scores["correlation"] = _correlations(pred, activations, keep)
    unanswered = ~keep.any(axis=0)
    for key in FIDELITY_KEYS:
        scores[key][unanswered] = np.nan
    return scores


def _check_same_shape(annotations, activations, caller):
    if annotations.shape != activations.shape:
        raise ValueError(
            f"The 'activations' parameter of {caller} must have the shape of "
            f"'annotations' {annotations.shape} (the same texts and latents). Got "
            f"shape {activations.shape} instead."
        )


def _binary_scores(pred, fires):
    """Precision, recall and F1 per column of two boolean matrices, as
    scikit-learn computes them (F1 = 2 tp / (fires + predicted)); 0.0 where
    a denominator is zero."""
    tp = np.count_nonzero(pred & fires, axis=0).astype(np.float64)
    n_pred = np.count_nonzero(pred, axis=0).astype(np.float64)
    n_fires = np.count_nonzero(fires, axis=0).astype(np.float64)

    def divide(num, den):
        return np.divide(num, den, out=np.zeros_like(num), where=den > 0)

    return divide(tp, n_pred), divide(tp, n_fires), divide(2.0 * tp, n_fires + n_pred)


def _correlations(pred, activations, keep):
    """Pearson r per column over the kept rows (centred first, as
    ``np.corrcoef``); 0.0 where either side is constant there."""
    n = keep.sum(axis=0)
    x = np.where(keep, pred, 0.0)
    y = np.where(keep, activations, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        x = np.where(keep, x - x.sum(axis=0) / n, 0.0)
        y = np.where(keep, y - y.sum(axis=0) / n, 0.0)
        r = (x * y).sum(axis=0) / np.sqrt((x * x).sum(axis=0) * (y * y).sum(axis=0))
    # Constant: equal minimum and maximum over the kept rows.
    constant = np.zeros(pred.shape[1], dtype=bool)
    for values in (pred.astype(float), activations):
        low = np.where(keep, values, np.inf).min(axis=0, initial=np.inf)
        high = np.where(keep, values, -np.inf).max(axis=0, initial=-np.inf)
        constant |= low == high
    return np.where(constant | (n == 0), 0.0, np.clip(r, -1.0, 1.0))
