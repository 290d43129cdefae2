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
from scipy.special import gammaln
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
# Fisher's exact test for many 2 x 2 tables at once. scipy's fisher_exact and
# hypergeom.sf take 0.5-15 ms a table at 100,000 documents (minutes for the
# ~10^6 pairs of 4,096 latents, half a minute for 4,096 latents); here tails
# are summed from the observed count away from the mode, where the terms
# shrink geometrically, for all tables at once. X is hypergeometric: ``n``
# documents of which ``a`` are marked (the latent fires), ``b`` drawn.
_TIE = 1 + 1e-7  # pmf values this close count as equal (R's fisher.test)


def _log_pmf(x, n, a, b):
    def log_comb(m, k):
        return gammaln(m + 1) - gammaln(k + 1) - gammaln(m - k + 1)

    return log_comb(a, x) + log_comb(n - a, b - x) - log_comb(n, b)


def _hypergeom_setup(k, a, b, n):
    k = np.atleast_1d(np.asarray(k, dtype=np.float64))
    a = np.broadcast_to(np.asarray(a, dtype=np.float64), k.shape)
    b = np.broadcast_to(np.asarray(b, dtype=np.float64), k.shape)
    lo, hi = np.maximum(0.0, a + b - n), np.minimum(a, b)
    mode = np.floor((a + 1) * (b + 1) / (n + 2))
    return k, a, b, lo, hi, mode


def _tail(start, up, n, a, b, lo, hi):
    """P(X >= start) where ``up``, else P(X <= start); terms must shrink away
    from ``start`` (start at or past the mode). Out of the support: 0."""
    valid = (start >= lo) & (start <= hi)
    x = np.where(valid, start, lo)
    term = np.where(valid, np.exp(_log_pmf(x, n, a, b)), 0.0)
    total = term.copy()
    live = np.flatnonzero(term > 0)
    while live.size:
        xs, u, al, bl = x[live], up[live], a[live], b[live]
        # pmf(x + 1) / pmf(x) going up, pmf(x - 1) / pmf(x) going down.
        ratio = np.where(
            u,
            (al - xs) * (bl - xs) / ((xs + 1) * (n - al - bl + xs + 1)),
            xs * (n - al - bl + xs) / ((al - xs + 1) * (bl - xs + 1)),
        )
        nxt = np.where(u, xs + 1, xs - 1)
        inside = np.where(u, nxt <= hi[live], nxt >= lo[live])
        t = np.where(inside, term[live] * ratio, 0.0)
        term[live], x[live] = t, nxt
        total[live] += t
        live = live[inside & (t > total[live] * 1e-17)]
    return total


def fisher_greater(count_ab, count_a, count_b, n_documents):
    """One-sided Fisher exact p-value of positive association, vectorised.

    ``P(X >= count_ab)`` for ``X`` hypergeometric: ``count_b`` draws from
    ``n_documents`` of which ``count_a`` are marked. The same value as
    ``scipy.stats.hypergeom.sf(count_ab - 1, n_documents, count_a, count_b)``
    and ``fisher_exact(..., alternative="greater")`` to about 1e-9 relative
    (the precision of ``gammaln`` at 100,000 documents), for many tables at
    once and hundreds of times faster.

    Examples
    --------
    >>> from scipy.stats import hypergeom
    >>> fisher_greater([8], [20], [30], 100), hypergeom.sf(7, 100, 20, 30)
    (array([0.20463293]), np.float64(0.2046329328...))
    """
    n = float(n_documents)
    k, a, b, lo, hi, mode = _hypergeom_setup(count_ab, count_a, count_b, n)
    upper = k > mode
    # Above the mode, the upper tail; else one minus the lower tail below k.
    tail = _tail(np.where(upper, k, k - 1), upper, n, a, b, lo, hi)
    return np.clip(np.where(upper, tail, 1.0 - tail), 0.0, 1.0)


def fisher_two_sided(count_a, n_a, count_b, n_b):
    """Two-sided Fisher exact p-values of many 2 x 2 tables, vectorised.

    The table of row ``i`` is ``[[count_a, n_a - count_a], [count_b, n_b -
    count_b]]``; the p-value sums the probabilities (margins fixed) of every
    table no more likely than the observed one, as
    :func:`scipy.stats.fisher_exact` does (probabilities within a relative
    1e-7 count as equal, as in R's ``fisher.test``).

    Examples
    --------
    >>> from scipy.stats import fisher_exact
    >>> fisher_two_sided([30], 100, [10], 200)
    array([7.6173...e-09])
    >>> fisher_exact([[30, 70], [10, 190]]).pvalue
    np.float64(7.6173...e-09)
    """
    ca = np.atleast_1d(np.asarray(count_a, dtype=np.float64))
    n = float(n_a + n_b)
    k, a, b, lo, hi, mode = _hypergeom_setup(ca, ca + np.asarray(count_b), n_a, n)
    observed = _log_pmf(k, n, a, b) + np.log(_TIE)
    p = np.ones_like(k)
    low_side = k < mode
    high_side = (k > mode) & ~low_side
    # The other side: the tables no more likely than the observed one start
    # where the (monotone) pmf first drops to the observed level: bisection
    # between the mode (above the level) and the end of the support.
    end = np.where(low_side, hi, lo)
    reach = _log_pmf(end, n, a, b) <= observed
    inside, outside = mode.copy(), end.copy()
    todo = (low_side | high_side) & reach & (_log_pmf(mode, n, a, b) > observed)
    while True:
        gap = np.abs(outside - inside) > 1
        step = todo & gap
        if not step.any():
            break
        mid = np.floor((inside + outside) / 2)
        below = _log_pmf(mid, n, a, b) <= observed
        outside = np.where(step & below, mid, outside)
        inside = np.where(step & ~below, mid, inside)
    first = np.where(todo, outside, np.where(low_side, hi + 1, lo - 1))
    near = _tail(k, ~low_side, n, a, b, lo, hi)  # the observed side
    far = _tail(first, low_side, n, a, b, lo, hi)
    sided = low_side | high_side
    tied = sided & (_log_pmf(mode, n, a, b) <= observed)
    p = np.where(sided & ~tied, near + far, p)
    return np.clip(p, 0.0, 1.0)


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
        pvalue = fisher_two_sided(ca, n_a, cb, n_b)
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


# The differences in words, checked on held-out texts ------------------------
SUMMARY_PROMPT = """\
Two corpora of texts, {name_a} and {name_b}, were compared concept by concept. \
Each line is a concept detected in the texts, the share of texts of each corpus \
that have it, and examples.

{differences}

Summarise how the texts of {name_a} differ from those of {name_b} in at most \
{n_differences} plain-language differences, the largest first; merge concepts \
that say the same thing. Each difference is a property that one text can have \
and a reader can check on that text alone, e.g. "uses formal language". \
Answer with JSON only, a list of objects: \
[{"property": "...", "more_in": "{name_a}" or "{name_b}"}]"""

#: Columns of :attr:`DifferenceSummary.differences`, in this order.
SUMMARY_COLUMNS = [
    "property",
    "more_in",
    "count_a",
    "n_a",
    "count_b",
    "n_b",
    "freq_a",
    "freq_b",
    "difference",
    "pvalue",
    "pvalue_corrected",
    "verified",
]


@dataclasses.dataclass
class DifferenceSummary:
    """What :func:`summarize_differences` returns.

    Attributes
    ----------
    differences : pandas.DataFrame
        One row per difference the LLM wrote, checked on held-out texts:
        ``property``, ``more_in`` (``"a"`` or ``"b"``, the side the LLM said
        has more of it), ``count_a``/``n_a`` and ``count_b``/``n_b``
        (annotated texts with the property / texts with an answer),
        ``freq_a``, ``freq_b``, ``difference``, ``pvalue``,
        ``pvalue_corrected`` (over the differences) and ``verified`` (the
        corrected test is significant and the difference goes the stated way).
    share_verified : float
        The share of ``differences`` that are verified.
    usage : Usage
        Everything the LLM was asked: ``usage_summary + usage_verification``.
    usage_summary, usage_verification : Usage
        The summary request, and the annotation of the held-out texts.
    prompt : str
        The summary prompt as sent.
    """

    differences: pd.DataFrame
    share_verified: float
    usage: Usage
    usage_summary: Usage
    usage_verification: Usage
    prompt: str


def _side(value, names) -> str:
    word = str(value).strip().strip("\"'").lower()
    lowered = [n.lower() for n in names]
    if word in ("a", lowered[0]):
        return "a"
    if word in ("b", lowered[1]):
        return "b"
    raise ValueError(f"more_in must be {names[0]!r} or {names[1]!r}; got {value!r}")


def parse_differences(text: str, names=("A", "B")) -> list[tuple[str, str]]:
    """``[(property, "a" or "b"), ...]`` from the JSON list of a summary answer.

    Raises
    ------
    ValueError
        When the answer holds no such list (the client then asks again).

    Examples
    --------
    >>> parse_differences('```json\\n[{"property": "is angry", "more_in": "B"}]\\n```')
    [('is angry', 'b')]
    """
    text = strip_thinking(text) or ""
    start, stop = text.find("["), text.rfind("]")
    if start < 0 or stop < start:
        raise ValueError("no JSON list in the answer")
    items = json.loads(text[start : stop + 1])
    out = []
    for item in items:
        if not isinstance(item, dict):
            raise ValueError(f"expected objects in the list; got {item!r}")
        prop = str(item.get("property", "")).strip()
        if prop:
            out.append((prop, _side(item.get("more_in"), names)))
    if not out:
        raise ValueError("the list holds no property")
    return out


def _short(text: str, limit: int) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def summary_prompt(
    table,
    *,
    n_top=10,
    n_differences=5,
    n_examples=1,
    max_example_chars=200,
    names=("A", "B"),
    prompt_template=None,
) -> str:
    """The summary prompt for the first ``n_top`` rows of a diff table."""
    lines = []
    for i, row in enumerate(table.head(n_top).itertuples(index=False), 1):
        side = names[0] if row.more_in == "a" else names[1]
        line = (
            f'{i}. "{row.label}": {names[0]} {row.freq_a:.1%}, {names[1]} '
            f"{row.freq_b:.1%} (more in {side})"
        )
        sides = (
            (names[0], getattr(row, "examples_a", [])),
            (names[1], getattr(row, "examples_b", [])),
        )
        for name, examples in sides:
            for text in list(examples)[:n_examples]:
                line += f'\n   e.g. {name}: "{_short(text, max_example_chars)}"'
        lines.append(line)
    return fill_prompt(
        SUMMARY_PROMPT if prompt_template is None else prompt_template,
        "prompt_template",
        differences="\n".join(lines),
        n_differences=n_differences,
        name_a=names[0],
        name_b=names[1],
    )


@validate_params(
    {
        "properties": ["array-like"],
        "more_in": ["array-like"],
        "texts_a": ["array-like"],
        "texts_b": ["array-like"],
        "annotator": "no_validation",
        "max_texts": [Interval(Integral, 1, None, closed="left"), None],
        "test": [StrOptions(set(TESTS))],
        "correction": [StrOptions(set(CORRECTIONS))],
        "alpha": [Interval(Real, 0, 1, closed="neither")],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def verify_differences(
    properties,
    more_in,
    texts_a,
    texts_b,
    *,
    annotator,
    max_texts=200,
    test="fisher",
    correction="fdr_bh",
    alpha=0.05,
    random_state=0,
):
    """Check stated differences by annotating texts of both corpora.

    A difference "texts of A more often have property p" is verified when,
    on texts the statement was not written from, the annotated frequency of
    p is significantly higher in A (after correcting over the differences).

    Parameters
    ----------
    properties : sequence of str
        Properties a single text can have.
    more_in : sequence of {"a", "b"}
        The corpus said to have more of each property.
    texts_a, texts_b : sequence of str
        Held-out texts of the two corpora.
    annotator : annotator
        An object with ``annotate(texts, concepts) -> Annotations``, such as
        :class:`LLMAnnotator` or :class:`PhraseAnnotator`.
    max_texts : int or None, default=200
        Texts sampled from each corpus (None annotates all).
    test, correction, alpha
        As in :func:`diff_corpora`.
    random_state : int, RandomState instance or None, default=0
        The sample of texts.

    Returns
    -------
    differences : pandas.DataFrame
        The columns of :attr:`DifferenceSummary.differences`.
    usage : Usage
        What the annotation cost.

    Examples
    --------
    >>> from sklearn_hypothesaes import PhraseAnnotator
    >>> a = ["a great film"] * 30 + ["a film"] * 10
    >>> b = ["a film"] * 35 + ["a great film"] * 5
    >>> out, _ = verify_differences(['mentions "great"'], ["a"], a, b,
    ...                             annotator=PhraseAnnotator())
    >>> out[["freq_a", "freq_b", "verified"]]
       freq_a  freq_b  verified
    0    0.75   0.125      True
    """
    properties = check_texts(
        properties, caller="verify_differences", param="properties"
    )
    sides = [_side(s, ("a", "b")) for s in more_in]
    if len(sides) != len(properties):
        raise ValueError(
            "The 'more_in' parameter of verify_differences must hold one side per "
            f"property ({len(properties)}). Got {len(sides)} instead."
        )
    rng = check_random_state(random_state)
    samples = []
    for param, texts in (("texts_a", texts_a), ("texts_b", texts_b)):
        texts = check_texts(texts, caller="verify_differences", param=param)
        if not texts:
            raise ValueError(
                f"The {param!r} parameter of verify_differences is empty; the "
                "check needs held-out texts of both corpora."
            )
        if max_texts is not None and len(texts) > max_texts:
            keep = np.sort(rng.choice(len(texts), max_texts, replace=False))
            texts = [texts[i] for i in keep]
        samples.append(texts)
    if not properties:
        return pd.DataFrame(columns=SUMMARY_COLUMNS), Usage()
    found = annotator.annotate(samples[0] + samples[1], properties)
    values = np.asarray(found.values, dtype=float)
    usage = getattr(found, "usage", None) or Usage()
    parts = values[: len(samples[0])], values[len(samples[0]) :]
    answered = [np.sum(~np.isnan(v), axis=0) for v in parts]
    counts = [np.sum(np.nan_to_num(v, nan=0.0) >= 0.5, axis=0) for v in parts]
    if (np.concatenate(answered) == 0).any():
        raise RuntimeError(
            "The annotator answered for none of the held-out texts of one corpus "
            "for some property; no difference can be checked. Look at the "
            "annotator's warnings (failed LLM requests)."
        )
    rows = []
    for i in range(len(properties)):
        stat = two_proportion_stats(
            [counts[0][i]], answered[0][i], [counts[1][i]], answered[1][i], test=test
        ).iloc[0]
        rows.append(
            {
                "property": properties[i],
                "more_in": sides[i],
                "count_a": int(counts[0][i]),
                "n_a": int(answered[0][i]),
                "count_b": int(counts[1][i]),
                "n_b": int(answered[1][i]),
                "freq_a": stat["freq_a"],
                "freq_b": stat["freq_b"],
                "difference": stat["difference"],
                "pvalue": stat["pvalue"],
            }
        )
    out = pd.DataFrame(rows)
    out["pvalue_corrected"], reject = correct_pvalues(
        out["pvalue"].to_numpy(), method=correction, alpha=alpha
    )
    stated = np.where(out["more_in"] == "a", 1.0, -1.0)
    out["verified"] = reject & (np.sign(out["difference"].to_numpy()) == stated)
    return out[SUMMARY_COLUMNS], usage


@validate_params(
    {
        "table": [pd.DataFrame],
        "client": "no_validation",
        "texts_a": ["array-like"],
        "texts_b": ["array-like"],
        "annotator": "no_validation",
        "n_top": [Interval(Integral, 1, None, closed="left")],
        "n_differences": [Interval(Integral, 1, None, closed="left")],
        "n_examples": [Interval(Integral, 0, None, closed="left")],
        "max_example_chars": [Interval(Integral, 10, None, closed="left")],
        "significant_only": ["boolean"],
        "names": [tuple, list],
        "max_verify": [Interval(Integral, 1, None, closed="left"), None],
        "test": [StrOptions(set(TESTS))],
        "correction": [StrOptions(set(CORRECTIONS))],
        "alpha": [Interval(Real, 0, 1, closed="neither")],
        "random_state": ["random_state"],
        "prompt_template": [str, None],
    },
    prefer_skip_nested_validation=True,
)
def summarize_differences(
    table,
    client,
    texts_a,
    texts_b,
    *,
    annotator=None,
    n_top=10,
    n_differences=5,
    n_examples=1,
    max_example_chars=200,
    significant_only=True,
    names=("A", "B"),
    max_verify=200,
    test="fisher",
    correction="fdr_bh",
    alpha=0.05,
    random_state=0,
    prompt_template=None,
) -> DifferenceSummary:
    """The top rows of a diff table in plain words, each checked on held-out texts.

    One request shows the LLM the ``n_top`` first rows of ``table`` (labels,
    frequencies and examples) and asks for at most ``n_differences``
    differences, each a property one text can have and the corpus that has
    more of it; :func:`verify_differences` then annotates held-out texts of
    both corpora with each property. The LLM never reads the corpora
    themselves, which is where the saving over asking it to compare samples
    comes from.

    Parameters
    ----------
    table : pandas.DataFrame
        The output of :func:`diff_corpora` (its order is kept).
    client : LLMClient
        Writes the summary (and annotates, unless ``annotator`` is given).
    texts_a, texts_b : sequence of str
        Held-out texts of the two corpora: not those ``table`` was computed
        on (a warning says so when its examples are among them).
    annotator : annotator or None, default=None
        Checks each difference; None is ``LLMAnnotator(client)``.
    n_top : int, default=10
        Rows of ``table`` shown to the LLM.
    n_differences : int, default=5
        Most differences asked for.
    n_examples : int, default=1
        Example texts per side and row in the prompt.
    max_example_chars : int, default=200
        Examples are cut to this length.
    significant_only : bool, default=True
        Show only rows with ``significant`` True. Rows without a label
        (``labelled`` False) are never shown. With no row left, nothing is
        asked and the summary is empty (with a warning).
    names : (str, str), default=("A", "B")
        What the prompt calls the two corpora.
    max_verify : int or None, default=200
        Held-out texts annotated per corpus.
    test, correction, alpha
        Of the check, as in :func:`diff_corpora` (corrected over the
        differences).
    random_state : int, RandomState instance or None, default=0
        The sample of held-out texts.
    prompt_template : str or None, default=None
        Replaces the built-in prompt; it must contain ``{differences}``,
        ``{n_differences}``, ``{name_a}`` and ``{name_b}``.

    Returns
    -------
    summary : DifferenceSummary
        The differences with their check, the share verified, and the usage.

    See Also
    --------
    diff_corpora : The table this reads.
    verify_differences : The check alone, e.g. of differences from elsewhere.

    Examples
    --------
    >>> from sklearn_hypothesaes import LLMClient
    >>> client = LLMClient(base_url="http://localhost:8000/v1")
    >>> summary = summarize_differences(table, client, held_a, held_b)
    ... # doctest: +SKIP
    >>> summary.share_verified, summary.usage.prompt_tokens  # doctest: +SKIP
    (0.8, 1412)
    """
    from ..hypotheses import LLMAnnotator

    if len(names) != 2 or not all(isinstance(n, str) and n for n in names):
        raise ValueError(
            "The 'names' parameter of summarize_differences must be two non-empty "
            f"str. Got {names!r} instead."
        )
    needed = ["label", "freq_a", "freq_b", "more_in"]
    needed += ["significant"] if significant_only else []
    missing = [c for c in needed if c not in table]
    if missing:
        raise ValueError(
            "The 'table' parameter of summarize_differences must be a table of "
            f"diff_corpora; it lacks the columns {missing}."
        )
    shown = table[table["significant"]] if significant_only else table
    shown = shown[shown["more_in"] != "neither"]
    if "labelled" in shown:
        shown = shown[shown["labelled"]]  # a bare latent_<j> tells the LLM nothing
    held = set(check_texts(texts_a, caller="summarize_differences", param="texts_a"))
    held |= set(check_texts(texts_b, caller="summarize_differences", param="texts_b"))
    leaked = {
        t
        for col in ("examples_a", "examples_b")
        if col in shown
        for examples in shown[col].head(n_top)
        for t in examples
    } & held
    if leaked:
        warn_user(
            f"{len(leaked)} example texts of the table are among the texts used to "
            "verify the differences: pass held-out texts as texts_a and texts_b "
            "(not those the table was computed on), or the check is optimistic."
        )
    if shown.empty:
        warn_user(
            "summarize_differences: the table has no significant difference to "
            "summarise; no request was made."
        )
        return DifferenceSummary(
            pd.DataFrame(columns=SUMMARY_COLUMNS), float("nan"), Usage(), Usage(),
            Usage(), "",
        )  # fmt: skip
    prompt = summary_prompt(
        shown,
        n_top=n_top,
        n_differences=n_differences,
        n_examples=n_examples,
        max_example_chars=max_example_chars,
        names=tuple(names),
        prompt_template=prompt_template,
    )
    answers = client.complete_parsed(
        [prompt], lambda text: parse_differences(text, tuple(names)), desc="Summary"
    )
    if answers[0] is None:
        raise RuntimeError(
            "The LLM gave no usable summary (a JSON list of "
            '{"property": ..., "more_in": ...}) after retries; see the warning '
            "above for the last error."
        )
    found = answers[0][:n_differences]
    differences, usage_check = verify_differences(
        [p for p, _ in found],
        [s for _, s in found],
        texts_a,
        texts_b,
        annotator=LLMAnnotator(client) if annotator is None else annotator,
        max_texts=max_verify,
        test=test,
        correction=correction,
        alpha=alpha,
        random_state=random_state,
    )
    return DifferenceSummary(
        differences=differences,
        share_verified=float(differences["verified"].mean()),
        usage=answers.usage + usage_check,
        usage_summary=answers.usage,
        usage_verification=usage_check,
        prompt=prompt,
    )
