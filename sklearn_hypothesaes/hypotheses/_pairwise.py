"""Pairwise tasks: rows that hold two texts and a target saying which wins.

A pairwise row is ``(a, b)`` with a target that says whether ``a`` wins (a
class, e.g. 1 when headline a was clicked more than headline b) or by how much
(a number). The features of a pair are the difference of the two texts'
representations, ``inner(a) - inner(b)`` (:class:`PairwiseDifference`), and a
hypothesis is a concept present in one text and not the other: its
annotation of a pair is ``annotation(a) - annotation(b)``, in {-1, 0, 1}.
:class:`HypothesisGenerator` with ``pairwise=True`` does the latter.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context, clone
from sklearn.utils._param_validation import HasMethods
from sklearn.utils.validation import check_is_fitted

from ..utils._validation import check_texts

__all__ = [
    "PairwiseDifference",
    "TextPairs",
    "check_text_pairs",
    "pair_differences",
]


@dataclasses.dataclass
class TextPairs:
    """Two aligned lists of texts: the first and second text of each pair.

    Attributes
    ----------
    first, second : list of str
        ``first[i]`` and ``second[i]`` are the two texts of pair ``i``.
    """

    first: list
    second: list

    def __len__(self):
        return len(self.first)

    def take(self, rows) -> TextPairs:
        """The pairs at ``rows``, in that order."""
        return TextPairs([self.first[i] for i in rows], [self.second[i] for i in rows])

    def unique(self):
        """The distinct texts of both columns, and where each pair's texts are.

        Returns
        -------
        texts : list of str
            Each distinct text once, in first-seen order (first column, then
            second).
        first, second : ndarray of int of shape (n_pairs,)
            Position in ``texts`` of each pair's first and second text.
        """
        position = {}
        for text in self.first + self.second:
            position.setdefault(text, len(position))
        first = np.fromiter((position[t] for t in self.first), int, len(self))
        second = np.fromiter((position[t] for t in self.second), int, len(self))
        return list(position), first, second


def check_text_pairs(texts, *, caller, param="texts", n_rows=None, hint=None):
    """Pairs of texts as :class:`TextPairs`, or a clear error.

    Parameters
    ----------
    texts : array-like of shape (n_pairs, 2)
        A 2-D array or two-column DataFrame of str, or a sequence of pairs
        (tuples or lists of two str).
    caller : str
        What is checking, for the message.
    param : str, default="texts"
        The parameter's name in the message.
    n_rows : int or None, default=None
        The number of pairs expected (rows of X), when known.
    hint : str or None, default=None
        Appended to the message when ``texts`` is None.

    Returns
    -------
    pairs : TextPairs

    Examples
    --------
    >>> pairs = check_text_pairs([("a", "b"), ("c", "d")], caller="f")
    >>> pairs.first, pairs.second
    (['a', 'c'], ['b', 'd'])
    """
    where = f"The {param!r} parameter of {caller}"
    if texts is None:
        raise ValueError(
            f"{where} is required (two texts per row, shape (n_pairs, 2)); got None."
            + (f" {hint}" if hint else "")
        )
    if isinstance(texts, TextPairs):
        first, second = texts.first, texts.second
    elif hasattr(texts, "iloc") and getattr(texts, "ndim", 1) == 2:
        if texts.shape[1] != 2:
            raise ValueError(
                f"{where} must have two columns of texts (the first and second "
                f"text of each pair); got {texts.shape[1]} columns."
            )
        first, second = texts.iloc[:, 0], texts.iloc[:, 1]
    else:
        if isinstance(texts, str | bytes):
            raise TypeError(
                f"{where} must be pairs of texts, shape (n_pairs, 2); got a single str."
            )
        rows = texts if hasattr(texts, "shape") else list(texts)
        array = np.empty((len(rows), 2), dtype=object)
        try:
            for i, row in enumerate(rows):
                if isinstance(row, str | bytes) or len(row) != 2:
                    raise ValueError
                array[i] = tuple(row)
        except (TypeError, ValueError):
            shape = getattr(texts, "shape", None)
            got = f"shape {shape}" if shape is not None else f"row {i} = {row!r:.60}"
            raise ValueError(
                f"{where} must be pairs of texts, shape (n_pairs, 2) (an array, a "
                f"two-column DataFrame or a list of (text_a, text_b)); got {got}."
            ) from None
        first, second = array[:, 0], array[:, 1]
    if n_rows is not None and len(first) != n_rows:
        raise ValueError(
            f"{where} must hold one pair of texts per row of X ({n_rows}); got "
            f"{len(first)}."
        )
    name = f"{param}[:, {{}}]"
    first = check_texts(first, caller=caller, param=name.format(0))
    second = check_texts(second, caller=caller, param=name.format(1))
    return TextPairs(first, second)


def pair_differences(transformer, pairs):
    """``transformer.transform(a) - transformer.transform(b)`` for each pair.

    Each distinct text is transformed once.

    Parameters
    ----------
    transformer : fitted estimator
        Texts in, features out.
    pairs : TextPairs
        Checked pairs (see :func:`check_text_pairs`).

    Returns
    -------
    D : ndarray or sparse matrix of shape (n_pairs, n_features)
        Sparse (CSR) when the transformer's output is sparse.
    """
    texts, first, second = pairs.unique()
    Z = transformer.transform(texts)
    if sparse.issparse(Z):
        Z = sparse.csr_matrix(Z)
        return (Z[first] - Z[second]).tocsr()
    Z = np.asarray(Z)
    return Z[first] - Z[second]


class PairwiseDifference(TransformerMixin, BaseEstimator):
    """Features of text pairs: ``inner(a) - inner(b)``.

    A meta-transformer for pairwise tasks. ``fit`` fits a clone of
    ``transformer`` on the distinct texts of both columns together (without
    y: the inner steps, an embedder and a sparse autoencoder, learn from
    texts alone), and ``transform`` returns, for each pair, the inner
    representation of its first text minus that of its second. Each
    distinct text is transformed once, however many pairs it appears in.

    Parameters
    ----------
    transformer : estimator
        Texts in, features out, e.g. ``Pipeline([("embed", TextEmbedder()),
        ("sae", SparseAutoencoder())])``.

    Attributes
    ----------
    transformer_ : estimator
        The fitted clone of ``transformer``.
    n_features_in_ : int
        2 (the two texts of a pair).

    See Also
    --------
    HypothesisGenerator : With ``pairwise=True``, hypotheses about pairs.
    run_method : Builds this step for pairs of texts.

    Examples
    --------
    >>> from sklearn.feature_extraction.text import CountVectorizer
    >>> from sklearn_hypothesaes import PairwiseDifference
    >>> pairs = [("a red car", "a car"), ("a car", "a red red car")]
    >>> diff = PairwiseDifference(CountVectorizer()).fit(pairs)
    >>> diff.get_feature_names_out()
    array(['car', 'red'], dtype=object)
    >>> diff.transform(pairs).toarray()
    array([[ 0,  1],
           [ 0, -2]])
    """

    _parameter_constraints: dict = {
        "transformer": [HasMethods(["fit", "transform"])],
    }

    def __init__(self, transformer):
        self.transformer = transformer

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Fit the inner transformer on the distinct texts of both columns.

        Parameters
        ----------
        X : array-like of shape (n_pairs, 2)
            Pairs of texts (see :func:`check_text_pairs`).
        y : ignored
            The inner transformer is fit on texts, not pairs, so without y.

        Returns
        -------
        self : PairwiseDifference
        """
        pairs = check_text_pairs(X, caller="PairwiseDifference.fit", param="X")
        texts, _, _ = pairs.unique()
        self.transformer_ = clone(self.transformer).fit(texts)
        self.n_features_in_ = 2
        return self

    def transform(self, X):
        """First text's features minus the second's, per pair.

        Parameters
        ----------
        X : array-like of shape (n_pairs, 2)
            Pairs of texts.

        Returns
        -------
        D : ndarray or sparse matrix of shape (n_pairs, n_features)
            Sparse (CSR) when the inner transformer's output is sparse.
        """
        check_is_fitted(self)
        pairs = check_text_pairs(X, caller="PairwiseDifference.transform", param="X")

        return pair_differences(self.transformer_, pairs)

    def get_feature_names_out(self, input_features=None):
        """The inner transformer's output names (each column is a difference).

        Returns
        -------
        names : ndarray of str
        """
        check_is_fitted(self)
        return np.asarray(self.transformer_.get_feature_names_out(), dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = True
        tags.requires_fit = True
        return tags
