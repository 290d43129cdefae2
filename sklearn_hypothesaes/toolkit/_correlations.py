"""Concept correlations: labelled latents that fire on the same documents.

Co-firing is counted sparsely: with ``F`` the binary documents x latents
matrix (:func:`binarize_activations`), ``F.T @ F`` holds every pair's count of
documents where both fire, and only pairs that co-fire at all are ever stored
(4,096 latents over 100,000 documents take seconds and a few hundred MB, see
``benchmarks/bench_diff.py``). Pairs are ranked by normalised pointwise
mutual information, tested for positive association, and a pair whose two
labels say the same thing (by the cosine similarity of their embeddings) is
marked redundant, so the list shows surprising pairs rather than synonyms.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

from ._binarize import binarize_activations
from ._diff import latent_inputs, resolve_labels, resolve_thresholds
from ._fisher import CORRECTIONS, correct_pvalues, fisher_greater
from ._search import text_vectors

#: Columns of the table :func:`concept_correlations` returns, in this order
#: (``label_similarity`` only when label embeddings were given).
CORRELATION_COLUMNS = [
    "latent_a",
    "latent_b",
    "label_a",
    "label_b",
    "count_a",
    "count_b",
    "count_ab",
    "expected_ab",
    "npmi",
    "pvalue",
    "pvalue_corrected",
    "significant",
    "label_similarity",
    "redundant",
]
# Pairs whose label similarity is computed per block (memory: block x dims).
_BLOCK = 65_536


def npmi(count_ab, count_a, count_b, n_documents):
    """Normalised pointwise mutual information of co-firing.

    With ``p(a) = count_a / N``, ``p(b) = count_b / N`` and
    ``p(a, b) = count_ab / N`` over ``N`` documents::

        PMI(a, b)  = log( p(a, b) / (p(a) p(b)) )
        NPMI(a, b) = PMI(a, b) / -log p(a, b)

    NPMI is 1 when the two latents fire on exactly the same documents, 0 when
    they fire independently and tends to -1 as they stop co-firing; unlike
    PMI it does not favour rare latents. It is defined for
    ``0 < count_ab < N``.

    Examples
    --------
    >>> float(npmi(10, 10, 10, 100))
    1.0
    >>> float(npmi(1, 10, 10, 100))
    0.0
    """
    ab = np.asarray(count_ab, dtype=np.float64)
    a = np.asarray(count_a, dtype=np.float64)
    b = np.asarray(count_b, dtype=np.float64)
    p_ab = ab / n_documents
    score = np.log(ab * n_documents / (a * b)) / -np.log(p_ab)
    # The bound is exact; rounding can step past it (1.0000000000000002).
    return np.clip(score, -1.0, 1.0)


def _cooccurrence(Fx, Fy, keep_x, keep_y, within):
    """Pairs (i, j, count) of kept latents that co-fire at least once."""
    Ax = Fx[:, keep_x].astype(np.int32)
    if within:
        C = (Ax.T @ Ax).tocsr()
        C = sp.triu(C, k=1, format="coo")
    else:
        C = (Ax.T @ Fy[:, keep_y].astype(np.int32)).tocoo()
    return keep_x[C.row], keep_y[C.col], C.data.astype(np.int64)


@validate_params(
    {
        "X": "no_validation",
        "embedder": "no_validation",
        "labels": ["array-like", None],
        "thresholds": "no_validation",
        "Y": "no_validation",
        "labels_y": ["array-like", None],
        "thresholds_y": "no_validation",
        "min_count": [Interval(Integral, 1, None, closed="left")],
        "alpha": [Interval(Real, 0, 1, closed="neither")],
        "correction": [StrOptions(set(CORRECTIONS))],
        "significant_only": ["boolean"],
        "label_similarity": "no_validation",
        "max_label_similarity": [Interval(Real, -1, 1, closed="both")],
        "drop_redundant": ["boolean"],
        "top": [Interval(Integral, 1, None, closed="left"), None],
    },
    prefer_skip_nested_validation=True,
)
def concept_correlations(
    X,
    *,
    embedder=None,
    labels=None,
    thresholds=None,
    Y=None,
    labels_y=None,
    thresholds_y=None,
    min_count=5,
    alpha=0.05,
    correction="fdr_bh",
    significant_only=True,
    label_similarity=None,
    max_label_similarity=0.8,
    drop_redundant=True,
    top=100,
) -> pd.DataFrame:
    """Latent pairs ranked by how much more often they fire together than chance.

    Both fields are binarised (:func:`binarize_activations`); for each pair of
    latents that fire together on at least ``min_count`` documents this
    computes the normalised pointwise mutual information of co-firing
    (:func:`npmi`) and a one-sided Fisher exact test of positive association
    (``P(count_ab >= observed)`` under the hypergeometric law of independent
    firing with both latents' counts fixed), corrected over every pair of
    latents that fire on at least ``min_count`` documents (pairs below
    ``min_count`` count as p = 1, which keeps the correction valid).
    Negative associations (latents that avoid each other) are not reported:
    the sparse count never stores pairs that do not co-fire.

    With ``N`` documents, ``n_a`` and ``n_b`` documents where each latent
    fires and ``n_ab`` where both do, ``p(a) = n_a / N`` and so on::

        NPMI(a, b) = log( p(a, b) / (p(a) p(b)) ) / -log p(a, b)

    1 when the two fire on exactly the same documents, 0 when independent,
    towards -1 as they stop co-firing; unlike PMI it does not favour rare
    latents.

    Parameters
    ----------
    X : {array-like, sparse matrix} of shape (n_documents, n_latents) or texts
        Latent activations, or texts when ``embedder`` is given.
    embedder : fitted InterpretableEmbedder or None, default=None
        Turns texts (``X`` and ``Y``) into activations; its labels and
        ``thresholds_`` are the defaults.
    labels : sequence of str or None, default=None
        One label per latent of ``X``; None gives the embedder's, else
        ``latent_<j>``.
    thresholds : {"relative", "positive", "quantile"}, float, array-like or None, \
default=None
        When a latent of ``X`` fires (see :func:`latent_thresholds`); None
        means the embedder's ``thresholds_``, else ``"relative"`` on ``X``.
    Y : {array-like, sparse matrix} of shape (n_documents, n_latents_y), texts \
or None, default=None
        Cross-field mode: the latents of another text column of the same
        documents (prompt vs response, title vs body). Pairs are then one
        latent of ``X`` (``latent_a``) and one of ``Y`` (``latent_b``),
        including a latent with itself.
    labels_y, thresholds_y : default=None
        As ``labels`` and ``thresholds``, for ``Y``. When ``Y`` has as many
        latents as ``X`` they default to those of ``X`` (the same
        autoencoder encodes both columns); pass them when ``Y`` comes from
        another autoencoder.
    min_count : int, default=5
        Fewest documents on which a pair must co-fire to be reported.
    alpha : float, default=0.05
        Level of the corrected tests.
    correction : {"fdr_bh", "bonferroni", "holm", "none"}, default="fdr_bh"
        Multiple-testing correction over the pairs.
    significant_only : bool, default=True
        Keep only the significant pairs.
    label_similarity : callable, embedder, array-like or None, default=None
        Embeds the labels to spot pairs that say the same thing: a callable
        ``texts -> vectors``, an object with ``transform`` (a
        :class:`TextEmbedder`) or ``encode``, or an array with one vector per
        label (the labels of ``X`` followed by those of ``Y``). None compares
        only the label strings (equal labels are redundant).
    max_label_similarity : float, default=0.8
        A pair whose labels' cosine similarity is above this is redundant.
    drop_redundant : bool, default=True
        Leave redundant pairs out of the table (they are counted in
        ``table.attrs["n_redundant"]``); False keeps them, flagged.
    top : int or None, default=100
        Rows kept, after the redundant pairs are dropped; None keeps all.

    Returns
    -------
    table : pandas.DataFrame
        One row per pair, highest NPMI first (ties: more co-firing documents
        first); columns:

        - ``latent_a``, ``latent_b``, ``label_a``, ``label_b`` (in cross-field
          mode ``a`` is ``X``'s latent and ``b`` is ``Y``'s);
        - ``count_a``, ``count_b``: documents where each fires;
          ``count_ab``: where both fire; ``expected_ab``:
          ``count_a * count_b / n_documents``, the count under independence;
        - ``npmi``: see :func:`npmi`;
        - ``pvalue`` (one-sided Fisher), ``pvalue_corrected``,
          ``significant``;
        - ``label_similarity``: cosine similarity of the label embeddings
          (only with ``label_similarity``; NaN where a latent has no label);
        - ``redundant``: both latents are labelled and their labels are
          equal (case aside) or more similar than ``max_label_similarity``.

        ``table.attrs`` holds ``n_documents``, ``n_tests`` (the family),
        ``n_candidates`` (pairs with ``count_ab >= min_count``),
        ``n_significant``, ``n_redundant`` (among the pairs kept before
        ``top``), ``n_always`` (latents that fire on every document, left
        out), ``cross_field``, ``min_count``, ``correction`` and ``alpha``.

    See Also
    --------
    diff_corpora : Latents that fire more often in one corpus.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> Z = (rng.random((400, 4)) < 0.2).astype(float)
    >>> Z[:, 1] = Z[:, 0]  # latent 1 fires wherever latent 0 does
    >>> table = concept_correlations(
    ...     Z, labels=["sports", "athletes", "rain", "prices"])
    >>> table[["label_a", "label_b", "count_ab", "npmi", "significant"]]
      label_a   label_b  count_ab  npmi  significant
    0  sports  athletes        82   1.0         True
    """
    caller = "concept_correlations"
    Zx, _ = latent_inputs(X, param="X", caller=caller, embedder=embedder)
    n_docs = Zx.shape[0]
    names_x, labelled_x = resolve_labels(
        labels, Zx.shape[1], caller=caller, embedder=embedder
    )
    Fx = binarize_activations(
        Zx, resolve_thresholds(thresholds, Zx, caller=caller, embedder=embedder)
    )
    within = Y is None
    if within:
        Fy, names_y, labelled_y = Fx, names_x, labelled_x
    else:
        Zy, _ = latent_inputs(Y, param="Y", caller=caller, embedder=embedder)
        if Zy.shape[0] != n_docs:
            raise ValueError(
                f"The 'Y' parameter of {caller} must hold the same documents as "
                f"'X' ({n_docs} rows). Got {Zy.shape[0]} rows instead."
            )
        same = Zy.shape[1] == Zx.shape[1]
        if labels_y is None and labels is not None and same:
            labels_y = labels
        if thresholds_y is None and thresholds is not None and same:
            thresholds_y = thresholds
        # Without labels_y, Y is read as encoded by the same autoencoder as X
        # when it has as many latents (one embedder for both text columns).
        names_y, labelled_y = resolve_labels(
            labels_y, Zy.shape[1], caller=caller, embedder=embedder, param="labels_y"
        )
        Fy = binarize_activations(
            Zy,
            resolve_thresholds(
                thresholds_y, Zy, caller=caller, embedder=embedder, param="thresholds_y"
            ),
        )
    if label_similarity is not None and not (labelled_x.any() and labelled_y.any()):
        raise ValueError(
            f"The 'label_similarity' parameter of {caller} compares labels, but "
            "no latent has one (the names default to latent_<j>, which all look "
            "alike). Pass labels= (and labels_y= with Y), or a labelled embedder."
        )
    nx = np.asarray(Fx.sum(axis=0)).ravel().astype(np.int64)
    ny = nx if within else np.asarray(Fy.sum(axis=0)).ravel().astype(np.int64)
    # A latent on every document carries nothing, and makes NPMI 0/0.
    always = (nx == n_docs).sum() + (0 if within else (ny == n_docs).sum())
    keep_x = np.flatnonzero((nx >= min_count) & (nx < n_docs))
    keep_y = keep_x if within else np.flatnonzero((ny >= min_count) & (ny < n_docs))
    n_tests = (
        len(keep_x) * (len(keep_x) - 1) // 2 if within else len(keep_x) * len(keep_y)
    )
    i, j, cab = _cooccurrence(Fx, Fy, keep_x, keep_y, within)
    enough = cab >= min_count
    i, j, cab = i[enough], j[enough], cab[enough]
    ca, cb = nx[i], ny[j]
    # One-sided Fisher exact test: P(count_ab >= observed) under independence.
    pvalue = fisher_greater(cab, ca, cb, n_docs)
    corrected, reject = correct_pvalues(
        pvalue, method=correction, alpha=alpha, n_tests=n_tests
    )
    n_candidates = len(cab)
    if significant_only:
        i, j, cab, ca, cb = (v[reject] for v in (i, j, cab, ca, cb))
        pvalue, corrected, reject = pvalue[reject], corrected[reject], reject[reject]
    scores = npmi(cab, ca, cb, n_docs)
    order = np.lexsort((j, i, pvalue, -cab, -scores))
    i, j, cab, ca, cb = (v[order] for v in (i, j, cab, ca, cb))
    scores, pvalue, corrected, reject = (
        v[order] for v in (scores, pvalue, corrected, reject)
    )
    lx = np.asarray(names_x, dtype=object)
    ly = np.asarray(names_y, dtype=object)
    redundant = (labelled_x[i] & labelled_y[j]) & (
        np.char.lower(lx[i].astype(str)) == np.char.lower(ly[j].astype(str))
    )
    similarity = None
    if label_similarity is not None:
        all_labels = names_x if within else names_x + names_y
        vectors = text_vectors(
            label_similarity,
            all_labels,
            param="label_similarity",
            caller=caller,
            precomputed=True,
            item="label",
        )
        vx = vectors[: len(names_x)]
        vy = vx if within else vectors[len(names_x) :]
        similarity = np.empty(len(i), dtype=np.float64)
        for start in range(0, len(i), _BLOCK):
            part = slice(start, start + _BLOCK)
            similarity[part] = np.einsum("ij,ij->i", vx[i[part]], vy[j[part]])
        # A latent without a label has only a name (latent_<j>): its
        # similarity to other names means nothing.
        similarity[~(labelled_x[i] & labelled_y[j])] = np.nan
        redundant |= similarity > max_label_similarity
    table = pd.DataFrame(
        {
            "latent_a": i,
            "latent_b": j,
            "label_a": lx[i],
            "label_b": ly[j],
            "count_a": ca,
            "count_b": cb,
            "count_ab": cab,
            "expected_ab": ca * cb / n_docs,
            "npmi": scores,
            "pvalue": pvalue,
            "pvalue_corrected": corrected,
            "significant": reject,
            "label_similarity": similarity if similarity is not None else np.nan,
            "redundant": redundant,
        },
        columns=CORRELATION_COLUMNS,
    )
    if similarity is None:
        table = table.drop(columns="label_similarity")
    n_redundant = int(redundant.sum())
    if drop_redundant:
        table = table[~table["redundant"]]
    if top is not None:
        table = table.head(top)
    table = table.reset_index(drop=True)
    table.attrs.update(
        n_documents=n_docs,
        n_tests=int(n_tests),
        n_candidates=int(n_candidates),
        n_significant=int(np.sum(reject)),
        n_redundant=n_redundant,
        n_always=int(always),
        cross_field=not within,
        min_count=min_count,
        correction=correction,
        alpha=alpha,
    )
    return table
