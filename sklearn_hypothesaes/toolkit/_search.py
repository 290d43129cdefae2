"""Property-based retrieval: documents ranked by the latents a property names.

A property described in words ("sarcastic", "mentions a price", "written as a
list") is matched to the latents whose labels say the same thing (cosine
similarity of the label and query embeddings, optionally checked by an LLM),
and documents are scored by their activations on those latents, weighted by
the similarity. A document can be found although none of the query's words
appear in it: what counts is the latent firing. Scoring is one sparse product
over the matched columns, so a query over 100,000 documents takes
milliseconds (see ``benchmarks/bench_search.py``).

:class:`PropertySearch` also has ``method="dense"``, the usual baseline:
cosine similarity of the query embedding with the document embeddings.

The helpers that embed texts and match latents to a description
(:func:`text_vectors`, :func:`match_latents`, :func:`llm_relevance`) are
shared with :mod:`._clustering`; :func:`text_vectors` also embeds the labels
of :func:`concept_correlations`.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, _fit_context
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ..llm import LLMClient, Usage, fill_prompt
from ..utils._validation import check_texts
from ._binarize import binarize_activations
from ._diff import latent_inputs, resolve_labels, resolve_thresholds

#: Columns of the table :meth:`PropertySearch.search` returns, in this order.
SEARCH_COLUMNS = ["rank", "row", "id", "text", "score", "latents", "contributions"]
#: Columns of the table of matched latents (:func:`match_latents`).
MATCH_COLUMNS = ["latent", "label", "similarity", "llm_relevance", "weight"]

#: The question put to an LLM about each candidate latent of a search.
RELEVANCE_PROMPT = """\
A feature of texts is described by this label: "{label}".
Does a text on which this feature is present have the property "{query}"?
Answer yes or no."""

# Strong activation of a latent: this percentile of its non-zero activations
# where it fires (the same robust scale as latent_thresholds' "relative").
_SCALE_PERCENTILE = 90


def text_vectors(
    embed,
    texts,
    *,
    param: str,
    caller: str,
    precomputed: bool = False,
    item: str = "text",
) -> np.ndarray:
    """Unit vectors of texts, from a callable or a text embedder.

    Parameters
    ----------
    embed : callable, object with ``transform`` or ``encode``, or array-like
        ``texts -> vectors`` (list of str in, 2-d array out), a fitted
        transformer such as :class:`TextEmbedder`, or a sentence-transformers
        model (``encode``); with ``precomputed``, also the vectors themselves
        (one row per text).
    texts : list of str
        What to embed.
    param, caller : str
        Named in error messages.
    precomputed : bool, default=False
        Accept an array (or list) of vectors as ``embed``.
    item : str, default="text"
        What a text is, in error messages ("one vector per label").

    Returns
    -------
    vectors : ndarray of shape (len(texts), n_dims), float32
        L2-normalised rows (a zero row stays zero).

    Examples
    --------
    >>> import numpy as np
    >>> text_vectors(lambda t: np.ones((len(t), 4)), ["a", "b"],
    ...              param="text_embedder", caller="example")
    array([[0.5, 0.5, 0.5, 0.5],
           [0.5, 0.5, 0.5, 0.5]], dtype=float32)
    """
    texts = list(texts)
    # Checked first: a DataFrame of vectors has a transform method too.
    if precomputed and (
        isinstance(embed, list | tuple)
        or (hasattr(embed, "shape") and not callable(embed))
    ):
        vectors = embed
    elif callable(getattr(embed, "transform", None)):
        vectors = embed.transform(texts)
    elif callable(getattr(embed, "encode", None)) and not isinstance(embed, str):
        vectors = embed.encode(texts)
    elif callable(embed):
        vectors = embed(texts)
    else:
        raise TypeError(
            f"The {param!r} parameter of {caller} must be a callable texts -> "
            "vectors or a text embedder (an object with transform or encode, "
            "such as TextEmbedder)"
            + (f", or an array of one vector per {item}" if precomputed else "")
            + f". Got {type(embed).__name__} instead."
        )
    if hasattr(vectors, "to_numpy"):
        vectors = vectors.to_numpy()
    if sp.issparse(vectors):
        vectors = vectors.toarray()
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(texts):
        raise ValueError(
            f"The {param!r} parameter of {caller} must give one vector per {item} "
            f"({len(texts)}). Got an array of shape {vectors.shape} instead."
        )
    if not np.isfinite(vectors).all():
        raise ValueError(
            f"The {param!r} parameter of {caller} returned NaN or infinite vectors."
        )
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def resolve_text_embedder(text_embedder, embedder):
    """The text embedder to use: given, the InterpretableEmbedder's, or the
    package default (:class:`TextEmbedder`, the packaged offline MiniLM)."""
    if text_embedder is not None:
        return text_embedder
    inner = getattr(embedder, "embedder_", None)
    if inner is not None:
        return inner
    from ..text import TextEmbedder

    return TextEmbedder()


def llm_relevance(llm, query: str, labels, *, template: str, field: str):
    """P(yes) that each labelled feature has the property (or is part of the
    axis) ``query``, asked of an LLM one label per request.

    Parameters
    ----------
    llm : LLMClient
        The endpoint (answers are cached by the client).
    query : str
        The property or axis.
    labels : list of str
        The candidate latents' labels.
    template : str
        The question, with ``{label}`` and ``{<field>}`` placeholders.
    field : str
        The placeholder ``query`` fills (``"query"`` or ``"axis"``).

    Returns
    -------
    probabilities : ndarray of shape (len(labels),)
        P(yes) read from the first token's log-probabilities (or 1.0 / 0.0
        from the answer text where the endpoint gives none); NaN where no
        usable answer came back.
    usage : Usage
        What the requests cost.
    """
    prompts = [
        fill_prompt(template, "template", label=label, **{field: query})
        for label in labels
    ]
    found = llm.yes_probabilities(prompts, desc="Matching latents")
    values = np.array([np.nan if v is None else float(v) for v in found], dtype=float)
    return values, found.usage


def match_latents(
    query,
    labels,
    label_vectors,
    query_vectors,
    *,
    labelled=None,
    n_latents: int,
    min_similarity: float | None = None,
    llm=None,
    n_candidates: int | None = None,
    template: str = RELEVANCE_PROMPT,
    field: str = "query",
):
    """The latents whose labels are closest to a description.

    Parameters
    ----------
    query : str or list of str
        The description (several phrasings: a latent's similarity is its
        best one).
    labels : sequence of str
        One label per latent.
    label_vectors : ndarray of shape (n_latents, n_dims)
        Unit vectors of the labels (rows of unlabelled latents are ignored).
    query_vectors : ndarray of shape (n_phrasings, n_dims)
        Unit vectors of the description's phrasings.
    labelled : array-like of bool or None, default=None
        Which latents have a real label (see :func:`resolve_labels`); the
        others are never matched. None: all.
    n_latents : int
        Most latents matched.
    min_similarity : float or None, default=None
        Least cosine similarity of a matched label.
    llm : LLMClient or None, default=None
        Asked about each of the ``n_candidates`` most similar labels; only
        those with P(yes) >= 0.5 are kept, most relevant first (ties: more
        similar first).
    n_candidates : int or None, default=None
        Labels the LLM is asked about; None is ``2 * n_latents``.
    template, field : str
        The LLM question and the placeholder the description fills.

    Returns
    -------
    matched : pandas.DataFrame
        Columns :data:`MATCH_COLUMNS`: ``latent``, ``label``, ``similarity``
        (cosine), ``llm_relevance`` (P(yes), NaN without ``llm``), ``weight``
        (the similarity, floored at 0), best first.
    usage : Usage
    """
    phrases = [query] if isinstance(query, str) else list(query)
    usable = (
        np.ones(len(labels), dtype=bool)
        if labelled is None
        else np.asarray(labelled, dtype=bool)
    )
    similarity = np.full(len(labels), -np.inf)
    if usable.any():
        similarity[usable] = (label_vectors[usable] @ query_vectors.T).max(axis=1)
    order = np.lexsort((np.arange(len(labels)), -similarity))
    order = order[np.isfinite(similarity[order])]
    if min_similarity is not None:
        order = order[similarity[order] >= min_similarity]
    relevance = np.full(len(labels), np.nan)
    usage = Usage()
    if llm is None:
        chosen = order[:n_latents]
    else:
        candidates = order[: n_candidates or 2 * n_latents]
        values, usage = llm_relevance(
            llm,
            "; ".join(phrases),
            [str(labels[j]) for j in candidates],
            template=template,
            field=field,
        )
        relevance[candidates] = values
        keep = candidates[values >= 0.5]  # NaN (no answer) is never >= 0.5
        # Most relevant first; the stable sort keeps similarity order in ties.
        chosen = keep[np.argsort(-relevance[keep], kind="stable")][:n_latents]
    matched = pd.DataFrame(
        {
            "latent": chosen.astype(np.int64),
            "label": [str(labels[j]) for j in chosen],
            "similarity": similarity[chosen],
            "llm_relevance": relevance[chosen],
            "weight": np.maximum(similarity[chosen], 0.0),
        },
        columns=MATCH_COLUMNS,
    )
    return matched, usage


def row_ids(X, texts=None):
    """The input's row ids: ``texts``' or ``X``'s index (a Series or
    DataFrame), else None (the caller numbers the rows)."""
    for source in (texts, X):
        index = getattr(source, "index", None)
        if isinstance(index, pd.Index):
            return index
    return None


def is_numeric_input(X) -> bool:
    """Whether ``X`` holds numbers (a sparse matrix or a numeric array or
    frame), as opposed to texts (a 1-d numeric array is numbers, so that
    validation says it has the wrong shape)."""
    if sp.issparse(X):
        return True
    values = X.to_numpy() if hasattr(X, "to_numpy") else X
    try:
        values = np.asarray(values)
    except Exception:
        return False
    if values.ndim == 1:
        # A 1-d array of numbers is a wrong shape of numbers, not texts.
        return values.dtype.kind in "biufc"
    if values.ndim != 2:
        return False
    if values.dtype.kind == "O":
        # Numbers stored as objects are numbers; a column of str is texts.
        return values.size > 0 and not isinstance(values.flat[0], str)
    return values.dtype.kind in "biufc"


def validate_activations(estimator, X, *, caller: str) -> sp.csr_matrix:
    """Latent activations given to an estimator's ``fit``, as CSR float32.

    Validated by scikit-learn's ``validate_data`` (which sets
    ``n_features_in_``), then refused where negative, NaN or empty.
    """
    X = validate_data(
        estimator, X, accept_sparse=("csr", "csc"), dtype=(np.float32, np.float64)
    )
    low = (X.data.min() if X.nnz else 0.0) if sp.issparse(X) else X.min(initial=0.0)
    if low < 0:
        raise ValueError(
            f"Negative values in data passed to {caller}: the 'X' parameter must "
            "hold non-negative latent activations (a latent fires where it is "
            f"> 0). Got a minimum of {low:g}."
        )
    Z, _ = latent_inputs(X, param="X", caller=caller)
    return Z


class PropertySearch(BaseEstimator):
    """Find documents that have a property described in words.

    ``method="latents"`` (the default) matches the query to the latents
    whose labels are most similar to it (cosine similarity of the label and
    query embeddings, at most ``n_latents``, optionally checked by an LLM)
    and scores each document by::

        score(d) = sum over matched latents j of  weight_j * a_dj / s_j

    where ``a_dj`` is the document's activation of latent ``j`` where the
    latent fires (by the toolkit's thresholds, zero elsewhere), ``s_j`` the
    latent's strong activation (the 90th percentile of its activations where
    it fires in the fit corpus, so latents on different scales weigh alike)
    and ``weight_j`` the label's similarity to the query. A document is found
    when the matched latents fire on it, whether or not it contains the
    query's words. ``method="dense"`` is the baseline: cosine similarity of
    the query embedding with each document's embedding.

    Parameters
    ----------
    embedder : fitted InterpretableEmbedder or None, default=None
        Turns texts into latent activations and gives the labels and
        thresholds; its ``embedder_`` is the default ``text_embedder``.
        None: ``fit`` takes activations (and ``labels=``).
    text_embedder : callable, text embedder or None, default=None
        Embeds the query and the labels (``method="latents"``) or the query
        and the documents (``method="dense"``): a callable ``texts ->
        vectors``, or an object with ``transform`` (:class:`TextEmbedder`)
        or ``encode``. None is ``embedder.embedder_``, else
        ``TextEmbedder()`` (the packaged offline MiniLM).
    method : {"latents", "dense"}, default="latents"
        How documents are scored (see above).
    n_latents : int, default=10
        Most latents matched to a query.
    min_similarity : float or None, default=None
        Least cosine similarity of a matched label to the query; None keeps
        the ``n_latents`` most similar whatever their similarity.
    llm : LLMClient or None, default=None
        When given, the ``n_candidates`` most similar labels are put to it
        (is a text with this feature "<query>"? yes/no, one request each,
        cached); only those it says yes to are kept, reranked by its P(yes).
    n_candidates : int or None, default=None
        Labels asked about with ``llm``; None is ``2 * n_latents``.
    thresholds : {"relative", "positive", "quantile"}, float, array-like or None, \
default=None
        When a latent fires (see :func:`latent_thresholds`); None is the
        embedder's ``thresholds_``, else "relative" on the fit activations.

    Attributes
    ----------
    n_documents_ : int
        Documents searched.
    labels_ : list of str
        One label per latent (``method="latents"``); an unlabelled latent is
        named ``latent_<j>`` (or as the embedder names it) and never matched.
    scales_ : ndarray of shape (n_latents,)
        Each latent's strong activation ``s_j`` (1 for a latent that never
        fires).
    thresholds_ : ndarray of shape (n_latents,)
        The firing thresholds used.
    n_features_in_ : int
        Columns of the activations (or embeddings) given to ``fit``; only
        when ``fit`` was given numbers.

    See Also
    --------
    ConceptClustering : Clusters along the latents that match an axis.
    diff_corpora : Latents that fire more often in one corpus.

    Examples
    --------
    >>> import numpy as np
    >>> Z = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 3.0]])
    >>> labels = ["a question", "a price", "shouting"]
    >>> vocab = {"a question": [1, 0, 0], "asks something": [0.9, 0.1, 0],
    ...          "a price": [0, 1, 0], "shouting": [0, 0, 1]}
    >>> def embed(texts):
    ...     return np.array([vocab[t] for t in texts], dtype=float)
    >>> search = PropertySearch(text_embedder=embed, n_latents=1).fit(
    ...     Z, labels=labels, texts=["Why?", "It costs $5.", "Why SO LOUD?"])
    >>> found = search.search("asks something", k=2)
    >>> found[["rank", "text", "latents", "contributions"]]
       rank          text latents        contributions
    0     1          Why?     [0]  a question (+1.046)
    1     2  Why SO LOUD?     [0]  a question (+0.523)
    >>> found.attrs["matched"][0]["label"]
    'a question'
    """

    _parameter_constraints: dict = {
        "embedder": [HasMethods(["transform"]), None],
        "text_embedder": [callable, HasMethods(["transform"]), None],
        "method": [StrOptions({"latents", "dense"})],
        "n_latents": [Interval(Integral, 1, None, closed="left")],
        "min_similarity": [Interval(Real, -1, 1, closed="both"), None],
        "llm": [LLMClient, None],
        "n_candidates": [Interval(Integral, 1, None, closed="left"), None],
        "thresholds": "no_validation",
    }

    def __init__(
        self,
        embedder=None,
        text_embedder=None,
        *,
        method="latents",
        n_latents=10,
        min_similarity=None,
        llm=None,
        n_candidates=None,
        thresholds=None,
    ):
        self.embedder = embedder
        self.text_embedder = text_embedder
        self.method = method
        self.n_latents = n_latents
        self.min_similarity = min_similarity
        self.llm = llm
        self.n_candidates = n_candidates
        self.thresholds = thresholds

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, *, labels=None, texts=None):
        """Index the documents to search.

        Parameters
        ----------
        X : sequence of str, or {array-like, sparse matrix} of shape \
(n_documents, n_features)
            Texts (with ``embedder``, or with ``method="dense"``), or numbers:
            latent activations (``method="latents"``) or document embeddings
            (``method="dense"``, made by the same model as
            ``text_embedder``). A Series' or DataFrame's index becomes the
            ``id`` column of the results.
        y : None
            Ignored.
        labels : sequence of str or None, default=None
            One label per latent; None is the embedder's ``labels_``.
        texts : sequence of str or None, default=None
            The documents' texts, shown in the results (and their index used
            as ids) when ``X`` holds numbers.

        Returns
        -------
        self : PropertySearch
        """
        caller = f"{type(self).__name__}.fit"
        numeric = is_numeric_input(X)
        ids = row_ids(X, texts)
        if not numeric:
            texts = check_texts(X, caller=caller, param="X")
        elif texts is not None:
            texts = check_texts(texts, caller=caller, param="texts")
        if self.method == "dense":
            self._fit_dense(X, texts, numeric, caller)
        else:
            self._fit_latents(X, texts, numeric, labels, caller)
        n = self.n_documents_
        if texts is not None and len(texts) != n:
            raise ValueError(
                f"The 'texts' parameter of {caller} must hold one text per row of "
                f"X ({n}). Got {len(texts)} texts instead."
            )
        self._texts = texts
        self._ids = pd.RangeIndex(n) if ids is None or len(ids) != n else ids
        return self

    def _fit_latents(self, X, texts, numeric, labels, caller):
        if not numeric and self.embedder is None:
            raise ValueError(
                f"{caller} got texts but no embedder: pass embedder= (a fitted "
                "InterpretableEmbedder) or latent activations as X."
            )
        if numeric:
            Z = validate_activations(self, X, caller=caller)
        else:
            Z, _ = latent_inputs(
                texts, param="X", caller=caller, embedder=self.embedder
            )
        self.labels_, self._labelled = resolve_labels(
            labels, Z.shape[1], caller=caller, embedder=self.embedder
        )
        self.thresholds_ = resolve_thresholds(
            self.thresholds, Z, caller=caller, embedder=self.embedder
        )
        fires = binarize_activations(Z, self.thresholds_)
        A = sp.csc_matrix(Z.multiply(fires), dtype=np.float32)
        A.eliminate_zeros()
        scales = np.ones(A.shape[1], dtype=np.float32)
        for j in range(A.shape[1]):
            values = A.data[A.indptr[j] : A.indptr[j + 1]]
            if values.size:
                scales[j] = np.percentile(values, _SCALE_PERCENTILE)
        # Columns scaled once here, so a query is one product over its latents.
        self._A = sp.csc_matrix(A @ sp.diags(1.0 / scales), dtype=np.float32)
        self.scales_ = scales
        self.n_documents_ = Z.shape[0]
        self._label_vectors = None

    def _fit_dense(self, X, texts, numeric, caller):
        if numeric:
            values = validate_data(
                self, X, accept_sparse=("csr", "csc"), dtype=(np.float32, np.float64)
            )
            values = values.toarray() if sp.issparse(values) else values
            E = text_vectors(
                lambda _: values, [""] * len(values), param="X", caller=caller
            )
        else:
            embed = resolve_text_embedder(self.text_embedder, self.embedder)
            E = text_vectors(embed, texts, param="text_embedder", caller=caller)
        self._E = E
        self.n_documents_ = E.shape[0]

    # ---------------------------------------------------------------- queries
    def _embed(self):
        return resolve_text_embedder(self.text_embedder, self.embedder)

    def _query_vectors(self, query, method):
        phrases = self._phrases(query, method)
        return text_vectors(
            self._embed(),
            phrases,
            param="text_embedder",
            caller=f"{type(self).__name__}.{method}",
        )

    def _phrases(self, query, method):
        phrases = [query] if isinstance(query, str) else query
        if (
            not isinstance(phrases, list | tuple)
            or not phrases
            or not all(isinstance(p, str) and p.strip() for p in phrases)
        ):
            raise ValueError(
                f"The 'query' parameter of {type(self).__name__}.{method} must be a "
                "non-empty str (or a list of them, phrasings of one property). Got "
                f"{query!r} instead."
            )
        return list(phrases)

    def match(self, query) -> pd.DataFrame:
        """The latents a query is matched to, and why.

        Parameters
        ----------
        query : str or list of str
            The property in words; several phrasings of one property may be
            given (a label's similarity is its best one).

        Returns
        -------
        matched : pandas.DataFrame
            One row per matched latent, most relevant first: ``latent``,
            ``label``, ``similarity`` (cosine of the label and query
            embeddings), ``llm_relevance`` (the LLM's P(yes), NaN without
            ``llm``), ``weight`` (the similarity floored at 0, the latent's
            weight in the score). ``attrs["usage"]`` holds the LLM usage.
        """
        check_is_fitted(self)
        if self.method != "latents":
            raise ValueError(
                "PropertySearch.match needs method='latents'; this search uses "
                f"method={self.method!r}, which matches no latents."
            )
        q = self._query_vectors(query, "match")
        if self._label_vectors is None:
            usable = self._labelled
            if not usable.any():
                raise ValueError(
                    "PropertySearch.match: no latent has a label to match the query "
                    "against. Pass labels= to fit (or an embedder whose latents are "
                    "labelled)."
                )
            vectors = np.zeros((len(self.labels_), q.shape[1]), dtype=np.float32)
            vectors[usable] = text_vectors(
                self._embed(),
                [self.labels_[j] for j in np.flatnonzero(usable)],
                param="text_embedder",
                caller="PropertySearch.match",
            )
            self._label_vectors = vectors
        matched, usage = match_latents(
            query,
            self.labels_,
            self._label_vectors,
            q,
            labelled=self._labelled,
            n_latents=self.n_latents,
            min_similarity=self.min_similarity,
            llm=self.llm,
            n_candidates=self.n_candidates,
        )
        matched.attrs["usage"] = usage.as_dict()
        return matched

    def query_scores(self, query) -> np.ndarray:
        """Every document's score for a query (higher: more likely to have it).

        Parameters
        ----------
        query : str or list of str
            The property in words.

        Returns
        -------
        scores : ndarray of shape (n_documents,)
            ``method="latents"``: the weighted, normalised activations of the
            matched latents (0 where none fires); ``method="dense"``: cosine
            similarity of query and document embeddings.
        """
        return self._scores(query, "query_scores")[0]

    def _scores(self, query, method):
        """Scores, the matched latents and their columns (n_documents x
        n_matched, weighted; None for dense)."""
        check_is_fitted(self)
        if self.method == "dense":
            q = self._query_vectors(query, method)
            return (self._E @ q.T).max(axis=1).astype(np.float64), None, None
        matched = self.match(query)
        cols = matched["latent"].to_numpy()
        weights = matched["weight"].to_numpy(dtype=np.float32)
        parts = sp.csr_matrix(self._A[:, cols] @ sp.diags(weights))
        scores = np.asarray(parts.sum(axis=1), dtype=np.float64).ravel()
        return scores, matched, parts

    def search(self, query, k=10) -> pd.DataFrame:
        """The documents that best have a property described in words.

        Parameters
        ----------
        query : str or list of str
            The property ("sarcastic", "mentions a price"); several phrasings
            of one property may be given.
        k : int or None, default=10
            Most documents returned; None returns every document with a
            positive score (``method="latents"``) or every document
            (``method="dense"``).

        Returns
        -------
        results : pandas.DataFrame
            Best first (ties: earlier rows first). ``method="latents"``
            returns only documents on which a matched latent fires (score >
            0), so fewer than ``k`` rows means no other document has the
            property by its latents. Columns:

            - ``rank``: 1, 2, ...;
            - ``row``: position of the document in the fit data;
            - ``id``: its index label (a Series' or DataFrame's index, else
              the row), to join back to the data;
            - ``text``: the document (None when ``fit`` got no texts);
            - ``score``: see the class description;
            - ``latents``: matched latents that fire on it, largest
              contribution first (empty for ``method="dense"``);
            - ``contributions``: the same as text, ``label (+contribution)``.

            ``attrs`` holds ``query``, ``method``, ``matched`` (the rows of
            :meth:`match` as records), ``n_matches`` (documents with a
            positive score) and ``usage`` (LLM usage of this query).
        """
        if k is not None and (
            not isinstance(k, Integral) or isinstance(k, bool) or k < 1
        ):
            raise ValueError(
                "The 'k' parameter of PropertySearch.search must be an int >= 1 or "
                f"None. Got {k!r} instead."
            )
        scores, matched, parts = self._scores(query, "search")
        n = len(scores)
        candidates = np.flatnonzero(scores > 0) if matched is not None else np.arange(n)
        if k is not None and k < len(candidates):
            # Everything tied with the k-th score competes, so ties break by row.
            kth = np.partition(scores[candidates], len(candidates) - k)[
                len(candidates) - k
            ]
            candidates = candidates[scores[candidates] >= kth]
        top = candidates[np.lexsort((candidates, -scores[candidates]))][:k]
        latents, contributions = self._explain(top, matched, parts)
        texts = self._texts
        results = pd.DataFrame(
            {
                "rank": np.arange(1, len(top) + 1),
                "row": top,
                "id": self._ids[top] if len(top) else [],
                "text": [texts[i] for i in top] if texts is not None else None,
                "score": scores[top],
                "latents": latents,
                "contributions": contributions,
            },
            columns=SEARCH_COLUMNS,
        )
        results.attrs.update(
            query=query,
            method=self.method,
            matched=[] if matched is None else matched.to_dict("records"),
            n_matches=int((scores > 0).sum()) if matched is not None else n,
            usage=(
                matched.attrs["usage"] if matched is not None else Usage().as_dict()
            ),
        )
        return results

    def _explain(self, rows, matched, parts):
        if matched is None or not len(matched):
            return [[] for _ in rows], ["" for _ in rows]
        cols = matched["latent"].to_numpy()
        parts = parts[rows].toarray()
        labels = matched["label"].tolist()
        latents, texts = [], []
        for part in parts:
            order = [c for c in np.argsort(-part, kind="stable") if part[c] > 0]
            latents.append([int(cols[c]) for c in order])
            texts.append("; ".join(f"{labels[c]} (+{part[c]:.3f})" for c in order))
        return latents, texts

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.input_tags.positive_only = self.method == "latents"
        tags.input_tags.string = self.embedder is not None or self.method == "dense"
        return tags
