"""Statistics for hypotheses: separation, marginal and joint regression,
multiple testing."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from numbers import Real

import numpy as np
import pandas as pd
from scipy import linalg, stats
from sklearn.metrics import roc_auc_score
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

from ..utils._validation import TASKS, resolve_task
from ._firth import firth_logit

COLUMNS = [
    "hypothesis",
    "positive_class",
    "prevalence",
    "n_missing",
    "mean_with",
    "mean_without",
    "separation",
    "separation_test",
    "separation_pvalue",
    "marginal_coef",
    "marginal_pvalue",
    "model",
    "coef",
    "coef_se",
    "coef_ci_low",
    "coef_ci_high",
    "pvalue",
    "pvalue_corrected",
    "significant",
    "sign_flip",
    "vif",
    "note",
]
# Statsmodels names of the multipletests methods.
_CORRECTIONS = {"bonferroni", "holm", "fdr_bh", "none"}
# A hypothesis needs this many texts on each side to be tested at all: with one,
# its row has leverage 1 and HC2/HC3 standard errors collapse to ~0.
_MIN_GROUP = 2
# A hypothesis whose part outside the span of the intercept and the kept
# hypotheses is this small, relative to the largest column, is collinear.
_RANK_TOL = 1e-8
# A flipped hypothesis' note names the others it correlates with at least this
# much (at most _MAX_PARTNERS of them, strongest first).
_MIN_OVERLAP = 0.2
_MAX_PARTNERS = 3


@dataclass
class EvaluationResult:
    """Per-hypothesis statistics and joint-model metrics.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per hypothesis with the columns of ``COLUMNS``:
        ``hypothesis``; ``positive_class`` (the class a binary or one-vs-rest
        row is about, None for regression); ``prevalence``, ``n_missing``,
        ``mean_with``, ``mean_without``, ``separation``;
        ``separation_test`` (``"fisher"``, ``"lr"`` or ``"welch"``) and its
        ``separation_pvalue``; ``marginal_coef`` and ``marginal_pvalue`` (the
        hypothesis alone in the model); ``model``, the joint model that gave
        its coefficient (as ``metrics["model"]``; None if left out of it); the
        joint ``coef``, ``coef_se``,
        ``coef_ci_low``, ``coef_ci_high``, ``pvalue``; ``pvalue_corrected``,
        ``significant``; ``sign_flip`` (joint and marginal coefficients of
        opposite signs), ``vif`` (variance inflation in the joint model) and
        ``note`` (why a statistic is missing, how it was obtained, or why a
        sign flipped; else "").
    metrics : dict
        ``task``, ``positive_class``, ``model`` (``"ols"``, ``"logit"``,
        ``"firth"`` or None when no model could be fitted),
        ``pvalue_method`` of the joint p-values and intervals
        (``"t_bell_mccaffrey"`` or ``"t"`` for OLS, ``"wald"`` for Logit,
        ``"penalised_lr"`` for Firth), ``n``, ``n_used``, ``n_positive``
        (binary: texts of the positive class),
        ``r2`` and ``adj_r2`` (regression) or ``auc`` and ``pseudo_r2``
        (binary), ``n_significant``, ``n_hypotheses``, ``n_tests`` (the size
        of the multiple-testing family), ``alpha``, ``correction``,
        ``cov_type`` (the one actually computed) and ``warnings`` (list of
        str).
    model : statsmodels results, FirthResults or None
        The fitted joint model, for ``model.summary()``.
    """

    table: pd.DataFrame
    metrics: dict
    model: object = field(default=None, repr=False)


@validate_params(
    {
        "annotations": ["array-like"],
        "y": ["array-like"],
        "hypotheses": ["array-like", None],
        "task": [StrOptions({"auto", *TASKS})],
        "classes": ["array-like", None],
        "correction": [StrOptions(_CORRECTIONS)],
        "alpha": [Interval(Real, 0, 1, closed="neither")],
        "cov_type": [StrOptions({"nonrobust", "HC0", "HC1", "HC2", "HC3"})],
        "sample_weight": ["array-like", None],
        "pairwise": ["boolean"],
    },
    prefer_skip_nested_validation=True,
)
def evaluate_hypotheses(
    annotations,
    y,
    *,
    hypotheses=None,
    task="auto",
    classes=None,
    correction="bonferroni",
    alpha=0.05,
    cov_type="HC3",
    sample_weight=None,
    pairwise=False,
):
    """Test each hypothesis' association with y, alone and jointly.

    For each hypothesis (a column of annotations):

    - ``prevalence``: the (weighted) share of texts with the concept;
      probabilities are split at 0.5 for ``prevalence``, ``mean_with``,
      ``mean_without`` and the separation test, and used as given in the
      regressions.
    - ``separation = mean_with - mean_without``: mean y (the share of the
      positive class for a binary task) among texts with minus without the
      concept, tested by the method named in ``separation_test``. For a
      binary y, Fisher's exact test (``"fisher"``,
      :func:`scipy.stats.fisher_exact`, two-sided) on the 2x2 table of
      concept present/absent by y, with frequency weights as counts; with
      non-integer weights, the likelihood-ratio (G) test of that table
      (``"lr"``, the logistic likelihood-ratio test of y on the hypothesis).
      For a continuous y, Welch's t-test (``"welch"``,
      :func:`scipy.stats.ttest_ind` with ``equal_var=False``; statsmodels'
      weighted version with ``sample_weight``), which needs 2 texts on each
      side. Rows where this hypothesis is NaN are left out (``n_missing``).
    - ``marginal_coef`` and ``marginal_pvalue``: y on this hypothesis and an
      intercept alone, in the joint model's rows and family (OLS or Logit,
      with ``cov_type``; Firth when the hypothesis alone separates y).
    - ``coef``, ``coef_se``, its ``1 - alpha`` confidence interval and
      ``pvalue`` in one joint model of y on all hypotheses and an intercept
      (``metrics["model"]``): OLS (WLS with weights) for regression, Logit
      (binomial GLM with weights) for a binary y, with ``cov_type`` robust
      standard errors. Statsmodels computes the HC0 sandwich for Logit
      whatever HC variant is asked; ``metrics["cov_type"]`` says so. OLS
      p-values and intervals with a robust ``cov_type`` use a t distribution
      with Bell-McCaffrey degrees of freedom for each coefficient (Imbens &
      Kolesar, 2016): a hypothesis in a few texts has a standard error
      resting on a few residuals, and the normal approximation would make it
      significant far too often. Rows with any NaN annotation are dropped
      from the joint model.
    - Separation: when some combination of hypotheses separates a binary y
      (found by the linear program of Konis, 2007) or the Logit does not
      converge, the maximum-likelihood estimates are infinite or
      meaningless, and the joint model is Firth's bias-reduced logistic
      regression instead (``model="firth"``, as R's logistf): penalised
      estimates, Wald ``coef_se`` from the penalised information, profile
      penalised-likelihood intervals and penalised likelihood-ratio
      p-values. The rows with an infinite Logit estimate say so in ``note``
      and ``metrics["warnings"]``.
    - ``sign_flip`` is True where the joint and the marginal coefficient
      have opposite signs: the hypothesis overlaps with others, and its joint
      coefficient is its effect with those held fixed. ``note`` names the
      hypotheses it correlates with most; ``vif`` is its variance inflation
      factor, ``1 / (1 - R^2)`` of it on the other hypotheses in the joint
      model.
    - ``pvalue_corrected`` and ``significant`` (``pvalue_corrected <=
      alpha``) by :func:`statsmodels.stats.multitest.multipletests` over the
      joint p-values of all hypotheses, and for multiclass y over all
      (class, hypothesis) pairs at once (``metrics["n_tests"]``). Every
      hypothesis counts as a test; those without a p-value enter the
      correction as p = 1 (conservative) and stay NaN.

    Nothing is silently patched. A hypothesis that is constant, present in
    (or absent from) fewer than 2 texts, or collinear with others is left out
    of the joint model: its ``coef`` and ``pvalue`` are NaN, ``note`` says
    why, and ``metrics["warnings"]`` lists it. Collinear hypotheses are found
    by a rank-revealing (column pivoted) QR of the centered annotations,
    which keeps the best-conditioned set; the note names the kept hypotheses
    each dropped one is a linear combination of.

    With no hypothesis (``n_hypotheses=0``) the table has its columns and no
    rows, and the metrics are those of an intercept-only model, with a
    warning.

    **Pairwise tasks** (``pairwise=True``): each row is a pair of texts
    (a, b), y says whether a wins (two classes) or by how much (a number),
    and each annotation is the difference ``annotation(a) - annotation(b)``:
    1 where only a has the concept, -1 where only b has it, 0 where both or
    neither do (values in [-1, 1] for probabilities). Then ``prevalence`` is
    the share of pairs whose two texts differ (``abs(d) >= 0.5``),
    ``mean_with`` the mean y (the share of the positive class) over pairs
    where only the first text has the concept, ``mean_without`` over pairs
    where only the second has it, and ``separation`` their difference. The
    test of each hypothesis alone cannot be Fisher's on a 2x2 table, as d
    takes three values: for a binary y it is the logistic likelihood-ratio
    test of y on d with an intercept (``"lr"``, all pairs; the intercept
    absorbs any advantage of the first position), and for a continuous y
    Welch's t-test of y between the pairs with d >= 0.5 and those with
    d <= -0.5 (``"welch"``). The marginal and joint models regress y on
    the differences as they are; a hypothesis that differs in fewer than 2
    pairs is left out of the joint model. Multiclass y is refused.

    Parameters
    ----------
    annotations : array-like of shape (n_texts, n_hypotheses)
        0/1 annotations or probabilities; NaN means missing. A DataFrame's
        column names are the default hypothesis names.
    y : array-like of shape (n_texts,)
        Target: continuous values or class labels.
    hypotheses : array-like of str of shape (n_hypotheses,), default=None
        Hypothesis texts; default the DataFrame's columns or
        ``hypothesis_0, hypothesis_1, ...``.
    task : {"auto", "binary", "multiclass", "regression"}, default="auto"
        The package's one task vocabulary, as in the estimators and the
        command line: under ``"auto"``, strings, booleans and two-valued y are
        classes, integers with at most 10 distinct values are classes and with
        more a regression (with a warning), other numbers a regression.
        Multiclass y is evaluated one-vs-rest (a binary task per class);
        ``"multiclass"`` with two classes is a binary task.
    classes : array-like of shape (n_classes,), default=None
        The class labels to report, in order (e.g. an estimator's
        ``classes_``); default those in y. A class absent from y gets a result
        whose statistics are NaN, with a note and a warning, and still counts
        in the multiple-testing family; with more than two classes the task
        is multiclass even if y holds only two of them.
    correction : {"bonferroni", "holm", "fdr_bh", "none"}, default="bonferroni"
        Multiple-testing correction over the hypotheses (the paper uses
        Bonferroni); over all (class, hypothesis) pairs for multiclass y.
    alpha : float in (0, 1), default=0.05
        Family-wise error rate (or FDR for ``"fdr_bh"``); the confidence
        intervals are at level ``1 - alpha``.
    cov_type : {"HC3", "HC2", "HC1", "HC0", "nonrobust"}, default="HC3"
        Covariance of the OLS and Logit coefficients (Firth's are model-based).
    sample_weight : array-like of shape (n_texts,), default=None
        Non-negative weights (frequency weights in the tests and the GLM).
    pairwise : bool, default=False
        Rows are pairs of texts and annotations their differences, in [-1,
        1] (see above).

    Returns
    -------
    result : EvaluationResult or dict of EvaluationResult
        For multiclass y, a dict mapping each class to its one-vs-rest
        result.

    See Also
    --------
    HypothesisGenerator : Produces the hypotheses and their annotations.

    References
    ----------
    Firth D (1993). Bias reduction of maximum likelihood estimates.
    Biometrika 80, 27-38. Heinze G, Schemper M (2002). A solution to the
    problem of separation in logistic regression. Statistics in Medicine 21,
    2409-2419. Konis K (2007). Linear programming algorithms for detecting
    separated data in binary logistic regression models. DPhil thesis,
    University of Oxford. Bell RM, McCaffrey DF (2002). Bias reduction in
    standard errors for linear regression with multi-stage samples. Survey
    Methodology 28, 169-181. Imbens GW, Kolesar M (2016). Robust standard
    errors in small samples: some practical advice. Review of Economics and
    Statistics 98, 701-712.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_hypothesaes import evaluate_hypotheses
    >>> rng = np.random.default_rng(0)
    >>> annotations = rng.integers(0, 2, size=(500, 2))
    >>> y = 1.0 * annotations[:, 0] + rng.normal(size=500)
    >>> result = evaluate_hypotheses(annotations, y, hypotheses=["funny", "long"])
    >>> result.table[["hypothesis", "separation_test", "significant"]]
      hypothesis separation_test  significant
    0      funny           welch         True
    1       long           welch        False
    >>> round(result.metrics["r2"], 2), result.metrics["model"]
    (0.2, 'ols')
    """
    A, names = _annotation_matrix(annotations, hypotheses, pairwise)
    y = np.asarray(y)
    requested = task
    task = resolve_task(y, task, caller="evaluate_hypotheses")
    y = y.ravel()  # resolve_task accepts one column, and nothing wider
    if len(y) != len(A):
        raise ValueError(
            f"y must be 1-dimensional with one value per text ({len(A)}); got "
            f"shape {y.shape}."
        )
    w = None
    if sample_weight is not None:
        w = np.asarray(sample_weight, dtype=np.float64)
        if w.shape != (len(A),) or not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError(
                "sample_weight must be finite, non-negative and of shape "
                f"({len(A)},); got shape {w.shape}."
            )
    common = dict(alpha=alpha, cov_type=cov_type, w=w, pairwise=pairwise)
    if task == "regression":
        if classes is not None:
            raise ValueError(
                "The 'classes' parameter of evaluate_hypotheses is for class "
                "labels; got classes with a regression target. Pass classes=None."
            )
        try:
            y = y.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"task='regression' needs a numeric y; got dtype {y.dtype}."
            ) from exc
        if not np.all(np.isfinite(y)):
            raise ValueError("y contains NaN or infinite values.")
        result = _evaluate(A, y, names, task="regression", label=None, **common)
        _correct([result], correction, alpha)
        return result
    labels = _class_labels(y, classes, requested)
    if pairwise and len(labels) > 2:
        raise ValueError(
            "evaluate_hypotheses with pairwise=True needs y saying whether the "
            "first text of a pair wins (two classes) or by how much (numbers); "
            f"got {len(labels)} classes. Use two classes, or pairwise=False."
        )
    if len(labels) == 2:
        result = _evaluate(
            A, _indicator(y, labels[1]), names, task="binary", label=labels[1], **common
        )
        _correct([result], correction, alpha)
        return result
    results = {}
    for label in labels:
        target = _indicator(y, label)
        if target.any():
            result = _evaluate(A, target, names, task="binary", label=label, **common)
        else:
            result = _absent(A, names, label, w)  # never pairwise: refused above
        result.metrics["task"] = "multiclass"
        result.metrics["warnings"] = [
            f"Class {_plain(label)!r}: {m}" for m in result.metrics["warnings"]
        ]
        results[label] = result
    _correct(list(results.values()), correction, alpha)
    return results


def _plain(value):
    """1, not np.int64(1), in messages."""
    return value.item() if isinstance(value, np.generic) else value


def _indicator(y, label):
    return np.asarray([v == label for v in y.tolist()], dtype=np.float64)


def _class_labels(y, classes, requested):
    """The classes to report: those of y, or ``classes`` checked against y."""
    present = list(dict.fromkeys(y.tolist()))
    if classes is None:
        try:
            return np.unique(y)
        except TypeError:  # mixed types: first-seen order
            return np.asarray(present, dtype=object)
    labels = np.asarray(classes).ravel()
    listed = labels.tolist()
    if len(set(listed)) != len(listed) or len(listed) < 2:
        raise ValueError(
            "The 'classes' parameter of evaluate_hypotheses must list at least 2 "
            f"distinct labels; got {listed!r}."
        )
    unknown = [v for v in present if v not in set(listed)]
    if unknown:
        raise ValueError(
            "The 'classes' parameter of evaluate_hypotheses must include every "
            f"label of y; y also has {unknown[:5]!r}. Add them to classes."
        )
    if requested == "binary" and len(listed) != 2:
        raise ValueError(
            f"task='binary' needs 2 classes; got classes={listed!r}. Use "
            "task='multiclass'."
        )
    return labels


def _annotation_matrix(annotations, hypotheses, pairwise=False):
    if isinstance(annotations, pd.DataFrame):
        default = [str(c) for c in annotations.columns]
    else:
        default = None
    A = np.asarray(annotations, dtype=np.float64)
    if A.ndim == 1:
        A = A[:, None]
    if A.ndim != 2 or A.shape[0] == 0:
        raise ValueError(
            "annotations must be a 2-D array (n_texts, n_hypotheses) with at least "
            f"one text; got shape {A.shape}."
        )
    if np.any(np.isinf(A)):
        raise ValueError("annotations must be 0/1, probabilities or NaN; got inf.")
    if pairwise and (np.nanmin(A, initial=0) < -1 or np.nanmax(A, initial=0) > 1):
        raise ValueError(
            "With pairwise=True, annotations must be differences of two texts' "
            "annotations, in [-1, 1]; got values from "
            f"{np.nanmin(A):g} to {np.nanmax(A):g}."
        )
    if hypotheses is None:
        hypotheses = default or [f"hypothesis_{j}" for j in range(A.shape[1])]
    names = [str(h) for h in hypotheses]
    if len(names) != A.shape[1]:
        raise ValueError(
            f"hypotheses must name each of the {A.shape[1]} annotation columns; "
            f"got {len(names)} names."
        )
    return A, names


def _wmean(values, w):
    if len(values) == 0:
        return np.nan
    return float(np.average(values, weights=w)) if w is not None else values.mean()


def _welch(y_with, y_without, w_with, w_without):
    if min(len(y_with), len(y_without)) < _MIN_GROUP:
        return np.nan
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if w_with is None:
            return float(stats.ttest_ind(y_with, y_without, equal_var=False).pvalue)
        from statsmodels.stats.weightstats import ttest_ind

        return float(
            ttest_ind(y_with, y_without, usevar="unequal", weights=(w_with, w_without))[
                1
            ]
        )


def _table_test(present, yy, ww):
    """Fisher's exact test of a 2x2 table, or its G-test with real weights."""
    ones = np.ones(len(yy)) if ww is None else ww
    cells = np.array(
        [
            [ones[present & (yy == 1)].sum(), ones[present & (yy == 0)].sum()],
            [ones[~present & (yy == 1)].sum(), ones[~present & (yy == 0)].sum()],
        ]
    )
    if ww is None or np.all(ww == np.round(ww)):
        if cells.sum(axis=1).min() == 0:
            return "fisher", np.nan
        return "fisher", float(stats.fisher_exact(cells.astype(np.int64)).pvalue)
    if cells.sum(axis=1).min() == 0:
        return "lr", np.nan
    expected = np.outer(cells.sum(axis=1), cells.sum(axis=0)) / cells.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(cells > 0, cells * np.log(cells / expected), 0.0)
    return "lr", float(stats.chi2.sf(2 * terms.sum(), df=1))


def _logit_lr_test(x, y, w):
    """Likelihood-ratio test of a logistic regression of y on x and an
    intercept against the intercept alone; NaN when x marks fewer than 2 rows.

    Fitted by Newton's method with step halving, which also reaches the
    supremum of the likelihood when x separates y (the maximum is then at
    infinity, and the statistic is its limit).
    """
    ww = np.ones(len(y)) if w is None else w
    if np.sum(np.abs(x) >= 0.5) < _MIN_GROUP or np.ptp(x) == 0 or ww.sum() == 0:
        return np.nan
    mean = np.average(y, weights=ww)
    if mean in (0.0, 1.0):
        return np.nan

    def loglik(beta):
        eta = beta[0] + beta[1] * x
        return float(np.sum(ww * (y * eta - np.logaddexp(0, eta))))

    beta = np.array([np.log(mean / (1 - mean)), 0.0])
    current = null = loglik(beta)
    design = np.column_stack([np.ones(len(x)), x])
    for _ in range(200):
        p = 1 / (1 + np.exp(-(design @ beta)))
        grad = design.T @ (ww * (y - p))
        hess = (design * (ww * p * (1 - p))[:, None]).T @ design
        step = np.linalg.lstsq(hess + 1e-12 * np.eye(2), grad, rcond=None)[0]
        scale = 1.0
        while scale > 1e-8 and loglik(beta + scale * step) < current:
            scale /= 2
        beta = beta + scale * step
        previous, current = current, loglik(beta)
        if current - previous < 1e-10:
            break
    return float(stats.chi2.sf(max(2 * (current - null), 0.0), df=1))


def _separation_columns(A, y, w, task, pairwise=False):
    """prevalence, n_missing, mean_with, mean_without, separation, its test."""
    rows = []
    for a in A.T:
        ok = ~np.isnan(a)
        present = a[ok] >= 0.5
        # Pairs: "with" is only the first text having it, "without" only the
        # second; pairs where both or neither have it are in neither group.
        absent = a[ok] <= -0.5 if pairwise else ~present
        yy, ww = y[ok], (w[ok] if w is not None else None)
        w_with = ww[present] if ww is not None else None
        w_without = ww[absent] if ww is not None else None
        mean_with = _wmean(yy[present], w_with)
        mean_without = _wmean(yy[absent], w_without)
        if task == "binary" and pairwise:
            method, pvalue = "lr", _logit_lr_test(a[ok], yy, ww)
        elif task == "binary":
            method, pvalue = _table_test(present, yy, ww)
        else:
            method = "welch"
            pvalue = _welch(yy[present], yy[absent], w_with, w_without)
        rows.append(
            {
                "prevalence": _wmean((present | absent).astype(np.float64), ww)
                if pairwise
                else _wmean(present.astype(np.float64), ww),
                "n_missing": int((~ok).sum()),
                "mean_with": mean_with,
                "mean_without": mean_without,
                "separation": mean_with - mean_without,
                "separation_test": method,
                "separation_pvalue": pvalue,
            }
        )
    return rows


def _screen(X, names, pairwise=False):
    """Columns that cannot enter the joint model, with the reason for each.

    A column that separates a binary y stays in: the joint model is then
    fitted by Firth's method, which gives it a finite estimate.
    """
    notes = {}
    for j, x in enumerate(X.T):
        n_with = int((x >= 0.5).sum())
        if pairwise:
            n_differ = int((np.abs(x) >= 0.5).sum())
        if np.ptp(x) == 0:
            notes[j] = "constant in the joint model's rows: no coefficient"
        elif pairwise and n_differ < _MIN_GROUP:
            notes[j] = (
                f"the two texts differ in {n_differ} of {len(x)} pairs: a "
                "coefficient resting on one pair cannot be tested"
            )
        elif not pairwise and min(n_with, len(x) - n_with) < _MIN_GROUP:
            notes[j] = (
                f"present in {n_with} of {len(x)} texts: a coefficient resting on "
                "one text cannot be tested"
            )
    candidates = np.asarray([j for j in range(X.shape[1]) if j not in notes])
    if candidates.size == 0:
        return [], notes
    cols = X[:, candidates]
    # Centering takes the intercept out of the span; pivoting moves the
    # columns that add nothing to the end, where R's diagonal is ~0.
    R, piv = linalg.qr(cols - cols.mean(axis=0), mode="r", pivoting=True)
    tol = _RANK_TOL * max(np.linalg.norm(cols, axis=0).max(), 1.0)
    diag = np.abs(np.diag(R))
    rank = int(np.argmax(diag <= tol)) if np.any(diag <= tol) else diag.size
    k = len(candidates)
    if rank == k:
        return candidates.tolist(), notes
    # A basis of the null space (cols_centered @ v = 0), one row per relation.
    null = np.zeros((k - rank, k))
    null[:, piv[:rank]] = -linalg.solve_triangular(R[:rank, :rank], R[:rank, rank:]).T
    null[:, piv[rank:]] = np.eye(k - rank)
    for column, relation in _latest_first(null):
        partners = [names[candidates[q]] for q in np.flatnonzero(relation)]
        notes[int(candidates[column])] = "collinear with " + (
            ", ".join(map(repr, partners)) if partners else "the intercept"
        )
    return [int(j) for j in candidates if j not in notes], notes


def _latest_first(null):
    """Which hypotheses to drop, and their relations, keeping the earliest.

    Row-reducing the null space from its last column makes each relation
    solve for the latest hypothesis it involves, in terms of earlier kept
    ones, as fitting them one at a time in the given order would.
    Yields ``(dropped column, boolean mask of its partners)``.
    """
    null = null.copy()
    small = 1e-8 * np.abs(null).max()
    pivots = []
    for row in range(len(null)):
        rest = np.abs(null[row:])
        column = np.flatnonzero(rest.max(axis=0) > small)[-1]
        best = row + int(np.argmax(rest[:, column]))
        null[[row, best]] = null[[best, row]]
        null[row] /= null[row, column]
        others = np.arange(len(null)) != row
        null[others] -= np.outer(null[others, column], null[row])
        pivots.append(column)
    for row, column in enumerate(pivots):
        partners = np.abs(null[row]) > small
        partners[column] = False
        yield column, partners


def _testable(x, pairwise=False):
    """Whether a column has a coefficient worth testing, alone or jointly."""
    if pairwise:
        return np.ptp(x) > 0 and int((np.abs(x) >= 0.5).sum()) >= _MIN_GROUP
    n_with = int((x >= 0.5).sum())
    return np.ptp(x) > 0 and min(n_with, len(x) - n_with) >= _MIN_GROUP


@dataclass
class _Joint:
    """A fitted joint model, its hypotheses' rows only."""

    model: object
    name: str
    params: np.ndarray
    bse: np.ndarray
    ci: np.ndarray
    pvalues: np.ndarray
    cov_type: str
    pvalue_method: str
    notes: dict = field(default_factory=dict)  # position in kept -> note
    warnings: list = field(default_factory=list)


def _fit_ols(X, y, cov_type, w):
    import statsmodels.api as sm

    design = sm.add_constant(X, has_constant="add")
    model = sm.OLS(y, design) if w is None else sm.WLS(y, design, weights=w)
    return model.fit(cov_type=cov_type)


def _ols_inference(res, alpha):
    """p-values and intervals of an OLS fit, with small-sample degrees of freedom.

    A robust (HC) standard error of a hypothesis present in a few texts rests
    on those few residuals, and its normal approximation is far too
    optimistic. As Imbens & Kolesar (2016) advise, the reference is a t
    distribution with Bell & McCaffrey (2002) degrees of freedom for each
    coefficient, which for a single 0/1 column is Welch-like. The classical
    (nonrobust) fit keeps its exact t with n - p degrees of freedom.
    """
    params, bse = np.asarray(res.params), np.asarray(res.bse)
    if res.cov_type == "nonrobust":
        return np.asarray(res.pvalues), np.asarray(res.conf_int(alpha=alpha))
    df = _bell_mccaffrey_df(res.model.wexog)
    with np.errstate(divide="ignore", invalid="ignore"):
        pvalues = 2 * stats.t.sf(np.abs(params / bse), df)
    half = stats.t.ppf(1 - alpha / 2, df) * bse
    return pvalues, np.column_stack([params - half, params + half])


def _bell_mccaffrey_df(X):
    """Bell-McCaffrey degrees of freedom of each HC2 coefficient.

    With M = I - H and D = diag(c / sqrt(1 - h)) for the coefficient's row c of
    (X'X)^-1 X', df = tr(DMD)^2 / tr((DMD)^2); with X = QR, DMD = D^2 - BB'
    for B = DQ, so both traces cost O(n p^2), not O(n^2).
    """
    Q, R = np.linalg.qr(X)
    leverage = np.einsum("ij,ij->i", Q, Q)
    scale = 1 / np.sqrt(np.clip(1 - leverage, 1e-12, None))
    C = linalg.solve_triangular(R, Q.T)  # (X'X)^-1 X', one row per coefficient
    df = np.empty(X.shape[1])
    for j, c in enumerate(C):
        d2 = (c * scale) ** 2
        B = Q * np.sqrt(d2)[:, None]
        BtB = B.T @ B
        trace = d2.sum() - np.trace(BtB)
        trace_sq = (d2**2).sum() - 2 * np.einsum("ij,i,ij->", B, d2, B) + (BtB**2).sum()
        df[j] = trace**2 / trace_sq if trace_sq > 0 else np.nan
    return df


def _fit_logit(design, y, cov_type, w):
    """The maximum-likelihood Logit (binomial GLM with weights), and whether
    it converged to finite estimates."""
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import (
        ConvergenceWarning,
        PerfectSeparationError,
    )

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if w is None:
                res = sm.Logit(y, design).fit(disp=0, maxiter=100, cov_type=cov_type)
                converged = bool(res.mle_retvals.get("converged", True))
            else:
                family = sm.families.Binomial()
                model = sm.GLM(y, design, family=family, freq_weights=w)
                res = model.fit(maxiter=100, cov_type=cov_type)
                converged = bool(getattr(res, "converged", True))
        except (np.linalg.LinAlgError, PerfectSeparationError):
            return None, False
    trouble = any(
        issubclass(c.category, ConvergenceWarning)
        or "separation" in str(c.message).lower()
        for c in caught
    )
    finite = np.all(np.isfinite(res.params)) and np.all(np.isfinite(res.bse))
    return res, converged and finite and not trouble


def _separated(design, y, w):
    """+1/-1 where the Logit estimate is +/-infinite, 0 where finite.

    The linear program of Konis (2007), on the rows with positive weight.
    None if it cannot tell (then the Logit's convergence decides).
    """
    from firthmodels import detect_separation

    rows = np.ones(len(y), dtype=bool) if w is None else w > 0
    try:
        found = detect_separation(design[rows], y[rows], fit_intercept=False)
    except (linalg.LinAlgError, RuntimeError, ValueError):
        return None
    return np.asarray(found.directions)


def _infinite_note(x, y, direction, pairwise=False):
    """Why a hypothesis' Logit estimate is infinite, in words."""
    sign = "+inf" if direction > 0 else "-inf"
    reason = "separation by a combination of hypotheses"
    if np.isin(x, (0.0, 1.0)).all():
        for side, label in ((x == 1, "with"), (x == 0, "without")):
            if side.any() and np.ptp(y[side]) == 0:
                where = (
                    (
                        "pair where only the first text has the concept"
                        if label == "with"
                        else "pair whose texts do not differ on the concept"
                    )
                    if pairwise
                    else f"text {label} the concept"
                )
                reason = f"perfect separation: every {where} has y={int(y[side][0])}"
                break
    return (
        f"{reason}, so its Logit estimate is {sign}; Firth penalised estimate, "
        "profile-likelihood CI and penalised likelihood-ratio p-value"
    )


def _fit_binary(X, y, cov_type, w, alpha, names, pairwise=False):
    """Logit, or Firth where the Logit has no finite estimates."""
    import statsmodels.api as sm

    design = sm.add_constant(X, has_constant="add")
    k = X.shape[1]
    directions = _separated(design, y, w)
    notes = {}
    reason = directions is not None and directions.any()
    if reason:
        infinite = np.flatnonzero(directions[1:])
        for q in infinite:
            support = np.ones(len(y), dtype=bool) if w is None else w > 0
            notes[int(q)] = _infinite_note(
                X[support, q], y[support], directions[1 + q], pairwise
            )
        which = ", ".join(repr(names[q]) for q in infinite) or "the intercept"
        message = (
            f"Separation ({which}): the joint Logit has infinite estimates, so the "
            "joint model is Firth's penalised logistic regression (model='firth'): "
            "penalised estimates, profile-likelihood intervals and penalised "
            "likelihood-ratio p-values; its standard errors are model-based."
        )
    else:
        res, ok = _fit_logit(design, y, cov_type, w)
        if ok:
            hc = cov_type in ("HC1", "HC2", "HC3")
            return _Joint(
                model=res,
                name="logit",
                params=np.asarray(res.params)[1:],
                bse=np.asarray(res.bse)[1:],
                ci=np.asarray(res.conf_int(alpha=alpha))[1:],
                pvalues=np.asarray(res.pvalues)[1:],
                cov_type="HC0" if hc else cov_type,
                pvalue_method="wald",
            )
        notes = {
            q: "the joint Logit did not converge; Firth penalised estimate, "
            "profile-likelihood CI and penalised likelihood-ratio p-value"
            for q in range(k)
        }
        message = (
            "The joint Logit did not converge (quasi-separation or near-"
            "collinearity), so the joint model is Firth's penalised logistic "
            "regression (model='firth'): penalised estimates, profile-likelihood "
            "intervals and penalised likelihood-ratio p-values; its standard "
            "errors are model-based."
        )
    firth = firth_logit(y, design, alpha=alpha, sample_weight=w, test=range(1, k + 1))
    joint = _Joint(
        model=firth,
        name="firth",
        params=firth.params[1:],
        bse=firth.bse[1:],
        ci=firth.ci[1:],
        pvalues=firth.pvalues[1:],
        cov_type="nonrobust",
        pvalue_method="penalised_lr",
        notes=notes,
        warnings=[message],
    )
    if not firth.converged:
        nan = np.full(k, np.nan)
        joint.params, joint.bse, joint.pvalues = nan, nan, nan
        joint.ci = np.full((k, 2), np.nan)
        joint.notes = {q: "the joint Firth fit did not converge" for q in range(k)}
        joint.warnings.append(
            "The joint Firth fit did not converge either: no joint coefficients "
            "are reported."
        )
        return joint
    for q, note in list(notes.items()):
        coef, direction = joint.params[q], directions[1 + q] if reason else 0
        if coef * direction < 0:
            # The Jeffreys penalty pulls towards probability 1/2: with a few
            # texts in a rare class it can pull a -inf estimate past 0.
            notes[q] = (
                f"{note}; with so few texts the penalty pulls the estimate past 0 "
                f"(to {coef:+.3g}): read its interval and p-value, not its sign"
            )
    for q in range(k):
        missing = [
            what
            for what, bad in (
                ("p-value", np.isnan(joint.pvalues[q])),
                ("interval", np.isnan(joint.ci[q]).any()),
            )
            if bad
        ]
        if missing:
            text = (
                f"Firth {' and '.join(missing)} not computed (a penalised "
                "likelihood fit did not converge)"
            )
            notes[q] = f"{notes[q]}; {text}" if q in notes else text
    if firth.messages:
        joint.warnings.append("Firth fit: " + "; ".join(firth.messages))
    return joint


def _marginals(X, y, w, task, cov_type, alpha, columns):
    """Coefficient and p-value of each column alone with an intercept."""
    import statsmodels.api as sm

    coef = np.full(X.shape[1], np.nan)
    pvalue = np.full(X.shape[1], np.nan)
    for j in columns:
        x = X[:, j]
        if task == "regression":
            res = _fit_ols(x[:, None], y, cov_type, w)
            coef[j], pvalue[j] = res.params[1], _ols_inference(res, alpha)[0][1]
            continue
        binary = np.isin(x, (0.0, 1.0)).all()
        if w is None and binary:
            cells = np.array(
                [
                    np.sum((x == a) & (y == b))
                    for a, b in ((1, 1), (1, 0), (0, 1), (0, 0))
                ],
                dtype=np.float64,
            )
            if cells.min() > 0:
                # The model is saturated: the log odds ratio and its Woolf
                # standard error, which HC0 and the model-based ones equal.
                b = np.log(cells[0] * cells[3] / (cells[1] * cells[2]))
                se = np.sqrt((1 / cells).sum())
                coef[j], pvalue[j] = b, 2 * stats.norm.sf(abs(b) / se)
                continue
            separated = True
        else:
            directions = _separated(sm.add_constant(x), y, w)
            separated = directions is not None and directions.any()
        if not separated:
            res, ok = _fit_logit(sm.add_constant(x), y, cov_type, w)
            if ok:
                coef[j], pvalue[j] = res.params[1], res.pvalues[1]
                continue
        firth = firth_logit(
            y, sm.add_constant(x), alpha=alpha, sample_weight=w, test=[1], ci=False
        )
        if firth.converged:
            coef[j], pvalue[j] = firth.params[1], firth.pvalues[1]
    return coef, pvalue


def _overlap(X, w):
    """Weighted correlations of the columns and their variance inflation."""
    k = X.shape[1]
    if k == 0:
        return np.zeros((0, 0)), np.zeros(0)
    ww = np.ones(len(X)) if w is None else w
    centered = X - np.average(X, axis=0, weights=ww)
    cov = (centered * ww[:, None]).T @ centered / ww.sum()
    sd = np.sqrt(np.diag(cov))
    corr = cov / np.outer(sd, sd)
    if k == 1:
        return corr, np.ones(1)
    try:
        vif = np.diag(np.linalg.inv(corr))
    except np.linalg.LinAlgError:
        vif = np.full(k, np.inf)
    return corr, vif


def _flip_note(position, kept, names, corr, vif, coef, marginal):
    """Why a joint coefficient has the opposite sign of its own association."""
    r = corr[position]
    order = [q for q in np.argsort(-np.abs(r)) if q != position]
    partners = [q for q in order if abs(r[q]) >= _MIN_OVERLAP][:_MAX_PARTNERS]
    if partners:
        overlap = "it overlaps with " + ", ".join(
            f"{names[kept[q]]!r} (r={r[q]:+.2f})" for q in partners
        )
    else:
        overlap = (
            "it overlaps with a combination of the other hypotheses, none "
            "strongly on its own"
        )
    alone = "positive" if marginal > 0 else "negative"
    return (
        f"sign flip: alone its association with y is {alone} (marginal coef "
        f"{marginal:+.3g}), jointly {coef:+.3g}; {overlap} (VIF "
        f"{vif[position]:.1f}). The joint coefficient is its effect with the "
        "others held fixed, not its effect alone"
    )


def _mcfadden(y, p, w):
    ww = np.ones(len(y)) if w is None else w
    p = np.clip(p, 1e-15, 1 - 1e-15)
    ll = np.sum(ww * (y * np.log(p) + (1 - y) * np.log1p(-p)))
    mean = np.average(y, weights=ww)
    ll0 = np.sum(ww * (y * np.log(mean) + (1 - y) * np.log1p(-mean)))
    return float(1 - ll / ll0)


def _blank_table(A, names, label):
    h = A.shape[1]
    table = pd.DataFrame({"hypothesis": pd.Series(names, dtype=object)})
    table["positive_class"] = pd.Series([label] * h, dtype=object)
    for col in COLUMNS[2:]:
        table[col] = np.nan
    table["separation_test"] = pd.Series([None] * h, dtype=object)
    table["model"] = pd.Series([None] * h, dtype=object)
    table["n_missing"] = np.isnan(A).sum(axis=0).astype(int)
    table["significant"] = False
    table["sign_flip"] = False
    table["note"] = ""
    return table


def _evaluate(A, y, names, *, task, label, alpha, cov_type, w, pairwise=False):
    n, h = A.shape
    warn = []
    if h == 0:
        warn.append("No hypotheses to test: the joint model has only an intercept.")
    table = _blank_table(A, names, label)
    separation = pd.DataFrame(
        _separation_columns(A, y, w, task, pairwise),
        columns=COLUMNS[2:9],
        index=table.index,
    )
    table[COLUMNS[2:9]] = separation
    notes = [[] for _ in range(h)]

    complete = ~np.isnan(A).any(axis=1)
    n_used = int(complete.sum())
    if n_used < n:
        warn.append(
            f"{n - n_used} of {n} texts have a missing annotation and were left "
            "out of the joint model."
        )
    X, yj = A[complete], y[complete]
    wj = w[complete] if w is not None else None
    kept, screened = _screen(X, names, pairwise)
    for j, note in screened.items():
        notes[j].append(note)
        warn.append(f"Hypothesis {names[j]!r} left out of the joint model: {note}.")

    metrics = {
        "task": task,
        "positive_class": label,
        "model": None,
        "pvalue_method": None,
        "n": n,
        "n_used": n_used,
    }
    if task == "binary":
        metrics["n_positive"] = int(y.sum())
        metrics.update(auc=np.nan, pseudo_r2=np.nan)
    model = None
    effective_cov = cov_type
    if task == "binary" and (n_used == 0 or np.ptp(yj) == 0):
        warn.append("y takes a single value in the joint model's rows: no model.")
    else:
        testable = [j for j in range(h) if _testable(X[:, j], pairwise)]
        marginal_coef, marginal_p = _marginals(
            X, yj, wj, task, cov_type, alpha, testable
        )
        table["marginal_coef"] = marginal_coef
        table["marginal_pvalue"] = marginal_p
        if n_used <= len(kept) + 1:
            warn.append(f"{n_used} complete rows are too few for the joint model.")
        else:
            joint = _fit_joint(
                X[:, kept], yj, task, cov_type, wj, alpha, names, kept, pairwise
            )
            model, effective_cov = joint.model, joint.cov_type
            metrics["model"] = joint.name
            metrics["pvalue_method"] = joint.pvalue_method
            warn.extend(joint.warnings)
            if kept:
                table.loc[kept, "model"] = joint.name
                table.loc[kept, "coef"] = joint.params
                table.loc[kept, "coef_se"] = joint.bse
                table.loc[kept, "coef_ci_low"] = joint.ci[:, 0]
                table.loc[kept, "coef_ci_high"] = joint.ci[:, 1]
                table.loc[kept, "pvalue"] = joint.pvalues
            for position, note in joint.notes.items():
                notes[kept[position]].append(note)
            corr, vif = _overlap(X[:, kept], wj)
            table.loc[kept, "vif"] = vif
            for position, j in enumerate(kept):
                coef, marginal = joint.params[position], marginal_coef[j]
                if np.isfinite(coef) and np.isfinite(marginal) and coef * marginal < 0:
                    table.loc[j, "sign_flip"] = True
                    notes[j].append(
                        _flip_note(position, kept, names, corr, vif, coef, marginal)
                    )
            metrics.update(_fit_metrics(model, joint.name, X[:, kept], yj, wj, warn))
    table["note"] = ["; ".join(parts) for parts in notes]
    metrics.update(n_hypotheses=h, alpha=alpha, cov_type=effective_cov, warnings=warn)
    return EvaluationResult(table=table, metrics=metrics, model=model)


def _fit_joint(X, y, task, cov_type, w, alpha, names, kept, pairwise=False):
    if task == "regression":
        res = _fit_ols(X, y, cov_type, w)
        pvalues, ci = _ols_inference(res, alpha)
        return _Joint(
            model=res,
            name="ols",
            params=np.asarray(res.params)[1:],
            bse=np.asarray(res.bse)[1:],
            ci=ci[1:],
            pvalues=pvalues[1:],
            cov_type=cov_type,
            pvalue_method="t" if cov_type == "nonrobust" else "t_bell_mccaffrey",
        )
    return _fit_binary(
        X, y, cov_type, w, alpha, [names[j] for j in kept], pairwise=pairwise
    )


def _fit_metrics(model, name, X, y, w, warn):
    if name == "ols":
        out = {"r2": float(model.rsquared), "adj_r2": float(model.rsquared_adj)}
        cov_type = model.cov_type
        if cov_type in ("HC2", "HC3"):
            wx = model.model.wexog
            lev = np.einsum("ij,ij->i", wx @ np.linalg.pinv(wx.T @ wx), wx)
            if np.any(lev > 1 - 1e-8):
                warn.append(
                    f"{int((lev > 1 - 1e-8).sum())} rows have leverage 1, where "
                    f"{cov_type} standard errors are not defined."
                )
        return out
    if name == "firth":
        if not model.converged:
            warn.append("auc and pseudo_r2 are NaN: the joint Firth fit failed.")
            return {}
        pred = model.predict()
        return {
            "auc": float(roc_auc_score(y, pred, sample_weight=w)),
            "pseudo_r2": _mcfadden(y, pred, w),
        }
    pred = model.predict()
    return {
        "auc": float(roc_auc_score(y, pred, sample_weight=w)),
        "pseudo_r2": float(
            model.prsquared if w is None else model.pseudo_rsquared(kind="mcf")
        ),
    }


def _absent(A, names, label, w):
    """The result of a class that y does not hold: nothing to test."""
    n, h = A.shape
    table = _blank_table(A, names, label)
    for j, a in enumerate(A.T):
        ok = ~np.isnan(a)
        table.loc[j, "prevalence"] = _wmean(
            (a[ok] >= 0.5).astype(np.float64), w[ok] if w is not None else None
        )
    table["note"] = f"class {_plain(label)!r} is absent from the evaluated y"
    metrics = {
        "task": "binary",
        "positive_class": label,
        "model": None,
        "pvalue_method": None,
        "n": n,
        "n_used": int((~np.isnan(A).any(axis=1)).sum()),
        "n_positive": 0,
        "auc": np.nan,
        "pseudo_r2": np.nan,
        "n_hypotheses": h,
        "alpha": np.nan,
        "cov_type": None,
        "warnings": [
            f"absent from the evaluated y: its {h} hypotheses have no statistics "
            "and count as p = 1 in the multiple-testing correction."
        ],
    }
    return EvaluationResult(table=table, metrics=metrics, model=None)


def _correct(results, correction, alpha):
    """Multiple testing over every row of every result, as one family."""
    from statsmodels.stats.multitest import multipletests

    pvalues = np.concatenate(
        [r.table["pvalue"].to_numpy(dtype=np.float64) for r in results]
    )
    missing = np.isnan(pvalues)
    filled = np.where(missing, 1.0, pvalues)
    if correction == "none" or filled.size == 0:
        corrected, reject = filled, filled <= alpha
    else:
        reject, corrected, _, _ = multipletests(filled, alpha=alpha, method=correction)
    start = 0
    for result in results:
        stop = start + len(result.table)
        part = slice(start, stop)
        table = result.table
        table["pvalue_corrected"] = np.where(missing[part], np.nan, corrected[part])
        table["significant"] = reject[part] & ~missing[part]
        result.table = table[COLUMNS]
        result.metrics.update(
            n_significant=int(table["significant"].sum()),
            n_tests=int(filled.size),
            alpha=alpha,
            correction=correction,
        )
        start = stop
