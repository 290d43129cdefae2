"""When a latent fires on a document: per-latent thresholds and binarisation.

Every analysis of the toolkit counts documents on which a latent fires (how
often in each corpus, how often two latents fire together, which documents
share latents). A TopK autoencoder gives every document exactly ``k``
non-zero latents, some of them barely above zero; counting those as firing
adds noise that is the same for every latent's frequency. The default rule
therefore keeps an activation when it reaches a fixed share of the latent's
typical strong activation.
"""

from __future__ import annotations

from numbers import Real

import numpy as np
import scipy.sparse as sp

THRESHOLD_METHODS = ("relative", "positive", "quantile")


def _as_csc(activations, name: str) -> sp.csc_matrix:
    if sp.issparse(activations):
        X = sp.csc_matrix(activations, dtype=np.float32)
    else:
        X = np.asarray(activations)
        if X.ndim != 2:
            raise ValueError(
                f"The {name!r} parameter must be a 2-d array or sparse matrix of "
                f"documents x latents. Got an array of shape {X.shape} instead."
            )
        X = sp.csc_matrix(X.astype(np.float32, copy=False))
    if X.nnz and not np.isfinite(X.data).all():
        raise ValueError(
            f"The {name!r} parameter contains NaN or infinite activations; "
            "recompute them (a diverged autoencoder gives these)."
        )
    return X


def latent_thresholds(
    activations, *, method: str = "relative", fraction: float = 0.2
) -> np.ndarray:
    """Per-latent activation thresholds above which a latent counts as firing.

    Parameters
    ----------
    activations : {array-like, sparse matrix} of shape (n_documents, n_latents)
        Non-negative latent activations of a reference corpus (usually the
        one the labels were written on).
    method : {"relative", "positive", "quantile"}, default="relative"
        - ``"relative"``: ``fraction`` times the latent's strong activation,
          the 90th percentile of its non-zero activations (robust to a few
          outliers, unlike the maximum). A latent fires where it is at least
          ``fraction`` as active as it usually is when clearly on.
        - ``"positive"``: any non-zero activation fires (threshold 0).
        - ``"quantile"``: the latent fires on the top ``fraction`` share of
          the documents on which it is non-zero.
    fraction : float, default=0.2
        The share used by ``"relative"`` and ``"quantile"``, in (0, 1].

    Returns
    -------
    thresholds : ndarray of shape (n_latents,)
        Float32. A latent that never fires in ``activations`` gets ``inf``
        (it never fires anywhere).

    Examples
    --------
    >>> import numpy as np
    >>> Z = np.array([[0.0, 1.0], [0.1, 2.0], [1.0, 0.0], [1.0, 3.0]])
    >>> latent_thresholds(Z, fraction=0.5)
    array([0.5, 1.4], dtype=float32)
    """
    if method not in THRESHOLD_METHODS:
        raise ValueError(
            f"The 'method' parameter of latent_thresholds must be one of "
            f"{list(THRESHOLD_METHODS)}. Got {method!r} instead."
        )
    if not isinstance(fraction, Real) or not 0 < fraction <= 1:
        raise ValueError(
            "The 'fraction' parameter of latent_thresholds must be a float in "
            f"(0, 1]. Got {fraction!r} instead."
        )
    X = _as_csc(activations, "activations")
    out = np.full(X.shape[1], np.inf, dtype=np.float32)
    for j in range(X.shape[1]):
        values = X.data[X.indptr[j] : X.indptr[j + 1]]
        values = values[values > 0]
        if values.size == 0:
            continue
        if method == "positive":
            out[j] = 0.0
        elif method == "relative":
            out[j] = fraction * np.percentile(values, 90)
        else:
            out[j] = np.quantile(values, 1 - fraction)
    return out


def binarize_activations(activations, thresholds=None) -> sp.csr_matrix:
    """Which latents fire on which documents, as a sparse boolean matrix.

    Parameters
    ----------
    activations : {array-like, sparse matrix} of shape (n_documents, n_latents)
        Latent activations.
    thresholds : array-like of shape (n_latents,), float or None, default=None
        A latent fires where its activation is strictly above zero and at
        least its threshold. None means any non-zero activation fires.
        Usually :func:`latent_thresholds` of a reference corpus, so that two
        corpora are binarised by the same rule.

    Returns
    -------
    fires : scipy.sparse.csr_matrix of bool, shape (n_documents, n_latents)

    Examples
    --------
    >>> import numpy as np
    >>> Z = np.array([[0.0, 1.0], [0.1, 2.0]])
    >>> binarize_activations(Z, [0.5, 1.5]).toarray()
    array([[False, False],
           [False,  True]])
    """
    X = sp.csr_matrix(_as_csc(activations, "activations"))
    if thresholds is None:
        thr = np.zeros(X.shape[1], dtype=np.float32)
    else:
        thr = np.broadcast_to(np.asarray(thresholds, dtype=np.float32), X.shape[1:])
        if thr.shape != (X.shape[1],):
            raise ValueError(
                "The 'thresholds' parameter of binarize_activations must have one "
                f"value per latent ({X.shape[1]}). Got shape {thr.shape} instead."
            )
    keep = (X.data > 0) & (X.data >= thr[X.indices])
    fires = sp.csr_matrix(
        (np.ones(int(keep.sum()), dtype=bool), X.indices[keep], _indptr(X, keep)),
        shape=X.shape,
    )
    return fires


def _indptr(X: sp.csr_matrix, keep: np.ndarray) -> np.ndarray:
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    counts = np.bincount(rows[keep], minlength=X.shape[0])
    return np.concatenate([[0], np.cumsum(counts)])
