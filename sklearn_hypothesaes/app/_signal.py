"""The signal check: how well the full embeddings predict y, before any LLM call.

Hypotheses can only recover signal that the embeddings carry: when a linear
probe on the embeddings cannot beat chance on held-out texts, no selected
latent will, and describing latents with an LLM is money spent on noise. The
peer's FAQ asks users to check this by hand; :func:`embedding_signal` does it
on the embeddings that the pipeline has already computed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy import stats
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.metrics import r2_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..hypotheses._generator import class_aucs
from ..utils._misc import warn_user
from ..utils._validation import resolve_task

__all__ = ["EmbeddingSignal", "NoSignalWarning", "embedding_signal", "signal_share"]

#: One-sided level of the test that the probe's held-out AUC exceeds 0.5.
SIGNAL_ALPHA = 0.05
# Penalties searched by the probes' internal cross-validation: from nearly no
# penalty to one that leaves only the intercept, on standardised embeddings.
_CS = np.logspace(-4, 2, 7)
_ALPHAS = np.logspace(-2, 5, 15)
_SCORE_NAMES = {
    "binary": "ROC AUC",
    "multiclass": "mean one-vs-rest ROC AUC",
    "regression": "R^2",
}


class NoSignalWarning(UserWarning):
    """The embeddings do not predict the target on held-out texts.

    Turn it into an error to stop :func:`run_method` before any latent is
    described (so before any LLM call):
    ``warnings.filterwarnings("error", category=NoSignalWarning)``.
    """


@dataclass
class EmbeddingSignal:
    """The held-out score of a linear probe on the full embeddings.

    Attributes
    ----------
    task : str
        ``"binary"``, ``"multiclass"`` or ``"regression"``.
    score : float
        The probe's held-out score, on the scale of the hypotheses' ``score``:
        ROC AUC (binary), mean one-vs-rest ROC AUC over the held-out classes
        (multiclass) or R^2 (regression).
    pvalue : float or None
        Classes: one-sided Mann-Whitney p-value of "the held-out AUC exceeds
        0.5" (Bonferroni over the classes for multiclass). None for a
        regression, judged by R^2 > 0.
    has_signal : bool
        Whether the embeddings carry signal: p < ``SIGNAL_ALPHA`` for classes,
        R^2 > 0 for a regression.
    probe : str
        The probe and the penalty its internal cross-validation chose.
    n_train, n_holdout : int
        Texts the probe was fit and scored on.
    """

    task: str
    score: float
    pvalue: float | None
    has_signal: bool
    probe: str
    n_train: int
    n_holdout: int

    def describe(self) -> str:
        """One sentence: the probe's score and what it means."""
        name = _SCORE_NAMES[self.task]
        text = (
            f"a {self.probe} on the full embeddings scores a held-out {name} of "
            f"{self.score:.3f} on {self.n_holdout} texts"
        )
        if self.pvalue is not None:
            text += f" (one-sided p = {self.pvalue:.2g} against 0.5)"
        return text


def signal_share(score, embedding_score, task) -> float:
    """The share of the embeddings' signal that the hypotheses recover.

    Measured above chance: ``(score - 0.5) / (embedding_score - 0.5)`` for a
    ROC AUC (binary and multiclass), ``score / embedding_score`` for R^2. It is
    NaN when the probe is at or below chance (AUC <= 0.5, R^2 <= 0): there is
    then no signal to recover a share of. It can exceed 1 (hypotheses worded
    by an LLM may carry information that a linear probe on the embeddings
    misses) or fall below 0 (hypotheses worse than chance).

    Parameters
    ----------
    score : float
        The hypotheses' held-out score.
    embedding_score : float
        The probe's held-out score, on the same scale.
    task : {"binary", "multiclass", "regression"}
        Which scale.

    Returns
    -------
    share : float

    Examples
    --------
    >>> signal_share(0.63, 0.75, "binary")
    0.52
    >>> signal_share(0.2, 0.5, "regression")
    0.4
    >>> signal_share(0.6, 0.5, "binary")
    nan
    """
    chance = 0.0 if task == "regression" else 0.5
    room = float(embedding_score) - chance
    if not np.isfinite(room) or room <= 0 or not np.isfinite(score):
        return float("nan")
    return round((float(score) - chance) / room, 12)


def embedding_signal(X, y, X_holdout, y_holdout, *, task="auto", random_state=0):
    """Fit a linear probe on the training embeddings and score it held out.

    Logistic regression for classes (L2 penalty ``C`` chosen in 1e-4 ... 1e2
    by 3-fold stratified CV on log loss), ridge for a regression
    (:class:`~sklearn.linear_model.RidgeCV`, penalty by efficient
    leave-one-out), both on standardised embeddings.

    Parameters
    ----------
    X : {array-like, sparse matrix} of shape (n_train, n_dims)
        Training embeddings.
    y : array-like of shape (n_train,)
        Training targets.
    X_holdout : {array-like, sparse matrix} of shape (n_holdout, n_dims)
        Held-out embeddings.
    y_holdout : array-like of shape (n_holdout,)
        Held-out targets.
    task : {"auto", "binary", "multiclass", "regression"}, default="auto"
        As for :class:`HypothesisGenerator` (its ``task``), so that both read
        y the same way.
    random_state : int, default=0
        Seeds the folds of the internal cross-validation.

    Returns
    -------
    signal : EmbeddingSignal
    """
    y, y_holdout = np.asarray(y), np.asarray(y_holdout)
    with warnings.catch_warnings():
        # The generator says it when it reads y; once is enough.
        warnings.simplefilter("ignore")
        task = resolve_task(y, task, caller="the signal check")
    scaler = StandardScaler(with_mean=not sp.issparse(X))
    if task == "regression":
        probe = make_pipeline(scaler, RidgeCV(alphas=_ALPHAS))
        probe.fit(X, y.astype(np.float64))
        score = float(r2_score(y_holdout.astype(np.float64), probe.predict(X_holdout)))
        return EmbeddingSignal(
            task=task,
            score=score,
            pvalue=None,
            has_signal=score > 0,
            probe=f"ridge probe (alpha={probe[-1].alpha_:.3g} by leave-one-out)",
            n_train=len(y),
            n_holdout=len(y_holdout),
        )
    classes, counts = np.unique(y, return_counts=True)
    n_folds = int(min(3, counts.min()))
    model = LogisticRegression(max_iter=2000)
    if n_folds >= 2:
        # GridSearchCV rather than LogisticRegressionCV, whose parameters and
        # attributes change across the scikit-learn versions we support.
        model = GridSearchCV(
            model,
            {"C": _CS},
            cv=StratifiedKFold(n_folds, shuffle=True, random_state=random_state),
            scoring="neg_log_loss",
        )
    # else a class has one training text: nothing to cross-validate on.
    probe = make_pipeline(scaler, model).fit(X, y)
    proba = probe.predict_proba(X_holdout)
    # The generator's score: the positive class's AUC (binary), else the mean
    # one-vs-rest AUC over the classes present in the holdout.
    found = class_aucs(y_holdout, proba, classes)
    if task == "binary":
        found = [(column, auc) for column, auc in found if column == 1]
    aucs = [auc for _, auc in found]
    pvalues = []
    for column, _ in found:
        truth = y_holdout == classes[column]
        pvalues.append(
            stats.mannwhitneyu(
                proba[truth, column], proba[~truth, column], alternative="greater"
            ).pvalue
        )
    if not aucs:
        raise ValueError(
            "The signal check needs held-out texts of at least two of the "
            f"training classes; got {np.unique(y_holdout).tolist()[:5]}."
        )
    pvalue = float(min(1.0, len(pvalues) * min(pvalues)))
    C = probe[-1].best_params_["C"] if n_folds >= 2 else probe[-1].C
    how = f"by {n_folds}-fold CV" if n_folds >= 2 else "default, too few texts for CV"
    return EmbeddingSignal(
        task=task,
        score=float(np.mean(aucs)),
        pvalue=pvalue,
        has_signal=pvalue < SIGNAL_ALPHA,
        probe=f"logistic-regression probe (C={C:.3g}, {how})",
        n_train=len(y),
        n_holdout=len(y_holdout),
    )


def warn_no_signal(signal: EmbeddingSignal):
    """Warn (:class:`NoSignalWarning`) that the embeddings carry no signal."""
    if signal.has_signal:
        return
    warn_user(
        "The embeddings carry no detectable signal about y: "
        + signal.describe()
        + ". Hypotheses from latents of these embeddings are unlikely to predict "
        "y on held-out texts. Check the target and the texts, or try another "
        "embedding model, before spending LLM calls; "
        'warnings.filterwarnings("error", category=NoSignalWarning) stops '
        "run_method here.",
        NoSignalWarning,
    )
