"""Describers and annotators: the protocol, the shipped strategies, your own."""

import numpy as np
import pandas as pd
import pytest
from fake_openai import FakeOpenAIServer
from sklearn.base import clone
from test_hypotheses import make_corpus, planted_llm

from sklearn_hypothesaes import (
    HypothesisGenerator,
    LLMAnnotator,
    LLMDescriber,
    PhraseAnnotator,
    TermDescriber,
)
from sklearn_hypothesaes.hypotheses import Annotations, Descriptions
from sklearn_hypothesaes.llm import Usage


def test_phrase_annotator_reads_the_quoted_terms():
    texts = ["The best film.", "Dull, dull.", "best films", "not funny at all"]
    concepts = ['mentions "brilliant" or "best film"', 'mentions "dull"']
    concepts.append('mentions "not funny"')
    found = PhraseAnnotator().annotate(texts, concepts)
    assert isinstance(found, Annotations) and found.usage == Usage()
    np.testing.assert_array_equal(
        found.values, [[1, 0, 0], [0, 1, 0], [0, 0, 0], [0, 0, 1]]
    )
    np.testing.assert_array_equal(np.asarray(found), found.values)
    with pytest.raises(ValueError, match="quote their terms.*'praises the acting'"):
        PhraseAnnotator().annotate(texts, ["praises the acting"])
    with pytest.raises(ValueError, match=r"'texts' parameter of PhraseAnnotator"):
        PhraseAnnotator().annotate(["ok", None], concepts)


def test_term_describer_table_missing_reasons_and_fidelity():
    texts, acts, _ = make_corpus()
    found = TermDescriber().describe(texts, acts, annotator=PhraseAnnotator())
    assert isinstance(found, Descriptions)
    table = found.table
    assert list(table.columns) == [
        "column",
        "description",
        "fidelity",
        "precision",
        "recall",
        "terms",
    ]
    assert list(table["column"]) == [0, 1]
    assert found.missing == {2: "never fires"}
    # Fidelity is the annotator's agreement with firing, by hand.
    labels = PhraseAnnotator().annotate(texts, list(table["description"])).values
    for row, j in enumerate(table["column"]):
        pred, fires = labels[:, row] > 0.5, acts[:, j] > 0
        tp = np.sum(pred & fires)
        precision, recall = tp / pred.sum(), tp / fires.sum()
        assert table["precision"][row] == pytest.approx(precision)
        assert table["recall"][row] == pytest.approx(recall)
    strict = TermDescriber(min_score=1e6).describe(
        texts, acts, annotator=PhraseAnnotator()
    )
    assert len(strict.table) == 0
    assert strict.missing == {
        0: "no term reaches min_score=1000000.0",
        1: "no term reaches min_score=1000000.0",
        2: "never fires",
    }


class KeywordDescriber:
    """A user's own describer: column j is "mentions <keyword j>"."""

    def __init__(self, keywords):
        self.keywords = keywords

    def get_params(self, deep=True):
        return {"keywords": self.keywords}

    def set_params(self, **params):
        self.__dict__.update(params)
        return self

    def describe(self, texts, activations, *, annotator, random_state=None):
        concepts = [f"mentions {w}" for w in self.keywords]
        labels = annotator.annotate(texts, concepts).values
        fires = np.asarray(activations) > 0
        f1 = [
            2
            * np.sum(labels[:, j] * fires[:, j])
            / (labels[:, j].sum() + fires[:, j].sum())
            for j in range(len(concepts))
        ]
        table = pd.DataFrame(
            {
                "column": range(len(concepts)),
                "description": concepts,
                "fidelity": f1,
                "precision": np.nan,
                "recall": np.nan,
            }
        )
        return Descriptions(table)


class KeywordAnnotator:
    """A user's own annotator: "mentions w" holds when w is in the text."""

    def get_params(self, deep=True):
        return {}

    def set_params(self, **params):
        return self

    def annotate(self, texts, concepts):
        words = [c.split()[-1] for c in concepts]
        return Annotations(
            np.array([[float(w in t) for w in words] for t in texts]),
            Usage(calls=len(texts)),
        )


def test_your_own_describer_and_annotator_compose():
    texts, acts, y = make_corpus()
    gen = HypothesisGenerator(
        KeywordDescriber(["dog", "rain"]), KeywordAnnotator(), random_state=0
    ).fit(acts[:, :2], y, texts=texts)
    assert list(gen.hypotheses_["hypothesis"]) == ["mentions dog", "mentions rain"]
    assert list(gen.hypotheses_["fidelity"]) == [1.0, 1.0]
    assert gen.usage_["calls"] == len(texts)  # the fit texts, annotated once
    expected = [[float("dog" in t), float("rain" in t)] for t in texts[:5]]
    np.testing.assert_array_equal(gen.transform(texts=texts[:5]), expected)
    assert gen.annotate(texts[:5]).usage.calls == 5
    # No default annotator: the error names the fix.
    with pytest.raises(ValueError, match="'annotator' parameter.*PhraseAnnotator"):
        HypothesisGenerator(KeywordDescriber(["dog"])).fit(acts, y, texts=texts)


def test_llm_describer_usage_is_per_call(make_client):
    texts, acts, _ = make_corpus()
    with FakeOpenAIServer(chat=planted_llm) as srv:
        client = make_client(srv, n_concurrent=4)
        describer = LLMDescriber(client, n_fidelity=20)
        annotator = describer.default_annotator()
        assert isinstance(annotator, LLMAnnotator) and annotator.client is client
        found = describer.describe(texts, acts, annotator=annotator, random_state=0)
        assert list(found.table["description"]) == ["mentions a dog", "mentions rain"]
        assert list(found.table["fidelity"]) == [1.0, 1.0]
        assert found.missing == {2: "never fires"}
        # 2 interpretation prompts and 20 held-out texts per latent.
        assert len(srv.requests) == 2 + 40
        assert found.usage.calls == 42 and found.usage.cache_hits == 0
        assert found.usage.prompt_tokens == srv.usage["prompt_tokens"]
        # The same call again is answered by the cache, and says so.
        again = clone(describer).describe(
            texts, acts, annotator=annotator, random_state=0
        )
        assert again.usage.calls == 0 and again.usage.cache_hits == 42
        pd.testing.assert_frame_equal(again.table, found.table)
        # LLM descriptions are free words: the phrase annotator refuses them.
        with pytest.raises(ValueError, match="Use LLMAnnotator"):
            describer.describe(texts, acts, annotator=PhraseAnnotator())


def test_term_describer_scores_an_expensive_annotator_on_a_sample(make_client):
    texts, acts, _ = make_corpus()
    with FakeOpenAIServer(chat=planted_llm) as srv:
        annotator = LLMAnnotator(make_client(srv), mode="single")
        found = TermDescriber(n_fidelity=30).describe(
            texts, acts, annotator=annotator, random_state=0
        )
        # 30 sampled texts x 2 descriptions, one yes/no question each.
        assert found.usage.calls + found.usage.cache_hits == 60
        assert len(srv.requests) == 60


class RecordingDescriber(KeywordDescriber):
    """Accepts y, so the generator passes the encoded target."""

    def describe(self, texts, activations, *, annotator, random_state=None, y=None):
        self.seen_y = y
        return super().describe(
            texts, activations, annotator=annotator, random_state=random_state
        )


def test_the_generator_passes_y_to_describers_that_take_it():
    texts, acts, y = make_corpus()
    describer = RecordingDescriber(["dog", "rain"])
    gen = HypothesisGenerator(describer, KeywordAnnotator(), random_state=0)
    gen.fit(acts[:, :2], y, texts=texts)
    seen = gen.describer_.seen_y
    np.testing.assert_array_equal(seen, (y == 1).astype(float)[:, None])
    labels = np.array(["dog", "rain", "other"] * 40)
    gen.fit(acts[:, :2], labels, texts=texts)
    assert gen.describer_.seen_y.shape == (len(texts), 3)  # one column per class
