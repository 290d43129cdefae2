"""sklearn_hypothesaes.dask on a LocalCluster of 2 worker processes on loopback.

Every result is compared with the same estimator run in this process, row for
row. Counters kept in this module (imported by the workers, which get this
process's sys.path) show that each worker process loads a model once and
receives the estimator once, however many partitions it runs.
"""

import copy
import re
import sys

import dask.array as da
import dask.bag as db
import dask.dataframe as dd
import joblib
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from distributed import Client, LocalCluster, get_task_stream
from fake_openai import FakeOpenAIServer, concept_judge
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, KFold

from sklearn_hypothesaes import (
    LLMAnnotator,
    LLMClient,
    PhraseAnnotator,
    SparseAutoencoder,
    TextEmbedder,
)
from sklearn_hypothesaes.dask import (
    annotate,
    clear_worker_cache,
    embed,
    sae_transform,
)

# Per process: how often this process built the model, unpickled an embedder
# and embedded a partition.
COUNTS = {"loads": 0, "unpickles": 0, "calls": 0}

WORDS = "dog cat food film plot actor music dull brilliant long short funny".split()
TEXTS = [
    f"{WORDS[i % 12]} {WORDS[(i * 7) % 12]} review number {i}" + " more" * (i % 5)
    for i in range(40)
]


class CountingEmbedder(TransformerMixin, BaseEstimator):
    """A deterministic embedder whose lazily built "model" counts its loads."""

    def __init__(self, n_dims=6):
        self.n_dims = n_dims

    def _model(self):
        if getattr(self, "_table", None) is None:
            COUNTS["loads"] += 1
            self._table = np.arange(1, 27 * self.n_dims + 1, dtype=np.float32).reshape(
                27, self.n_dims
            )
        return self._table

    def transform(self, X):
        COUNTS["calls"] += 1
        table = self._model()
        rows = []
        for text in X:
            letters = [ord(c) - 96 for c in text.lower() if "a" <= c <= "z"]
            counts = np.bincount(letters, minlength=27).astype(np.float32)
            rows.append(counts @ table / max(len(text), 1))
        return np.vstack(rows)

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_table", None)
        return state

    def __setstate__(self, state):
        COUNTS["unpickles"] += 1
        self.__dict__.update(state)


def read_counts():
    return dict(COUNTS)


def reset_unpickles():
    COUNTS["unpickles"] = 0


def reset_counts():
    for name in COUNTS:
        COUNTS[name] = 0
    return clear_worker_cache()


@pytest.fixture(scope="module")
def client():
    with (
        LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


@pytest.fixture
def counts(client):
    client.run(reset_counts)
    return lambda: client.run(read_counts)


# Input checks (no cluster) ----------------------------------------------------
def test_non_dask_inputs_are_refused_with_the_parameter_named():
    frame = dd.from_pandas(pd.DataFrame({"text": TEXTS[:4]}), npartitions=1)
    with pytest.raises(TypeError) as exc:
        embed(TEXTS, CountingEmbedder())
    assert str(exc.value).startswith(
        "The 'texts' argument of sklearn_hypothesaes.dask.embed must be a dask "
        "Series, dask Bag or 1-D dask Array of str. Got builtins.list instead. For "
        "texts in memory call embedder.transform(texts)"
    )
    with pytest.raises(TypeError, match=r"Got a dask DataFrame instead\. Select"):
        embed(frame, CountingEmbedder())
    with pytest.raises(TypeError, match=r"Got a 2-D dask Array of float64"):
        embed(da.zeros((4, 2)), CountingEmbedder())
    with pytest.raises(
        TypeError,
        match=re.escape(
            "The 'embedder' argument of sklearn_hypothesaes.dask.embed must be a "
            "text embedder (with a 'transform' method). Got str instead."
        ),
    ):
        embed(frame["text"], "all-MiniLM-L6-v2")
    with pytest.raises(
        TypeError,
        match=re.escape(
            "The 'embeddings' argument of sklearn_hypothesaes.dask.sae_transform "
            "must be a 2-D dask Array. Got numpy.ndarray instead."
        ),
    ):
        sae_transform(np.zeros((4, 2)), SparseAutoencoder())
    with pytest.raises(TypeError, match=r"Got a dask DataFrame instead\. Convert"):
        sae_transform(frame, SparseAutoencoder())
    with pytest.raises(NotFittedError):
        sae_transform(da.zeros((4, 2)), SparseAutoencoder())
    with pytest.raises(
        TypeError,
        match=re.escape(
            "The 'texts' argument of sklearn_hypothesaes.dask.annotate must be a "
            "dask Series of str. Got pandas.Series instead."
        ),
    ):
        annotate(pd.Series(TEXTS), ['mentions "dog"'], PhraseAnnotator())
    with pytest.raises(TypeError, match=r"'concepts' .* must be a list of str"):
        annotate(frame["text"], 'mentions "dog"', PhraseAnnotator())
    with pytest.raises(ValueError, match=r"Got 'mentions \"dog\"' more than once"):
        annotate(frame["text"], ['mentions "dog"'] * 2, PhraseAnnotator())


def test_missing_dask_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask.dataframe", None)
    with pytest.raises(ImportError) as exc:
        embed(TEXTS, CountingEmbedder())
    assert str(exc.value) == (
        "sklearn_hypothesaes.dask requires the optional package 'dask' (with "
        "dask.dataframe), which is not installed. Install it with: pip install "
        '"sklearn-hypothesaes[dask]"'
    )


# Embedding --------------------------------------------------------------------
def test_embed_equals_in_process_and_loads_once_per_worker(client, counts):
    # Filtered partitions of uneven sizes: rows must still land in order.
    series = pd.Series(TEXTS, index=np.arange(40)[::-1])
    texts = dd.from_pandas(series, npartitions=8, sort=False)
    texts = texts[texts.index % 7 != 3]  # filtered partitions: sizes vary
    kept = [t for i, t in zip(series.index, TEXTS, strict=True) if i % 7 != 3]
    embedder = CountingEmbedder()
    expected = embedder.transform(kept)

    X = embed(texts, embedder)  # a probe on one worker finds the width
    assert X.shape[1] == 6 and X.dtype == np.float32
    client.run(reset_unpickles)
    np.testing.assert_array_equal(X.compute(), expected)
    per_worker = counts().values()
    assert sum(c["calls"] for c in per_worker) == 1 + 8  # probe, 8 partitions
    assert max(c["calls"] for c in per_worker) >= 4
    for c in per_worker:
        # The embedder is one graph key: each worker unpickles it once, not
        # once per partition, and loads its model once.
        assert c["unpickles"] <= 1
        assert c["loads"] == (1 if c["calls"] else 0)

    # Another computation with an equal embedder reuses each worker's model.
    np.testing.assert_array_equal(embed(texts, CountingEmbedder()).compute(), expected)
    per_worker = counts().values()
    assert sum(c["calls"] for c in per_worker) == 2 * (1 + 8)
    assert [c["loads"] for c in per_worker] == [1, 1]
    # Each worker holds that one embedder until told to let it go.
    assert list(client.run(clear_worker_cache).values()) == [1, 1]


def test_embed_bag_and_array_inputs_keep_order(client, counts):
    embedder = CountingEmbedder(n_dims=3)
    expected = embedder.transform(TEXTS)
    bag = db.from_sequence(TEXTS, npartitions=5)
    np.testing.assert_array_equal(embed(bag, embedder).compute(), expected)
    array = da.from_array(np.array(TEXTS, dtype=object), chunks=9)
    X = embed(array, embedder)
    assert X.chunks == ((9, 9, 9, 9, 4), (3,))
    np.testing.assert_array_equal(X.compute(), expected)


def test_real_text_embedder_on_two_workers_equals_in_process(client):
    embedder = TextEmbedder(cache_dir=False)
    texts = dd.from_pandas(pd.Series(TEXTS), npartitions=4)
    X = embed(texts, embedder)
    assert X.shape[1] == 384
    # The workers embed while this process loads its own copy of the model.
    future = client.compute(X)
    expected = embedder.transform(TEXTS)
    got = future.result()
    assert got.shape == (40, 384)
    # Batches differ (one partition vs all texts), so padding differs: float noise.
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=2e-6)


# Sparse autoencoder -------------------------------------------------------------
@pytest.fixture(scope="module")
def fitted_sae():
    rng = np.random.default_rng(0)
    atoms = rng.normal(size=(12, 16))
    codes = rng.exponential(size=(300, 12)) * (rng.random((300, 12)) < 0.2)
    X = (codes @ atoms + 0.01 * rng.normal(size=(300, 16))).astype(np.float32)
    sae = SparseAutoencoder(
        n_latents=24, k=3, max_epochs=5, device="cpu", random_state=0
    ).fit(X)
    return sae, X


def test_sae_transform_equals_in_process(client, fitted_sae):
    sae, X = fitted_sae
    # Column chunks are joined; uneven row chunks are kept.
    embeddings = da.from_array(X, chunks=((70, 70, 70, 90), (10, 6)))
    Z = sae_transform(embeddings, sae)
    assert Z.chunks == ((70, 70, 70, 90), (24,))
    expected = sae.transform(X)
    assert (expected > 0).sum(axis=1).max() == 3
    np.testing.assert_allclose(Z.compute(), expected, rtol=1e-6, atol=1e-6)


def test_sae_transform_sparse_chunks(client, fitted_sae):
    sae, X = fitted_sae
    sparse_sae = copy.deepcopy(sae).set_params(sparse_output=True)
    Z = sae_transform(da.from_array(X, chunks=100), sparse_sae)
    assert isinstance(Z._meta, sp.csr_matrix)
    got = Z.compute()
    assert sp.issparse(got) and got.shape == (300, 24)
    np.testing.assert_allclose(got.toarray(), sae.transform(X), rtol=1e-6, atol=1e-6)


def test_sae_transform_refuses_a_wrong_width(fitted_sae):
    with pytest.raises(
        ValueError,
        match=re.escape(
            "The 'embeddings' argument of sklearn_hypothesaes.dask.sae_transform "
            "has 8 columns, but the autoencoder was fitted on 16."
        ),
    ):
        sae_transform(da.zeros((10, 8)), fitted_sae[0])


# Annotation ---------------------------------------------------------------------
CONCEPTS = ["mentions a dog", "talks about food", "says it is dull"]


def test_llm_annotation_on_workers_equals_in_process(client, tmp_path):
    index = [f"r{i}" for i in range(24)][::-1]
    series = pd.Series(TEXTS[:24], index=index)
    with FakeOpenAIServer(chat=concept_judge) as server:
        annotator = LLMAnnotator(
            LLMClient(model="fake", base_url=server.base_url, cache_dir=False)
        )
        expected = annotator.annotate(series.tolist(), CONCEPTS).values
        n_local = len(server.requests)
        texts = dd.from_pandas(series, npartitions=4, sort=False)
        got = annotate(texts, CONCEPTS, annotator).compute()
        # Every prompt was sent once more, from the workers: no partition twice.
        assert len(server.requests) == 2 * n_local >= 2 * 24
    assert list(got.columns) == CONCEPTS
    assert list(got.index) == index
    np.testing.assert_array_equal(got.to_numpy(), expected)
    # The judge's rule: a concept is present when its last word is in the text.
    assert expected[:, 0].sum() == sum("dog" in t for t in TEXTS[:24]) > 0


def test_phrase_annotation_keeps_index_and_order(client):
    series = pd.Series(TEXTS, index=np.arange(40) * 3)
    concepts = ['mentions "dull"', 'mentions "film" or "actor"']
    got = annotate(dd.from_pandas(series, npartitions=3), concepts, PhraseAnnotator())
    expected = PhraseAnnotator().annotate(TEXTS, concepts).values
    got = got.compute()
    assert list(got.index) == list(series.index)
    np.testing.assert_array_equal(got.to_numpy(), expected)


# Grid search with joblib's Dask backend -------------------------------------------
def test_grid_search_with_dask_backend_equals_in_process(client, fitted_sae):
    _, X = fitted_sae
    search = GridSearchCV(
        SparseAutoencoder(k=2, max_epochs=3, device="cpu", random_state=0),
        {"n_latents": [8, 16]},
        cv=KFold(3),
        n_jobs=-1,
    )
    with joblib.parallel_config(backend="sequential"):
        expected = clone(search).fit(X)
    with get_task_stream(client) as stream, joblib.parallel_config(backend="dask"):
        search.fit(X)
    ran_on_workers = {t["worker"] for t in stream.data}
    assert ran_on_workers and all(
        w.startswith("tcp://127.0.0.1:") for w in ran_on_workers
    )
    assert search.best_params_ == expected.best_params_ == {"n_latents": 16}
    for name in ["mean_test_score", "split0_test_score", "split2_test_score"]:
        np.testing.assert_allclose(
            search.cv_results_[name], expected.cv_results_[name], rtol=1e-6
        )
