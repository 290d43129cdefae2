"""The whole method as one Pipeline: routing, cross-validation, grid search.

Most tests embed with TF-IDF + SVD (a step like TextEmbedder: texts in,
dense vectors out) so that folds and grid points stay fast; one runs the real
TextEmbedder on 200 texts, through run_method.
"""

import re
import runpy
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sklearn
from fake_openai import FakeOpenAIServer, concept_judge, last_user_message
from sklearn.base import clone
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import Pipeline, make_pipeline

from sklearn_hypothesaes import (
    HypothesisGenerator,
    LatentSelector,
    LLMDescriber,
    SparseAutoencoder,
    TermDescriber,
    TextEmbedder,
    pipeline_hypotheses,
    run_method,
)
from sklearn_hypothesaes.datasets import load_rotten_tomatoes

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(autouse=True)
def _routing():
    with sklearn.config_context(enable_metadata_routing=True):
        yield


@pytest.fixture(scope="module")
def reviews():
    texts, y = load_rotten_tomatoes(split="train", return_X_y=True)
    return list(texts[:240]), np.asarray(y[:240])


def fast_embedder():
    return make_pipeline(TfidfVectorizer(min_df=2), TruncatedSVD(24, random_state=0))


def make_pipe(generator):
    return Pipeline(
        [
            ("embed", fast_embedder()),
            ("sae", SparseAutoencoder(16, 3, max_epochs=5, random_state=0)),
            ("select", LatentSelector(n_latents=4)),
            ("hypotheses", generator),
        ]
    )


def word_llm(body):
    """Names a latent by the commonest content word of its firing texts."""
    prompt = last_user_message(body)
    if "Texts where it fires:" not in prompt:
        return concept_judge(body)
    block = prompt.split("Texts where it fires:", 1)[1].split("\n\n", 1)[0]
    words = Counter(
        w
        for line in re.findall(r"^\d+\. (.+)$", block, re.M)
        for w in set(re.findall(r"[a-z]{4,}", line.lower()))
        if w not in ENGLISH_STOP_WORDS
    )
    return f"Mentions {words.most_common(1)[0][0]}."


def manual_cv(pipe, texts, y, n_splits=3):
    """What cross_val_score must compute: fit and score with sliced texts."""
    texts = np.asarray(texts, dtype=object)
    scores = []
    for train, test in KFold(n_splits).split(texts):
        fitted = clone(pipe).fit(texts[train], y[train], texts=texts[train])
        scores.append(fitted.score(texts[test], y[test], texts=texts[test]))
    return np.array(scores)


@pytest.mark.filterwarnings("ignore:HypothesisGenerator. .* got no hypothesis")
def test_offline_pipeline_routing_and_cross_val(reviews):
    texts, y = reviews
    pipe = make_pipe(HypothesisGenerator(TermDescriber(min_score=2.0), random_state=0))
    pipe.fit(texts, y, texts=texts)
    gen = pipe[-1]
    assert 0 < len(gen.hypotheses_) <= 4
    annotations = pipe.transform(texts, texts=texts)
    assert annotations.shape == (len(texts), len(gen.hypotheses_))
    np.testing.assert_array_equal(annotations, gen.transform(texts=texts))
    proba = pipe.predict_proba(texts, texts=texts)
    np.testing.assert_allclose(proba, gen.model_.predict_proba(annotations))

    got = cross_val_score(pipe, texts, y, cv=KFold(3), params={"texts": texts})
    np.testing.assert_allclose(got, manual_cv(pipe, texts, y))
    assert np.all((got >= 0) & (got <= 1))


@pytest.mark.filterwarnings("ignore:HypothesisGenerator. .* got no hypothesis")
def test_offline_grid_search_over_sae_and_selector(reviews):
    texts, y = reviews
    pipe = make_pipe(HypothesisGenerator(TermDescriber(min_score=2.0), random_state=0))
    grid = {"sae__k": [2, 3], "sae__n_latents": [12, 16], "select__n_latents": [2, 4]}
    search = GridSearchCV(pipe, grid, cv=KFold(2)).fit(texts, y, texts=texts)
    scores = search.cv_results_["mean_test_score"]
    assert len(scores) == 8 and np.all(np.isfinite(scores))
    best = search.best_estimator_
    assert best["sae"].n_latents == search.best_params_["sae__n_latents"]
    assert best["sae"].encoder_weight_.shape[0] == search.best_params_["sae__n_latents"]
    assert len(best[-1].hypotheses_) <= search.best_params_["select__n_latents"]
    # The search's refit equals fitting the pipeline with the best parameters.
    ref = clone(pipe).set_params(**search.best_params_).fit(texts, y, texts=texts)
    assert list(ref[-1].hypotheses_["hypothesis"]) == list(
        best[-1].hypotheses_["hypothesis"]
    )


def test_llm_pipeline_cross_val_and_grid_search(reviews, make_client):
    texts, y = reviews
    with FakeOpenAIServer(chat=word_llm) as srv:
        client = make_client(srv, n_concurrent=8)
        gen = HypothesisGenerator(
            LLMDescriber(client, n_fidelity=10, n_examples=5), random_state=0
        )
        pipe = make_pipe(gen).fit(texts, y, texts=texts)
        table = pipe[-1].hypotheses_
        assert len(table) == 4
        assert all(re.fullmatch(r"mentions [a-z]{4,}", h) for h in table["hypothesis"])
        # The loopback judge: a text has "mentions w" when it contains w.
        words = [h.split()[-1] for h in table["hypothesis"]]
        expected = [[float(w in t.lower()) for w in words] for t in texts[:20]]
        np.testing.assert_array_equal(
            pipe.transform(texts[:20], texts=texts[:20]), expected
        )
        assert pipe[-1].usage_["calls"] > 0

        got = cross_val_score(pipe, texts, y, cv=KFold(2), params={"texts": texts})
        np.testing.assert_allclose(got, manual_cv(pipe, texts, y, n_splits=2))

        search = GridSearchCV(
            pipe, {"sae__k": [2, 3], "select__n_latents": [3]}, cv=KFold(2)
        ).fit(texts, y, texts=texts)
        assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
        assert (
            len(search.best_estimator_[-1].hypotheses_)
            == (search.best_params_["select__n_latents"])
        )


@pytest.mark.filterwarnings("ignore:HypothesisGenerator. .* got no hypothesis")
def test_run_method_with_real_embedder(reviews):
    texts, y = reviews
    result = run_method(
        texts[:140],
        y[:140],
        holdout_texts=texts[140:220],
        holdout_y=y[140:220],
        embedder=TextEmbedder(),
        sae=SparseAutoencoder(24, 4, max_epochs=10, random_state=0),
        selector=LatentSelector(n_latents=6),
        generator=HypothesisGenerator(TermDescriber(min_score=2.0), random_state=0),
    )
    sae, selector, gen = result.pipeline["sae"], result.pipeline["select"], None
    gen = result.pipeline["hypotheses"]
    table = result.hypotheses
    assert len(table) == len(gen.hypotheses_) > 0
    # Latents are the SAE's, mapped back through the selector.
    assert set(table["latent"]) <= set(selector.selected_)
    assert all(
        f == f"sparseautoencoder{j}"
        for j, f in zip(table["latent"], table["feature"], strict=True)
    )
    # Each hypothesis' latent is the column it was fit on.
    embeddings = result.pipeline["embed"].transform(texts[:140])
    Z = sae.transform(embeddings)
    for j, assoc in zip(table["latent"], table["association"], strict=True):
        assert assoc == pytest.approx(np.corrcoef(Z[:, j], y[:140])[0, 1])
    ev = gen.evaluate(texts[140:220], y[140:220])
    np.testing.assert_array_equal(table["pvalue"], ev.table["pvalue"])
    assert result.metrics["auc"] == ev.metrics["auc"]
    assert result.metrics["score"] == gen.score(None, y[140:220], texts=texts[140:220])
    assert len(result.examples) == len(table)
    # The signal check runs between the selection and the description.
    assert list(result.timings) == [
        "embed",
        "sae",
        "select",
        "signal_check",
        "hypotheses",
        "annotate_holdout",
        "evaluate",
    ]
    # Each row names the joint model behind its coefficient (None if left out).
    assert table["model"].tolist() == ev.table["model"].tolist()
    assert ev.metrics["model"] in set(table["model"]) <= {"logit", "firth", None}
    assert result.settings["sae"]["n_latents"] == 24
    assert result.usage["calls"] == 0
    assert result.sae is sae


@pytest.mark.filterwarnings("ignore:HypothesisGenerator. .* got no hypothesis")
def test_latent_ids_come_from_the_selector_in_a_plain_numpy_pipeline(reviews):
    texts, y = reviews
    embeddings = fast_embedder().fit_transform(texts)
    pipe = make_pipe(HypothesisGenerator(TermDescriber(min_score=2.0), random_state=0))
    pipe = Pipeline(pipe.steps[1:])  # numpy embeddings in, no feature names
    pipe.fit(embeddings, y, texts=texts)
    selected = pipe["select"].get_support(indices=True)
    gen = pipe[-1]
    assert "latent" not in gen.hypotheses_  # the generator cannot know it
    table = pipeline_hypotheses(pipe)
    np.testing.assert_array_equal(table["latent"], selected[gen.hypotheses_["column"]])
    assert not np.array_equal(table["latent"], table["column"])
    Z = pipe["sae"].transform(embeddings)
    for j, assoc in zip(table["latent"], table["association"], strict=True):
        assert assoc == pytest.approx(np.corrcoef(Z[:, j], y)[0, 1])
    with pytest.raises(ValueError, match="SparseAutoencoder step"):
        pipeline_hypotheses(Pipeline(pipe.steps[1:]))


@pytest.mark.filterwarnings("ignore:HypothesisGenerator. .* got no hypothesis")
def test_set_output_pandas_on_the_whole_pipeline(reviews):
    texts, y = reviews
    pipe = make_pipe(HypothesisGenerator(TermDescriber(min_score=2.0), random_state=0))
    pipe.steps[0] = ("embed", TextEmbedder())  # TfidfVectorizer has no set_output
    pipe.set_output(transform="pandas").fit(texts, y, texts=texts)
    assert isinstance(pipe[:-1].transform(texts[:10]), pd.DataFrame)
    out = pipe.transform(texts[:10], texts=texts[:10])
    assert isinstance(out, pd.DataFrame) and out.shape[0] == 10
    assert list(out.columns) == list(pipe[-1].get_feature_names_out())
    np.testing.assert_array_equal(out.to_numpy(), pipe[-1].transform(texts=texts[:10]))


@pytest.mark.filterwarnings("ignore:HypothesisGenerator. .* got no hypothesis")
def test_routing_off_raises_instead_of_nan_scores(reviews):
    texts, y = reviews
    pipe = make_pipe(HypothesisGenerator(TermDescriber(min_score=2.0), random_state=0))
    with sklearn.config_context(enable_metadata_routing=False):
        search = GridSearchCV(pipe, {"select__n_latents": [2, 3]}, cv=KFold(2))
        with pytest.raises(ValueError, match="enable_metadata_routing=True"):
            search.fit(texts, y, hypotheses__texts=texts)
        with pytest.raises(RuntimeError, match="metadata routing off"):
            pipe.fit(texts, y, hypotheses__texts=texts)
        # Outside a Pipeline, routing is not needed.
        gen = HypothesisGenerator(TermDescriber(min_score=2.0), random_state=0)
        gen.fit(fast_embedder().fit_transform(texts)[:, :4].clip(0), y, texts=texts)


def test_run_method_same_seed_same_hypotheses(reviews):
    texts, y = reviews
    runs = [
        run_method(
            texts[:160],
            y[:160],
            holdout_texts=texts[160:],
            holdout_y=y[160:],
            embedder=fast_embedder(),
            generator=HypothesisGenerator(TermDescriber(min_score=2.0), random_state=0),
            random_state=0,
        )
        for _ in range(2)
    ]
    first, second = (r.hypotheses for r in runs)
    assert len(first) > 0
    pd.testing.assert_frame_equal(first, second)
    np.testing.assert_array_equal(
        runs[0].sae.encoder_weight_, runs[1].sae.encoder_weight_
    )


@pytest.mark.parametrize("script", ["pipeline_cross_val.py", "gridsearch_sae.py"])
def test_examples_run(script):
    runpy.run_path(str(EXAMPLES / script), run_name="__main__")
