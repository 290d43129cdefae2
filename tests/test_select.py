"""LatentSelector: planted informative latents must be the ones selected."""

import numpy as np
import pytest
from scipy import sparse
from scipy.stats import pearsonr
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import lars_path
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_hypothesaes import LatentSelector

METHODS = ["correlation", "lasso", "separation"]
_NO_N_ITER = {
    "check_transformer_n_iter": (
        "max_iter (and so n_iter_) only applies to method='lasso'"
    )
}


def _expected_failed(estimator):
    return {} if estimator.method == "lasso" else _NO_N_ITER


@parametrize_with_checks(
    [LatentSelector(n_latents=2, method=m) for m in METHODS],
    expected_failed_checks=_expected_failed,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def _sae_like(n=1500, p=120, rate=0.08, seed=0):
    """Sparse non-negative activations, like a top-k SAE's."""
    rng = np.random.default_rng(seed)
    X = rng.exponential(size=(n, p)) * (rng.random((n, p)) < rate)
    return X, rng


PLANTED = [5, 17, 42]


def _regression_target(X, rng):
    return 2 * X[:, 5] - 1.5 * X[:, 17] + X[:, 42] + 0.5 * rng.normal(size=len(X))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kind", ["regression", "binary"])
def test_planted_latents_are_selected(method, kind):
    X, rng = _sae_like()
    y = _regression_target(X, rng)
    if kind == "binary":
        y = np.where(y > np.median(y), "pos", "neg")
    selector = LatentSelector(n_latents=3, method=method).fit(X, y)
    assert selector.task_ == kind
    assert sorted(selector.selected_) == PLANTED
    np.testing.assert_array_equal(selector.signs_[PLANTED], [1, -1, 1])
    assert selector.get_support().sum() == 3
    # SelectorMixin keeps the original column order.
    np.testing.assert_array_equal(selector.transform(X), X[:, PLANTED])
    # ranking_ is a permutation consistent with selected_.
    assert sorted(selector.ranking_) == list(range(1, X.shape[1] + 1))
    np.testing.assert_array_equal(selector.ranking_[selector.selected_], [1, 2, 3])


def test_correlation_scores_equal_pearsonr():
    X, rng = _sae_like(n=300, p=12)
    y = X[:, 3] + rng.normal(size=300)
    scores = LatentSelector(n_latents=2).fit(X, y).scores_
    expected = [pearsonr(X[:, j], y)[0] for j in range(X.shape[1])]
    np.testing.assert_allclose(scores, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("n_latents", [1, 4, 9])
def test_lasso_picks_exactly_n_at_the_path_point(n_latents):
    X, rng = _sae_like(n=400, p=40)
    y = X[:, :10] @ np.linspace(2, 0.2, 10) + 0.3 * rng.normal(size=400)
    selector = LatentSelector(n_latents=n_latents, method="lasso").fit(X, y)
    assert np.count_nonzero(selector.scores_) == n_latents
    # Same knot computed directly on standardized data.
    Xs = (X - X.mean(0)) / X.std(0)
    alphas, _, coefs = lars_path(Xs, y - y.mean(), method="lasso")
    point = np.flatnonzero(np.count_nonzero(coefs, axis=0) == n_latents)[0]
    np.testing.assert_allclose(selector.scores_, coefs[:, point], atol=1e-10)
    assert selector.alpha_ == pytest.approx(alphas[point])
    assert set(selector.selected_) == set(np.flatnonzero(coefs[:, point]))


def test_lasso_warns_when_the_path_stops_early():
    X, rng = _sae_like(n=200, p=30)
    y = X[:, 0] + rng.normal(size=200)
    with pytest.warns(ConvergenceWarning, match="reached only"):
        selector = LatentSelector(n_latents=10, method="lasso", max_iter=3).fit(X, y)
    assert len(selector.selected_) == 10
    assert np.count_nonzero(selector.scores_) == 3


@pytest.mark.parametrize("method", METHODS)
def test_sparse_equals_dense(method):
    X, rng = _sae_like(n=800, p=60)
    y = _regression_target(X, rng)
    dense = LatentSelector(n_latents=5, method=method).fit(X, y)
    for fmt in (sparse.csr_matrix, sparse.csc_matrix):
        sp = LatentSelector(n_latents=5, method=method).fit(fmt(X), y)
        np.testing.assert_allclose(sp.scores_, dense.scores_, rtol=1e-8, atol=1e-10)
        np.testing.assert_array_equal(sp.selected_, dense.selected_)
        assert sparse.issparse(sp.transform(fmt(X)))


def test_separation_known_answer_and_dead_latents():
    # Column 0 fires strongly on rows 0-9 (values 1..10); top 10% = row 9.
    n = 100
    X = np.zeros((n, 3))
    X[:10, 0] = np.arange(1, 11)
    X[0, 1] = 5.0  # fires once: dead at min_activation_rate=0.05
    X[:, 2] = 1.0  # never silent
    y = np.zeros(n)
    y[9] = 4.0
    y[50:] = 1.0
    selector = LatentSelector(
        n_latents=1, method="separation", min_activation_rate=0.05, task="regression"
    ).fit(X, y)
    # mean_with = y[9] = 4; mean_without = mean(y[10:]) = 50 / 90.
    np.testing.assert_allclose(selector.scores_, [4 - 50 / 90, 0.0, 0.0])
    # With quantile 0, every firing row counts.
    all_rows = LatentSelector(
        n_latents=1, method="separation", separation_quantile=0.0, task="regression"
    ).fit(X, y)
    assert all_rows.scores_[0] == pytest.approx(0.4 - 50 / 90)
    assert all_rows.scores_[1] == pytest.approx(0.0 - 54 / 99)


def test_multiclass_round_robin():
    X, rng = _sae_like(n=1500, p=50)
    labels = np.array(["a", "b", "c"])
    logits = np.column_stack([3 * X[:, 4], 3 * X[:, 9], 3 * X[:, 30]])
    y = labels[np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)]
    selector = LatentSelector(n_latents=3).fit(X, y)
    assert selector.task_ == "multiclass"
    np.testing.assert_array_equal(selector.classes_, labels)
    assert selector.scores_.shape == (3, 50)
    # Each class, in turn, takes its own best latent.
    np.testing.assert_array_equal(selector.selected_, [4, 9, 30])
    assert selector.signs_[0, 4] == 1 and selector.signs_[0, 9] == -1
    lasso = LatentSelector(n_latents=3, method="lasso").fit(X, y)
    np.testing.assert_array_equal(lasso.selected_, [4, 9, 30])
    assert lasso.alpha_.shape == (3,)


def test_callable_and_task_override():
    X, rng = _sae_like(n=300, p=10)
    y = rng.integers(1, 6, size=300).astype(float) + 2 * X[:, 6]
    y = np.round(y).astype(int)

    def neg_cov(X, y):
        return -((X - X.mean(0)) * (y - y.mean())[:, None]).mean(0)

    selector = LatentSelector(n_latents=1, method=neg_cov, task="regression")
    selector.fit(X, y)
    assert selector.task_ == "regression"
    assert selector.selected_[0] == 6 and selector.signs_[6] == -1
    with pytest.raises(ValueError, match="one score per feature"):
        LatentSelector(method=lambda X, y: [1.0]).fit(X, y > 3)
    with pytest.raises(ValueError, match="task='binary': LatentSelector got 8"):
        LatentSelector(task="binary").fit(X, y)


def test_more_latents_than_features_keeps_all_and_warns():
    X, rng = _sae_like(n=50, p=4)
    with pytest.warns(UserWarning, match="has only 4 features"):
        selector = clone(LatentSelector(n_latents=20)).fit(X, rng.normal(size=50))
    assert len(selector.selected_) == 4


def test_feature_names_out():
    pd = pytest.importorskip("pandas")
    X, rng = _sae_like(n=300, p=6)
    df = pd.DataFrame(X, columns=[f"latent_{j}" for j in range(6)])
    y = X[:, 2] + 0.1 * rng.normal(size=300)
    selector = LatentSelector(n_latents=1).fit(df, y)
    np.testing.assert_array_equal(selector.get_feature_names_out(), ["latent_2"])


def test_warnings_point_at_the_callers_line():
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = np.random.default_rng(0).normal(size=(30, 3))
    y = X[:, 0]
    pipe = make_pipeline(StandardScaler(), LatentSelector(n_latents=5))
    with pytest.warns(UserWarning, match="keeping all of them") as record:
        pipe.fit(X, y)
    assert record[0].filename == __file__


def test_task_vocabulary_is_the_packages():
    X, rng = _sae_like(n=300, p=10)
    ratings = rng.integers(1, 6, size=300)  # 5 values: classes
    assert LatentSelector(n_latents=2).fit(X, ratings).task_ == "multiclass"
    votes = rng.integers(0, 40, size=300)  # many integers: a count
    with pytest.warns(UserWarning, match="treated as a regression"):
        assert LatentSelector(n_latents=2).fit(X, votes).task_ == "regression"
    two = LatentSelector(n_latents=2, task="multiclass").fit(X, ratings > 3)
    assert two.task_ == "binary" and two.scores_.shape == (10,)
    with pytest.raises(ValueError, match="task='regression' needs a numeric y"):
        LatentSelector(task="regression").fit(X, np.where(ratings > 3, "a", "b"))


@pytest.mark.parametrize(
    "y",
    [
        np.zeros((300, 2), dtype=int),  # multilabel indicator
        np.arange(600.0).reshape(300, 2),  # continuous multioutput
    ],
)
def test_unknown_label_type(y):
    X, _ = _sae_like(n=300, p=10)
    y[::2, 0] = 1
    with pytest.raises(ValueError, match="Unknown label type: LatentSelector"):
        LatentSelector(n_latents=2).fit(X, y)


@pytest.mark.parametrize("fmt", [np.asarray, sparse.csr_matrix, sparse.csc_matrix])
def test_correlation_of_constant_and_offset_columns(fmt):
    # r_regression alone gives the constant column -inf (ranked first) and the
    # offset column 0.02 instead of 0.67: sum(x^2) - n mean^2 cancels.
    X, rng = _sae_like(n=800, p=6)
    y = X[:, 0] + rng.normal(size=800)
    X[:, 1] = 1000.0
    X[:, 2] = 1e6 + 1e-3 * y + 1e-3 * rng.normal(size=800)
    selector = LatentSelector(n_latents=2).fit(fmt(X), y)
    expected = [pearsonr(X[:, j], y)[0] for j in (0, 2, 3)]
    np.testing.assert_allclose(selector.scores_[[0, 2, 3]], expected, atol=1e-9)
    assert selector.scores_[1] == 0 and selector.ranking_[1] == 6
    np.testing.assert_array_equal(selector.selected_, [2, 0])


def test_sparse_float32_equals_dense():
    # Squares were once formed in float32 for sparse input (errors of 3e-8).
    X, rng = _sae_like(n=800, p=60)
    y = _regression_target(X, rng)
    X32 = X.astype(np.float32)
    dense = LatentSelector(n_latents=5).fit(X32, y).scores_
    for fmt in (sparse.csr_matrix, sparse.csc_matrix):
        sp = LatentSelector(n_latents=5).fit(fmt(X32), y).scores_
        np.testing.assert_allclose(sp, dense, rtol=0, atol=1e-12)
