"""Statistics for hypotheses: separation, joint regression, multiple testing."""

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

COLUMNS = [
    "hypothesis",
    "prevalence",
    "n_missing",
    "mean_with",
    "mean_without",
    "separation",
    "separation_pvalue",
    "coef",
    "coef_se",
    "coef_ci_low",
    "coef_ci_high",
    "pvalue",
    "pvalue_corrected",
    "significant",
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


@dataclass
class EvaluationResult:
    """Per-hypothesis statistics and joint-model metrics.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per hypothesis with the columns ``hypothesis``,
        ``prevalence``, ``n_missing``, ``mean_with``, ``mean_without``,
        ``separation``, ``separation_pvalue``, ``coef``, ``coef_se``,
        ``coef_ci_low``, ``coef_ci_high``, ``pvalue``, ``pvalue_corrected``,
        ``significant`` and ``note`` (why a statistic is missing, else "").
    metrics : dict
        ``task``, ``n``, ``n_used``, ``r2`` and ``adj_r2`` (regression) or
        ``auc`` and ``pseudo_r2`` (binary), ``n_significant``,
        ``n_hypotheses``, ``alpha``, ``correction``, ``cov_type`` (the one
        actually computed) and ``warnings`` (list of str).
    model : statsmodels results or None
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
        "correction": [StrOptions(_CORRECTIONS)],
        "alpha": [Interval(Real, 0, 1, closed="neither")],
        "cov_type": [StrOptions({"nonrobust", "HC0", "HC1", "HC2", "HC3"})],
        "sample_weight": ["array-like", None],
    },
    prefer_skip_nested_validation=True,
)
def evaluate_hypotheses(
    annotations,
    y,
    *,
    hypotheses=None,
    task="auto",
    correction="bonferroni",
    alpha=0.05,
    cov_type="HC3",
    sample_weight=None,
):
    """Test each hypothesis' association with y, alone and jointly.

    For each hypothesis (a column of annotations):

    - ``prevalence``: the (weighted) share of texts with the concept;
      probabilities are split at 0.5 for ``prevalence``, ``mean_with``,
      ``mean_without`` and the t-test, and used as given in the regression.
    - ``separation = mean_with - mean_without``: mean y (the share of the
      positive class for a binary task) among texts with minus without the
      concept, with a Welch t-test (:func:`scipy.stats.ttest_ind`,
      ``equal_var=False``; statsmodels' weighted version with
      ``sample_weight``). Rows where this hypothesis is NaN are left out
      (``n_missing``).
    - ``coef``, ``coef_se``, its ``1 - alpha`` confidence interval and
      ``pvalue`` in one joint model of y on all hypotheses and an intercept:
      OLS (WLS with weights) for regression, Logit (binomial GLM with
      weights) for a binary y, with ``cov_type`` robust standard errors.
      Rows with any NaN annotation are dropped from it. Statsmodels computes
      the HC0 sandwich for Logit whatever HC variant is asked;
      ``metrics["cov_type"]`` says so.
    - ``pvalue_corrected`` and ``significant`` (``pvalue_corrected <=
      alpha``) by :func:`statsmodels.stats.multitest.multipletests`. Every
      hypothesis counts as a test; those without a p-value enter the
      correction as p = 1 (conservative) and stay NaN.

    Nothing is silently patched. A hypothesis that is constant, present in
    (or absent from) fewer than 2 texts, perfectly separates a binary y, or
    is collinear with others is left out of the joint model: its ``coef``
    and ``pvalue`` are NaN, ``note`` says why, and ``metrics["warnings"]``
    lists it. Collinear hypotheses are found by a rank-revealing (column
    pivoted) QR of the centered annotations, which keeps the best-conditioned
    set; the note names the kept hypotheses each dropped one is a linear
    combination of. A joint Logit that does not converge (separation by a
    combination of hypotheses) reports no coefficients at all, with a
    warning.

    With no hypothesis (``n_hypotheses=0``) the table has its columns and no
    rows, and the metrics are those of an intercept-only model, with a
    warning.

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
    correction : {"bonferroni", "holm", "fdr_bh", "none"}, default="bonferroni"
        Multiple-testing correction over the hypotheses (the paper uses
        Bonferroni).
    alpha : float in (0, 1), default=0.05
        Family-wise error rate (or FDR for ``"fdr_bh"``); the confidence
        intervals are at level ``1 - alpha``.
    cov_type : {"HC3", "HC2", "HC1", "HC0", "nonrobust"}, default="HC3"
        Covariance of the joint model's coefficients.
    sample_weight : array-like of shape (n_texts,), default=None
        Non-negative weights (frequency weights in the t-test and the GLM).

    Returns
    -------
    result : EvaluationResult or dict of EvaluationResult
        For multiclass y, a dict mapping each class to its one-vs-rest
        result.

    See Also
    --------
    HypothesisGenerator : Produces the hypotheses and their annotations.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_hypothesaes import evaluate_hypotheses
    >>> rng = np.random.default_rng(0)
    >>> annotations = rng.integers(0, 2, size=(500, 2))
    >>> y = 1.0 * annotations[:, 0] + rng.normal(size=500)
    >>> result = evaluate_hypotheses(annotations, y, hypotheses=["funny", "long"])
    >>> result.table[["hypothesis", "significant"]]
      hypothesis  significant
    0      funny         True
    1       long        False
    >>> round(result.metrics["r2"], 2)
    0.2
    """
    A, names = _annotation_matrix(annotations, hypotheses)
    y = np.asarray(y)
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
    common = dict(correction=correction, alpha=alpha, cov_type=cov_type, w=w)
    if task == "regression":
        try:
            y = y.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"task='regression' needs a numeric y; got dtype {y.dtype}."
            ) from exc
        if not np.all(np.isfinite(y)):
            raise ValueError("y contains NaN or infinite values.")
        return _evaluate(A, y, names, task="regression", **common)
    classes = np.unique(y)
    if task == "binary":
        result = _evaluate(
            A, (y == classes[1]).astype(np.float64), names, task="binary", **common
        )
        result.metrics["positive_class"] = classes[1]
        return result
    results = {}
    for label in classes:
        result = _evaluate(
            A, (y == label).astype(np.float64), names, task="binary", **common
        )
        result.metrics["positive_class"] = label
        results[label] = result
    return results


def _annotation_matrix(annotations, hypotheses):
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


def _separation_columns(A, y, w):
    """prevalence, n_missing, mean_with, mean_without, separation, p-value."""
    rows = []
    for a in A.T:
        ok = ~np.isnan(a)
        present = a[ok] >= 0.5
        yy, ww = y[ok], (w[ok] if w is not None else None)
        w_with = ww[present] if ww is not None else None
        w_without = ww[~present] if ww is not None else None
        mean_with = _wmean(yy[present], w_with)
        mean_without = _wmean(yy[~present], w_without)
        rows.append(
            {
                "prevalence": _wmean(present.astype(np.float64), ww),
                "n_missing": int((~ok).sum()),
                "mean_with": mean_with,
                "mean_without": mean_without,
                "separation": mean_with - mean_without,
                "separation_pvalue": _welch(
                    yy[present], yy[~present], w_with, w_without
                ),
            }
        )
    return rows


def _screen(X, y, names, task):
    """Columns that cannot enter the joint model, with the reason for each."""
    notes = {}
    for j, x in enumerate(X.T):
        n_with = int((x >= 0.5).sum())
        if np.ptp(x) == 0:
            notes[j] = "constant in the joint model's rows: no coefficient"
        elif min(n_with, len(x) - n_with) < _MIN_GROUP:
            notes[j] = (
                f"present in {n_with} of {len(x)} texts: a coefficient resting on "
                "one text cannot be tested"
            )
        elif task == "binary" and np.isin(x, (0.0, 1.0)).all():
            for side, label in ((x == 1, "with"), (x == 0, "without")):
                if np.ptp(y[side]) == 0:
                    notes[j] = (
                        f"perfect separation: every text {label} the concept has "
                        f"y={int(y[side][0])}, so the Logit coefficient is infinite"
                    )
                    break
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


def _fit_joint(X, y, task, cov_type, w):
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    design = sm.add_constant(X, has_constant="add")
    if task == "regression":
        model = sm.OLS(y, design) if w is None else sm.WLS(y, design, weights=w)
        return model.fit(cov_type=cov_type), True
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if w is None:
            res = sm.Logit(y, design).fit(disp=0, maxiter=100, cov_type=cov_type)
            converged = bool(res.mle_retvals.get("converged", True))
        else:
            family = sm.families.Binomial()
            model = sm.GLM(y, design, family=family, freq_weights=w)
            res = model.fit(maxiter=100, cov_type=cov_type)
            converged = bool(getattr(res, "converged", True))
    trouble = any(
        issubclass(c.category, ConvergenceWarning)
        or "separation" in str(c.message).lower()
        for c in caught
    )
    return res, converged and not trouble


def _evaluate(A, y, names, *, task, correction, alpha, cov_type, w):
    from statsmodels.stats.multitest import multipletests

    n, h = A.shape
    warn = []
    if h == 0:
        warn.append("No hypotheses to test: the joint model has only an intercept.")
    table = pd.DataFrame(_separation_columns(A, y, w), columns=COLUMNS[1:7])
    table.insert(0, "hypothesis", pd.Series(names, dtype=object))
    for col in ("coef", "coef_se", "coef_ci_low", "coef_ci_high", "pvalue"):
        table[col] = np.nan
    table["note"] = ""

    complete = ~np.isnan(A).any(axis=1)
    n_used = int(complete.sum())
    if n_used < n:
        warn.append(
            f"{n - n_used} of {n} texts have a missing annotation and were left "
            "out of the joint model."
        )
    X, yj = A[complete], y[complete]
    wj = w[complete] if w is not None else None
    kept, notes = _screen(X, yj, names, task)
    for j, note in notes.items():
        table.loc[j, "note"] = note
        warn.append(f"Hypothesis {names[j]!r} left out of the joint model: {note}.")

    metrics = {"task": task, "n": n, "n_used": n_used}
    model = None
    effective_cov = cov_type
    if task == "binary" and np.ptp(yj) == 0:
        warn.append("y takes a single value in the joint model's rows: no model.")
    elif n_used <= len(kept) + 1:
        warn.append(f"{n_used} complete rows are too few for the joint model.")
    else:
        model, ok = _fit_joint(X[:, kept], yj, task, cov_type, wj)
        if task == "binary" and cov_type in ("HC1", "HC2", "HC3"):
            effective_cov = "HC0"
        pred = model.predict()
        if task == "regression":
            metrics["r2"] = float(model.rsquared)
            metrics["adj_r2"] = float(model.rsquared_adj)
            if cov_type in ("HC2", "HC3"):
                wx = model.model.wexog
                lev = np.einsum("ij,ij->i", wx @ np.linalg.pinv(wx.T @ wx), wx)
                if np.any(lev > 1 - 1e-8):
                    warn.append(
                        f"{int((lev > 1 - 1e-8).sum())} rows have leverage 1, where "
                        f"{cov_type} standard errors are not defined."
                    )
        else:
            metrics["auc"] = float(roc_auc_score(yj, pred, sample_weight=wj))
            metrics["pseudo_r2"] = float(
                getattr(model, "prsquared", np.nan)
                if w is None
                else model.pseudo_rsquared(kind="mcf")
            )
        if not ok:
            warn.append(
                "The joint Logit did not converge (perfect or quasi-perfect "
                "separation by a combination of hypotheses?): its coefficients "
                "and p-values are not reported."
            )
            for j in kept:
                table.loc[j, "note"] = "joint Logit did not converge"
        else:
            params = np.asarray(model.params)[1:]
            bse = np.asarray(model.bse)[1:]
            ci = np.asarray(model.conf_int(alpha=alpha))[1:]
            pvals = np.asarray(model.pvalues)[1:]
            table.loc[kept, "coef"] = params
            table.loc[kept, "coef_se"] = bse
            table.loc[kept, "coef_ci_low"] = ci[:, 0]
            table.loc[kept, "coef_ci_high"] = ci[:, 1]
            table.loc[kept, "pvalue"] = pvals

    pvalues = table["pvalue"].to_numpy(dtype=np.float64)
    missing = np.isnan(pvalues)
    filled = np.where(missing, 1.0, pvalues)
    if correction == "none" or h == 0:
        corrected, reject = filled, filled <= alpha
    else:
        reject, corrected, _, _ = multipletests(filled, alpha=alpha, method=correction)
    table["pvalue_corrected"] = np.where(missing, np.nan, corrected)
    table["significant"] = reject & ~missing
    metrics.update(
        n_significant=int(table["significant"].sum()),
        n_hypotheses=h,
        alpha=alpha,
        correction=correction,
        cov_type=effective_cov,
        warnings=warn,
    )
    return EvaluationResult(table=table[COLUMNS], metrics=metrics, model=model)
