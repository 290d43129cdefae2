"""Pairwise tasks: two texts per row, a target saying which wins.

Known answers: PairwiseDifference is inner(a) - inner(b) exactly; the
statistics on differences of annotations match statsmodels' logistic
likelihood-ratio test and scipy's Welch test; and a planted word that makes
its text win 90% of the time is found, named and significant, the others not.
"""

import pickle

import numpy as np
import pandas as pd
import pytest
import sklearn
from scipy import sparse, stats
from sklearn.base import clone
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.utils import check_array
from sklearn.utils.estimator_checks import parametrize_with_checks
from sklearn.utils.validation import check_is_fitted, validate_data
from text_harness import rows_to_texts

from sklearn_hypothesaes import (
    HypothesisGenerator,
    LatentSelector,
    PairwiseDifference,
    PhraseAnnotator,
    SparseAutoencoder,
    evaluate_hypotheses,
    pipeline_hypotheses,
    run_method,
)
from sklearn_hypothesaes.hypotheses._pairwise import check_text_pairs

TOPICS = [
    "the weather",
    "a football match",
    "the stock market",
    "a new phone",
    "city traffic",
    "a cooking show",
]
VERBS = ["was discussed", "made news", "surprised people", "got attention"]


def planted_pairs(n, seed):
    """Pairs of news lines; half the lines mention a zebra. When exactly one
    text of a pair does, it wins 90% of the time; otherwise a coin flip."""
    rng = np.random.default_rng(seed)

    def line(i, zebra):
        text = f"{rng.choice(TOPICS).capitalize()} {rng.choice(VERBS)}"
        return text + (" with a zebra" if zebra else "") + f" on day {i}."

    pairs, y = [], []
    for i in range(n):
        za, zb = rng.random() < 0.5, rng.random() < 0.5
        pairs.append((line(2 * i, za), line(2 * i + 1, zb)))
        p = 0.9 if za and not zb else 0.1 if zb and not za else 0.5
        y.append(int(rng.random() < p))
    return np.array(pairs, dtype=object), np.array(y)


def fast_embedder():
    return make_pipeline(TfidfVectorizer(), TruncatedSVD(12, random_state=0))


def fast_features(n_latents=16):
    return Pipeline(
        [
            ("embed", fast_embedder()),
            ("sae", SparseAutoencoder(n_latents, 2, max_epochs=20, random_state=0)),
        ]
    )


@pytest.fixture(autouse=True)
def _routing():
    with sklearn.config_context(enable_metadata_routing=True):
        yield


@pytest.fixture(scope="module")
def planted():
    return planted_pairs(600, 0), planted_pairs(400, 1)


# ------------------------------------------------------------ PairwiseDifference
PAIRS = [("a red car", "a car"), ("a car", "a red red car"), ("blue sky", "a car")]


@pytest.mark.parametrize(
    "as_input",
    [
        lambda p: p,
        lambda p: [list(row) for row in p],
        lambda p: np.array(p, dtype=object),
        lambda p: pd.DataFrame(p, columns=["headline_a", "headline_b"]),
    ],
    ids=["tuples", "lists", "array", "frame"],
)
def test_pairwise_difference_is_inner_a_minus_inner_b(as_input):
    diff = PairwiseDifference(CountVectorizer()).fit(as_input(PAIRS))
    inner = CountVectorizer().fit([t for pair in PAIRS for t in pair])
    expected = (
        inner.transform([a for a, _ in PAIRS]) - inner.transform([b for _, b in PAIRS])
    ).toarray()
    got = diff.transform(as_input(PAIRS))
    assert sparse.issparse(got)
    np.testing.assert_array_equal(got.toarray(), expected)
    np.testing.assert_array_equal(expected[1], [0, 0, -2, 0])  # blue car red sky
    assert list(diff.get_feature_names_out()) == ["blue", "car", "red", "sky"]
    assert diff.n_features_in_ == 2


def test_pairwise_difference_dense_inner_and_clone_pickle(planted):
    (X, _), (Xh, _) = planted
    diff = PairwiseDifference(fast_features())
    copy = clone(diff)
    assert copy.get_params()["transformer__sae__n_latents"] == 16
    diff.fit(X)
    inner = diff.transformer_
    expected = inner.transform(list(Xh[:, 0])) - inner.transform(list(Xh[:, 1]))
    got = diff.transform(Xh)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    again = pickle.loads(pickle.dumps(diff))
    np.testing.assert_array_equal(again.transform(Xh), got)
    # Fitted on the distinct texts of both columns, once each.
    assert inner[0][0].vocabulary_ == (
        TfidfVectorizer().fit(list(dict.fromkeys([*X[:, 0], *X[:, 1]]))).vocabulary_
    )


@pytest.mark.parametrize(
    "texts, error, message",
    [
        (None, ValueError, r"'texts' parameter of f is required .*\(n_pairs, 2\)"),
        ("a b", TypeError, "must be pairs of texts.*got a single str"),
        (np.array([["a", "b", "c"]]), ValueError, r"shape \(n_pairs, 2\).*\(1, 3\)"),
        ([("a", "b"), ("c",)], ValueError, r"got row 1 = \('c',\)"),
        (pd.DataFrame({"a": ["x"]}), ValueError, "two columns of texts.*got 1"),
        ([("a", "b"), ("c", None)], ValueError, r"'texts\[:, 1\]'.*missing.*\[1\]"),
    ],
)
def test_check_text_pairs_messages(texts, error, message):
    with pytest.raises(error, match=message):
        check_text_pairs(texts, caller="f")


# --------------------------------------------------------------- statistics
def test_evaluate_pairwise_binary_is_the_logistic_lr_test():
    import statsmodels.api as sm

    rng = np.random.default_rng(3)
    d = rng.choice([-1.0, 0.0, 1.0], size=(300, 2), p=[0.3, 0.4, 0.3])
    y = (rng.random(300) < 1 / (1 + np.exp(-0.8 * d[:, 0]))).astype(int)
    result = evaluate_hypotheses(d, y, hypotheses=["h0", "h1"], pairwise=True)
    table = result.table
    assert list(table["separation_test"]) == ["lr", "lr"]
    for j in range(2):
        logit = sm.Logit(y, sm.add_constant(d[:, j])).fit(disp=0)
        assert table.loc[j, "separation_pvalue"] == pytest.approx(
            logit.llr_pvalue, rel=1e-6
        )
        assert table.loc[j, "prevalence"] == pytest.approx(np.mean(d[:, j] != 0))
        assert table.loc[j, "mean_with"] == pytest.approx(y[d[:, j] == 1].mean())
        assert table.loc[j, "mean_without"] == pytest.approx(y[d[:, j] == -1].mean())
    joint = sm.Logit(y, sm.add_constant(d)).fit(disp=0, cov_type="HC0")
    np.testing.assert_allclose(table["coef"], joint.params[1:], rtol=1e-6)
    assert table["significant"].tolist() == [True, False]


def test_evaluate_pairwise_regression_is_welch_between_directions():
    rng = np.random.default_rng(4)
    d = rng.choice([-1.0, 0.0, 1.0], size=(200, 1))
    y = 0.5 * d[:, 0] + rng.normal(size=200)
    row = evaluate_hypotheses(d, y, pairwise=True).table.iloc[0]
    welch = stats.ttest_ind(y[d[:, 0] == 1], y[d[:, 0] == -1], equal_var=False)
    assert row["separation_test"] == "welch"
    assert row["separation_pvalue"] == pytest.approx(welch.pvalue, rel=1e-9)
    assert row["separation"] == pytest.approx(
        y[d[:, 0] == 1].mean() - y[d[:, 0] == -1].mean()
    )


def test_evaluate_pairwise_separated_and_rare_and_refusals():
    y = np.array([1, 0] * 20)
    d = np.zeros((40, 2))
    d[:10, 0] = np.where(y[:10] == 1, 1.0, -1.0)  # separates y where it differs
    d[0, 1] = 1.0  # differs in one pair only
    table = evaluate_hypotheses(d, y, pairwise=True).table
    assert table.loc[0, "separation_pvalue"] < 1e-3  # LR test at separation
    assert table.loc[0, "model"] == "firth"
    # A column of only 0/1 differences: the note speaks of pairs, not texts.
    only_first = np.where(d[:, :1] > 0, 1.0, 0.0)
    note = evaluate_hypotheses(only_first, y, pairwise=True).table.loc[0, "note"]
    assert "every pair where only the first text has the concept has y=1" in note
    assert np.isnan(table.loc[1, "pvalue"])
    assert "differ in 1 of 40 pairs" in table.loc[1, "note"]
    with pytest.raises(ValueError, match=r"in \[-1, 1\]; got values from 0 to 2"):
        evaluate_hypotheses(2 * np.abs(d), y, pairwise=True)
    with pytest.raises(ValueError, match="pairwise=True needs y .* got 3 classes"):
        evaluate_hypotheses(d, np.arange(40) % 3, pairwise=True)


# ------------------------------------------------------------------ generator
def test_generator_pairwise_annotations_are_differences():
    texts = np.array(
        [["brilliant film", "dull plot"], ["dull plot", "brilliant film"]] * 15
        + [["a brilliant film", "the brilliant film"]] * 10,
        dtype=object,
    )
    X = np.array([[1.0, -1.0], [-1.0, 1.0]] * 15 + [[0.0, 0.0]] * 10)
    y = np.array([1, 0] * 15 + [1, 0] * 5)
    # The two concepts always swap places here, so their differences are
    # opposite: the redundancy filter would keep one.
    gen = HypothesisGenerator(pairwise=True, max_redundancy=None, random_state=0)
    gen.fit(X, y, texts=texts)
    hypotheses = list(gen.hypotheses_["hypothesis"])
    assert len(hypotheses) == 2
    assert "brilliant film" in hypotheses[0] and "dull plot" in hypotheses[1]
    single = PhraseAnnotator().annotate(
        [t for row in texts for t in row], list(gen.hypotheses_["hypothesis"])
    )
    values = np.asarray(single.values).reshape(len(texts), 2, -1)
    D = gen.transform(texts=texts)
    np.testing.assert_array_equal(D, values[:, 0] - values[:, 1])
    np.testing.assert_array_equal(D[:2], [[1, -1], [-1, 1]])
    np.testing.assert_array_equal(D[-1], [0, 0])  # both have "brilliant film"
    # Perfect but for the 10 tied pairs (5 wins, 5 losses): the ROC AUC is
    # (15 * 20 + 5 * 15 + 0.5 * 5 * 5) / (20 * 20).
    assert gen.score(None, y, texts=texts) == 0.96875
    pairs = gen.examples(texts, D, n=2, random_state=0)
    assert all("brilliant film" in t for t in pairs[0]["present"])
    assert all("brilliant film" not in t for t in pairs[0]["absent"])
    with pytest.raises(ValueError, match="pairwise=True needs y .* got 3 classes"):
        HypothesisGenerator(pairwise=True).fit(X, np.arange(40) % 3, texts=texts)
    with pytest.raises(
        ValueError, match=r"'texts' .* one pair of texts per row of X \(40\); got 3\."
    ):
        gen.transform(texts=texts[:3], X=X)


def test_planted_word_wins_pairs(planted):
    (X, y), (Xh, yh) = planted
    pipe = Pipeline(
        [
            ("features", PairwiseDifference(fast_features())),
            ("select", LatentSelector(n_latents=4)),
            ("hypotheses", HypothesisGenerator(pairwise=True, random_state=0)),
        ]
    )
    pipe.fit(X, y, texts=X)
    table = pipeline_hypotheses(pipe)
    selected = pipe.named_steps["select"].get_support(indices=True)
    np.testing.assert_array_equal(table["latent"], selected[table["column"]])
    generator = pipe[-1]
    result = generator.evaluate(Xh, yh)
    stats_ = result.table
    zebra = stats_["hypothesis"].str.contains("zebra")
    assert zebra.sum() == 1
    row = stats_[zebra].iloc[0]
    assert row["hypothesis"] == 'mentions "zebra"'
    # Exactly one text of a pair has a zebra in about half the pairs; that
    # text wins 90% of the time.
    assert row["prevalence"] == pytest.approx(0.5, abs=0.07)
    assert row["mean_with"] > 0.83 and row["mean_without"] < 0.17
    assert row["separation_test"] == "lr" and row["separation_pvalue"] < 1e-20
    assert row["coef"] > 1.5 and row["pvalue_corrected"] < 1e-10
    assert row["significant"]
    assert not stats_.loc[~zebra, "significant"].any()
    assert result.metrics["n_significant"] == 1
    assert generator.score(None, yh, texts=Xh) > 0.78
    again = pickle.loads(pickle.dumps(pipe))
    np.testing.assert_array_equal(
        again.transform(Xh, texts=Xh), pipe.transform(Xh, texts=Xh)
    )


def test_planted_margin_regression():
    """A regression target (by how much the first text wins): +1 per zebra."""
    (X, _), (Xh, _) = planted_pairs(400, 2), planted_pairs(300, 3)

    def margin(P, seed):
        rng = np.random.default_rng(seed)
        has = np.vectorize(lambda t: "zebra" in t)(P).astype(float)
        return has[:, 0] - has[:, 1] + rng.normal(0, 0.5, len(P))

    features = np.vectorize(lambda t: "zebra" in t)(X).astype(float)
    D = np.column_stack([features[:, 0] - features[:, 1], np.zeros(len(X))])
    D[: len(X) // 2, 1] = np.sign(np.arange(len(X) // 2) % 3 - 1)  # noise column
    gen = HypothesisGenerator(pairwise=True, random_state=0)
    with pytest.warns(UserWarning, match=r"1 latent\(s\) got no hypothesis"):
        gen.fit(D, margin(X, 0), texts=X)  # the noise column has no words
    assert gen.task_ == "regression"
    result = gen.evaluate(Xh, margin(Xh, 1))
    row = result.table.set_index("hypothesis").loc['mentions "zebra"']
    assert row["separation_test"] == "welch"
    assert row["separation"] == pytest.approx(2.0, abs=0.2)
    assert row["coef"] == pytest.approx(1.0, abs=0.1) and row["significant"]


def test_run_method_on_pairs(planted, tmp_path):
    (X, y), (Xh, yh) = planted
    result = run_method(
        X,
        y,
        holdout_texts=Xh,
        holdout_y=yh,
        embedder=fast_embedder(),
        sae=SparseAutoencoder(16, 2, max_epochs=20, random_state=0),
        selector=LatentSelector(n_latents=4),
        memory=tmp_path / "memory",
    )
    assert [name for name, _ in result.pipeline.steps] == [
        "features",
        "select",
        "hypotheses",
    ]
    assert result.sae is result.pipeline[0].transformer_.named_steps["sae"]
    assert list(tmp_path.joinpath("memory").glob("SparseAutoencoder-*.npz"))
    table = result.hypotheses
    best = table.loc[table["coef"].idxmax()]
    assert best["hypothesis"] == 'mentions "zebra"' and best["significant"]
    assert table["significant"].sum() == 1
    assert result.settings["pairwise"] is True
    assert result.settings["n_train"] == 600 and result.settings["n_holdout"] == 400
    assert result.metrics["score"] > 0.78
    assert result.metrics["embedding_score"] > 0.78  # probe on differences
    assert {"embed", "sae", "features", "select", "hypotheses"} <= set(result.timings)
    # Examples are aligned: the text with the concept, then its partner.
    i = table.index[table["hypothesis"] == 'mentions "zebra"'][0]
    pairs = {tuple(p) for p in Xh}
    for a, b in zip(*result.examples[i].values(), strict=True):
        assert "zebra" in a and "zebra" not in b
        assert (a, b) in pairs or (b, a) in pairs
    plain = HypothesisGenerator()
    with pytest.raises(ValueError, match=r"generator with pairwise=True; got .*"):
        run_method(X, y, holdout_texts=Xh, holdout_y=yh, generator=plain)
    # Stability across seeds works on pairs too (its numbers are tested on a
    # planted dictionary in test_stability.py).
    stable = run_method(
        X,
        y,
        holdout_texts=Xh,
        holdout_y=yh,
        embedder=fast_embedder(),
        sae=SparseAutoencoder(16, 2, max_epochs=20, random_state=0),
        selector=LatentSelector(n_latents=4),
        memory=tmp_path / "memory",
        n_seeds=3,
    )
    assert stable.hypotheses["stability"].isin([0.0, 0.5, 1.0]).all()
    assert stable.settings["stability"]["seeds"] == [1, 2]
    assert len(list(tmp_path.joinpath("memory").glob("SparseAutoencoder-*.npz"))) == 3
    pd.testing.assert_frame_equal(stable.hypotheses.drop(columns="stability"), table)


# scikit-learn's checks feed numbers: the harness makes each row a pair of texts
# (the row's words, and the reversed row's words) and keeps the numeric
# contract (n_features_in_, NaN, dtypes) that the checks test.
class NumericPairs(PairwiseDifference):
    def fit(self, X, y=None):
        check_array(X, accept_sparse=False)
        super().fit(_number_pairs(X), y)
        validate_data(self, X, reset=True)
        return self

    def transform(self, X):
        check_is_fitted(self)
        return super().transform(_number_pairs(validate_data(self, X, reset=False)))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = False
        return tags


def _number_pairs(X):
    X = check_array(X, accept_sparse=False)
    return np.column_stack([rows_to_texts(X), rows_to_texts(X[:, ::-1])])


@parametrize_with_checks(
    [NumericPairs(TfidfVectorizer(token_pattern=r"\S+"))],
)
def test_pairwise_difference_passes_sklearn_checks(estimator, check):
    check(estimator)
