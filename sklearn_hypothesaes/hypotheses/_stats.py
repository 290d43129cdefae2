"""evaluate_hypotheses: every hypothesis tested alone (``_tests``) and jointly
(``_joint``), per class, with one multiple-testing correction."""

from __future__ import annotations

from dataclasses import dataclass, field
from numbers import Real

import numpy as np
import pandas as pd
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

from ..utils._validation import TASKS, resolve_task
from ._joint import (
    fit_joint,
    fit_metrics,
    flip_note,
    is_testable,
    marginals,
    overlap,
    screen,
)
from ._tests import separation_columns, wmean

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
        separation_columns(A, y, w, task, pairwise),
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
    kept, screened = screen(X, names, pairwise)
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
        testable = [j for j in range(h) if is_testable(X[:, j], pairwise)]
        marginal_coef, marginal_p = marginals(
            X, yj, wj, task, cov_type, alpha, testable
        )
        table["marginal_coef"] = marginal_coef
        table["marginal_pvalue"] = marginal_p
        if n_used <= len(kept) + 1:
            warn.append(f"{n_used} complete rows are too few for the joint model.")
        else:
            joint = fit_joint(
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
            corr, vif = overlap(X[:, kept], wj)
            table.loc[kept, "vif"] = vif
            for position, j in enumerate(kept):
                coef, marginal = joint.params[position], marginal_coef[j]
                if np.isfinite(coef) and np.isfinite(marginal) and coef * marginal < 0:
                    table.loc[j, "sign_flip"] = True
                    notes[j].append(
                        flip_note(position, kept, names, corr, vif, coef, marginal)
                    )
            metrics.update(fit_metrics(model, joint.name, X[:, kept], yj, wj, warn))
    table["note"] = ["; ".join(parts) for parts in notes]
    metrics.update(n_hypotheses=h, alpha=alpha, cov_type=effective_cov, warnings=warn)
    return EvaluationResult(table=table, metrics=metrics, model=model)


def _absent(A, names, label, w):
    """The result of a class that y does not hold: nothing to test."""
    n, h = A.shape
    table = _blank_table(A, names, label)
    for j, a in enumerate(A.T):
        ok = ~np.isnan(a)
        table.loc[j, "prevalence"] = wmean(
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
