"""HypothesisGenerator: planted concepts offline and against the loopback LLM."""

import pickle
import re

import joblib
import numpy as np
import pandas as pd
import pytest
from fake_openai import FakeOpenAIServer, concept_judge, last_user_message
from scipy import sparse
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.utils.estimator_checks import (
    check_do_not_raise_errors_in_init_or_set_params,
    check_estimator_cloneable,
    check_get_params_invariance,
    check_mixin_order,
    check_set_params,
)

from sklearn_hypothesaes import (
    HypothesisGenerator,
    LLMDescriber,
    TermDescriber,
    evaluate_hypotheses,
)
from sklearn_hypothesaes.hypotheses._stats import COLUMNS
from sklearn_hypothesaes.hypotheses._terms import match_terms


def make_corpus(n=120, seed=0):
    """Latent 0 fires on dog texts, latent 1 on rain texts, latent 2 never.

    y is 1 for most dog texts and 0 for most rain texts."""
    rng = np.random.default_rng(seed)
    fillers = ["the bus was late", "a quiet evening", "we ate lunch", "cold tea"]
    texts, acts, y = [], np.zeros((n, 3)), np.zeros(n, dtype=int)
    for i in range(n):
        kind = i % 3
        filler = fillers[rng.integers(len(fillers))]
        if kind == 0:
            texts.append(f"my dog sat by the door and {filler} {i}")
            acts[i, 0] = 1.0 + rng.random()
            y[i] = rng.random() < 0.9
        elif kind == 1:
            texts.append(f"rain again on the coast, {filler} {i}")
            acts[i, 1] = 0.5 + rng.random()
            y[i] = rng.random() < 0.1
        else:
            texts.append(f"{filler} today {i}")
            y[i] = rng.random() < 0.5
    return texts, acts, y


def section(prompt, title):
    block = prompt.split(title, 1)[1].split("\n\n", 1)[0]
    return re.findall(r"^\d+\. (.+)$", block, re.M)


def planted_llm(body):
    """Names dogs or rain from the shown firing texts; annotates by keyword."""
    prompt = last_user_message(body)
    if "Texts where it fires:" not in prompt:
        return concept_judge(body)
    fires = section(prompt, "Texts where it fires:")
    if sum("rain" in t for t in fires) > len(fires) / 2:
        return "Mentions rain."
    return "Mentions a dog."


def test_offline_planted_terms_fidelity_and_association():
    texts, acts, y = make_corpus()
    with pytest.warns(UserWarning, match=r"1 latent\(s\) got no hypothesis.*\[2\]"):
        gen = HypothesisGenerator(random_state=0).fit(acts, y, texts=texts)
    table = gen.hypotheses_
    assert list(table["column"]) == [0, 1]
    assert list(table["feature"]) == ["x0", "x1"]
    assert "dog" in " ".join(table["terms"][0])
    assert "rain" in " ".join(table["terms"][1])
    # Fidelity by hand: the phrase match against "fires" on the fit texts.
    matched = match_terms(texts, list(table["terms"]))
    for col, j in enumerate([0, 1]):
        pred, true = matched[:, col] > 0.5, acts[:, j] > 0
        tp = np.sum(pred & true)
        precision, recall = tp / pred.sum(), tp / true.sum()
        assert table["precision"][col] == pytest.approx(precision)
        assert table["recall"][col] == pytest.approx(recall)
        assert table["fidelity"][col] == pytest.approx(
            2 * precision * recall / (precision + recall)
        )
        assert table["association"][col] == pytest.approx(
            np.corrcoef(acts[:, j], y)[0, 1]
        )
    np.testing.assert_array_equal(gen.transform(texts=texts), matched)
    # The model is a logistic regression on those annotations.
    ref = LogisticRegression().fit(matched, y)
    np.testing.assert_allclose(
        gen.predict_proba(acts, texts=texts), ref.predict_proba(matched), rtol=1e-6
    )
    assert gen.score(acts, y, texts=texts) == pytest.approx(
        roc_auc_score(y, ref.predict_proba(matched)[:, 1])
    )
    assert gen.usage_["calls"] == 0
    assert list(gen.get_feature_names_out()) == list(table["hypothesis"])


def test_sparse_input_and_feature_names_are_never_parsed_for_latent_ids():
    texts, acts, y = make_corpus()
    frame = pd.DataFrame(
        acts[:, :2], columns=["sparseautoencoder17", "sparseautoencoder3"]
    )
    gen = HypothesisGenerator().fit(frame, y, texts=texts)
    # Which SAE latent a column is, only the selector knows (pipeline_hypotheses).
    assert "latent" not in gen.hypotheses_
    assert list(gen.hypotheses_["column"]) == [0, 1]
    assert list(gen.hypotheses_["feature"]) == [
        "sparseautoencoder17",
        "sparseautoencoder3",
    ]
    dense = HypothesisGenerator().fit(acts[:, :2], y, texts=texts)
    on_sparse = HypothesisGenerator().fit(
        sparse.csr_matrix(acts[:, :2]), y, texts=texts
    )
    pd.testing.assert_frame_equal(dense.hypotheses_, on_sparse.hypotheses_)


def test_evaluate_equals_evaluate_hypotheses():
    texts, acts, y = make_corpus(150, seed=1)
    gen = HypothesisGenerator(correction="holm").fit(acts[:, :2], y, texts=texts)
    new_texts, _, new_y = make_corpus(90, seed=2)
    annotations = gen.transform(texts=new_texts)
    got = gen.evaluate(new_texts, new_y)
    ref = evaluate_hypotheses(
        annotations,
        new_y,
        hypotheses=list(gen.hypotheses_["hypothesis"]),
        correction="holm",
    )
    pd.testing.assert_frame_equal(got.table, ref.table)
    assert got.metrics["auc"] == pytest.approx(ref.metrics["auc"])
    again = gen.evaluate(new_texts, new_y, annotations=annotations)
    pd.testing.assert_frame_equal(again.table, ref.table)
    with pytest.raises(ValueError, match="'annotations'.*2 columns"):
        gen.evaluate(new_texts, new_y, annotations=annotations[:, :1])


def test_regression_score_is_r2_of_least_squares():
    texts, acts, _ = make_corpus()
    rng = np.random.default_rng(3)
    y = 2.0 * (acts[:, 0] > 0) - 1.0 * (acts[:, 1] > 0) + rng.normal(size=len(texts))
    gen = HypothesisGenerator(task="regression").fit(acts[:, :2], y, texts=texts)
    assert gen.task_ == "regression"
    A = gen.transform(texts=texts)
    ref = LinearRegression().fit(A, y)
    assert gen.score(None, y, texts=texts) == pytest.approx(r2_score(y, ref.predict(A)))
    with pytest.raises(AttributeError, match="has no attribute 'predict_proba'"):
        gen.predict_proba(texts=texts)
    assert not hasattr(gen, "predict_proba")
    assert not hasattr(HypothesisGenerator(task="regression"), "predict_proba")
    assert hasattr(HypothesisGenerator(), "predict_proba")
    assert is_regressor(gen) and not is_classifier(gen)


def test_multiclass_class_column_and_one_table_per_class():
    texts, acts, _ = make_corpus()
    y = np.array(["dog", "rain", "other"] * 40)
    gen = HypothesisGenerator().fit(acts[:, :2], y, texts=texts)
    assert gen.task_ == "multiclass"
    assert list(gen.hypotheses_["class"]) == ["dog", "rain"]
    result = gen.evaluate(texts, y)
    assert set(result) == {"dog", "other", "rain"}
    # A class absent from the evaluated texts keeps its table, with a note.
    some = y != "other"
    partial = gen.evaluate(list(np.asarray(texts)[some]), y[some])
    assert set(partial) == {"dog", "other", "rain"}
    assert partial["other"].table["pvalue"].isna().all()
    assert (partial["other"].table["note"].str.contains("'other' is absent")).all()
    # Neither dog nor rain is "other": the annotations determine the class.
    assert gen.score(None, y, texts=texts) == 1.0
    # The score is the mean one-vs-rest ROC AUC over the classes present.
    proba = gen.predict_proba(texts=texts)
    expected = np.mean(
        [roc_auc_score(y == c, proba[:, i]) for i, c in enumerate(gen.classes_)]
    )
    some = np.isin(y, ["dog", "rain"])  # "other" absent: left out of the mean
    sub = [
        roc_auc_score(y[some] == c, proba[some, i])
        for i, c in [(0, "dog"), (2, "rain")]
    ]
    assert gen.score(
        None, y[some], texts=list(np.asarray(texts)[some])
    ) == pytest.approx(np.mean(sub))
    assert gen.score(None, y, texts=texts) == pytest.approx(expected)


def test_llm_mode_planted_concepts(make_client):
    texts, acts, y = make_corpus()
    with FakeOpenAIServer(chat=planted_llm) as srv:
        client = make_client(srv, n_concurrent=4)
        gen = HypothesisGenerator(
            LLMDescriber(client, n_fidelity=20, concepts_per_request=10),
            max_fit_annotations=50,
            random_state=0,
        )
        with pytest.warns(UserWarning, match=r"1 latent\(s\).*\[2\]"):
            gen.fit(acts, y, texts=texts)
        n_fit = len(srv.requests)
        table = gen.hypotheses_
        assert list(table["hypothesis"]) == ["mentions a dog", "mentions rain"]
        assert list(table["fidelity"]) == [1.0, 1.0]
        assert table["terms"].isna().all()
        # 2 interpretation prompts, 20 held-out texts per latent (one multi
        # prompt each), then the 50 sampled fit texts for the model.
        assert n_fit == 2 + 40 + 50
        assert gen.usage_["calls"] + gen.usage_["cache_hits"] == n_fit
        assert gen.usage_["prompt_tokens"] == srv.usage["prompt_tokens"]

        fitted_usage = dict(gen.usage_)
        found = gen.annotate(texts[:30])
        A = gen.transform(texts=texts[:30])
        expected = [[float("dog" in t), float("rain" in t)] for t in texts[:30]]
        np.testing.assert_array_equal(A, expected)
        np.testing.assert_array_equal(found.values, expected)
        # Usage comes with the call; transform leaves the fitted usage alone.
        assert found.usage.calls + found.usage.cache_hits == 30
        assert gen.usage_ == fitted_usage
        examples = gen.examples(texts[:30], A, n=2, random_state=0)
        assert len(examples) == 2
        assert all("dog" in t for t in examples[0]["present"])
        assert all("dog" not in t for t in examples[0]["absent"])

        # Same random_state: identical prompts, so the same hypotheses (cached).
        again = clone(gen)
        with pytest.warns(UserWarning):
            again.fit(acts, y, texts=texts)
        pd.testing.assert_frame_equal(again.hypotheses_, table)
        assert again.usage_["cache_hits"] == n_fit


def test_pickle_keeps_transform():
    texts, acts, y = make_corpus()
    gen = HypothesisGenerator().fit(acts[:, :2], y, texts=texts)
    gen.transform(texts=texts[:3])
    restored = pickle.loads(pickle.dumps(gen))
    np.testing.assert_array_equal(
        restored.transform(texts=texts), gen.transform(texts=texts)
    )


def test_errors_name_the_parameter():
    texts, acts, y = make_corpus(30)
    with pytest.raises(
        ValueError, match="'texts' parameter of HypothesisGenerator.fit is required"
    ):
        HypothesisGenerator().fit(acts, y)
    with pytest.raises(ValueError, match=r"one text per row of X \(30\); got 29"):
        HypothesisGenerator().fit(acts, y, texts=texts[:29])
    with pytest.raises(TypeError, match="single str"):
        HypothesisGenerator().fit(acts, y, texts="one text")
    with pytest.raises(ValueError, match="'n_terms' parameter"):
        HypothesisGenerator(TermDescriber(n_terms=0)).fit(acts, y, texts=texts)
    # A missing text never becomes the hypothesis 'mentions "nan"'.
    with_nan = list(texts)
    with_nan[4] = float("nan")
    with pytest.raises(
        ValueError, match=r"missing values \(None or NaN\) at positions \[4\]"
    ):
        HypothesisGenerator().fit(acts, y, texts=with_nan)
    with pytest.raises(ValueError, match=r"missing values .* at positions \[0\]"):
        HypothesisGenerator().fit(acts, y, texts=[None] + list(texts[1:]))
    with pytest.raises(TypeError, match=r"only str; positions \[2\] hold \['int'\]"):
        HypothesisGenerator().fit(acts, y, texts=texts[:2] + [3] + texts[3:])
    with pytest.raises(ValueError, match="Unknown label type"):
        HypothesisGenerator(task="binary").fit(acts, y + 0.5 * acts[:, 0], texts=texts)
    with pytest.raises(NotFittedError):
        HypothesisGenerator().predict(texts=texts)
    with pytest.raises(NotFittedError):
        HypothesisGenerator().score(None, y, texts=texts)


@pytest.mark.parametrize(
    "check",
    [
        check_estimator_cloneable,
        check_get_params_invariance,
        check_set_params,
        check_do_not_raise_errors_in_init_or_set_params,
        check_mixin_order,
    ],
)
def test_sklearn_api_checks(check):
    check("HypothesisGenerator", HypothesisGenerator())


def test_task_tags():
    assert is_classifier(HypothesisGenerator(task="binary"))
    assert is_classifier(HypothesisGenerator(task="multiclass"))
    assert not is_classifier(HypothesisGenerator())
    assert is_regressor(HypothesisGenerator(task="regression"))


def _no_term_corpus(n=40, seed=0):
    """Texts that differ only by a number: no term can describe any latent."""
    rng = np.random.default_rng(seed)
    texts = [f"the film number {i}" for i in range(n)]
    acts = np.zeros((n, 2))
    acts[::3, 0], acts[1::4, 1] = 1.0, 2.0
    return texts, acts, rng


@pytest.mark.parametrize("task", ["binary", "regression", "multiclass"])
def test_no_hypothesis_found_degrades_to_a_constant_model(task):
    texts, acts, rng = _no_term_corpus()
    y = {
        "binary": np.array([0, 1] * 20),
        "regression": rng.normal(size=40),
        "multiclass": np.arange(40) % 3,
    }[task]
    with pytest.warns(UserWarning, match="found no hypothesis.*min_score") as rec:
        gen = HypothesisGenerator(random_state=0).fit(acts, y, texts=texts)
    # The warning points at this file, not at scikit-learn's fit wrapper.
    assert [w.filename for w in rec] == [__file__]
    table = gen.hypotheses_
    assert len(table) == 0
    expected = ["column", "feature", "association", "hypothesis", "fidelity"]
    expected += ["precision", "recall", "terms"]
    if task == "multiclass":
        expected.insert(2, "class")
    assert list(table.columns) == expected
    assert gen.transform(texts=texts).shape == (40, 0)
    assert gen.get_feature_names_out().shape == (0,)
    result = gen.evaluate(texts, y)
    for r in result.values() if task == "multiclass" else [result]:
        assert len(r.table) == 0 and list(r.table.columns) == COLUMNS
        assert r.metrics["n_hypotheses"] == 0 and r.metrics["n_significant"] == 0
    # predict and score: the constant model (prior / mean) of the fit data.
    new = ["an unseen text", "another"]
    if task == "regression":
        np.testing.assert_allclose(gen.predict(texts=new), [y.mean()] * 2)
        assert gen.score(None, y, texts=texts) == pytest.approx(0.0, abs=1e-12)
    elif task == "binary":
        np.testing.assert_allclose(gen.predict_proba(texts=new), [[0.5, 0.5]] * 2)
        assert gen.score(None, y, texts=texts) == 0.5
    else:
        assert list(gen.predict(texts=new)) == [0, 0]
        assert gen.score(None, y, texts=texts) == 0.5  # macro one-vs-rest AUC


def test_dropped_latent_warning_points_at_the_caller():
    texts, acts, y = make_corpus()
    with pytest.warns(UserWarning, match=r"1 latent\(s\) got no hypothesis") as rec:
        HypothesisGenerator(random_state=0).fit(acts, y, texts=texts)
    assert [w.filename for w in rec] == [__file__]


def test_near_duplicate_hypotheses_are_dropped():
    texts, acts, y = make_corpus()
    # A second dog latent, weaker than the first: the same concept twice.
    twin = np.column_stack([acts[:, :2], 0.5 * acts[:, 0]])
    with pytest.warns(UserWarning, match=r"dropped 1 hypothesis.*max_redundancy=0.8"):
        gen = HypothesisGenerator(random_state=0).fit(twin, y, texts=texts)
    assert list(gen.hypotheses_["column"]) == [0, 1]
    assert gen.transform(texts=texts).shape == (len(texts), 2)
    assert len(gen.evaluate(texts, y).table) == 2
    kept = HypothesisGenerator(max_redundancy=None, random_state=0)
    kept.fit(twin, y, texts=texts)
    assert list(kept.hypotheses_["column"]) == [0, 1, 2]


def test_a_copied_latent_is_never_named_a_duplicate_of_itself():
    texts, acts, y = make_corpus()
    copy = np.column_stack([acts[:, :2], acts[:, 0]])  # one latent twice
    with pytest.warns(UserWarning, match="dropped 1") as rec:
        gen = HypothesisGenerator(random_state=0).fit(copy, y, texts=texts)
    message = str(rec[0].message)
    assert "column 2 has the same description as column 0" in message
    assert list(gen.hypotheses_["column"]) == [0, 1]


def test_inference_leaves_fitted_state_alone():
    texts, acts, y = make_corpus()
    gen = HypothesisGenerator(random_state=0).fit(acts[:, :2], y, texts=texts)
    before = joblib.hash(vars(gen))
    gen.transform(texts=texts)
    gen.predict(texts=texts)
    gen.predict_proba(texts=texts)
    gen.score(None, y, texts=texts)
    gen.annotate(texts)
    gen.evaluate(texts, y)
    assert joblib.hash(vars(gen)) == before
