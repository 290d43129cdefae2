"""Targeted clustering: documents grouped along an axis the user names.

Dense embeddings cluster documents by whatever dominates them, usually topic.
With labelled latents the axis can be chosen: keep the latents whose labels
are about it ("tone", "reasoning style"; label-embedding similarity,
optionally confirmed by an LLM) and compare documents only on those.

Two documents are as similar as the Jaccard index of the sets of kept latents
that fire on them, and spectral clustering of that affinity gives the
clusters. Documents with the same set of firing latents are identical to the
affinity, so the computation runs on the distinct sets (with their counts)
instead of on documents: the spectral embedding of the graph whose nodes are
the distinct sets, with edge weights summed over their members, is exactly the
documents' spectral embedding (each document gets its set's row), and k-means
with the counts as sample weights is k-means on the documents. A corpus of
100,000 documents with 20 kept latents has a few thousand distinct sets.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.linalg import eigh
from scipy.sparse.linalg import eigsh
from sklearn.base import BaseEstimator, ClusterMixin, _fit_context
from sklearn.cluster import KMeans
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval

from ..llm import LLMClient, Usage
from ..utils._misc import warn_user
from ..utils._validation import check_texts
from ._binarize import binarize_activations
from ._diff import latent_inputs, resolve_labels, resolve_thresholds
from ._search import (
    is_numeric_input,
    match_latents,
    resolve_text_embedder,
    row_ids,
    text_vectors,
    validate_activations,
)

#: The cluster of documents on which no kept latent fires.
NO_AXIS_CLUSTER = -1
#: Columns of ``cluster_descriptions_``, in this order.
CLUSTER_COLUMNS = [
    "cluster",
    "size",
    "share",
    "description",
    "latents",
    "labels",
    "rate_in",
    "rate_out",
    "lift",
    "examples",
]
#: Columns of ``latents_``, in this order.
LATENT_COLUMNS = [
    "latent",
    "label",
    "similarity",
    "llm_relevance",
    "n_fires",
    "frequency",
]
#: Columns of ``assignments_``, in this order.
ASSIGNMENT_COLUMNS = ["row", "text", "cluster", "axis_latents"]

#: The question put to an LLM about each candidate latent of an axis.
AXIS_PROMPT = """\
A feature of texts is described by this label: "{label}".
Is this feature about the {axis} of a text (one of the ways in which texts \
differ in {axis})?
Answer yes or no."""

# Above this many distinct firing sets the eigenvectors come from ARPACK on the
# sparse affinity; below, a dense eigendecomposition is faster and exact.
_DENSE_LIMIT = 2000
#: Up to this many distinct firing sets the affinity between every pair of
#: sets is kept (exact); above, each set keeps its ``n_neighbors`` most
#: similar sets (the full pair list grows as the square: 50,000 sets sharing
#: a frequent latent are over a billion pairs).
EXACT_LIMIT = 3000
# Jaccard indices computed at once (block rows x n_sets, float32; a few such
# arrays are alive): about 64 MB each.
_BLOCK_ELEMENTS = 2**24
# The sets are held densely (n_sets x n_latents float32) up to this size, so
# that each block is one BLAS product.
_DENSE_SETS_BYTES = 2**28


def unique_rows(F: sp.csr_matrix):
    """Distinct rows of a sparse boolean matrix, in order of first occurrence.

    Returns
    -------
    patterns : scipy.sparse.csr_matrix of shape (n_unique, n_columns)
    inverse : ndarray of shape (n_rows,)
        ``patterns[inverse[i]]`` is row ``i``.
    counts : ndarray of shape (n_unique,)
    """
    F = sp.csr_matrix(F, dtype=bool)
    F.sort_indices()
    seen: dict[bytes, int] = {}
    inverse = np.empty(F.shape[0], dtype=np.int64)
    first = []
    for i in range(F.shape[0]):
        key = F.indices[F.indptr[i] : F.indptr[i + 1]].tobytes()
        k = seen.setdefault(key, len(seen))
        if k == len(first):
            first.append(i)
        inverse[i] = k
    counts = np.bincount(inverse, minlength=len(first))
    return F[np.asarray(first, dtype=np.int64)], inverse, counts


def jaccard_affinity(patterns, counts, *, n_neighbors=None):
    """Affinity of the distinct sets summed over their documents.

    ``W[p, q] = counts[p] * counts[q] * jaccard(p, q)``: the total Jaccard
    affinity between the documents of set ``p`` and those of set ``q``.
    With ``n_neighbors``, each set keeps only its ``n_neighbors`` most
    similar sets (itself included), and the graph is made symmetric by
    keeping a pair kept by either side, as scikit-learn's
    ``affinity="nearest_neighbors"`` does; None keeps every pair.

    Returns
    -------
    W : scipy.sparse.csr_matrix of shape (n_sets, n_sets)
    """
    counts = np.asarray(counts, dtype=np.float64)
    P = sp.csr_matrix(patterns, dtype=np.float32)
    n_sets = P.shape[0]
    sizes = np.asarray(P.sum(axis=1), dtype=np.float32).ravel()
    if (sizes == 0).any():
        raise ValueError(
            "The 'patterns' parameter of jaccard_affinity must hold non-empty "
            f"sets; rows {np.flatnonzero(sizes == 0)[:10].tolist()} are empty "
            "(documents on which nothing fires have no Jaccard index)."
        )
    if n_neighbors is None:
        inter = (P @ P.T).tocoo()
        rows, cols, values = inter.row, inter.col, inter.data.astype(np.float64)
        values = values / (sizes[rows] + sizes[cols] - values)
    else:
        t = min(n_neighbors, n_sets)
        dense = n_sets * P.shape[1] * 4 <= _DENSE_SETS_BYTES
        A = P.toarray() if dense else P
        AT = A.T if dense else sp.csr_matrix(P.T)
        block = max(1, _BLOCK_ELEMENTS // n_sets)
        parts = ([], [], [])
        for start in range(0, n_sets, block):
            stop = min(start + block, n_sets)
            inter = A[start:stop] @ AT
            inter = inter if dense else inter.toarray()
            jac = inter / (sizes[start:stop, None] + sizes[None, :] - inter)
            top = np.argpartition(-jac, t - 1, axis=1)[:, :t]
            value = np.take_along_axis(jac, top, axis=1)
            keep = value > 0
            parts[0].append(np.repeat(np.arange(start, stop), t)[keep.ravel()])
            parts[1].append(top[keep])
            parts[2].append(value[keep].astype(np.float64))
        rows, cols, values = (np.concatenate(p) for p in parts)
    W = sp.csr_matrix(
        (values * counts[rows] * counts[cols], (rows, cols)), shape=(n_sets, n_sets)
    )
    return W if n_neighbors is None else W.maximum(W.T).tocsr()


def jaccard_spectral(
    patterns, counts, n_clusters: int, *, random_state, n_init=10, n_neighbors=None
):
    """Spectral clustering of documents by the Jaccard index of their sets.

    The documents are given as distinct sets (``patterns``, one row each)
    with how many documents have each (``counts``). The affinity of two
    documents is ``|a & b| / |a | b|`` (1 between identical sets, including
    a document with itself); the result is that of normalised spectral
    clustering of the documents x documents affinity (the eigenvectors of
    ``D^-1/2 A D^-1/2`` with the ``n_clusters`` largest eigenvalues, rows
    divided by the square root of the degree, then k-means, as
    :class:`~sklearn.cluster.SpectralClustering` with
    ``affinity="precomputed"`` does), computed on the sets.

    Parameters
    ----------
    patterns : sparse matrix of shape (n_sets, n_latents)
        Distinct non-empty sets of firing latents.
    counts : array-like of shape (n_sets,)
        Documents per set.
    n_clusters : int
        Clusters to form; at most ``n_sets``.
    random_state : int, RandomState instance or None
        Seeds ARPACK's start vector and k-means.
    n_init : int, default=10
        k-means restarts.
    n_neighbors : int or None, default=None
        None: every pair of sets (exact). An int: each set's most similar
        sets only (see :func:`jaccard_affinity`), an approximation that
        keeps memory linear in the number of sets.

    Returns
    -------
    labels : ndarray of shape (n_sets,)
        The cluster of each set.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> P = sp.csr_matrix([[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 1], [0, 0, 0, 1]])
    >>> jaccard_spectral(P, [5, 1, 4, 2], 2, random_state=0).tolist()
    [0, 0, 1, 1]
    """
    rng = check_random_state(random_state)
    counts = np.asarray(counts, dtype=np.float64)
    n_sets = patterns.shape[0]
    W = jaccard_affinity(patterns, counts, n_neighbors=n_neighbors)
    inv_sqrt = 1.0 / np.sqrt(np.asarray(W.sum(axis=1)).ravel())
    M = sp.diags(inv_sqrt) @ W @ sp.diags(inv_sqrt)
    if n_sets <= _DENSE_LIMIT:
        _, vectors = eigh(M.toarray())
        vectors = vectors[:, ::-1][:, :n_clusters]
    else:
        v0 = rng.uniform(-1, 1, n_sets)
        values, vectors = eigsh(M, k=n_clusters, which="LA", v0=v0)
        vectors = vectors[:, np.argsort(-values)]
    embedding = vectors * inv_sqrt[:, None]
    # Eigenvectors have no sign; fix one so the result does not depend on it.
    peaks = np.argmax(np.abs(embedding), axis=0)
    embedding *= np.sign(embedding[peaks, np.arange(embedding.shape[1])])
    seed = int(rng.randint(np.iinfo(np.int32).max))
    kmeans = KMeans(n_clusters, n_init=n_init, random_state=seed)
    return kmeans.fit(embedding, sample_weight=counts).labels_


class ConceptClustering(ClusterMixin, BaseEstimator):
    """Cluster documents along an axis named in words, or along chosen latents.

    The latents kept are those whose labels are closest to ``axis`` (cosine
    similarity of the label and axis embeddings; at most ``n_latents``, at
    least ``min_similarity``, optionally confirmed by an LLM), or the
    ``latents`` given, or, with neither, every latent that fires. Two
    documents are compared by the Jaccard index of the sets of kept latents
    that fire on them (by the toolkit's thresholds), and normalised spectral
    clustering of that affinity gives ``n_clusters`` clusters (see
    :func:`jaccard_spectral`: the same result as
    ``SpectralClustering(affinity="precomputed")`` on the documents x
    documents matrix, computed on the distinct sets so that 100,000
    documents fit in memory).

    Every document gets a cluster. A document on which no kept latent fires
    has nothing to be compared on along the axis: it goes to cluster
    ``-1`` (:data:`NO_AXIS_CLUSTER`), described as such. The other clusters
    are numbered 0, 1, ... from the largest.

    Parameters
    ----------
    axis : str, list of str or None, default=None
        What to cluster along, in words ("tone", "reasoning style"); several
        phrasings of one axis may be given (a label's similarity is its best
        one). Ignored for the choice of latents when ``latents`` is given
        (the similarity is still reported).
    latents : array-like of int or None, default=None
        The latents to cluster along, chosen by hand.
    n_clusters : int, default=8
        Clusters formed among documents on which a kept latent fires (fewer,
        with a warning, when they have fewer distinct sets of firing latents).
    embedder : fitted InterpretableEmbedder or None, default=None
        Turns texts into activations and gives the labels and thresholds;
        its ``embedder_`` is the default ``text_embedder``. None: ``fit``
        takes activations (and ``labels=`` for an axis).
    text_embedder : callable, text embedder or None, default=None
        Embeds the axis and the labels: a callable ``texts -> vectors`` or an
        object with ``transform`` (:class:`TextEmbedder`) or ``encode``. None
        is ``embedder.embedder_``, else ``TextEmbedder()``.
    n_latents : int, default=20
        Most latents kept for an axis.
    min_similarity : float or None, default=None
        Least cosine similarity to the axis of a kept latent's label; None
        keeps the ``n_latents`` most similar.
    llm : LLMClient or None, default=None
        When given, the ``n_candidates`` labels most similar to the axis are
        put to it (is this feature about the axis? yes/no, cached); only
        those it says yes to are kept.
    n_candidates : int or None, default=None
        Labels asked about with ``llm``; None is ``2 * n_latents``.
    thresholds : {"relative", "positive", "quantile"}, float, array-like or None, \
default=None
        When a latent fires (see :func:`latent_thresholds`); None is the
        embedder's ``thresholds_``, else "relative" on ``X``.
    n_describe : int, default=5
        Latents listed per cluster in ``cluster_descriptions_``.
    n_examples : int, default=3
        Example texts per cluster (when the texts are known).
    n_init : int, default=10
        k-means restarts on the spectral embedding.
    n_neighbors : int, default=50
        Used only when the documents have more than :data:`EXACT_LIMIT`
        (3,000) distinct sets of firing latents: each set then keeps its
        ``n_neighbors`` most similar sets in the affinity (an approximation,
        as ``SpectralClustering(affinity="nearest_neighbors")``; memory grows
        linearly instead of as the square). ``affinity_`` says which was used.
    random_state : int, RandomState instance or None, default=None
        Seeds the eigensolver's start vector and k-means.

    Attributes
    ----------
    labels_ : ndarray of shape (n_documents,)
        Cluster of each document: 0, 1, ... (largest first), or -1 where no
        kept latent fires.
    n_clusters_ : int
        Clusters formed, not counting -1.
    n_sets_ : int
        Distinct sets of firing kept latents among the documents clustered.
    affinity_ : {"exact", "nearest_neighbors", "none"}
        "exact": every pair of sets (the result of ``SpectralClustering`` on
        the documents x documents Jaccard matrix); "nearest_neighbors": the
        ``n_neighbors`` approximation (more than 3,000 sets); "none": no
        spectral step (at most ``n_clusters`` sets, one cluster each, or no
        document to cluster).
    latents_ : pandas.DataFrame
        The kept latents, most similar to the axis first: ``latent``,
        ``label``, ``similarity`` (cosine to the axis; NaN without one),
        ``llm_relevance`` (P(yes) from ``llm``, else NaN), ``n_fires`` and
        ``frequency`` (documents where it fires, and their share).
    cluster_descriptions_ : pandas.DataFrame
        One row per cluster (0, 1, ..., then -1 if any): ``cluster``,
        ``size``, ``share``; ``description`` (text: the latents that set the
        cluster apart, each with its firing rate in the cluster and outside
        and the lift, their ratio); ``latents``, ``labels``, ``rate_in``,
        ``rate_out``, ``lift`` (lists, the same latents: the kept latents
        with the largest ``rate_in - rate_out``, up to ``n_describe``, only
        those more frequent in the cluster); ``examples`` (texts of the
        cluster on which most of those latents fire).
    assignments_ : pandas.DataFrame
        One row per input document, indexed by the input's index (a
        Series' or DataFrame's, of ``X`` or ``texts``, else 0..n-1): ``row``
        (position), ``text`` (None if unknown), ``cluster``,
        ``axis_latents`` (labels of the kept latents that fire on it,
        joined by "; ").
    usage_ : dict
        LLM usage of ``fit`` (zeros without ``llm``).
    n_features_in_ : int
        Latents of ``X``; only when ``fit`` was given activations.

    See Also
    --------
    PropertySearch : Documents that have a property described in words.
    sklearn.cluster.SpectralClustering : The same clustering on a given
        affinity.

    Examples
    --------
    >>> import numpy as np
    >>> labels = ["cheerful tone", "angry tone", "about cars", "about food"]
    >>> vectors = {"cheerful tone": [1, 0.2, 0], "angry tone": [1, -0.2, 0],
    ...            "about cars": [0, 0, 1], "about food": [0, 0.1, 1],
    ...            "tone": [1, 0, 0]}
    >>> def embed(texts):
    ...     return np.array([vectors[t] for t in texts], dtype=float)
    >>> Z = np.array([[1, 0, 1, 0], [1, 0, 0, 1], [0, 1, 1, 0], [0, 1, 0, 1],
    ...               [0, 0, 1, 0]], dtype=float)
    >>> model = ConceptClustering(axis="tone", n_clusters=2, n_latents=2,
    ...                           text_embedder=embed, random_state=0)
    >>> model.fit_predict(Z, labels=labels).tolist()
    [0, 0, 1, 1, -1]
    >>> model.latents_["label"].tolist()
    ['cheerful tone', 'angry tone']
    >>> model.cluster_descriptions_[["cluster", "size", "description"]]
       cluster  size                           description
    0        0     2  cheerful tone (100% vs 0%, lift inf)
    1        1     2     angry tone (100% vs 0%, lift inf)
    2       -1     1      none of the 2 axis latents fires
    """

    _parameter_constraints: dict = {
        "axis": [str, list, tuple, None],
        "latents": ["array-like", None],
        "n_clusters": [Interval(Integral, 1, None, closed="left")],
        "embedder": [HasMethods(["transform"]), None],
        "text_embedder": [callable, HasMethods(["transform"]), None],
        "n_latents": [Interval(Integral, 1, None, closed="left")],
        "min_similarity": [Interval(Real, -1, 1, closed="both"), None],
        "llm": [LLMClient, None],
        "n_candidates": [Interval(Integral, 1, None, closed="left"), None],
        "thresholds": "no_validation",
        "n_describe": [Interval(Integral, 1, None, closed="left")],
        "n_examples": [Interval(Integral, 0, None, closed="left")],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        axis=None,
        *,
        latents=None,
        n_clusters=8,
        embedder=None,
        text_embedder=None,
        n_latents=20,
        min_similarity=None,
        llm=None,
        n_candidates=None,
        thresholds=None,
        n_describe=5,
        n_examples=3,
        n_init=10,
        n_neighbors=50,
        random_state=None,
    ):
        self.axis = axis
        self.latents = latents
        self.n_clusters = n_clusters
        self.embedder = embedder
        self.text_embedder = text_embedder
        self.n_latents = n_latents
        self.min_similarity = min_similarity
        self.llm = llm
        self.n_candidates = n_candidates
        self.thresholds = thresholds
        self.n_describe = n_describe
        self.n_examples = n_examples
        self.n_init = n_init
        self.n_neighbors = n_neighbors
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, *, labels=None, texts=None):
        """Keep the axis latents and cluster the documents on them.

        Parameters
        ----------
        X : sequence of str, or {array-like, sparse matrix} of shape \
(n_documents, n_latents)
            Texts (with ``embedder``) or non-negative latent activations.
        y : None
            Ignored.
        labels : sequence of str or None, default=None
            One label per latent; None is the embedder's. Needed for an axis
            when ``X`` holds activations.
        texts : sequence of str or None, default=None
            The documents' texts when ``X`` holds activations (for examples
            and ``assignments_``; their index becomes its index).

        Returns
        -------
        self : ConceptClustering
        """
        caller = "ConceptClustering.fit"
        ids = row_ids(X, texts)
        if is_numeric_input(X):
            Z = validate_activations(self, X, caller=caller)
            if texts is not None:
                texts = check_texts(
                    texts, caller=caller, param="texts", n_rows=Z.shape[0]
                )
        else:
            if self.embedder is None:
                raise ValueError(
                    f"{caller} got texts but no embedder: pass embedder= (a fitted "
                    "InterpretableEmbedder) or latent activations as X."
                )
            Z, texts = latent_inputs(
                X, param="X", caller=caller, embedder=self.embedder
            )
        n_docs = Z.shape[0]
        names, labelled = resolve_labels(
            labels, Z.shape[1], caller=caller, embedder=self.embedder
        )
        thresholds = resolve_thresholds(
            self.thresholds, Z, caller=caller, embedder=self.embedder
        )
        F = binarize_activations(Z, thresholds)
        n_fires = np.asarray(F.sum(axis=0)).ravel()
        self.usage_ = Usage().as_dict()
        self.latents_ = self._keep(names, labelled, n_fires, n_docs)
        kept = self.latents_["latent"].to_numpy()

        Fk = sp.csr_matrix(F[:, kept])
        active = np.flatnonzero(np.diff(Fk.indptr) > 0)
        labels_ = np.full(n_docs, NO_AXIS_CLUSTER, dtype=np.int64)
        self.n_clusters_ = self.n_sets_ = 0
        self.affinity_ = "none"
        if len(active):
            patterns, inverse, counts = unique_rows(Fk[active])
            self.n_sets_ = patterns.shape[0]
            k = min(self.n_clusters, patterns.shape[0])
            if k < self.n_clusters:
                warn_user(
                    f"ConceptClustering formed {k} cluster(s), not n_clusters="
                    f"{self.n_clusters}: the documents on which an axis latent "
                    f"fires have only {patterns.shape[0]} distinct set(s) of "
                    "firing latents. Keep more latents (n_latents, "
                    "min_similarity) or ask for fewer clusters."
                )
            if k == patterns.shape[0]:
                per_set = np.arange(k)
            else:
                exact = self.n_sets_ <= EXACT_LIMIT
                self.affinity_ = "exact" if exact else "nearest_neighbors"
                per_set = jaccard_spectral(
                    patterns,
                    counts,
                    k,
                    random_state=self.random_state,
                    n_init=self.n_init,
                    n_neighbors=None if exact else self.n_neighbors,
                )
            labels_[active] = per_set[inverse]
            labels_ = _by_size(labels_)
            self.n_clusters_ = int(labels_.max()) + 1
        else:
            warn_user(
                f"ConceptClustering: none of the {len(kept)} kept latents fires on "
                "any document, so every document is in cluster -1. Lower the "
                "thresholds or choose other latents."
            )
        self.labels_ = labels_
        self.cluster_descriptions_ = self._describe(Z, Fk, kept, names, texts)
        index = pd.RangeIndex(n_docs) if ids is None or len(ids) != n_docs else ids
        kept_names = np.asarray([names[j] for j in kept], dtype=object)
        self.assignments_ = pd.DataFrame(
            {
                "row": np.arange(n_docs),
                "text": texts if texts is not None else None,
                "cluster": labels_,
                "axis_latents": [
                    "; ".join(kept_names[Fk.indices[Fk.indptr[i] : Fk.indptr[i + 1]]])
                    for i in range(n_docs)
                ],
            },
            index=index,
            columns=ASSIGNMENT_COLUMNS,
        )
        return self

    # ------------------------------------------------------------ the latents
    def _keep(self, names, labelled, n_fires, n_docs) -> pd.DataFrame:
        n_latents = len(names)
        similarity = np.full(n_latents, np.nan)
        relevance = np.full(n_latents, np.nan)
        if self.axis is not None:
            phrases = self._axis_phrases()
            # An axis is matched only to labelled latents that fire here.
            candidates = np.asarray(labelled, dtype=bool) & (n_fires > 0)
            if not candidates.any() and self.latents is None:
                raise ValueError(
                    "The 'axis' parameter of ConceptClustering needs labelled "
                    "latents, but no latent that fires on X has a label. Pass "
                    "labels= to fit (or an embedder whose latents are labelled), "
                    "or choose latents= by hand."
                )
            embed = resolve_text_embedder(self.text_embedder, self.embedder)
            vectors = text_vectors(
                embed, phrases, param="text_embedder", caller="ConceptClustering"
            )
            label_vectors = np.zeros((n_latents, vectors.shape[1]), dtype=np.float32)
            if candidates.any():
                label_vectors[candidates] = text_vectors(
                    embed,
                    [names[j] for j in np.flatnonzero(candidates)],
                    param="text_embedder",
                    caller="ConceptClustering",
                )
                similarity[candidates] = (label_vectors[candidates] @ vectors.T).max(
                    axis=1
                )
        if self.latents is not None:
            kept = self._chosen_latents(n_latents)
        elif self.axis is not None:
            matched, usage = match_latents(
                phrases,
                names,
                label_vectors,
                vectors,
                labelled=candidates,
                n_latents=self.n_latents,
                min_similarity=self.min_similarity,
                llm=self.llm,
                n_candidates=self.n_candidates,
                template=AXIS_PROMPT,
                field="axis",
            )
            self.usage_ = usage.as_dict()
            kept = matched["latent"].to_numpy()
            relevance[kept] = matched["llm_relevance"].to_numpy()
            if not len(kept):
                raise ValueError(
                    f"ConceptClustering kept no latent for axis={self.axis!r}: no "
                    "label is similar enough (min_similarity="
                    f"{self.min_similarity!r}; the best similarity is "
                    f"{np.nanmax(similarity):.3f})"
                    + (", or the LLM confirmed none" if self.llm is not None else "")
                    + ". Lower min_similarity or name the axis differently."
                )
        else:
            kept = np.flatnonzero(n_fires > 0)
            if not len(kept):
                raise ValueError(
                    "ConceptClustering.fit: no latent fires on any document of X, "
                    "so there is nothing to cluster on. Check the thresholds."
                )
        return pd.DataFrame(
            {
                "latent": kept.astype(np.int64),
                "label": [names[j] for j in kept],
                "similarity": similarity[kept],
                "llm_relevance": relevance[kept],
                "n_fires": n_fires[kept].astype(np.int64),
                "frequency": n_fires[kept] / n_docs,
            },
            columns=LATENT_COLUMNS,
        )

    def _axis_phrases(self):
        phrases = [self.axis] if isinstance(self.axis, str) else list(self.axis)
        if not phrases or not all(isinstance(p, str) and p.strip() for p in phrases):
            raise ValueError(
                "The 'axis' parameter of ConceptClustering must be a non-empty str "
                f"(or a list of them, phrasings of one axis). Got {self.axis!r} "
                "instead."
            )
        return phrases

    def _chosen_latents(self, n_latents):
        chosen = np.asarray(self.latents)
        if chosen.ndim != 1 or chosen.size == 0 or chosen.dtype.kind not in "iu":
            raise ValueError(
                "The 'latents' parameter of ConceptClustering must be a non-empty "
                f"list of latent indices (ints). Got {self.latents!r} instead."
            )
        bad = [int(j) for j in chosen if not 0 <= j < n_latents]
        if bad:
            raise ValueError(
                "The 'latents' parameter of ConceptClustering must hold ints in "
                f"[0, {n_latents}) (columns of X). Got {bad[:10]} instead."
            )
        return np.asarray(list(dict.fromkeys(chosen.tolist())), dtype=np.int64)

    # ----------------------------------------------------------- descriptions
    def _describe(self, Z, Fk, kept, names, texts) -> pd.DataFrame:
        labels_ = self.labels_
        n_docs = len(labels_)
        clusters = list(range(self.n_clusters_))
        if (labels_ == NO_AXIS_CLUSTER).any():
            clusters.append(NO_AXIS_CLUSTER)
        fires = Fk.astype(np.float64).tocsc()
        totals = np.asarray(fires.sum(axis=0)).ravel()
        strength = sp.csr_matrix(Z[:, kept].multiply(Fk))
        rows = []
        for c in clusters:
            members = np.flatnonzero(labels_ == c)
            size = len(members)
            inside = np.asarray(fires[members].sum(axis=0)).ravel()
            rate_in = inside / size
            outside = n_docs - size
            rate_out = (
                (totals - inside) / outside if outside else np.zeros_like(rate_in)
            )
            gap = rate_in - rate_out
            order = np.lexsort((np.arange(len(kept)), -gap))
            top = [t for t in order[: self.n_describe] if gap[t] > 0]
            with np.errstate(divide="ignore", invalid="ignore"):
                lift = np.where(rate_out > 0, rate_in / rate_out, np.inf)
            if c == NO_AXIS_CLUSTER:
                description = f"none of the {len(kept)} axis latents fires"
                chosen = members[: self.n_examples]
            else:
                description = "; ".join(
                    f"{names[kept[t]]} ({rate_in[t]:.0%} vs {rate_out[t]:.0%}, "
                    f"lift {lift[t]:.1f})"
                    for t in top
                )
                chosen = self._examples(members, fires, strength, top)
            rows.append(
                {
                    "cluster": c,
                    "size": size,
                    "share": size / n_docs,
                    "description": description,
                    "latents": [int(kept[t]) for t in top],
                    "labels": [names[kept[t]] for t in top],
                    "rate_in": [float(rate_in[t]) for t in top],
                    "rate_out": [float(rate_out[t]) for t in top],
                    "lift": [float(lift[t]) for t in top],
                    "examples": [] if texts is None else [texts[i] for i in chosen],
                }
            )
        return pd.DataFrame(rows, columns=CLUSTER_COLUMNS)

    def _examples(self, members, fires, strength, top):
        """Members on which most of the describing latents fire (ties: the
        stronger activation on them, then the earlier row)."""
        if self.n_examples == 0 or not top:
            return members[: self.n_examples]
        hits = np.asarray(fires[members][:, top].sum(axis=1)).ravel()
        power = np.asarray(strength[members][:, top].sum(axis=1)).ravel()
        order = np.lexsort((members, -power, -hits))
        return members[order[: self.n_examples]]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.input_tags.positive_only = True
        tags.input_tags.string = self.embedder is not None
        tags.non_deterministic = False
        return tags


def _by_size(labels: np.ndarray) -> np.ndarray:
    """Clusters renumbered 0, 1, ... from the largest (ties: the one whose
    first document comes first); -1 stays -1."""
    out = labels.copy()
    found = labels[labels != NO_AXIS_CLUSTER]
    values, first, counts = np.unique(found, return_index=True, return_counts=True)
    order = np.lexsort((first, -counts))
    mapping = {int(values[o]): rank for rank, o in enumerate(order)}
    for old, new in mapping.items():
        out[labels == old] = new
    return out
