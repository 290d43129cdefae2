"""Joint models of the target on all hypotheses, and what explains them.

OLS (small-sample t inference), Logit, and Firth's logistic regression where
the Logit separates; the collinearity screen (pivoted QR), marginal fits,
overlap, sign-flip notes and fit metrics.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import linalg, stats
from sklearn.metrics import roc_auc_score

from ._firth import firth_logit
from ._tests import MIN_GROUP

# A hypothesis whose part outside the span of the intercept and the kept
# hypotheses is this small, relative to the largest column, is collinear.
_RANK_TOL = 1e-8


# A flipped hypothesis' note names the others it correlates with at least this
# much (at most _MAX_PARTNERS of them, strongest first).
_MIN_OVERLAP = 0.2


_MAX_PARTNERS = 3


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


def fit_joint(X, y, task, cov_type, w, alpha, names, kept, pairwise=False):
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


def fit_metrics(model, name, X, y, w, warn):
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


def _mcfadden(y, p, w):
    ww = np.ones(len(y)) if w is None else w
    p = np.clip(p, 1e-15, 1 - 1e-15)
    ll = np.sum(ww * (y * np.log(p) + (1 - y) * np.log1p(-p)))
    mean = np.average(y, weights=ww)
    ll0 = np.sum(ww * (y * np.log(mean) + (1 - y) * np.log1p(-mean)))
    return float(1 - ll / ll0)


def marginals(X, y, w, task, cov_type, alpha, columns):
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


def overlap(X, w):
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


def flip_note(position, kept, names, corr, vif, coef, marginal):
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


def screen(X, names, pairwise=False):
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
        elif pairwise and n_differ < MIN_GROUP:
            notes[j] = (
                f"the two texts differ in {n_differ} of {len(x)} pairs: a "
                "coefficient resting on one pair cannot be tested"
            )
        elif not pairwise and min(n_with, len(x) - n_with) < MIN_GROUP:
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


def is_testable(x, pairwise=False):
    """Whether a column has a coefficient worth testing, alone or jointly."""
    if pairwise:
        return np.ptp(x) > 0 and int((np.abs(x) >= 0.5).sum()) >= MIN_GROUP
    n_with = int((x >= 0.5).sum())
    return np.ptp(x) > 0 and min(n_with, len(x) - n_with) >= MIN_GROUP
