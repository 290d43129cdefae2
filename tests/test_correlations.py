"""concept_correlations on planted co-firing, with the synonym filter."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy import stats

from sklearn_hypothesaes.toolkit._correlations import (
    CORRELATION_COLUMNS,
    concept_correlations,
    npmi,
)
from sklearn_hypothesaes.toolkit._fisher import fisher_greater

N = 2000
FOOTBALL, INJURIES, TWIN = 3, 11, 12


def planted(n_latents=20, seed=0):
    """Latents at 10% at random, plus three planted ones.

    "mentions football" (3) fires on documents 0-199; "mentions injuries" (11)
    on 140 of those (0-139) and 60 others (200-259); its synonym twin "talks
    about football" (12) on documents 20-199 only.
    """
    rng = np.random.default_rng(seed)
    Z = (rng.random((N, n_latents)) < 0.1) * rng.uniform(0.5, 2, (N, n_latents))
    Z[:, [FOOTBALL, INJURIES, TWIN]] = 0
    Z[:200, FOOTBALL] = 1.0
    Z[:140, INJURIES] = 1.0
    Z[200:260, INJURIES] = 1.0
    Z[20:200, TWIN] = 1.0
    labels = [f"topic {j}" for j in range(n_latents)]
    labels[FOOTBALL] = "mentions football"
    labels[INJURIES] = "mentions injuries"
    labels[TWIN] = "talks about football"
    return Z, labels


def label_vectors(labels):
    """One axis per label, except the twin, which is nearly the football axis."""
    out = np.zeros((len(labels), len(labels) + 1))
    for k, label in enumerate(labels):
        if label == "talks about football":
            out[k, labels.index("mentions football")] = 0.99
            out[k, -1] = np.sqrt(1 - 0.99**2)
        else:
            out[k, k] = 1.0
    return out


def test_planted_pair_is_top_and_its_synonym_twin_is_dropped():
    Z, labels = planted()
    table = concept_correlations(Z, labels=labels, label_similarity=label_vectors)
    assert list(table.columns) == CORRELATION_COLUMNS
    top = table.iloc[0]
    assert (top["latent_a"], top["latent_b"]) == (FOOTBALL, INJURIES)
    assert (top["label_a"], top["label_b"]) == (
        "mentions football",
        "mentions injuries",
    )
    assert (top["count_a"], top["count_b"], top["count_ab"]) == (200, 200, 140)
    assert top["expected_ab"] == 20.0
    assert top["npmi"] == pytest.approx(np.log(7) / -np.log(140 / N))
    assert top["pvalue"] == pytest.approx(
        stats.fisher_exact([[140, 60], [60, 1740]], alternative="greater").pvalue,
        rel=1e-8,
    )
    assert top["significant"] and not top["redundant"]
    pairs = set(zip(table["latent_a"], table["latent_b"], strict=True))
    assert (FOOTBALL, TWIN) not in pairs
    assert table.attrs["n_redundant"] == 1
    # Kept, flagged: the twin pair ranks first by NPMI (180 of 200 and 180).
    kept = concept_correlations(
        Z, labels=labels, label_similarity=label_vectors, drop_redundant=False
    )
    twin = kept.iloc[0]
    assert (twin["latent_a"], twin["latent_b"], twin["count_ab"]) == (
        FOOTBALL,
        TWIN,
        180,
    )
    assert twin["npmi"] == pytest.approx(np.log(10) / -np.log(180 / N))
    assert twin["redundant"] and twin["label_similarity"] == pytest.approx(0.99)
    assert kept.iloc[1]["latent_b"] == INJURIES


def test_without_a_filter_the_twin_stays():
    Z, labels = planted()
    table = concept_correlations(Z, labels=labels)
    assert "label_similarity" not in table.columns
    assert (table.iloc[0]["latent_a"], table.iloc[0]["latent_b"]) == (FOOTBALL, TWIN)
    assert table.attrs["n_redundant"] == 0


@pytest.mark.parametrize("kind", ["encode", "transform", "array"])
def test_label_embedders(kind):
    Z, labels = planted()

    class Encoder:
        def encode(self, texts):
            return label_vectors(texts)

    class Transformer:
        def transform(self, texts):
            return label_vectors(texts)

    embed = {
        "encode": Encoder(),
        "transform": Transformer(),
        "array": label_vectors(labels),
    }[kind]
    table = concept_correlations(Z, labels=labels, label_similarity=embed)
    assert (table.iloc[0]["latent_a"], table.iloc[0]["latent_b"]) == (
        FOOTBALL,
        INJURIES,
    )
    assert table.attrs["n_redundant"] == 1


def test_significance_and_family():
    Z, labels = planted()
    table = concept_correlations(
        Z, labels=labels, correction="bonferroni", significant_only=False, top=None
    )
    n_tests = table.attrs["n_tests"]
    assert n_tests == 20 * 19 // 2  # every latent fires on >= 5 documents
    np.testing.assert_allclose(
        table["pvalue_corrected"], np.minimum(1, table["pvalue"] * n_tests)
    )
    assert table.attrs["n_candidates"] == len(table)
    assert (table["count_ab"] >= 5).all()
    assert table["npmi"].is_monotonic_decreasing
    sig = table[table["significant"]]
    assert set(zip(sig["latent_a"], sig["latent_b"], strict=True)) == {
        (FOOTBALL, INJURIES),
        (FOOTBALL, TWIN),
        (INJURIES, TWIN),
    }


def test_min_count_never_and_always_firing_latents():
    Z, labels = planted()
    Z[:, 0] = 0  # never fires
    Z[:, 1] = 1.0  # fires on every document
    table = concept_correlations(
        Z, labels=labels, significant_only=False, top=None, min_count=130
    )
    assert table.attrs["n_always"] == 1
    assert not {0, 1} & (set(table["latent_a"]) | set(table["latent_b"]))
    # Latents firing on >= 130 documents: 3, 11, 12 and the random ones.
    counts = (Z > 0).sum(axis=0)
    k = int(((counts >= 130) & (counts < N)).sum())
    assert table.attrs["n_tests"] == k * (k - 1) // 2
    assert table[["latent_a", "latent_b", "count_ab"]].values.tolist() == [
        [FOOTBALL, TWIN, 180],
        [FOOTBALL, INJURIES, 140],
    ]


def test_cross_field():
    rng = np.random.default_rng(1)
    X = (rng.random((N, 6)) < 0.1).astype(float)  # prompt latents
    Y = (rng.random((N, 6)) < 0.1).astype(float)  # response latents
    Y[:, 0] = X[:, 0]  # the response repeats the prompt's topic 0
    Y[:, 4] = X[:, 2] * (rng.random(N) < 0.9)  # a planted prompt -> response link
    labels = ["math", "code", "asks for a proof", "poem", "hopes it is correct", "x"]
    table = concept_correlations(X, Y=Y, labels=labels)
    top = table.iloc[0]
    assert (top["latent_a"], top["latent_b"]) == (2, 4)
    assert (top["label_a"], top["label_b"]) == (
        "asks for a proof",
        "hopes it is correct",
    )
    assert top["count_ab"] == int(((X[:, 2] > 0) & (Y[:, 4] > 0)).sum())
    # Same latent in both fields, same label: redundant, dropped.
    assert table.attrs["n_redundant"] == 1
    assert table.attrs["cross_field"] and table.attrs["n_tests"] == 36
    assert not ((table["latent_a"] == 0) & (table["latent_b"] == 0)).any()
    other = concept_correlations(
        X, Y=Y, labels=labels, labels_y=[f"r{j}" for j in range(6)]
    )
    assert (other.iloc[0]["latent_a"], other.iloc[0]["latent_b"]) == (0, 0)
    assert other.iloc[0]["label_b"] == "r0"


def test_sparse_input_and_embedder():
    Z, labels = planted()
    dense = concept_correlations(Z, labels=labels)
    sparse = concept_correlations(sp.csr_matrix(Z), labels=labels)
    pd.testing.assert_frame_equal(dense, sparse)

    class KeywordEmbedder:
        labels_ = pd.DataFrame({"label": ["dog", "cat", "rain"]})
        thresholds_ = np.full(3, 0.5)

        def transform(self, texts):
            words = ["dog", "cat", "rain"]
            return sp.csr_matrix([[float(w in t) for w in words] for t in texts])

    texts = ["dog cat"] * 30 + ["rain"] * 30 + ["dog"] * 5 + ["cat"] * 5 + ["-"] * 30
    table = concept_correlations(texts, embedder=KeywordEmbedder())
    assert table[["label_a", "label_b", "count_ab"]].values.tolist() == [
        ["dog", "cat", 30]
    ]


def test_npmi_and_fisher_tail_by_hand():
    assert npmi(10, 10, 10, 100) == 1.0
    assert npmi(1, 10, 10, 100) == pytest.approx(0.0)
    assert npmi(50, 100, 100, 200) == pytest.approx(np.log(1.0) / -np.log(0.25))
    grid = [
        (k, a, b, n)
        for n in (30, 500)
        for a in (1, 7, 15)
        for b in (2, 15)
        for k in range(0, 8)
    ]
    k, a, b, n = (np.array(v) for v in zip(*grid, strict=True))
    k = np.clip(k, np.maximum(0, a + b - n), np.minimum(a, b))
    for n_docs in (30, 500):
        at = n == n_docs
        np.testing.assert_allclose(
            fisher_greater(k[at], a[at], b[at], n_docs),
            stats.hypergeom.sf(k[at] - 1, n_docs, a[at], b[at]),
            rtol=1e-10,
            atol=1e-15,
        )


def test_bad_inputs_name_the_parameter():
    Z, labels = planted()
    with pytest.raises(
        ValueError,
        match=r"'Y' parameter of concept_correlations "
        r"must hold the same documents as 'X' \(2000 rows\)\. Got 10",
    ):
        concept_correlations(Z, Y=Z[:10])
    with pytest.raises(
        ValueError,
        match=r"'label_similarity' .* but no latent has one",
    ):
        concept_correlations(Z, label_similarity=label_vectors)
    with pytest.raises(
        ValueError,
        match=r"'label_similarity' .* one vector per "
        r"label \(20\)\. Got an array of shape \(3, 4\)",
    ):
        concept_correlations(Z, labels=labels, label_similarity=np.ones((3, 4)))
    with pytest.raises(TypeError, match=r"'label_similarity' parameter .* Got str"):
        concept_correlations(Z, labels=labels, label_similarity="minilm")
    # A NaN vector used to give NaN similarities: never redundant, silently.
    with_nan = np.ones((20, 4))
    with_nan[3, 1] = np.nan
    with pytest.raises(
        ValueError,
        match=r"'label_similarity' parameter of concept_correlations returned "
        r"NaN or infinite vectors",
    ):
        concept_correlations(Z, labels=labels, label_similarity=with_nan)
    with pytest.raises(
        ValueError,
        match=r"'labels_y' parameter .* one label per "
        r"latent \(3\)\. Got 20",
    ):
        concept_correlations(Z, Y=Z[:, :3], labels_y=labels)
    with pytest.raises(
        ValueError,
        match=r"'X' parameter of concept_correlations "
        r"must be a 2-d array",
    ):
        concept_correlations(Z[:, 0])
    with pytest.raises(ValueError, match=r"'min_count' parameter"):
        concept_correlations(Z, min_count=0)
