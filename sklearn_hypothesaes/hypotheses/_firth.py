"""Firth's bias-reduced logistic regression, as R's logistf reports it.

A thin layer over :class:`firthmodels.FirthLogisticRegression` (MIT; checked
against logistf by its authors): the penalised estimate, its Wald standard
error, a profile penalised-likelihood confidence interval and a penalised
likelihood-ratio p-value for each coefficient, in the order of a statsmodels
design (intercept first). Used where the maximum-likelihood Logit has no
finite estimate (separation) or does not converge.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import expit

# Tighter than firthmodels' defaults (1e-4) and logistf's (1e-5), a few more
# Newton steps; 1e-8 is below what the gradient reaches in floating point.
_TOL = 1e-6
_MAX_ITER = 100


@dataclass
class FirthResults:
    """A fitted Firth logistic regression, in statsmodels' shape.

    Attributes
    ----------
    params : ndarray of shape (n_params,)
        Penalised maximum-likelihood estimates, intercept first when the
        design has one.
    bse : ndarray of shape (n_params,)
        Wald standard errors from the penalised information matrix.
    pvalues : ndarray of shape (n_params,)
        Penalised likelihood-ratio p-values (each coefficient set to 0 and the
        others refitted), NaN where that fit did not converge.
    ci : ndarray of shape (n_params, 2)
        Profile penalised-likelihood confidence intervals at level ``1 - alpha``.
    alpha : float
        The level of ``ci``.
    converged : bool
        Whether the penalised fit converged (the estimates are usable).
    messages : list of str
        What did not converge, in words: the fit, a likelihood-ratio refit
        or an interval bound (whose value is then NaN).
    llf : float
        Penalised log-likelihood at the estimate.
    """

    params: np.ndarray
    bse: np.ndarray
    pvalues: np.ndarray
    ci: np.ndarray
    alpha: float
    converged: bool
    messages: list = field(default_factory=list)
    llf: float = np.nan
    exog: np.ndarray = field(default=None, repr=False)

    def conf_int(self, alpha=None):
        """Profile penalised-likelihood intervals (only at the fitted level)."""
        if alpha is not None and alpha != self.alpha:
            raise ValueError(
                f"FirthResults holds intervals at alpha={self.alpha}; got "
                f"alpha={alpha}. Refit with that alpha."
            )
        return self.ci

    def predict(self, exog=None):
        """Fitted probabilities of the positive class."""
        exog = self.exog if exog is None else np.asarray(exog, dtype=np.float64)
        return expit(exog @ self.params)

    def summary(self):
        """The coefficient table, as logistf prints it."""
        level = 1 - self.alpha
        return pd.DataFrame(
            {
                "coef": self.params,
                "se(coef)": self.bse,
                f"lower {level:.2f}": self.ci[:, 0],
                f"upper {level:.2f}": self.ci[:, 1],
                "p (penalised LR)": self.pvalues,
            }
        )


def firth_logit(y, exog, *, alpha=0.05, sample_weight=None, test=None, ci=True):
    """Fit Firth's logistic regression of a 0/1 ``y`` on a design matrix.

    Parameters
    ----------
    y : ndarray of shape (n,)
        0/1 target.
    exog : ndarray of shape (n, n_params)
        Design matrix, with its constant column if one is wanted.
    alpha : float, default=0.05
        Intervals at level ``1 - alpha``.
    sample_weight : ndarray of shape (n,), default=None
        Frequency weights.
    test : sequence of int, default=None
        The coefficients that get a likelihood-ratio p-value and a profile
        interval (each costs refits); default all. The others are NaN.
    ci : bool, default=True
        Whether to compute the profile intervals (NaN otherwise).

    Returns
    -------
    results : FirthResults
    """
    from firthmodels import FirthLogisticRegression
    from sklearn.exceptions import ConvergenceWarning

    exog = np.asarray(exog, dtype=np.float64)
    k = exog.shape[1]
    test = list(range(k)) if test is None else list(test)
    model = FirthLogisticRegression(
        fit_intercept=False,
        backend="numpy",
        max_iter=_MAX_ITER,
        gtol=_TOL,
        xtol=_TOL,
    )
    messages = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(exog, y, sample_weight=sample_weight)
        bounds = np.full((k, 2), np.nan)
        if model.converged_:
            model.lrt(test)
            if ci:
                bounds[test] = model.conf_int(
                    alpha=alpha, method="pl", features=test, max_iter=_MAX_ITER
                )[test]
    for c in caught:
        if issubclass(c.category, ConvergenceWarning | RuntimeWarning):
            messages.append(str(c.message))
    pvalues = np.full(k, np.nan)
    pvalues[test] = model.lrt_pvalues_[test]
    if not model.converged_:
        messages.insert(0, "the penalised Newton-Raphson fit did not converge")
    return FirthResults(
        params=np.asarray(model.coef_, dtype=np.float64),
        bse=np.asarray(model.bse_, dtype=np.float64),
        pvalues=pvalues,
        ci=bounds,
        alpha=alpha,
        converged=bool(model.converged_),
        messages=messages,
        llf=float(model.loglik_),
        exog=exog,
    )
