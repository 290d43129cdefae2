"""Offline terms that keep a latent's signal: same sign as the latent, clean text."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from sklearn_hypothesaes import PhraseAnnotator, TermDescriber
from sklearn_hypothesaes.hypotheses._terms import (
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


def _antonym_corpus(n=600, seed=0):
    """Latent 0 fires on reviews that talk about being dull; y is the verdict.

    Where the latent fires, "dull" and "boring" go with y=0, while "lively"
    (the antonym, in "never dull, always lively") goes with y=1; both kinds
    of text make the latent fire, so "lively" distinguishes the firing texts
    as well as the others do.
    """
    rng = np.random.default_rng(seed)
    texts, fires, y = [], [], []
    for i in range(n):
        text = str(FILLER[rng.integers(len(FILLER))])
        kind = i % 6
        if kind in (0, 1):  # negative and dull
            text += str(rng.choice([" so dull", " boring", " dull and boring"]))
            fire, label = True, 0
        elif kind == 2:  # positive, mentions the antonym
            text += " never dull, always lively"
            fire, label = True, 1
        else:
            fire, label = False, int(rng.random() < 0.6)
        texts.append(text)
        fires.append(fire)
        y.append(label)
    acts = np.array(fires)[:, None] * rng.exponential(size=(n, 1))
    return texts, acts, np.array(y)


def test_same_sign_rule_leaves_the_antonym_out():
    texts, acts, y = _antonym_corpus()
    [without_y] = contrastive_terms(texts, acts, n_terms=10)
    assert "lively" in [t for t, _ in without_y]
    [with_y] = contrastive_terms(texts, acts, y=y, n_terms=10)
    words = [t for t, _ in with_y]
    assert "lively" not in words and "always lively" not in words
    assert {"dull", "boring"} <= set(words)
    # The latent goes with y=0: its correlation with y is negative, and each
    # kept term's presence correlates negatively with y too.
    assert np.corrcoef(acts[:, 0], y)[0, 1] < 0
    for term in words:
        hits = match_terms(texts, [[term]])[:, 0]
        assert np.corrcoef(hits, y)[0, 1] < 0, term
    # The rule reads the sign only: flipping y flips which side is kept.
    [flipped] = contrastive_terms(texts, acts, y=1 - y, n_terms=10)
    assert {t for t, _ in flipped} == {t for t, _ in with_y}
    # One 0/1 column per class picks the class the latent goes with.
    onehot = np.column_stack([y == 0, y == 1]).astype(float)
    [by_class] = contrastive_terms(texts, acts, y=onehot, n_terms=10)
    assert by_class == with_y


def test_describer_passes_y_and_encodes_labels():
    texts, acts, y = _antonym_corpus()
    labels = np.array(["rotten", "fresh"])[y]
    found = TermDescriber().describe(texts, acts, annotator=PhraseAnnotator(), y=labels)
    [terms] = found.table["terms"]
    assert "lively" not in terms and {"dull", "boring"} <= set(terms)
    # Without y the describer works as before (y is optional in the protocol).
    found = TermDescriber().describe(texts, acts, annotator=PhraseAnnotator())
    assert "lively" in found.table["terms"][0]
    with pytest.raises(ValueError, match="one value per text"):
        TermDescriber().describe(texts, acts, annotator=PhraseAnnotator(), y=y[:5])


def test_mojibake_is_repaired_in_terms_and_matching():
    # UTF-8 read as Latin-1: "café" became "cafÃ©", "don't" (curly) "donâ€™t".
    places = ["corner", "downtown", "on main street", "by the river"]
    texts = [f"{t} at the cafÃ© {p}" for t in FILLER for p in places]
    texts += [f"{t} at the bar {p}" for t in FILLER for p in places] * 2
    acts = np.r_[np.ones(24), np.zeros(48)][:, None]
    [terms] = contrastive_terms(texts, acts, n_terms=3)
    assert [t for t, _ in terms] == ["café"]
    # Matching repairs the same way: a broken text matches the repaired term.
    np.testing.assert_array_equal(
        match_terms(
            ["at the cafÃ© corner", "donâ€™t go", "Harry &amp; Tonto"],
            [["café"], ["don't"], ["amp"]],
        ),
        [[1, 0, 0], [0, 1, 0], [0, 0, 0]],
    )


def test_numbers_urls_emails_and_phones_are_never_terms():
    rng = np.random.default_rng(0)
    planted = [
        "call 555-123-4567 today",
        "see https://www.example.com/deal now",
        "write to sales@example.com soon",
        "only 1999 or 2000 dollars",
        "ring +1 (202) 555-0100 now",
        "visit www.shop.org today",
    ]
    texts, fires = [], []
    for i in range(300):
        text = str(FILLER[rng.integers(len(FILLER))])
        if i % 3 == 0:
            text += " " + planted[rng.integers(len(planted))] + " great deal"
        texts.append(text)
        fires.append(i % 3 == 0)
    acts = np.array(fires, dtype=float)[:, None]
    [terms] = contrastive_terms(texts, acts, n_terms=50, min_score=-np.inf)
    words = {w for t, _ in terms for w in t.split()}
    assert "great" in words  # the planted words are found...
    # ...but no piece of a URL, address or phone number, and no bare number.
    assert not words & {"http", "https", "www", "com", "org", "example", "sales"}
    assert not any(t.replace(" ", "").isdigit() for t, _ in terms)
    assert not words & {"555", "123", "4567", "202", "0100"}
    # A number next to a word stays (it says something in words).
    [kept] = contrastive_terms(
        ["a 90 minutes film"] * 5 + ["a short film"] * 5,
        np.r_[np.ones(5), np.zeros(5)],
        min_score=-np.inf,
        min_df=2,
    )
    assert "90 minutes" in [t for t, _ in kept]
    assert "90" not in [t for t, _ in kept]


def test_terms_never_hold_a_double_quote():
    texts = ['he said "wow" loudly', 'a "wow" moment'] * 5 + ["quiet film"] * 10
    acts = np.r_[np.ones(10), np.zeros(10)][:, None]
    [terms] = contrastive_terms(texts, acts, min_score=-np.inf, min_df=2)
    assert terms and not any('"' in t for t, _ in terms)
    assert format_hypothesis(terms).count('"') == 2 * len(terms)


def test_auto_threshold_is_benjamini_hochberg():
    # z-scores 6, 4.5, 3 and 997 terms ruled out: BH at 10% over 1000 tests
    # keeps the k best with p_(k) <= 0.1 k / 1000. p = 1e-9 and 3.4e-6 pass
    # (<= 1e-4, 2e-4), p = 0.00135 for z = 3 does not (> 3e-4): the cut is the
    # z-score of 0.1 * 2 / 1000, 3.54.
    from sklearn_hypothesaes.hypotheses._terms import _fdr_cut

    scores = np.r_[6.0, 4.5, 3.0, np.full(997, -np.inf)]
    assert _fdr_cut(scores) == pytest.approx(norm.isf(0.1 * 2 / 1000))
    assert _fdr_cut(np.full(10, -np.inf)) == np.inf
    # In a vocabulary of 17 terms, two at z = 6.6 would let chance terms at
    # z = 2.7 in (BH cut isf(0.1 * 4 / 17) = 1.99); the floor of 3 does not.
    small = np.r_[6.6, 6.6, 2.7, 2.7, np.full(13, -np.inf)]
    assert norm.isf(0.1 * 4 / 17) == pytest.approx(1.986, abs=1e-3)
    assert _fdr_cut(small) == 3.0


def test_exclusive_terms_leave_a_latent_its_best_term():
    # Latent 0 fires on the 40 "dull" texts, latent 1 on those and the 20
    # "slow" ones: "dull" is latent 1's best term (z = 6.68) but scores higher
    # for latent 0 (7.5). Exclusivity still lets latent 1 keep it, rather than
    # describing it by "slow" alone, the weaker third of what it fires on.
    texts = [f"{FILLER[i % len(FILLER)]} dull" for i in range(40)]
    texts += [f"{FILLER[i % len(FILLER)]} slow" for i in range(20)]
    texts += [FILLER[i % len(FILLER)] for i in range(240)]
    acts = np.column_stack(
        [np.r_[np.ones(40), np.zeros(260)], np.r_[np.ones(60), np.zeros(240)]]
    )
    terms = contrastive_terms(texts, acts, exclusive=True)
    assert [[(t, round(z, 2)) for t, z in lat] for lat in terms] == [
        [("dull", 7.5)],
        [("dull", 6.68), ("slow", 4.67)],
    ]


def test_exclusive_terms_go_to_the_latent_they_fit_best():
    texts, acts, y = _antonym_corpus()
    both = np.column_stack([acts[:, 0], acts[:, 0] * (y == 0)])
    shared = contrastive_terms(texts, both, n_terms=10)
    assert {t for t, _ in shared[0]} & {t for t, _ in shared[1]}
    excl = contrastive_terms(texts, both, n_terms=10, exclusive=True)
    assert not {t for t, _ in excl[0]} & {t for t, _ in excl[1]}
    # Every term other than a latent's best stays with the latent whose
    # z-score for it is higher.
    best = {}
    for j, lat in enumerate(shared):
        for t, z in lat:
            best[t] = max(best.get(t, (j, z)), (j, z), key=lambda p: p[1])
    for j, lat in enumerate(excl):
        assert all(best[t][0] == j for t, _ in lat[1:])
    # A copy of a latent loses every term to its original (ties go to the
    # first) and keeps its own rather than going undescribed.
    copy = contrastive_terms(
        texts, np.column_stack([acts, acts]), n_terms=10, exclusive=True
    )
    assert copy[0] == copy[1] == contrastive_terms(texts, acts, n_terms=10)[0]


# -------------------------------------------- many latents: fast and unchanged
def _noisy_corpus(n_texts=400, n_latents=10, seed=0):
    """Random texts of 64 words; latent j fires on 80% of the texts with word
    j and on 3% of all texts at random; the last latent never fires."""
    rng = np.random.default_rng(seed)
    words = [f"word{i}" for i in range(60)] + ["not", "very", "bad", "good"]
    texts = [" ".join(rng.choice(words, rng.integers(3, 10))) for _ in range(n_texts)]
    acts = np.zeros((n_texts, n_latents))
    for i, text in enumerate(texts):
        present = set(text.split())
        for j in range(n_latents):
            if f"word{j}" in present and rng.random() > 0.2:
                acts[i, j] = rng.exponential() + 0.01
    acts[rng.random(acts.shape) < 0.03] = 0.5
    acts[:, -1] = 0.0
    return texts, acts


def test_noisy_corpus_table_is_the_one_of_the_reference_version():
    # Computed by TermDescriber as of commit 9625776 (one latent at a time,
    # per-latent fidelity_scores), before labelling was batched.
    # F1, precision and recall are ratios of counts of texts: exact floats.
    expected = [
        (0, 'mentions "word0"', 36 / 43, 12 / 13, 36 / 47),
        (1, 'mentions "word1"', 5 / 8, 5 / 9, 5 / 7),
        (2, 'mentions "word2"', 58 / 73, 29 / 34, 29 / 39),
        (3, 'mentions "word3"', 58 / 75, 29 / 34, 29 / 41),
        (4, 'mentions "word4"', 4 / 5, 14 / 17, 7 / 9),
        (5, 'mentions "word5"', 62 / 85, 31 / 46, 31 / 39),
        (6, 'mentions "word6"', 15 / 26, 15 / 22, 1 / 2),
        (7, 'mentions "word7"', 13 / 17, 13 / 18, 13 / 16),
        (8, 'mentions "word8"', 64 / 85, 32 / 39, 16 / 23),
    ]
    texts, acts = _noisy_corpus()
    found = TermDescriber(n_terms=3).describe(texts, acts, annotator=PhraseAnnotator())
    columns = ["column", "description", "fidelity", "precision", "recall"]
    assert list(found.table[columns].itertuples(index=False, name=None)) == expected
    assert found.missing == {9: "never fires"}


class _ReadingAnnotator(PhraseAnnotator):
    """PhraseAnnotator that TermDescriber does not recognise: it reads the
    texts, the way any other annotator is asked."""


@pytest.mark.parametrize("sparse_input", [False, True])
def test_phrase_annotations_read_off_the_terms_equal_reading_the_texts(sparse_input):
    from scipy import sparse

    texts, acts = _noisy_corpus(n_latents=40)
    if sparse_input:
        acts = sparse.csr_matrix(acts)
    describer = TermDescriber(n_terms=8, min_score=1.0)
    fast = describer.describe(texts, acts, annotator=PhraseAnnotator())
    read = describer.describe(texts, acts, annotator=_ReadingAnnotator())
    assert len(fast.table) == 39 and fast.table["terms"].map(len).max() > 1
    pd.testing.assert_frame_equal(fast.table, read.table, check_exact=True)
    assert fast.missing == read.missing


def test_texts_are_read_once_per_describer_and_never_pickled():
    import pickle

    from sklearn.base import clone

    texts, acts = _noisy_corpus()
    describer = TermDescriber(n_terms=3, exclusive=False)
    whole = describer.describe(texts, acts, annotator=PhraseAnnotator())
    documents = describer._documents_cache
    # Batches of latents on the same texts (a new list of them) reuse them ...
    first = describer.describe(list(texts), acts[:, :4], annotator=PhraseAnnotator())
    second = describer.describe(texts, acts[:, 4:], annotator=PhraseAnnotator())
    assert describer._documents_cache is documents
    batched = pd.concat(
        [first.table, second.table.assign(column=second.table["column"] + 4)],
        ignore_index=True,
    )
    pd.testing.assert_frame_equal(batched, whole.table, check_exact=True)
    # ... other texts are read again.
    other = [t + " extra" for t in texts]
    describer.describe(other, acts, annotator=PhraseAnnotator())
    assert describer._documents_cache is not documents
    assert "_documents_cache" not in pickle.loads(pickle.dumps(describer)).__dict__
    assert "_documents_cache" in describer.__dict__  # pickling left it alone
    assert "_documents_cache" not in clone(describer).__dict__
