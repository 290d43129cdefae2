"""Single-hypothesis tests: each hypothesis alone against the target.

Fisher's exact test (or a logistic likelihood-ratio test) for a binary
target, Welch's t-test for a continuous one, with weighted means; pairwise
tasks test differences of annotations.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

# A hypothesis needs this many texts on each side to be tested at all: with one,
# its row has leverage 1 and HC2/HC3 standard errors collapse to ~0.
MIN_GROUP = 2


def wmean(values, w):
    if len(values) == 0:
        return np.nan
    return float(np.average(values, weights=w)) if w is not None else values.mean()


def _welch(y_with, y_without, w_with, w_without):
    if min(len(y_with), len(y_without)) < MIN_GROUP:
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
    if np.sum(np.abs(x) >= 0.5) < MIN_GROUP or np.ptp(x) == 0 or ww.sum() == 0:
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


def separation_columns(A, y, w, task, pairwise=False):
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
        mean_with = wmean(yy[present], w_with)
        mean_without = wmean(yy[absent], w_without)
        if task == "binary" and pairwise:
            method, pvalue = "lr", _logit_lr_test(a[ok], yy, ww)
        elif task == "binary":
            method, pvalue = _table_test(present, yy, ww)
        else:
            method = "welch"
            pvalue = _welch(yy[present], yy[absent], w_with, w_without)
        rows.append(
            {
                "prevalence": wmean((present | absent).astype(np.float64), ww)
                if pairwise
                else wmean(present.astype(np.float64), ww),
                "n_missing": int((~ok).sum()),
                "mean_with": mean_with,
                "mean_without": mean_without,
                "separation": mean_with - mean_without,
                "separation_test": method,
                "separation_pvalue": pvalue,
            }
        )
    return rows
