"""Embedding, SAE transform and LLM annotation over Dask collections.

Each function takes a Dask collection and an estimator and returns a lazy Dask
collection, partition for partition and row for row in the input's order:

- :func:`embed`: texts (Series, Bag or 1-D Array of str) -> embedding Array;
- :func:`sae_transform`: embedding Array -> latent activation Array (dense, or
  scipy CSR chunks when the autoencoder has ``sparse_output=True``);
- :func:`annotate`: texts (Series) -> DataFrame of 0/1 (or P(yes)) with one
  column per concept and the texts' index.

What travels: the estimator goes into the graph once, as one key that every
partition's task depends on, so the scheduler sends it to each worker once (not
once per task).
What is sent is its pickle: a :class:`TextEmbedder` or an :class:`LLMClient`
pickles to its parameters only (a model, an HTTP client, a cache connection and
an API key never travel), a fitted :class:`SparseAutoencoder` to its parameters
and weight arrays. Each worker process builds the heavy part itself, on first
use, and keeps it: the estimator is held in a per-process cache keyed by
``joblib.hash`` of its pickle, so later partitions, and later computations with
an equal estimator, reuse the loaded model instead of loading it again. The
cache holds the :data:`MAX_CACHED` most recently used estimators;
:func:`clear_worker_cache` empties it (run it on every worker with
``client.run(clear_worker_cache)``).

Partitions that reach the same process use its copy one at a time (a lock per
cached estimator): a model is never loaded twice by two threads, and the
parallel work inside a partition is the model's own (torch's threads, the LLM
client's ``n_concurrent`` requests). So give each worker process one thread
(``--nthreads 1``) and start as many processes as you want copies of the model.

Grid search over estimator hyperparameters needs no function here: scikit-learn
runs through joblib, so ``with joblib.parallel_config(backend="dask"):
GridSearchCV(..., n_jobs=-1).fit(X)`` sends each (candidate, fold) fit to the
cluster. See ``docs/scaling.rst`` for a recipe on a real cluster.

Dask is an optional dependency: ``pip install "sklearn-hypothesaes[dask]"``.
"""

from __future__ import annotations

import importlib
import pickle
import threading
from collections import OrderedDict

import numpy as np

__all__ = [
    "MAX_CACHED",
    "PROBE_TEXT",
    "annotate",
    "clear_worker_cache",
    "embed",
    "sae_transform",
]

#: Estimators kept loaded per worker process (least recently used dropped first).
MAX_CACHED = 4
#: Embedded on one worker by :func:`embed` to learn the output width and dtype.
# Not a text of the user's: a second graph over the input's keys makes the
# scheduler warn, and the client loads no model.
PROBE_TEXT = "A short text that tells the embedding width."

_INSTALL = 'pip install "sklearn-hypothesaes[dask]"'
_CACHE: OrderedDict[str, tuple[object, threading.Lock]] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def _import(module: str):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"sklearn_hypothesaes.dask requires the optional package "
            f"{module.split('.')[0]!r} (with dask.dataframe), which is not "
            f"installed. Install it with: {_INSTALL}"
        ) from exc


# Per-process cache of estimators -------------------------------------------
def _held(key: str, estimator):
    """This process's copy of the estimator with hash ``key``, and its lock.

    The first copy that arrives is kept, so the model it loads lazily on first
    use stays loaded for every later partition with the same key.
    """
    with _CACHE_LOCK:
        held = _CACHE.get(key)
        if held is None:
            held = _CACHE[key] = (estimator, threading.Lock())
            while len(_CACHE) > MAX_CACHED:
                _CACHE.popitem(last=False)
        else:
            _CACHE.move_to_end(key)
    return held


def clear_worker_cache() -> int:
    """Drop the estimators (and their loaded models) cached in this process.

    Run it on every worker with ``client.run(clear_worker_cache)`` to free
    their memory; the next partition loads its model again.

    Returns
    -------
    n_dropped : int
        How many estimators were dropped.

    Examples
    --------
    >>> from sklearn_hypothesaes.dask import clear_worker_cache
    >>> clear_worker_cache() >= 0
    True
    """
    with _CACHE_LOCK:
        n = len(_CACHE)
        _CACHE.clear()
    return n


def _ship(estimator, caller: str, param: str):
    """(key, Delayed) of the estimator: one graph key, sent once per worker."""
    import dask
    import joblib

    try:
        key = joblib.hash(estimator)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        raise TypeError(
            f"The {param!r} argument of {caller} must be picklable to be sent to "
            f"Dask workers. Pickling {type(estimator).__name__} failed: {exc}"
        ) from exc
    name = f"{type(estimator).__name__.lower()}-{key}"
    return key, dask.delayed(estimator, name=name, pure=True)


def _require(estimator, methods, caller, param, what):
    missing = [m for m in methods if not callable(getattr(estimator, m, None))]
    if missing:
        raise TypeError(
            f"The {param!r} argument of {caller} must be {what} (with a "
            f"{missing[0]!r} method). Got {type(estimator).__name__} instead."
        )


def _kind(obj) -> str | None:
    """ "series", "bag", "array", "frame" or None for a non-Dask object."""
    dd = _import("dask.dataframe")
    _import("dask.array")
    from dask.array import Array
    from dask.bag import Bag

    if isinstance(obj, dd.Series):
        return "series"
    if isinstance(obj, dd.DataFrame):
        return "frame"
    if isinstance(obj, Bag):
        return "bag"
    if isinstance(obj, Array):
        return "array"
    return None


def _got(obj) -> str:
    kind = _kind(obj)
    if kind == "array":
        return f"a {obj.ndim}-D dask Array of {obj.dtype}"
    if kind is not None:
        return f"a dask {type(obj).__name__}"
    return f"{type(obj).__module__}.{type(obj).__name__}"


def _as_list(part) -> list:
    if hasattr(part, "tolist"):  # pandas Series, numpy array
        return part.tolist()
    return list(part)


# Embedding -------------------------------------------------------------------
def _embed_block(part, key, embedder, n_out, dtype):
    texts = _as_list(part)
    if not texts:
        return np.empty((0, n_out), dtype=dtype)
    held, lock = _held(key, embedder)
    with lock:
        X = np.asarray(held.transform(texts), dtype=dtype)
    if X.shape != (len(texts), n_out):
        raise RuntimeError(
            f"{type(held).__name__}.transform returned shape {X.shape} for "
            f"{len(texts)} texts; expected ({len(texts)}, {n_out}). A Dask "
            "partition must map to one output row per text."
        )
    return X


def _probe(key, embedder):
    held, lock = _held(key, embedder)
    with lock:
        X = np.asarray(held.transform([PROBE_TEXT]))
    if X.ndim != 2 or X.shape[0] != 1:
        raise RuntimeError(
            f"{type(held).__name__}.transform must return a 2-D array with one "
            f"row per text. Got shape {X.shape} for 1 text."
        )
    return X.shape[1], X.dtype.str


def embed(texts, embedder):
    """Embed a Dask collection of texts partition by partition, on the workers.

    The embedder (its parameters, never a loaded model) is sent once to each
    worker, which loads the model on first use and keeps it for every later
    partition (see the module docstring). One small task runs at once, on a
    worker, to learn the output width by embedding :data:`PROBE_TEXT` (the
    worker keeps the model it loaded): the client loads no model.

    Parameters
    ----------
    texts : dask Series, dask Bag or 1-D dask Array of str
        The texts, e.g. ``dask.dataframe.read_parquet(...)["text"]``.
    embedder : TextEmbedder or transformer
        Any object whose ``transform(list of str)`` returns one row per text.

    Returns
    -------
    embeddings : dask Array of shape (n_texts, n_dims)
        One row chunk per input partition, in the input's order (the index of
        a Series is dropped). Row chunk sizes are unknown until computed
        (``embeddings.compute_chunk_sizes()`` finds them).

    See Also
    --------
    TextEmbedder : The embedder run on each partition.
    sae_transform : The next step, on the returned array.

    Examples
    --------
    >>> import dask.dataframe as dd
    >>> import pandas as pd
    >>> from sklearn_hypothesaes import TextEmbedder
    >>> from sklearn_hypothesaes.dask import embed
    >>> texts = dd.from_pandas(pd.Series(["Gripping.", "Dull.", "Too long."]),
    ...                        npartitions=2)
    >>> X = embed(texts, TextEmbedder(cache_dir=False))
    >>> X.compute().shape
    (3, 384)
    """
    caller = "sklearn_hypothesaes.dask.embed"
    kind = _kind(texts)
    if kind not in ("series", "bag", "array") or (kind == "array" and texts.ndim != 1):
        hint = (
            " Select the text column, e.g. ddf['text']."
            if kind == "frame"
            else " For texts in memory call embedder.transform(texts), or wrap "
            "them with dask.dataframe.from_pandas(pandas.Series(texts), "
            "npartitions=...)."
        )
        raise TypeError(
            f"The 'texts' argument of {caller} must be a dask Series, dask Bag or "
            f"1-D dask Array of str. Got {_got(texts)} instead.{hint}"
        )
    _require(embedder, ["transform"], caller, "embedder", "a text embedder")
    import dask
    import dask.array as da

    key, shipped = _ship(embedder, caller, "embedder")
    n_out, dtype = dask.delayed(_probe, pure=False)(key, shipped).compute()
    dtype = np.dtype(dtype)
    meta = np.empty((0, n_out), dtype=dtype)
    if kind == "series":
        return texts.map_partitions(
            _embed_block, key, shipped, n_out, dtype, meta=meta, enforce_metadata=False
        )
    if kind == "array":
        return texts.map_blocks(
            _embed_block,
            key,
            shipped,
            n_out,
            dtype,
            new_axis=1,
            chunks=(texts.chunks[0], (n_out,)),
            dtype=dtype,
            meta=meta,
        )
    blocks = texts.map_partitions(_embed_block, key, shipped, n_out, dtype)
    return da.concatenate(
        [
            da.from_delayed(block, shape=(np.nan, n_out), dtype=dtype, meta=meta)
            for block in blocks.to_delayed()
        ]
    )


# Sparse autoencoder -----------------------------------------------------------
def _transform_block(block, key, sae, n_out, sparse):
    import scipy.sparse as sp

    if block.shape[0] == 0:
        empty = np.empty((0, n_out), dtype=np.float32)
        return sp.csr_matrix(empty) if sparse else empty
    held, lock = _held(key, sae)
    with lock:
        Z = held.transform(block)
    if Z.shape != (block.shape[0], n_out):
        raise RuntimeError(
            f"{type(held).__name__}.transform returned shape {Z.shape} for "
            f"{block.shape[0]} rows; expected ({block.shape[0]}, {n_out})."
        )
    return Z.astype(np.float32, copy=False)


def sae_transform(embeddings, sae):
    """Latent activations of a Dask array of embeddings, block by block.

    The fitted autoencoder (parameters and weight arrays, a few MB) is sent
    once to each worker, which builds its torch tensors on first use and
    keeps them for later blocks.

    Parameters
    ----------
    embeddings : 2-D dask Array of shape (n_samples, n_features)
        Embeddings, e.g. from :func:`embed` or ``dask.array.from_zarr``. Blocks
        split along columns are joined first (``rechunk({1: -1})``).
    sae : SparseAutoencoder
        A fitted autoencoder (or another fitted transformer with
        ``get_feature_names_out``).

    Returns
    -------
    activations : dask Array of shape (n_samples, n_latents), float32
        The same row chunks as ``embeddings``. Chunks are scipy CSR matrices
        when ``sae.sparse_output`` is True (``compute()`` then stacks them into
        one CSR matrix), else dense numpy arrays.

    See Also
    --------
    SparseAutoencoder.transform : What runs on each block.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> from sklearn_hypothesaes import SparseAutoencoder
    >>> from sklearn_hypothesaes.dask import sae_transform
    >>> X = np.random.default_rng(0).normal(size=(200, 8)).astype(np.float32)
    >>> sae = SparseAutoencoder(n_latents=16, k=2, max_epochs=2, device="cpu",
    ...                         random_state=0).fit(X)
    >>> Z = sae_transform(da.from_array(X, chunks=50), sae)
    >>> Z.chunks[0], bool(np.array_equal(Z.compute(), sae.transform(X)))
    ((50, 50, 50, 50), True)
    """
    caller = "sklearn_hypothesaes.dask.sae_transform"
    kind = _kind(embeddings)
    if kind != "array" or embeddings.ndim != 2:
        hint = (
            " Convert it with ddf.to_dask_array(lengths=True)."
            if kind == "frame"
            else " For an array in memory call sae.transform(X), or wrap it with "
            "dask.array.from_array(X, chunks=...)."
        )
        raise TypeError(
            f"The 'embeddings' argument of {caller} must be a 2-D dask Array. Got "
            f"{_got(embeddings)} instead.{hint}"
        )
    _require(sae, ["transform"], caller, "sae", "a fitted SparseAutoencoder")
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(sae)
    n_in = getattr(sae, "n_features_in_", None)
    if n_in is not None and not np.isnan(embeddings.shape[1]):
        if embeddings.shape[1] != n_in:
            raise ValueError(
                f"The 'embeddings' argument of {caller} has {embeddings.shape[1]} "
                f"columns, but the autoencoder was fitted on {n_in}."
            )
    n_out = len(sae.get_feature_names_out())
    sparse = bool(getattr(sae, "sparse_output", False))
    if len(embeddings.chunks[1]) > 1:
        embeddings = embeddings.rechunk({1: -1})
    key, shipped = _ship(sae, caller, "sae")
    if sparse:
        import scipy.sparse as sp

        meta = sp.csr_matrix((0, n_out), dtype=np.float32)
    else:
        meta = np.empty((0, n_out), dtype=np.float32)
    return embeddings.map_blocks(
        _transform_block,
        key,
        shipped,
        n_out,
        sparse,
        chunks=(embeddings.chunks[0], (n_out,)),
        dtype=np.float32,
        meta=meta,
    )


# Annotation -------------------------------------------------------------------
def _annotate_block(part, key, annotator, concepts):
    import pandas as pd

    texts = _as_list(part)
    values = np.empty((0, len(concepts)))
    if texts:
        held, lock = _held(key, annotator)
        with lock:
            values = np.asarray(held.annotate(texts, concepts), dtype=np.float64)
    if values.shape != (len(texts), len(concepts)):
        raise RuntimeError(
            f"{type(annotator).__name__}.annotate returned shape {values.shape} "
            f"for {len(texts)} texts and {len(concepts)} concepts."
        )
    return pd.DataFrame(values, index=part.index, columns=list(concepts))


def annotate(texts, concepts, annotator):
    """Annotate a Dask Series of texts with concepts, partition by partition.

    The annotator (for an :class:`LLMAnnotator`, its :class:`LLMClient`'s
    parameters: never an SDK client or a key) is sent once to each worker,
    which builds its HTTP client and answer cache on first use and keeps them.
    Each worker reads the API key from its own environment variable named by
    the client's ``api_key_env``, and caches answers in its own ``cache_dir``.

    Parameters
    ----------
    texts : dask Series of str
        The texts.
    concepts : list of str
        Distinct concepts, e.g. ``["mentions a dog", "is about food"]``.
    annotator : LLMAnnotator or PhraseAnnotator
        Any object with ``annotate(texts, concepts)`` returning an
        (n_texts, n_concepts) array (or :class:`Annotations`).

    Returns
    -------
    annotations : dask DataFrame
        One float column per concept (1.0 / 0.0, or P(yes); NaN where the LLM
        gave no usable answer, counted in a warning on the worker), with the
        index and partitions of ``texts``.

    See Also
    --------
    annotate_texts : The same on texts in memory.

    Examples
    --------
    >>> import dask.dataframe as dd
    >>> import pandas as pd
    >>> from sklearn_hypothesaes import PhraseAnnotator
    >>> from sklearn_hypothesaes.dask import annotate
    >>> texts = dd.from_pandas(pd.Series(["the best film", "dull"]), npartitions=2)
    >>> annotate(texts, ['mentions "dull"'], PhraseAnnotator()).compute()
       mentions "dull"
    0              0.0
    1              1.0
    """
    caller = "sklearn_hypothesaes.dask.annotate"
    kind = _kind(texts)
    if kind != "series":
        hint = (
            " Select the text column, e.g. ddf['text']."
            if kind == "frame"
            else " For texts in memory call annotator.annotate(texts, concepts), "
            "or wrap them with dask.dataframe.from_pandas(pandas.Series(texts), "
            "npartitions=...)."
        )
        raise TypeError(
            f"The 'texts' argument of {caller} must be a dask Series of str. Got "
            f"{_got(texts)} instead.{hint}"
        )
    _require(annotator, ["annotate"], caller, "annotator", "an annotator")
    if isinstance(concepts, str) or not all(isinstance(c, str) for c in concepts):
        raise TypeError(
            f"The 'concepts' argument of {caller} must be a list of str. Got "
            f"{concepts!r} instead."
        )
    concepts = list(concepts)
    if not concepts:
        raise ValueError(f"The 'concepts' argument of {caller} is empty.")
    repeated = sorted({c for c in concepts if concepts.count(c) > 1})
    if repeated:
        raise ValueError(
            f"The 'concepts' argument of {caller} must hold distinct concepts (they "
            f"name the output columns). Got {repeated[0]!r} more than once."
        )
    import pandas as pd

    key, shipped = _ship(annotator, caller, "annotator")
    meta = pd.DataFrame(
        {c: pd.Series([], dtype=np.float64) for c in concepts},
        index=texts._meta.index,
    )
    return texts.map_partitions(_annotate_block, key, shipped, concepts, meta=meta)
