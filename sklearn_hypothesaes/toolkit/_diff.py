"""Dataset diffing: which labelled latents fire more often in one corpus.

Once every latent has a label, "how do corpora A and B differ?" becomes
counting: binarise both corpora by the same per-latent rule
(:func:`binarize_activations`), count the documents on which each latent
fires, and test each latent's two frequencies. :func:`diff_corpora` returns
that table; :func:`summarize_differences` asks an LLM to turn its top rows
into a few plain-language differences and checks each one by annotating
held-out texts of both corpora (:func:`verify_differences`).

The helpers that read activations, labels and thresholds
(:func:`latent_inputs`, :func:`resolve_labels`, :func:`resolve_thresholds`)
and :func:`correct_pvalues` are shared with :mod:`._correlations`.
"""

from __future__ import annotations

import dataclasses
import json
import re
from numbers import Integral, Real

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

from ..llm import Usage, fill_prompt, strip_thinking
from ..utils._misc import warn_user
from ..utils._validation import check_texts
from ._binarize import THRESHOLD_METHODS, binarize_activations, latent_thresholds

TESTS = ("fisher", "two-proportion")
CORRECTIONS = ("fdr_bh", "bonferroni", "holm", "none")

#: Columns of the table :func:`diff_corpora` returns, in this order.
DIFF_COLUMNS = [
    "latent",
    "label",
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
    """One label per latent: given, from the embedder, or ``latent<j>``.

    The embedder's labels are its ``labels_`` table's ``label`` column when it
    has one, else its ``get_feature_names_out()``.
    """
    if labels is None and embedder is not None:
        table = getattr(embedder, "labels_", None)
        if isinstance(table, pd.DataFrame) and "label" in table.columns:
            labels = table["label"]
        elif callable(getattr(embedder, "get_feature_names_out", None)):
            labels = embedder.get_feature_names_out()
    if labels is None:
        return [f"latent{j}" for j in range(n_latents)]
    if isinstance(labels, str):
        raise TypeError(
            f"The {param!r} parameter of {caller} must be a sequence of str, one "
            "per latent; got a single str."
        )
    values = [
        str(v) for v in (labels.tolist() if hasattr(labels, "tolist") else labels)
    ]
    if len(values) != n_latents:
        raise ValueError(
            f"The {param!r} parameter of {caller} must hold one label per latent "
            f"({n_latents}). Got {len(values)} labels instead."
        )
    return values


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


def correct_pvalues(pvalues, *, method: str, alpha: float, n_tests=None):
    """Corrected p-values and rejections over a family of ``n_tests`` tests.

    Tests of the family that are not in ``pvalues`` (pairs never computed)
    count as p = 1: that can only lower the rejections of the others under
    Bonferroni, Holm and Benjamini-Hochberg, so the answer stays valid.

    Returns
    -------
    corrected : ndarray
    reject : ndarray of bool
    """
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=np.float64)
    n_tests = p.size if n_tests is None else int(n_tests)
    if n_tests < p.size:
        raise ValueError(f"n_tests ({n_tests}) is smaller than the p-values given.")
    if p.size == 0:
        return p.copy(), np.zeros(0, dtype=bool)
    if method == "none":
        return p.copy(), p <= alpha
    padded = np.concatenate([p, np.ones(n_tests - p.size)])
    reject, corrected, _, _ = multipletests(padded, alpha=alpha, method=method)
    return corrected[: p.size], reject[: p.size]


# Statistics of two proportions --------------------------------------------
def two_proportion_stats(count_a, n_a, count_b, n_b, *, test="fisher", alpha=0.05):
    """Difference and ratio of two frequencies with intervals, and a p-value.

    Parameters
    ----------
    count_a, count_b : array-like of int
        Documents on which each latent fires, in A and in B.
    n_a, n_b : int
        Documents in A and in B.
    test : {"fisher", "two-proportion"}, default="fisher"
        Two-sided Fisher exact test, or the pooled two-proportion z-test.
    alpha : float, default=0.05
        The intervals cover ``1 - alpha``.

    Returns
    -------
    pandas.DataFrame
        ``freq_a``, ``freq_b``, ``difference`` (``freq_a - freq_b``) with
        ``difference_low/high`` (Newcombe's hybrid Wilson-score interval),
        ``ratio`` (``freq_a / freq_b``) with ``ratio_low/high`` (log-scale
        interval; 0.5 is added to both counts and both totals where a count is
        zero), and ``pvalue``. Where a latent fires in neither corpus the
        ratio is undefined: NaN with the interval [0, inf], and p = 1.

    Examples
    --------
    >>> out = two_proportion_stats([30], 100, [10], 100)
    >>> out[["difference", "ratio"]].round(3).to_dict("records")
    [{'difference': 0.2, 'ratio': 3.0}]
    """
    from statsmodels.stats.proportion import confint_proportions_2indep

    ca = np.asarray(count_a, dtype=np.int64)
    cb = np.asarray(count_b, dtype=np.int64)
    fa, fb = ca / n_a, cb / n_b
    d_low, d_high = confint_proportions_2indep(
        ca, n_a, cb, n_b, method="newcomb", compare="diff", alpha=alpha
    )
    # The log-scale interval of a ratio needs both counts above zero: where
    # one is zero, 0.5 is added to both counts and both sizes (statsmodels'
    # "log-adjusted"), for the estimate as well so that it sits in its interval.
    half = np.where((ca == 0) | (cb == 0), 0.5, 0.0)
    ca_, na_, cb_, nb_ = ca + half, n_a + half, cb + half, n_b + half
    with np.errstate(divide="ignore", invalid="ignore"):
        r_low, r_high = confint_proportions_2indep(
            ca_, na_, cb_, nb_, method="log", compare="ratio", alpha=alpha
        )
    ratio = (ca_ / na_) / (cb_ / nb_)
    neither = (ca == 0) & (cb == 0)
    ratio = np.where(neither, np.nan, ratio)
    r_low = np.where(neither, 0.0, r_low)
    r_high = np.where(neither, np.inf, r_high)
    if test == "fisher":
        pvalue = np.ones(ca.shape)
        for i in np.flatnonzero(~neither):
            table = [[ca[i], n_a - ca[i]], [cb[i], n_b - cb[i]]]
            pvalue[i] = stats.fisher_exact(table).pvalue
    else:
        pooled = (ca + cb) / (n_a + n_b)
        se = np.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(se > 0, (fa - fb) / se, 0.0)
        # se = 0: the latent fires on no document or on every one, in both.
        pvalue = 2 * stats.norm.sf(np.abs(z))
    return pd.DataFrame(
        {
            "freq_a": fa,
            "freq_b": fb,
            "difference": fa - fb,
            "difference_low": np.asarray(d_low, dtype=float),
            "difference_high": np.asarray(d_high, dtype=float),
            "ratio": ratio,
            "ratio_low": r_low,
            "ratio_high": r_high,
            "pvalue": np.minimum(pvalue, 1.0),
        }
    )


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
        One label per latent; None gives the embedder's, else ``latent<j>``.
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

        - ``latent`` (column index), ``label``;
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
    >>> from sklearn_hypothesaes.toolkit import diff_corpora
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
    names = resolve_labels(labels, n_latents, caller=caller, embedder=embedder)
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
    corrected = np.ones(n_latents)
    reject = np.zeros(n_latents, dtype=bool)
    corrected[tested], reject[tested] = correct_pvalues(
        table["pvalue"].to_numpy()[tested], method=correction, alpha=alpha
    )
    table.insert(0, "latent", np.arange(n_latents))
    table.insert(1, "label", names)
    table.insert(2, "count_a", ca)
    table.insert(3, "count_b", cb)
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
