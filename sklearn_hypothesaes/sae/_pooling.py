"""Token-level SAEs: fit on token rows, apply per token, pool per document.

:class:`TokenwiseTransformer` fits an estimator (a :class:`SparseAutoencoder`)
on the stacked token rows of a :class:`~sklearn_hypothesaes.TokenStates` and
applies it to every token; :class:`DocumentPooler` turns each document's token
activations into one row. With :class:`~sklearn_hypothesaes.TokenEmbedder` in
front, the three make a pipeline from texts to document features.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.base import (
    BaseEstimator,
    OneToOneFeatureMixin,
    TransformerMixin,
    _fit_context,
    clone,
)
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ..text._tokens import TokenStates

_METHODS = ("max", "mean", "count")


def _check_states(X, estimator, *, fitted: bool = False) -> TokenStates:
    """X as a TokenStates; with ``fitted``, of the width ``estimator`` was fit on."""
    caller = type(estimator).__name__
    if fitted:
        check_is_fitted(estimator)
    if not isinstance(X, TokenStates):
        raise TypeError(
            f"{caller} expects a TokenStates (token rows and document offsets, "
            f"as TokenEmbedder returns); got {type(X).__name__}. Put "
            "TokenEmbedder before it in the pipeline, or wrap your own rows as "
            "TokenStates(values, offsets)."
        )
    if fitted and X.n_features != estimator.n_features_in_:
        raise ValueError(
            f"X has token rows of width {X.n_features}, but {caller} was fitted "
            f"on width {estimator.n_features_in_}."
        )
    return X


def pool_documents(values, offsets, method="max", threshold=0.0):
    """One row per document from the rows of its tokens.

    Parameters
    ----------
    values : ndarray or scipy sparse matrix of shape (n_tokens, n_features)
        Token rows, each document's contiguous.
    offsets : ndarray of int of shape (n_documents + 1,)
        Document ``i`` is ``values[offsets[i]:offsets[i + 1]]``.
    method : {"max", "mean", "count"}, default="max"
        Per feature: the largest value over the document's tokens, the mean
        over them, or the number of tokens whose value is above ``threshold``.
    threshold : float, default=0.0
        For ``"count"`` only.

    Returns
    -------
    pooled : ndarray or scipy.sparse.csr_matrix of shape (n_documents, n_features)
        Sparse when ``values`` is. A document without tokens pools to zeros
        for every method. Floating dtype of ``values`` (float64 for integers).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_hypothesaes.sae._pooling import pool_documents
    >>> values = np.array([[1.0, 0.0], [3.0, 2.0], [0.5, 0.0]])
    >>> pool_documents(values, [0, 2, 2, 3], "max")
    array([[3. , 2. ],
           [0. , 0. ],
           [0.5, 0. ]])
    >>> pool_documents(values, [0, 2, 2, 3], "count", threshold=0.9)
    array([[2., 1.],
           [0., 0.],
           [0., 0.]])
    """
    if method not in _METHODS:
        raise ValueError(
            f"The 'method' of pool_documents must be one of {_METHODS}. "
            f"Got {method!r} instead."
        )
    offsets = np.asarray(offsets, dtype=np.int64)
    lengths = np.diff(offsets)
    dtype = np.result_type(values.dtype, np.float32)
    if sp.issparse(values):
        return _pool_sparse(sp.csr_matrix(values), offsets, method, threshold, dtype)
    values = np.asarray(values)
    out = np.zeros((len(lengths), values.shape[1]), dtype=dtype)
    filled = lengths > 0
    if not filled.any():
        return out
    # reduceat over the starts of non-empty documents only: an empty document
    # adds no rows, so each such segment is exactly one document's tokens.
    starts = offsets[:-1][filled]
    if method == "max":
        out[filled] = np.maximum.reduceat(values, starts, axis=0)
    elif method == "mean":
        sums = np.add.reduceat(values.astype(dtype, copy=False), starts, axis=0)
        out[filled] = sums / lengths[filled, None]
    else:
        out[filled] = np.add.reduceat(values > threshold, starts, axis=0, dtype=dtype)
    return out


def _pool_sparse(values, offsets, method, threshold, dtype):
    n_docs, n_features = len(offsets) - 1, values.shape[1]
    lengths = np.diff(offsets)
    # Sums over tokens are one sparse product with a documents x tokens matrix.
    doc_of_token = np.repeat(np.arange(n_docs), lengths)
    if method in ("mean", "count"):
        if method == "count":
            if threshold < 0:
                raise ValueError(
                    "DocumentPooler(method='count') on sparse token rows needs "
                    "threshold >= 0, since every implicit zero would count; got "
                    f"threshold={threshold}. Pass dense rows instead."
                )
            values = (values > threshold).astype(dtype)
        weights = np.ones(values.shape[0], dtype=dtype)
        if method == "mean":
            weights /= np.maximum(lengths, 1)[doc_of_token]
        pooling = sp.csr_matrix(
            (weights, (doc_of_token, np.arange(values.shape[0]))),
            shape=(n_docs, values.shape[0]),
        )
        return sp.csr_matrix(pooling @ values.astype(dtype, copy=False))
    coo = values.tocoo()
    doc = doc_of_token[coo.row]
    key = doc * np.int64(n_features) + coo.col
    order = np.argsort(key, kind="stable")
    key, data = key[order], coo.data[order].astype(dtype, copy=False)
    first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    best = np.maximum.reduceat(data, first) if len(first) else data[:0]
    stored = np.diff(np.r_[first, len(key)])
    keys = key[first]
    rows, cols = keys // n_features, keys % n_features
    # A document with an implicit zero in this column has a max of at least 0.
    best = np.where(stored < lengths[rows], np.maximum(best, 0), best)
    return sp.csr_matrix((best, (rows, cols)), shape=(n_docs, n_features))


# The output is a TokenStates, never a DataFrame: set_output is not offered.
class TokenwiseTransformer(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
    """Fit a transformer on the token rows of documents; apply it to each token.

    :meth:`fit` trains a clone of ``estimator`` (typically a
    :class:`SparseAutoencoder`) on the stacked token rows of a
    :class:`~sklearn_hypothesaes.TokenStates`, at most
    ``max_tokens_per_document`` tokens of each document when set, so that
    long documents do not dominate and the training matrix stays bounded.
    :meth:`transform` applies it to every token and returns a
    :class:`~sklearn_hypothesaes.TokenStates` of the outputs (same documents
    and offsets), for :class:`DocumentPooler`.

    A pretrained SAE goes in frozen, so that :meth:`fit` only checks that its
    input width matches the token rows:
    ``TokenwiseTransformer(FrozenEstimator(sae))`` with
    ``sklearn.frozen.FrozenEstimator``.

    Token activations of a wide dictionary are large (n_tokens x n_latents):
    give the SAE ``sparse_output=True`` and they stay a CSR matrix, which
    :class:`DocumentPooler` pools without densifying.

    Parameters
    ----------
    estimator : transformer
        Fitted on ``states.values`` (y is not passed: it is per document, not
        per token); its ``transform`` is applied to every token row.
    max_tokens_per_document : int, default=None
        Train on at most this many tokens of each document, drawn uniformly
        without replacement. None trains on every token.
    random_state : int, RandomState instance or None, default=None
        Seeds the draw of training tokens.

    Attributes
    ----------
    estimator_ : transformer
        The fitted clone of ``estimator`` (``estimator`` itself when frozen).
    n_features_in_ : int
        Width of the token rows.
    n_training_tokens_ : int
        Token rows the estimator was fitted on.

    See Also
    --------
    TokenEmbedder : Texts to the hidden states of their tokens.
    DocumentPooler : One row per document from its tokens' rows.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sklearn_hypothesaes import TokenStates, TokenwiseTransformer
    >>> states = TokenStates(np.arange(12.0).reshape(6, 2), offsets=[0, 4, 6])
    >>> tokenwise = TokenwiseTransformer(StandardScaler(), max_tokens_per_document=2)
    >>> out = tokenwise.fit_transform(states)
    >>> out, tokenwise.n_training_tokens_
    (TokenStates(n_documents=2, n_tokens=6, n_features=2), 4)
    """

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit", "transform"])],
        "max_tokens_per_document": [Interval(Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
    }

    def __init__(self, estimator, *, max_tokens_per_document=None, random_state=None):
        self.estimator = estimator
        self.max_tokens_per_document = max_tokens_per_document
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Fit a clone of ``estimator`` on the (sampled) token rows of X.

        Parameters
        ----------
        X : TokenStates
            Token rows of the training documents.
        y : None
            Ignored: targets belong to documents, not tokens.

        Returns
        -------
        self : TokenwiseTransformer
        """
        X = _check_states(X, self)
        if X.n_tokens == 0:
            raise ValueError(
                f"TokenwiseTransformer got {X.n_documents} documents with 0 tokens "
                "in all; at least 1 token is required to fit."
            )
        sample = X
        if self.max_tokens_per_document is not None:
            sample = X.subsample(self.max_tokens_per_document, self.random_state)
        self.estimator_ = clone(self.estimator).fit(sample.values, None)
        self.n_features_in_ = X.n_features
        self.n_training_tokens_ = sample.n_tokens
        width = getattr(self.estimator_, "n_features_in_", X.n_features)
        if width != X.n_features:
            raise ValueError(
                f"The estimator of TokenwiseTransformer expects rows of width {width} "
                f"but the token rows have width {X.n_features}: a pretrained SAE "
                "must read the model and layer it was trained on (check "
                "TokenEmbedder's model and layer)."
            )
        return self

    def transform(self, X):
        """Apply the fitted estimator to every token row.

        Parameters
        ----------
        X : TokenStates

        Returns
        -------
        states : TokenStates
            The estimator's output rows (dense or sparse, as it returns them)
            with X's offsets and token ids.
        """
        X = _check_states(X, self, fitted=True)
        values = self.estimator_.transform(X.values)
        try:
            names = self.estimator_.get_feature_names_out(X.feature_names)
        except (AttributeError, NotFittedError):
            names = None  # an estimator without output names
        return X.with_values(values, names)

    def get_feature_names_out(self, input_features=None):
        """The fitted estimator's output names.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Names of the token rows' columns.

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        check_is_fitted(self)
        return self.estimator_.get_feature_names_out(input_features)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.transformer_tags.preserves_dtype = []
        return tags


class DocumentPooler(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Pool the token rows of each document into one row.

    Reads a :class:`~sklearn_hypothesaes.TokenStates` (token activations of an
    SAE from :class:`TokenwiseTransformer`, or hidden states) and returns a
    documents x features matrix; column ``j`` stays feature ``j``.

    - ``"max"``: the strongest activation of a latent anywhere in the document
      (a concept mentioned once counts fully; the usual choice for
      SAE latents).
    - ``"mean"``: the average over all the document's tokens (zeros included).
    - ``"count"``: how many tokens have an activation above ``threshold``.

    A document with no tokens (e.g. only special tokens, dropped) pools to
    zeros.

    Parameters
    ----------
    method : {"max", "mean", "count"}, default="max"
        How a document's tokens are pooled, per feature.
    threshold : float, default=0.0
        ``"count"`` counts tokens whose value is strictly above it. Ignored by
        the other methods.
    sparse_output : bool, default=False
        Return a CSR matrix instead of a dense array. Sparse token rows are
        pooled without densifying either way.

    Attributes
    ----------
    n_features_in_ : int
        Width of the token rows.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        The ``feature_names`` of the token rows fitted on, when they had
        names; the output columns keep them.

    See Also
    --------
    TokenwiseTransformer : Fit and apply an estimator on token rows.
    TokenEmbedder : Texts to the hidden states of their tokens.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_hypothesaes import DocumentPooler, TokenStates
    >>> states = TokenStates([[1.0, 0.0], [3.0, 2.0], [0.5, 0.0]], offsets=[0, 2, 3])
    >>> DocumentPooler(method="mean").fit_transform(states)
    array([[2. , 1. ],
           [0.5, 0. ]])
    >>> DocumentPooler(method="count", threshold=0.9).fit_transform(states)
    array([[2., 1.],
           [0., 0.]])
    """

    _parameter_constraints: dict = {
        "method": [StrOptions(set(_METHODS))],
        "threshold": [Real],
        "sparse_output": ["boolean"],
    }

    def __init__(self, method="max", *, threshold=0.0, sparse_output=False):
        self.method = method
        self.threshold = threshold
        self.sparse_output = sparse_output

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Record the width of the token rows.

        Parameters
        ----------
        X : TokenStates
        y : None
            Ignored.

        Returns
        -------
        self : DocumentPooler
        """
        X = _check_states(X, self)
        self.n_features_in_ = X.n_features
        if X.feature_names is not None:
            self.feature_names_in_ = X.feature_names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        return self

    def transform(self, X):
        """One row per document of X.

        Parameters
        ----------
        X : TokenStates

        Returns
        -------
        pooled : ndarray or scipy.sparse.csr_matrix of shape \
                (n_documents, n_features)
        """
        X = _check_states(X, self, fitted=True)
        pooled = pool_documents(X.values, X.offsets, self.method, self.threshold)
        if self.sparse_output:
            return sp.csr_matrix(pooled)
        return pooled.toarray() if sp.issparse(pooled) else pooled

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.sparse = True
        return tags
