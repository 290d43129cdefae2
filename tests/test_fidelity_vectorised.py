"""column_fidelity_scores: scikit-learn's numbers for many latents at once, and
InterpretableEmbedder's held-out fidelity written from it."""

import zlib

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.metrics import precision_recall_fscore_support
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from sklearn_hypothesaes import PhraseAnnotator, SparseAutoencoder
from sklearn_hypothesaes.hypotheses import fidelity_scores
from sklearn_hypothesaes.hypotheses._fidelity import column_fidelity_scores
from sklearn_hypothesaes.toolkit._embedder import InterpretableEmbedder


def sklearn_scores(annotations, activations):
    """The scores as fidelity_scores computed them before: one column through
    scikit-learn, Pearson r by np.corrcoef (0.0 where a side is constant)."""
    keep = ~np.isnan(annotations)
    if not keep.any():
        return dict.fromkeys(["precision", "recall", "f1", "correlation"], np.nan)
    pred, acts = annotations[keep] > 0.5, activations[keep]
    p, r, f, _ = precision_recall_fscore_support(
        acts > 0, pred, average="binary", zero_division=0.0
    )
    if pred.min() == pred.max() or acts.min() == acts.max():
        corr = 0.0
    else:
        corr = float(np.corrcoef(pred.astype(float), acts)[0, 1])
    return {"precision": p, "recall": r, "f1": f, "correlation": corr}


def edge_case_matrices(seed=0, n_texts=60, n_random=40):
    """Random columns (answers missing at random, probabilities, activations
    of several sizes) and the edge cases after them."""
    rng = np.random.default_rng(seed)
    ann = rng.random((n_texts, n_random))
    ann[rng.random(ann.shape) < 0.15] = np.nan
    ann[:, ::3] = np.round(ann[:, ::3])  # 0/1 labels in some, probabilities else
    acts = rng.exponential(1.0, (n_texts, n_random))
    acts[rng.random(acts.shape) < 0.7] = 0.0
    ones, zeros, nans = np.ones(n_texts), np.zeros(n_texts), np.full(n_texts, np.nan)
    some = (np.arange(n_texts) % 4 == 0).astype(float)
    one_answer = nans.copy()
    one_answer[5] = 1.0
    edges = [
        (zeros, zeros),  # nothing predicted, nothing fires
        (zeros, some * 2.0),  # nothing predicted
        (some, zeros),  # nothing fires
        (ones, ones * 3.0),  # everything, both sides constant
        (some, ones * 0.5),  # activations constant, all fire
        (some, some * 1.5),  # perfect
        (1.0 - some, some),  # exactly wrong
        (nans, some),  # every answer missing
        (one_answer, some),  # one answer
        (np.full(n_texts, 0.5), some),  # 0.5 is not "has the concept"
    ]
    ann = np.column_stack([ann, *(a for a, _ in edges)])
    acts = np.column_stack([acts, *(b for _, b in edges)])
    return ann, acts


def test_columns_equal_scikit_learn_per_column():
    ann, acts = edge_case_matrices()
    got = column_fidelity_scores(ann, acts)
    for j in range(ann.shape[1]):
        want = sklearn_scores(ann[:, j], acts[:, j])
        for key in ("precision", "recall", "f1"):
            # The same counts and the same divisions: equal, not close.
            np.testing.assert_array_equal(got[key][j], want[key], err_msg=(key, j))
        np.testing.assert_allclose(got["correlation"][j], want["correlation"], 0, 1e-12)
    # The edge cases give what scikit-learn gives (zero_division=0), not NaN.
    edges = {k: v[40:] for k, v in got.items()}
    np.testing.assert_array_equal(
        edges["precision"], [0, 0, 0, 1, 1, 1, 0, np.nan, 0, 0]
    )
    np.testing.assert_array_equal(
        edges["recall"], [0, 0, 0, 1, 0.25, 1, 0, np.nan, 0, 0]
    )
    np.testing.assert_array_equal(edges["correlation"][[3, 4, 7, 8]], [0, 0, np.nan, 0])
    assert edges["correlation"][5] == pytest.approx(1.0)
    assert edges["correlation"][6] == pytest.approx(-1.0)


def test_one_column_function_keeps_its_numbers():
    ann, acts = edge_case_matrices(seed=1)
    for j in range(ann.shape[1]):
        got = fidelity_scores(ann[:, j], acts[:, j])
        want = sklearn_scores(ann[:, j], acts[:, j])
        assert all(isinstance(v, float) for v in got.values())
        np.testing.assert_array_equal(list(got.values()), list(want.values()))


def test_sparse_and_boolean_activations_give_the_same_scores():
    ann, acts = edge_case_matrices(seed=2)
    dense = column_fidelity_scores(ann, acts)
    for other in (sp.csc_matrix(acts), acts > 0):
        got = column_fidelity_scores(ann, other)
        for key in ("precision", "recall", "f1"):
            np.testing.assert_array_equal(got[key], dense[key])


def test_shapes_must_match():
    message = r"'activations' .* of column_fid.*'annotations' \(4, 2\).*\(4, 3\)"
    with pytest.raises(ValueError, match=message):
        column_fidelity_scores(np.zeros((4, 2)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"'annotations'.* must be a 2-d array"):
        column_fidelity_scores(np.zeros(4), np.zeros(4))
    with pytest.raises(ValueError, match=r"'annotations' \(5,\).*Got shape \(4,\)"):
        fidelity_scores(np.zeros(5), np.zeros(4))


# ------------------------------------------------- InterpretableEmbedder's use
WEATHER = ["rain", "sun", "snow", "wind", "fog", "hail", "storm", "cloud"]


def noisy(texts, concepts, values):
    """Answers wrong on about 1 in 5 (text, concept) and missing on 1 in 10,
    the same every time they are asked."""
    values = np.array(values, dtype=float)
    for i, text in enumerate(texts):
        for c, concept in enumerate(concepts):
            h = zlib.crc32(f"{text}|{concept}".encode()) % 10
            if h == 0:
                values[i, c] = np.nan
            elif h <= 2:
                values[i, c] = 1.0 - values[i, c]
    return values


ASKED = []  # (texts, concepts, values) of every annotate call


class NoisyAnnotator(PhraseAnnotator):
    def annotate(self, texts, concepts):
        found = super().annotate(texts, concepts)
        found.values = noisy(texts, concepts, found.values)
        ASKED.append((list(texts), list(concepts), found.values))
        return found


class ExpensiveNoisyAnnotator(NoisyAnnotator):
    expensive = True


@pytest.fixture(scope="module")
def parts():
    rng = np.random.default_rng(0)
    texts = [
        f"{WEATHER[rng.integers(8)]} on day {i} by the "
        + ("volcano" if i % 4 == 0 else "lake")
        for i in range(200)
    ]
    counts = make_pipeline(
        CountVectorizer(vocabulary=[*WEATHER, "volcano", "lake"], binary=True),
        FunctionTransformer(lambda X: X.toarray()),
    )
    E = counts.fit_transform(texts).astype(np.float32)
    sae = SparseAutoencoder(
        9, 2, matryoshka_prefixes=None, max_epochs=100, batch_size=32,
        sparse_output=True, random_state=4,
    ).fit(E)  # fmt: skip
    return texts, counts, sae


@pytest.mark.parametrize("annotator", [NoisyAnnotator, ExpensiveNoisyAnnotator])
def test_embedder_fidelity_is_scikit_learn_on_the_answers_it_got(parts, annotator):
    texts, counts, sae = parts
    ASKED.clear()
    emb = InterpretableEmbedder(
        counts, sae, annotator=annotator(), n_fidelity=12, random_state=0
    ).fit(texts)
    # The held-out questions: about 50 texts at once (cheap), or one text at
    # a time (expensive); the describer's own questions are about 150 texts.
    answers = {}
    for asked_texts, concepts, values in ASKED:
        if len(asked_texts) < 100:
            for c, concept in enumerate(concepts):
                for text, v in zip(asked_texts, values[:, c], strict=True):
                    answers.setdefault(concept, {})[text] = v
    table = emb.labels_
    labels = table["label"].dropna()
    checked = 0
    for j, label in labels.items():
        if (labels == label).sum() > 1:
            continue  # two samples of one label would be merged above
        asked = list(answers[label])
        values = np.array([answers[label][t] for t in asked])
        fires = emb.binarize(asked)[:, j].toarray().ravel()
        row = table.loc[j]
        keep = ~np.isnan(values)
        assert row["n_fidelity_texts"] == keep.sum()
        assert row["n_fidelity_fires"] == fires[keep].sum()
        if not fires[keep].any():
            assert np.isnan(row["fidelity"])
            assert row["reason"].startswith("fidelity not measured")
            continue
        want = sklearn_scores(values, fires.astype(float))
        assert (row["fidelity"], row["precision"], row["recall"]) == (
            want["f1"],
            want["precision"],
            want["recall"],
        )
        checked += 1
    assert checked >= 5
    # The noise makes the scores differ from latent to latent.
    assert table["fidelity"].dropna().nunique() >= 3
    if annotator is ExpensiveNoisyAnnotator:
        assert (table.loc[labels.index, "n_fidelity_texts"] <= 12).all()
