"""Dataset diffing: which labelled latents fire more often in one corpus.

Once every latent has a label, "how do corpora A and B differ?" becomes
counting: binarise both corpora by the same per-latent rule
(:func:`binarize_activations`), count the documents on which each latent
fires, and test each latent's two frequencies (:mod:`._fisher`).
:func:`diff_corpora` returns that table; :mod:`._summary` has an LLM write
its top rows in words and checks each on held-out texts.

The helpers that read activations, labels and thresholds
(:func:`latent_inputs`, :func:`resolve_labels`, :func:`resolve_thresholds`)
are shared with the toolkit's other analyses. The names of
:mod:`._fisher` and :mod:`._summary` that were first defined here are still
importable from here.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

from ..utils._misc import warn_user
from ..utils._validation import check_texts
from ._binarize import THRESHOLD_METHODS, binarize_activations, latent_thresholds
from ._fisher import (
    CORRECTIONS,
    TESTS,
    correct_pvalues,
    fisher_greater,
    fisher_two_sided,
    two_proportion_stats,
)
from ._summary import (
    SUMMARY_COLUMNS,
    SUMMARY_PROMPT,
    DifferenceSummary,
    parse_differences,
    summarize_differences,
    summary_prompt,
    verify_differences,
)

__all__ = [
    "CORRECTIONS",
    "DIFF_COLUMNS",
    "SUMMARY_COLUMNS",
    "SUMMARY_PROMPT",
    "TESTS",
    "DifferenceSummary",
    "correct_pvalues",
    "diff_corpora",
    "fisher_greater",
    "fisher_two_sided",
    "latent_inputs",
    "parse_differences",
    "resolve_labels",
    "resolve_thresholds",
    "summarize_differences",
    "summary_prompt",
    "top_examples",
    "two_proportion_stats",
    "verify_differences",
]

#: Columns of the table :func:`diff_corpora` returns, in this order.
DIFF_COLUMNS = [
    "latent",
    "label",
    "labelled",
    "count_a",
    "count_b",
    "freq_a",
    "freq_b",
    "difference",
    "difference_low",
    "difference_high",
    "ratio",
    "ratio_low",
    "ratio_high",
    "pvalue",
    "pvalue_corrected",
    "significant",
    "more_in",
    "threshold",
    "examples_a",
    "examples_b",
]


# Inputs shared by the toolkit's analyses --------------------------------------
def _is_embedder(obj) -> bool:
    return callable(getattr(obj, "transform", None))


def latent_inputs(X, *, param: str, caller: str, embedder=None):
    """Activations as CSR float32 (and the texts, when ``X`` holds texts).

    Parameters
    ----------
    X : {array-like, sparse matrix} of shape (n_documents, n_latents) or texts
        Latent activations; with ``embedder``, the texts it transforms.
    param, caller : str
        Named in error messages.
    embedder : object with ``transform`` or None, default=None
        A fitted :class:`InterpretableEmbedder` (or any transformer from
        texts to latent activations).

    Returns
    -------
    activations : scipy.sparse.csr_matrix of float32
    texts : list of str or None
    """
    texts = None
    if embedder is not None:
        if not _is_embedder(embedder):
            raise TypeError(
                f"The 'embedder' parameter of {caller} must be a fitted "
                "InterpretableEmbedder (an object with transform(texts)). Got "
                f"{type(embedder).__name__} instead."
            )
        texts = check_texts(
            X, caller=caller, param=param, hint="With an embedder, pass texts."
        )
        X = embedder.transform(texts)
        if hasattr(X, "to_numpy") and not sp.issparse(X):
            X = X.to_numpy()
    elif X is None:
        raise ValueError(
            f"The {param!r} parameter of {caller} is required: latent activations "
            "of shape (n_documents, n_latents), or texts together with "
            "embedder=. Got None."
        )
    if sp.issparse(X):
        Z = sp.csr_matrix(X, dtype=np.float32)
    else:
        if hasattr(X, "to_numpy"):
            X = X.to_numpy()
        Z = np.asarray(X)
        if Z.dtype.kind in "OUS":
            raise TypeError(
                f"The {param!r} parameter of {caller} must hold numeric latent "
                "activations; got text. To pass texts, give embedder= (a fitted "
                "InterpretableEmbedder)."
            )
        if Z.ndim != 2:
            raise ValueError(
                f"The {param!r} parameter of {caller} must be a 2-d array or "
                f"sparse matrix of documents x latents. Got shape {Z.shape} instead."
            )
        Z = sp.csr_matrix(Z.astype(np.float32, copy=False))
    if Z.shape[0] == 0 or Z.shape[1] == 0:
        raise ValueError(
            f"The {param!r} parameter of {caller} must have at least one document "
            f"and one latent. Got shape {Z.shape} instead."
        )
    if Z.nnz and not np.isfinite(Z.data).all():
        raise ValueError(
            f"The {param!r} parameter of {caller} contains NaN or infinite "
            "activations; recompute them (a diverged autoencoder gives these)."
        )
    if Z.nnz and Z.data.min() < 0:
        raise ValueError(
            f"The {param!r} parameter of {caller} must hold non-negative latent "
            f"activations (a latent fires where it is > 0). Got a minimum of "
            f"{Z.data.min():g}."
        )
    return Z, texts


def resolve_labels(
    labels, n_latents: int, *, caller: str, embedder=None, param="labels"
):
    """One label per latent, and which latents have a real one.

    Labels come from ``labels``, else from the embedder (its ``labels_``
    table's ``label`` column, else ``get_feature_names_out()``). A latent
    without one (None or NaN: dead, or no label found) is named as the
    embedder names its output (``latent_<j>``, ``dead_<j>``), else
    ``latent_<j>``, and is not ``labelled``.

    Returns
    -------
    names : list of str
    labelled : ndarray of bool
    """
    fallback = [f"latent_{j}" for j in range(n_latents)]
    if labels is None and embedder is not None:
        table = getattr(embedder, "labels_", None)
        if callable(getattr(embedder, "get_feature_names_out", None)):
            names = [str(v) for v in embedder.get_feature_names_out()]
            fallback = names if len(names) == n_latents else fallback
        if isinstance(table, pd.DataFrame) and "label" in table.columns:
            labels = table["label"]
        elif callable(getattr(embedder, "get_feature_names_out", None)):
            labels = fallback
    if labels is None:
        return fallback, np.zeros(n_latents, dtype=bool)
    if isinstance(labels, str):
        raise TypeError(
            f"The {param!r} parameter of {caller} must be a sequence of str, one "
            "per latent; got a single str."
        )
    values = labels.tolist() if hasattr(labels, "tolist") else list(labels)
    if len(values) != n_latents:
        raise ValueError(
            f"The {param!r} parameter of {caller} must hold one label per latent "
            f"({n_latents}). Got {len(values)} labels instead."
        )
    labelled = np.array([not pd.isna(v) and str(v) != "" for v in values], dtype=bool)
    names = [
        str(v) if ok else f for v, ok, f in zip(values, labelled, fallback, strict=True)
    ]
    return names, labelled


def resolve_thresholds(
    thresholds, reference, *, caller: str, embedder=None, param="thresholds"
):
    """Per-latent firing thresholds (see :func:`latent_thresholds`).

    None uses the embedder's ``thresholds_`` when there is one, else
    ``latent_thresholds(reference)`` (the "relative" rule); a method name
    computes that rule on ``reference``; a number or one value per latent is
    taken as given.
    """
    n_latents = reference.shape[1]
    if thresholds is None and embedder is not None:
        thresholds = getattr(embedder, "thresholds_", None)
    if thresholds is None:
        thresholds = "relative"
    if isinstance(thresholds, str):
        if thresholds not in THRESHOLD_METHODS:
            raise ValueError(
                f"The {param!r} parameter of {caller} must be one of "
                f"{list(THRESHOLD_METHODS)}, a number or one value per latent. Got "
                f"{thresholds!r} instead."
            )
        return latent_thresholds(reference, method=thresholds)
    thr = np.asarray(thresholds, dtype=np.float32)
    if thr.ndim == 0:
        thr = np.full(n_latents, thr, dtype=np.float32)
    if thr.shape != (n_latents,):
        raise ValueError(
            f"The {param!r} parameter of {caller} must have one value per latent "
            f"({n_latents}). Got shape {thr.shape} instead."
        )
    if np.isnan(thr).any():
        raise ValueError(f"The {param!r} parameter of {caller} contains NaN.")
    return thr


def top_examples(activations, fires, texts, columns, n_examples: int) -> list:
    """The texts with the strongest activations among those where it fires."""
    if texts is None or n_examples == 0:
        return [[] for _ in columns]
    strength = sp.csc_matrix(activations.multiply(fires))
    out = []
    for j in columns:
        start, stop = strength.indptr[j], strength.indptr[j + 1]
        rows, values = strength.indices[start:stop], strength.data[start:stop]
        # Strongest first; ties by document order, so the choice is stable.
        order = np.lexsort((rows, -values))[:n_examples]
        out.append([texts[i] for i in rows[order]])
    return out


# diff_corpora -------------------------------------------------------------
@validate_params(
    {
        "A": "no_validation",
        "B": "no_validation",
        "embedder": "no_validation",
        "labels": ["array-like", None],
        "thresholds": "no_validation",
        "texts_a": ["array-like", None],
        "texts_b": ["array-like", None],
        "test": [StrOptions(set(TESTS))],
        "correction": [StrOptions(set(CORRECTIONS))],
        "alpha": [Interval(Real, 0, 1, closed="neither")],
        "n_examples": [Interval(Integral, 0, None, closed="left")],
        "sort_by": [StrOptions({"difference", "ratio", "pvalue"})],
        "top": [Interval(Integral, 1, None, closed="left"), None],
    },
    prefer_skip_nested_validation=True,
)
def diff_corpora(
    A,
    B,
    *,
    embedder=None,
    labels=None,
    thresholds=None,
    texts_a=None,
    texts_b=None,
    test="fisher",
    correction="fdr_bh",
    alpha=0.05,
    n_examples=3,
    sort_by="difference",
    top=None,
) -> pd.DataFrame:
    """Latents ranked by how differently often they fire in two corpora.

    Both corpora are binarised by the same per-latent thresholds
    (:func:`binarize_activations`), each latent's firing frequencies are
    compared with an exact or a two-proportion test, and the p-values are
    corrected over every latent that fires in at least one corpus (a latent
    that fires nowhere cannot differ: it gets p = 1 and is left out of the
    family).

    Parameters
    ----------
    A, B : {array-like, sparse matrix} of shape (n_documents, n_latents) or texts
        Latent activations of the two corpora (same latents), or their texts
        when ``embedder`` is given.
    embedder : fitted InterpretableEmbedder or None, default=None
        Turns texts into activations; its labels (``labels_`` or
        ``get_feature_names_out()``) and ``thresholds_`` are the defaults of
        ``labels`` and ``thresholds``, and the texts are the defaults of
        ``texts_a`` and ``texts_b``.
    labels : sequence of str or None, default=None
        One label per latent; None gives the embedder's, else ``latent_<j>``.
    thresholds : {"relative", "positive", "quantile"}, float, array-like or None, \
default=None
        When a latent fires (see :func:`latent_thresholds`). A method name is
        computed on both corpora together, so neither side sets the rule.
        None means the embedder's ``thresholds_``, else ``"relative"``.
    texts_a, texts_b : sequence of str or None, default=None
        The texts of A and B, for the example columns.
    test : {"fisher", "two-proportion"}, default="fisher"
        Two-sided Fisher exact test (:func:`scipy.stats.fisher_exact`), or the
        pooled two-proportion z-test (a normal approximation, fine when each
        side has a few counts).
    correction : {"fdr_bh", "bonferroni", "holm", "none"}, default="fdr_bh"
        Multiple-testing correction over the latents
        (:func:`statsmodels.stats.multitest.multipletests`).
    alpha : float, default=0.05
        Level of the corrected tests; the intervals cover ``1 - alpha``.
    n_examples : int, default=3
        Example texts per side: the documents where the latent fires most
        strongly.
    sort_by : {"difference", "ratio", "pvalue"}, default="difference"
        Rank by the absolute difference of frequencies, the absolute log
        ratio, or the p-value (ties by p-value, then latent).
    top : int or None, default=None
        Keep only the first ``top`` rows (the correction still counts every
        latent).

    Returns
    -------
    table : pandas.DataFrame
        One row per latent, ranked; columns:

        - ``latent`` (column index), ``label``, ``labelled`` (False where
          the latent has no label and ``label`` is only its name, such as
          ``latent_<j>``);
        - ``count_a``, ``count_b``: documents where it fires;
        - ``freq_a``, ``freq_b``: those counts over the corpus sizes;
        - ``difference`` = ``freq_a - freq_b``, ``difference_low`` and
          ``difference_high``: Newcombe's hybrid Wilson-score interval;
        - ``ratio`` = ``freq_a / freq_b``, ``ratio_low``, ``ratio_high``: a
          log-scale interval; where a count is zero, 0.5 is added to both
          counts and both sizes (point estimate included), and where the
          latent fires in neither corpus the ratio is NaN in [0, inf];
        - ``pvalue``, ``pvalue_corrected``, ``significant``
          (``pvalue_corrected <= alpha``);
        - ``more_in``: ``"a"``, ``"b"`` or ``"neither"`` (equal frequencies);
        - ``threshold``: the activation at which the latent counts as firing;
        - ``examples_a``, ``examples_b``: lists of texts (empty without texts).

        ``table.attrs`` holds ``n_a``, ``n_b``, ``n_tested``, ``test``,
        ``correction`` and ``alpha``.

    See Also
    --------
    summarize_differences : The top rows in plain words, checked on held-out texts.
    concept_correlations : Latents that fire together.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.zeros((100, 2)); A[:60, 0] = 1; A[:10, 1] = 1
    >>> B = np.zeros((100, 2)); B[:5, 0] = 1; B[:10, 1] = 1
    >>> table = diff_corpora(A, B, labels=["praise", "plot"])
    >>> table[["label", "freq_a", "freq_b", "significant", "more_in"]]
        label  freq_a  freq_b  significant  more_in
    0  praise     0.6    0.05         True        a
    1    plot     0.1    0.10        False  neither
    """
    caller = "diff_corpora"
    Za, text_a = latent_inputs(A, param="A", caller=caller, embedder=embedder)
    Zb, text_b = latent_inputs(B, param="B", caller=caller, embedder=embedder)
    if Za.shape[1] != Zb.shape[1]:
        raise ValueError(
            "The 'B' parameter of diff_corpora must have the same latents as 'A' "
            f"({Za.shape[1]} columns). Got {Zb.shape[1]} columns instead."
        )
    texts_a = _texts_for(texts_a, text_a, Za.shape[0], "texts_a", "A")
    texts_b = _texts_for(texts_b, text_b, Zb.shape[0], "texts_b", "B")
    n_latents = Za.shape[1]
    names, labelled = resolve_labels(
        labels, n_latents, caller=caller, embedder=embedder
    )
    thr = resolve_thresholds(
        thresholds, sp.vstack([Za, Zb]).tocsr(), caller=caller, embedder=embedder
    )
    Fa = binarize_activations(Za, thr)
    Fb = binarize_activations(Zb, thr)
    ca = np.asarray(Fa.sum(axis=0)).ravel().astype(np.int64)
    cb = np.asarray(Fb.sum(axis=0)).ravel().astype(np.int64)
    n_a, n_b = Za.shape[0], Zb.shape[0]
    table = two_proportion_stats(ca, n_a, cb, n_b, test=test, alpha=alpha)
    tested = (ca + cb) > 0
    if test == "two-proportion":
        _warn_small_counts(ca[tested], n_a, cb[tested], n_b)
    corrected = np.ones(n_latents)
    reject = np.zeros(n_latents, dtype=bool)
    corrected[tested], reject[tested] = correct_pvalues(
        table["pvalue"].to_numpy()[tested], method=correction, alpha=alpha
    )
    table.insert(0, "latent", np.arange(n_latents))
    table.insert(1, "label", names)
    table.insert(2, "labelled", labelled)
    table.insert(3, "count_a", ca)
    table.insert(4, "count_b", cb)
    table["pvalue_corrected"] = corrected
    table["significant"] = reject
    diff = table["difference"].to_numpy()
    table["more_in"] = np.where(diff > 0, "a", np.where(diff < 0, "b", "neither"))
    table["threshold"] = thr.astype(np.float64)
    key = {
        "difference": -np.abs(diff),
        "ratio": -np.abs(np.log(table["ratio"].fillna(1.0).to_numpy())),
        "pvalue": table["pvalue"].to_numpy(),
    }[sort_by]
    order = np.lexsort((np.arange(n_latents), table["pvalue"].to_numpy(), key))
    if top is not None:
        order = order[:top]
    table = table.iloc[order].reset_index(drop=True)
    columns = table["latent"].to_numpy()
    table["examples_a"] = top_examples(Za, Fa, texts_a, columns, n_examples)
    table["examples_b"] = top_examples(Zb, Fb, texts_b, columns, n_examples)
    table.attrs.update(
        n_a=n_a,
        n_b=n_b,
        n_tested=int(tested.sum()),
        test=test,
        correction=correction,
        alpha=alpha,
    )
    return table[DIFF_COLUMNS]


def _warn_small_counts(ca, n_a, cb, n_b):
    # The z-test's normal approximation needs about 5 expected documents in
    # every cell of the 2 x 2 table; below that its p-values are unreliable.
    pooled = (ca + cb) / (n_a + n_b)
    expected = np.minimum.reduce(
        [pooled * n_a, (1 - pooled) * n_a, pooled * n_b, (1 - pooled) * n_b]
    )
    small = int(np.sum(expected < 5))
    if small:
        warn_user(
            f"diff_corpora: {small} latents have fewer than 5 expected documents "
            "in a cell of their 2 x 2 table, where the two-proportion z-test's "
            "p-values are unreliable; use test='fisher' (exact) for them."
        )


def _texts_for(texts, from_embedder, n_rows, param, corpus):
    if texts is None:
        return from_embedder
    texts = check_texts(texts, caller="diff_corpora", param=param)
    if len(texts) != n_rows:
        raise ValueError(
            f"The {param!r} parameter of diff_corpora must hold one text per "
            f"document of {corpus!r} ({n_rows}). Got {len(texts)} texts instead."
        )
    return texts
