"""LatentSelector: keep the latents that best predict the target."""

from __future__ import annotations

from functools import partial
from numbers import Integral, Real

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_selection import SelectorMixin, r_regression
from sklearn.linear_model import lars_path_gram
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.sparsefuncs import mean_variance_axis
from sklearn.utils.validation import check_is_fitted, validate_data

from ..utils._misc import warn_user
from ..utils._validation import TASKS, resolve_task

# A column whose variance is below this share of its mean square loses most
# digits in sum(x^2) - n*mean^2, the formula r_regression uses for its norms.
_CANCELLATION = 1e-6


class LatentSelector(SelectorMixin, BaseEstimator):
    """Keep the ``n_latents`` latents (columns of X) that best predict y.

    The third step of the HypotheSAEs pipeline: after the sparse autoencoder,
    only the few latents associated with the target are interpreted.

    Parameters
    ----------
    n_latents : int, default=20
        Number of latents to keep. When X has fewer columns, all are kept
        (with a warning).

    method : {"correlation", "lasso", "separation"} or callable, \
            default="correlation"
        How a latent's association with the target is scored:

        - ``"correlation"``: Pearson correlation with y (point-biserial for
          classes; :func:`~sklearn.feature_selection.r_regression`), ranked by
          its absolute value. Sparse X is never densified.
        - ``"lasso"``: the coefficients of a Lasso on standardized latents at
          the point of its regularization path (exact LARS knots,
          :func:`~sklearn.linear_model.lars_path`) where exactly ``n_latents``
          coefficients are non-zero; for classes, the Lasso of the 0/1
          indicator (a linear probability model), which keeps the path exact.
          If no path point has exactly ``n_latents`` non-zero coefficients
          (two latents entering together), the first point with more is used
          and its latents are ranked by ``|coef|``, then by ``|correlation|``.
          The standardized Gram matrix is formed (n_features**2 floats), never
          a centered copy of X.
          If the path stops earlier (``max_iter`` steps or collinear latents),
          the remaining places go to the best-correlated latents, with a
          :class:`~sklearn.exceptions.ConvergenceWarning`.
        - ``"separation"``: mean y over the rows where the latent fires
          strongly (activation at or above the ``separation_quantile`` quantile
          of its non-zero activations) minus mean y over the rows where it is
          zero. Latents firing on fewer than ``min_activation_rate`` of the
          rows, or never silent, score 0.
        - callable ``score_func(X, y) -> scores``: signed scores of shape
          (n_features,) (or a ``(scores, pvalues)`` tuple, as sklearn's
          univariate score functions return), with y the numeric target
          (the 0/1 indicator of the positive class for classes). NaN scores
          rank last.

    task : {"auto", "binary", "multiclass", "regression"}, default="auto"
        The package's one task vocabulary (see ``resolve_task``): under
        ``"auto"``, strings, booleans and two-valued y are classes, integers
        with at most 10 distinct values are classes and with more a regression
        (with a warning), other numbers a regression. Multiclass y is scored
        one-vs-rest; ``"multiclass"`` with two classes is a binary task.

    separation_quantile : float in [0, 1), default=0.9
        For ``method="separation"``: the quantile of a latent's non-zero
        activations above which it "fires strongly" (0.9 keeps the top 10%;
        0 keeps every row where it fires).

    min_activation_rate : float in [0, 1], default=0.001
        For ``method="separation"``: latents firing on a smaller fraction of
        rows are dead and score 0 (their means would be noise).

    max_iter : int, default=500
        For ``method="lasso"``: the most LARS steps computed per target.

    Attributes
    ----------
    scores_ : ndarray of shape (n_features,) or (n_classes, n_features)
        Signed association of each latent with the target (with each class,
        one-vs-rest, for multiclass y).

    signs_ : ndarray of the same shape as ``scores_``
        Sign of each association: the sign of ``scores_``, or of the Pearson
        correlation where the score is exactly 0 (e.g. Lasso coefficients
        outside the active set, dead latents).

    ranking_ : ndarray of shape (n_features,)
        Rank of each latent, 1 for the strongest. For multiclass y the classes
        take turns: each picks its best latent not yet ranked (round-robin),
        so every class is represented among the selected latents.

    selected_ : ndarray of shape (n_selected,)
        Indices of the kept latents, strongest first.

    task_ : str
        ``"regression"``, ``"binary"`` or ``"multiclass"``.

    classes_ : ndarray of shape (n_classes,)
        Class labels (classification only); the positive class of a binary
        task is ``classes_[1]``.

    alpha_ : float or ndarray of shape (n_classes,)
        For ``method="lasso"``: the penalty of the chosen path point (in the
        scale of :func:`~sklearn.linear_model.lars_path`).

    n_iter_ : int
        For ``method="lasso"``: LARS steps computed (the most over classes).

    n_features_in_ : int
        Number of latents seen during :meth:`fit`.

    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of the latents seen during :meth:`fit`, when X has string
        column names.

    See Also
    --------
    sklearn.feature_selection.SelectKBest : Univariate selection, unsigned.
    SparseAutoencoder : Produces the latent activations this selects from.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_hypothesaes import LatentSelector
    >>> rng = np.random.default_rng(0)
    >>> X = rng.exponential(size=(200, 10)) * (rng.random((200, 10)) < 0.3)
    >>> y = 2 * X[:, 3] - X[:, 7] + 0.1 * rng.normal(size=200)
    >>> selector = LatentSelector(n_latents=2).fit(X, y)
    >>> selector.selected_
    array([3, 7])
    >>> selector.signs_[selector.selected_]
    array([ 1., -1.])
    >>> selector.transform(X).shape
    (200, 2)
    """

    _parameter_constraints: dict = {
        "n_latents": [Interval(Integral, 1, None, closed="left")],
        "method": [StrOptions({"correlation", "lasso", "separation"}), callable],
        "task": [StrOptions({"auto", *TASKS})],
        "separation_quantile": [Interval(Real, 0, 1, closed="left")],
        "min_activation_rate": [Interval(Real, 0, 1, closed="both")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        n_latents=20,
        *,
        method="correlation",
        task="auto",
        separation_quantile=0.9,
        min_activation_rate=0.001,
        max_iter=500,
    ):
        self.n_latents = n_latents
        self.method = method
        self.task = task
        self.separation_quantile = separation_quantile
        self.min_activation_rate = min_activation_rate
        self.max_iter = max_iter

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Score every latent against y and keep the strongest.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Latent activations.
        y : array-like of shape (n_samples,)
            Target: continuous values or class labels.

        Returns
        -------
        self : LatentSelector
            The fitted selector.
        """
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse=("csr", "csc"),
            dtype=(np.float64, np.float32),
            # 2-D targets reach resolve_task, which calls them an unknown label type.
            multi_output=True,
        )
        targets = self._encode_target(y)
        n_features = X.shape[1]
        corr = _pearson(X, targets)
        if callable(self.method):
            scores = self._callable_scores(X, targets)
        elif self.method == "correlation":
            scores = corr
        elif self.method == "separation":
            scores = _separation(
                X, targets, self.separation_quantile, self.min_activation_rate
            )
        else:
            scores, alphas, n_iter = self._lasso_scores(X, targets)
            self.alpha_ = alphas[0] if len(alphas) == 1 else np.asarray(alphas)
            self.n_iter_ = max(n_iter)

        order = _round_robin([_order(s, c) for s, c in zip(scores, corr, strict=True)])
        n_keep = self.n_latents
        if n_keep > n_features:
            warn_user(
                f"The 'n_latents' parameter of LatentSelector is {n_keep} but X "
                f"has only {n_features} features; keeping all of them.",
                UserWarning,
            )
            n_keep = n_features
        signs = np.where(scores != 0, np.sign(scores), np.sign(corr))
        signs = np.nan_to_num(signs)
        single = len(scores) == 1
        self.scores_ = scores[0] if single else scores
        self.signs_ = signs[0] if single else signs
        self.ranking_ = np.empty(n_features, dtype=np.intp)
        self.ranking_[order] = np.arange(1, n_features + 1)
        self.selected_ = order[:n_keep]
        return self

    def _get_support_mask(self):
        check_is_fitted(self)
        mask = np.zeros(self.n_features_in_, dtype=bool)
        mask[self.selected_] = True
        return mask

    def _encode_target(self, y):
        """Targets as float columns (n_samples, n_targets); sets task_, classes_."""
        self.task_ = resolve_task(y, self.task, caller="LatentSelector")
        y = np.ravel(y)
        if self.task_ == "regression":
            return np.asarray(y, dtype=np.float64)[:, None]
        classes, codes = np.unique(y, return_inverse=True)
        self.classes_ = classes
        if self.task_ == "binary":
            return (codes == 1).astype(np.float64)[:, None]
        return (codes[:, None] == np.arange(len(classes))).astype(np.float64)

    def _callable_scores(self, X, targets):
        scores = []
        for target in targets.T:
            out = self.method(X, target)
            if isinstance(out, tuple):
                out = out[0]
            out = np.asarray(out, dtype=np.float64).ravel()
            if out.shape != (X.shape[1],):
                raise ValueError(
                    "The 'method' callable of LatentSelector must return one score "
                    f"per feature, shape ({X.shape[1]},); got shape {out.shape}."
                )
            scores.append(out)
        return np.asarray(scores)

    def _lasso_scores(self, X, targets):
        n_samples, n_features = X.shape
        mean, std = _mean_std(X)
        alive = np.flatnonzero(std > 0)
        scale = std[alive]
        # LARS on the standardized Gram: centering X would densify a sparse X
        # and copy a dense one, and the Gram makes each step O(n_features).
        Xa = X[:, alive]
        if Xa.dtype != np.float64:
            Xa = Xa.astype(np.float64)
        gram = Xa.T @ Xa
        gram = gram.toarray() if sparse.issparse(gram) else np.asarray(gram)
        gram -= n_samples * np.outer(mean[alive], mean[alive])
        gram /= np.outer(scale, scale)
        scores, alphas, n_iters = [], [], []
        for target in targets.T:
            yc = target - target.mean()
            coef = np.zeros(n_features)
            alpha, n_iter = 0.0, 0
            if alive.size:
                Xy = np.asarray(Xa.T @ yc, dtype=np.float64).ravel() / scale
                path = partial(lars_path_gram, Xy, gram, n_samples=n_samples)
                coef[alive], alpha, n_iter = self._lasso_path_point(path, alive.size)
            scores.append(coef)
            alphas.append(alpha)
            n_iters.append(n_iter)
        return np.asarray(scores), alphas, n_iters

    def _lasso_path_point(self, path, n_alive):
        """Coefficients at the first path point with >= n_latents non-zero."""
        n_target = min(self.n_latents, n_alive)
        # The path is only needed up to n_target active latents: grow the
        # number of LARS steps until it gets there rather than computing it all.
        steps = min(self.max_iter, 2 * n_target + 10)
        while True:
            alphas, _, coefs, n_iter = path(
                method="lasso", max_iter=steps, return_n_iter=True
            )
            nnz = np.count_nonzero(coefs, axis=0)
            reached = np.flatnonzero(nnz >= n_target)
            if reached.size or n_iter < steps or steps >= self.max_iter:
                break
            steps = min(self.max_iter, 2 * steps)
        exact = np.flatnonzero(nnz == n_target)
        if exact.size:
            point = exact[0]
        elif reached.size:
            point = reached[0]
        else:
            point = int(np.argmax(nnz))
            warn_user(
                f"The Lasso path of LatentSelector reached only {nnz[point]} of "
                f"{n_target} non-zero coefficients (max_iter={self.max_iter} "
                "steps, or collinear latents); the remaining latents are ranked "
                "by |correlation|.",
                ConvergenceWarning,
            )
        return coefs[:, point], float(alphas[point]), int(n_iter)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.input_tags.sparse = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


def _mean_std(X):
    """Column means and (population) standard deviations, in float64, exactly."""
    if sparse.issparse(X):
        mean, var = mean_variance_axis(X.astype(np.float64), axis=0)
        return mean, np.sqrt(var)
    # Dense: scikit-learn has no column variance that avoids a float64 copy of
    # X, so E[x^2] - E[x]^2 in one pass, and the exact two-pass variance only
    # for the columns where that formula cancels (rare for activations).
    n = X.shape[0]
    mean = X.mean(axis=0, dtype=np.float64)
    sq = np.einsum("ij,ij->j", X, X, dtype=np.float64)
    var = np.maximum(sq / n - mean**2, 0.0)
    shaky = np.flatnonzero((var <= _CANCELLATION * sq / n) & (sq > 0))
    if shaky.size:
        var[shaky] = X[:, shaky].var(axis=0, dtype=np.float64)
        var[shaky[var[shaky] <= 1e-24 * np.maximum(mean[shaky] ** 2, 1e-300)]] = 0
    return mean, np.sqrt(var)


def _pearson(X, targets):
    """Pearson r of every column of X with every target column: (n_targets, p).

    Undefined correlations (a constant column or target) are 0.
    """
    X = X.astype(np.float64, copy=False)  # once, not once per target
    with np.errstate(invalid="ignore"):  # r_regression's sqrt of a rounded 0
        r = np.array([r_regression(X, t) for t in targets.T])
    # r_regression's norms sqrt(sum x^2 - n mean^2) cancel when a column's
    # mean dwarfs its spread: a constant column of 1000.0 gets r = -inf (and
    # would rank first), mean 1e6 with spread 1e-3 gets 0.02 for r = 0.67.
    # Those columns are centered first, which makes the formula exact.
    mean, std = _mean_std(X)
    # Constant columns (dead latents, often most of a wide SAE) have r = 0;
    # centering them would densify a sparse X for nothing.
    r[:, std == 0] = 0.0
    shaky = np.flatnonzero((std**2 <= _CANCELLATION * (std**2 + mean**2)) & (std > 0))
    if shaky.size:
        cols = X[:, shaky]
        cols = (cols.toarray() if sparse.issparse(cols) else cols) - mean[shaky]
        with np.errstate(invalid="ignore"):
            r[:, shaky] = [r_regression(cols, t) for t in targets.T]
    return np.clip(r, -1.0, 1.0)


def _separation(X, targets, quantile, min_rate):
    """Mean target where each latent fires strongly minus where it is zero."""
    n, p = X.shape
    # Activations are mostly zeros: even a dense X is fastest column-compressed.
    X = sparse.csc_matrix(X, copy=True)
    X.eliminate_zeros()
    n_fire = np.diff(X.indptr)
    live = (n_fire >= max(1.0, min_rate * n)) & (n_fire < n)
    thresholds = np.full(p, np.inf)
    for j in np.flatnonzero(live):
        thresholds[j] = np.quantile(X.data[X.indptr[j] : X.indptr[j + 1]], quantile)
    strong = X.copy()
    strong.data = (X.data >= np.repeat(thresholds, n_fire)).astype(np.float64)
    fires = X.copy()
    fires.data = np.ones_like(X.data, dtype=np.float64)
    with_sum = np.asarray(strong.T @ targets)
    with_n = np.asarray(strong.sum(axis=0)).ravel()
    fire_sum = np.asarray(fires.T @ targets)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_with = with_sum / with_n[:, None]
        mean_without = (targets.sum(axis=0) - fire_sum) / (n - n_fire)[:, None]
    scores = np.where(live[:, None], mean_with - mean_without, 0.0)
    return np.nan_to_num(scores).T


def _order(scores, corr):
    """Feature indices by |score|, then |corr|, then index; NaN scores last."""
    primary = np.where(np.isnan(scores), -np.inf, np.abs(scores))
    return np.lexsort((np.arange(len(scores)), -np.abs(corr), -primary))


def _round_robin(orders):
    """Merge per-target orders: targets take turns picking their next latent."""
    if len(orders) == 1:
        return orders[0]
    n = len(orders[0])
    taken = np.zeros(n, dtype=bool)
    merged = []
    pointers = [0] * len(orders)
    while len(merged) < n:
        for k, order in enumerate(orders):
            while pointers[k] < n and taken[order[pointers[k]]]:
                pointers[k] += 1
            if pointers[k] < n:
                taken[order[pointers[k]]] = True
                merged.append(order[pointers[k]])
    return np.asarray(merged, dtype=np.intp)
