"""InterpretableEmbedder: texts -> activations of labelled latents, named concepts.

A sparse autoencoder's latents become an embedding whose dimensions are
concepts once every live latent has a label. The embedder composes the stages
below it: a text embedder, a sparse autoencoder, the toolkit's firing rule
(:func:`latent_thresholds`) and a describer (with its annotator) that labels
the latents. Each label is written on part of the fit corpus and its fidelity
scored on the rest, so the score is on texts the label was not written from.

Labelling with an LLM costs requests: :meth:`InterpretableEmbedder.estimate_cost`
(or ``dry_run=True``) runs the describer against a stand-in client that reads
the LLM cache and counts what would be sent, without sending anything
(:mod:`._cost`; :class:`CostEstimate` is still importable from here).
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context, clone
from sklearn.exceptions import NotFittedError
from sklearn.utils import check_random_state, get_tags
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils._set_output import _get_output_config
from sklearn.utils.validation import check_is_fitted

from ..hypotheses import TermDescriber, column_fidelity_scores
from ..llm import Usage
from ..sae import SparseAutoencoder
from ..text import TextEmbedder
from ..utils._misc import import_optional
from ..utils._validation import check_texts
from ._binarize import THRESHOLD_METHODS, binarize_activations, latent_thresholds
from ._cost import CostEstimate, summarise_requests, with_dry_run_clients

__all__ = [
    "LABEL_COLUMNS",
    "CostEstimate",
    "InterpretableEmbedder",
    "default_describer",
]

#: Columns of ``labels_``, in order.
LABEL_COLUMNS = [
    "latent",
    "name",
    "label",
    "fidelity",
    "precision",
    "recall",
    "frequency",
    "live",
    "describer",
    "n_fidelity_texts",
    "n_fidelity_fires",
    "reason",
]
# Output names longer than this are cut (the full label stays in labels_).
MAX_NAME_CHARS = 80
# Concepts per call of a cheap annotator over all held-out texts: bounds the
# (texts x concepts) matrix it returns.
_CONCEPT_BLOCK = 256
# Columns of labels_ that hold each fidelity score.
_SCORE_COLUMNS = {"fidelity": "f1", "precision": "precision", "recall": "recall"}
# Rows of the fit corpus encoded at once when a fitted autoencoder returns
# dense activations: bounds the dense block before it is made sparse.
_ROW_BLOCK = 8192


def default_describer() -> TermDescriber:
    """The offline describer of :class:`InterpretableEmbedder`.

    :class:`TermDescriber` with up to 8 terms, the significance bar of its
    default (``min_score="auto"``), and not exclusive: a latent's label
    describes that latent alone, whichever latents are labelled with it. A
    live latent with no distinctive term is left unlabelled, and
    ``labels_.reason`` says so; a lower bar labels more latents, with lower
    held-out fidelity.
    """
    return TermDescriber(n_terms=8, exclusive=False)


# ------------------------------------------------------------------ helpers
def _steps(estimator):
    """The steps of a Pipeline (not passthrough), else None."""
    steps = getattr(estimator, "steps", None)
    if not isinstance(steps, list):
        return None
    return [step for _, step in steps if step not in (None, "passthrough")]


def _needs_fit(estimator) -> bool:
    steps = _steps(estimator)
    if steps is not None:
        return any(_needs_fit(step) for step in steps)
    return get_tags(estimator).requires_fit


def _is_prefitted(estimator) -> bool:
    """Fitted by the user: it needs a fit and has had one.

    Every step of a Pipeline is checked (scikit-learn looks at the last one
    only, which says "fitted" for a stateless last step). One that needs no
    fit (a TextEmbedder, a stateless vectorizer) counts as not fitted: it is
    cloned and fitted, so the object passed is never touched.
    """
    if not _needs_fit(estimator):
        return False
    steps = _steps(estimator)
    if steps is not None:
        return all(_is_prefitted(step) for step in steps if _needs_fit(step))
    try:
        check_is_fitted(estimator)
    except NotFittedError:
        return False
    return True


def _plain(values):
    """A transformer's output as an array or sparse matrix, whatever the
    output container set on it or globally (pandas, polars)."""
    return values.to_numpy() if hasattr(values, "to_numpy") else values


def _as_csr(Z) -> sp.csr_matrix:
    Z = _plain(Z)
    if sp.issparse(Z):
        return sp.csr_matrix(Z, dtype=np.float32)
    return sp.csr_matrix(np.asarray(Z, dtype=np.float32))


def _sanitize(label: str) -> str:
    name = " ".join(str(label).split())  # newlines and tabs too
    if len(name) > MAX_NAME_CHARS:
        name = name[: MAX_NAME_CHARS - 3].rstrip() + "..."
    return name


def _base_name(latent, label, live) -> str:
    if not live:
        return f"dead_{latent}"
    if label is None or (isinstance(label, float) and math.isnan(label)):
        return f"latent_{latent}"
    return _sanitize(label)


def _feature_names(table: pd.DataFrame, latents=None) -> list[str]:
    """Unique names: the first latent with a name keeps it, later ones get
    `` (latent <j>)``. With ``latents``, only theirs are made again, around
    the names the others have, so relabelling renames nothing else."""
    names = list(table["name"]) if latents is not None else [None] * len(table)
    redo = range(len(table)) if latents is None else sorted(int(j) for j in latents)
    seen = {n for j, n in enumerate(names) if j not in set(redo)}
    for j in redo:
        row = table.iloc[j]
        name = _base_name(row["latent"], row["label"], row["live"])
        while name in seen:
            name = f"{name} (latent {row['latent']})"
        seen.add(name)
        names[j] = name
    return names


class InterpretableEmbedder(TransformerMixin, BaseEstimator):
    """Texts -> activations of sparse-autoencoder latents, each named by a label.

    ``fit`` embeds the texts, fits the sparse autoencoder if it is not fitted
    yet, sets each latent's firing threshold (:func:`latent_thresholds`) and
    labels *every* live latent with the describer; :meth:`transform` returns
    documents x latents activations (CSR by default) whose columns
    :meth:`get_feature_names_out` names by those labels, so that
    ``set_output(transform="pandas")`` gives a table of named concepts.

    Labels and their fidelity come from different texts: a random
    ``heldout_fraction`` of the fit texts is never shown to the describer,
    and each label's fidelity (F1 of the annotator's answers against "the
    latent fires") is scored on those held-out texts. A latent *fires* on a
    text when its activation reaches its threshold in ``thresholds_``; the
    describer sees the activations where the latent fires and zero elsewhere.

    Parameters
    ----------
    embedder : transformer or None, default=None
        Texts -> dense embeddings, e.g. :class:`TextEmbedder` or a Pipeline.
        Used as it is when already fitted (as :func:`check_is_fitted` says),
        else a clone is fitted on the texts (always for one that needs no
        fit, such as :class:`TextEmbedder`). None is ``TextEmbedder()``. For
        precomputed embeddings, pass a fitted transformer that returns them
        (a :class:`TextEmbedder` with its durable cache embeds each text
        once, ever).
    sae : SparseAutoencoder or None, default=None
        Used as it is when fitted (a pretrained or :func:`load_sae`
        autoencoder; shared, not copied), else a clone is fitted on the
        embeddings of the fit texts. None is ``SparseAutoencoder()`` seeded
        from ``random_state``. :func:`~sklearn.base.clone` (and so
        ``GridSearchCV``) gives back the unfitted parameter; wrap a fitted
        autoencoder in :class:`~sklearn.frozen.FrozenEstimator` to keep it.
    describer : describer or None, default=None
        Labels latents (``describe(texts, activations, *, annotator,
        random_state)``): :class:`TermDescriber` offline, or
        :class:`LLMDescriber` (an LLM shown activating and non-activating
        texts). None is :func:`default_describer`.
    annotator : annotator or None, default=None
        Scores held-out fidelity (``annotate(texts, concepts)``); None is the
        describer's ``default_annotator()``.
    threshold : {"relative", "positive", "quantile"}, default="relative"
        The firing rule (see :func:`latent_thresholds`). "relative": a latent
        fires where its activation is at least ``threshold_fraction`` times
        its strong activation (the 90th percentile of its non-zero
        activations on the fit texts).
    threshold_fraction : float in (0, 1], default=0.2
        The share used by "relative" and "quantile".
    heldout_fraction : float in (0, 1), default=0.25
        Share of the fit texts held out from the describer to score fidelity
        (at least one text on each side).
    n_fidelity : int, default=40
        Held-out texts per latent an *expensive* annotator (an LLM) is asked
        about: up to half where the latent fires, the rest where it does not.
        That F1 is on a balanced sample, so for a rare latent it is higher
        than on texts at their natural rate would be. A cheap annotator
        scores every held-out text.
    batch_size : int or None, default=256
        Latents per call of the describer (and per batch of fidelity
        requests): the progress bar moves per batch, and an interrupted run
        keeps every answer received in the LLM cache. None labels all at
        once. An LLM describer draws its examples per batch, so another
        batch size draws others (reproducibly, given ``random_state``).
    sparse_output : {"auto"} or bool, default="auto"
        True: :meth:`transform` returns a CSR matrix; False: a dense array.
        "auto" is CSR unless pandas or polars output is set (those hold dense
        columns only), then dense: n_texts x n_latents float32, which is
        large for many texts and latents. ``sparse_output=True`` with pandas
        output raises scikit-learn's error about sparse output.
    dry_run : bool, default=False
        Fit everything but labelling: the texts are embedded and the
        autoencoder fitted, then the labelling is run against stand-in LLM
        clients that send nothing, and what it would cost is printed and
        kept in ``cost_estimate_``. Latents stay unlabelled (named
        ``latent_<j>``); :meth:`relabel` then labels them for real.
    random_state : int, RandomState instance or None, default=None
        The held-out split, the describer's sampling and the default
        autoencoder's seed.
    verbose : int, default=0
        Progress bar over the latents being labelled. The LLM client shows
        one per batch of requests with ``LLMClient(verbose=True)``.

    Attributes
    ----------
    embedder_ : transformer
        The fitted (or given, fitted) embedder.
    sae_ : SparseAutoencoder
        The fitted (or given, fitted) autoencoder.
    describer_ : describer
        A clone of ``describer`` (or the default), as used by ``fit``.
    annotator_ : annotator
        The annotator that scored fidelity.
    thresholds_ : ndarray of shape (n_latents,)
        Per-latent firing thresholds on the fit texts; ``inf`` for a latent
        that never fires there.
    labels_ : pandas.DataFrame
        One row per latent, in latent order: ``latent``; ``name`` (its output
        feature name); ``label`` (None when it has none); ``fidelity``,
        ``precision``, ``recall`` on held-out texts (NaN when not measured:
        no label, or no held-out text scored where it fires); ``frequency``
        (share of fit texts where it fires); ``live`` (fires on a fit text);
        ``describer`` (class of the describer that wrote the label);
        ``n_fidelity_texts`` and ``n_fidelity_fires`` (held-out texts scored,
        and how many of them it fires on); ``reason`` (why there is no label
        or no fidelity, else None).
    usage_ : dict
        LLM usage of labelling so far (``fit`` and :meth:`relabel`): calls,
        cache hits, tokens, cost (see :class:`Usage`). Zeros offline.
    cost_estimate_ : CostEstimate
        Only after ``fit`` with ``dry_run=True``.

    See Also
    --------
    binarize_activations : The firing rule applied by :meth:`binarize`.
    TermDescriber, LLMDescriber : The describers.
    HypothesisGenerator : Labels only the latents that predict a target.

    Notes
    -----
    The fit texts and their activations are kept (in memory and in pickles):
    :meth:`relabel` and :meth:`estimate_cost` label on them again.

    Examples
    --------
    Two concepts per text, a weather word and a place (every fourth text is
    by a volcano); word counts stand in for a text embedder:

    >>> import numpy as np
    >>> from sklearn.feature_extraction.text import CountVectorizer
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import FunctionTransformer
    >>> from sklearn_hypothesaes import InterpretableEmbedder, SparseAutoencoder
    >>> weather = ["rain", "sun", "snow", "wind", "fog", "hail", "storm", "cloud"]
    >>> rng = np.random.default_rng(0)
    >>> texts = [f"{weather[rng.integers(8)]} on day {i} by the "
    ...          + ("volcano" if i % 4 == 0 else "lake") for i in range(200)]
    >>> counts = make_pipeline(
    ...     CountVectorizer(vocabulary=[*weather, "volcano", "lake"]),
    ...     FunctionTransformer(lambda X: X.toarray()))
    >>> sae = SparseAutoencoder(9, 2, matryoshka_prefixes=None, max_epochs=100,
    ...                         batch_size=32, random_state=4)
    >>> emb = InterpretableEmbedder(counts, sae, random_state=0).fit(texts)
    >>> emb.labels_[["label", "fidelity", "frequency"]].head(3)
                    label  fidelity  frequency
    0     mentions "hail"       1.0      0.135
    1     mentions "wind"       1.0      0.135
    2  mentions "volcano"       1.0      0.250
    >>> Z = emb.transform(["sun on day 7 by the volcano"])
    >>> Z.shape, [emb.get_feature_names_out()[j] for j in Z.indices]
    ((1, 9), ['mentions "volcano"', 'mentions "sun"'])
    >>> emb.set_output(transform="pandas").transform(
    ...     ["sun on day 7 by the volcano", "fog on day 8 by the lake"]
    ... ).iloc[:, :3].round(2)
       mentions "hail"  mentions "wind"  mentions "volcano"
    0              0.0              0.0                3.11
    1              0.0              0.0                0.22
    """

    _parameter_constraints: dict = {
        "embedder": [HasMethods(["fit", "transform"]), None],
        "sae": [HasMethods(["fit", "transform"]), None],
        "describer": [HasMethods(["describe"]), None],
        "annotator": [HasMethods(["annotate"]), None],
        "threshold": [StrOptions(set(THRESHOLD_METHODS))],
        "threshold_fraction": [Interval(Real, 0, 1, closed="right")],
        "heldout_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_fidelity": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "sparse_output": [StrOptions({"auto"}), "boolean"],
        "dry_run": ["boolean"],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        embedder=None,
        sae=None,
        describer=None,
        annotator=None,
        *,
        threshold="relative",
        threshold_fraction=0.2,
        heldout_fraction=0.25,
        n_fidelity=40,
        batch_size=256,
        sparse_output="auto",
        dry_run=False,
        random_state=None,
        verbose=0,
    ):
        self.embedder = embedder
        self.sae = sae
        self.describer = describer
        self.annotator = annotator
        self.threshold = threshold
        self.threshold_fraction = threshold_fraction
        self.heldout_fraction = heldout_fraction
        self.n_fidelity = n_fidelity
        self.batch_size = batch_size
        self.sparse_output = sparse_output
        self.dry_run = dry_run
        self.random_state = random_state
        self.verbose = verbose

    # ----------------------------------------------------------------- fitting
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Embed, fit the autoencoder if needed, set thresholds, label latents.

        Parameters
        ----------
        X : sequence of str
            The fit texts (list, array, Series or one-column DataFrame).
        y : None
            Ignored.

        Returns
        -------
        self : InterpretableEmbedder
        """
        self._fit(X)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_transform(self, X, y=None):
        """Fit, then return the activations of the fit texts (embedded once).

        Parameters
        ----------
        X : sequence of str
            The fit texts.
        y : None
            Ignored.

        Returns
        -------
        activations : sparse matrix, ndarray or DataFrame of shape (n_texts, n_latents)
            As :meth:`transform` returns them.
        """
        return self._output(self._fit(X))

    def _fit(self, X):
        texts = self._texts(X, "fit")
        if len(texts) < 2:
            raise ValueError(
                f"InterpretableEmbedder.fit got {len(texts)} sample(s); at least 2 "
                "texts are needed (labels are written on some texts and scored on "
                "held-out others)."
            )
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(np.iinfo(np.int32).max))

        embedder = TextEmbedder() if self.embedder is None else self.embedder
        if _is_prefitted(embedder):
            self.embedder_, E = embedder, embedder.transform(texts)
        else:
            self.embedder_ = clone(embedder)
            E = self.embedder_.fit_transform(texts)
        E = _plain(E)
        sae = (
            SparseAutoencoder(sparse_output=True, random_state=seed)
            if self.sae is None
            else self.sae
        )
        if _is_prefitted(sae):
            self.sae_ = sae
        else:
            self.sae_ = clone(sae).fit(E)
        Z = self._encode(E)

        self.thresholds_ = latent_thresholds(
            Z, method=self.threshold, fraction=self.threshold_fraction
        )
        describer = (
            default_describer() if self.describer is None else clone(self.describer)
        )
        self.describer_ = describer
        self.annotator_ = self._annotator_for(describer)
        held = np.zeros(len(texts), dtype=bool)
        n_held = min(max(1, round(self.heldout_fraction * len(texts))), len(texts) - 1)
        held[rng.choice(len(texts), n_held, replace=False)] = True
        self._corpus = (texts, Z, held, seed)
        self._usage = Usage()

        fires = binarize_activations(Z, self.thresholds_)
        n_fires = np.asarray(fires.sum(axis=0)).ravel()
        self.labels_ = pd.DataFrame(
            {
                "latent": np.arange(Z.shape[1]),
                "name": "",
                "label": pd.Series([None] * Z.shape[1], dtype=object),
                "fidelity": np.nan,
                "precision": np.nan,
                "recall": np.nan,
                "frequency": n_fires / len(texts),
                "live": n_fires > 0,
                "describer": pd.Series([None] * Z.shape[1], dtype=object),
                "n_fidelity_texts": 0,
                "n_fidelity_fires": 0,
                "reason": np.where(
                    n_fires > 0, None, "never fires on the fit texts (dead)"
                ).astype(object),
            },
            columns=LABEL_COLUMNS,
        )
        live = np.flatnonzero(n_fires > 0)
        if self.dry_run:
            self.cost_estimate_ = self._estimate(live, describer, self.annotator_)
            self.labels_.loc[live, "reason"] = (
                "not labelled: dry run (see cost_estimate_)"
            )
            print(self.cost_estimate_)
        else:
            self._label(live, describer, self.annotator_)
        self._rename()
        return Z

    def _annotator_for(self, describer):
        if self.annotator is not None:
            return clone(self.annotator)
        if hasattr(describer, "default_annotator"):
            return describer.default_annotator()
        raise ValueError(
            "The 'annotator' parameter of InterpretableEmbedder is required with a "
            "describer that has no default_annotator(); got annotator=None with "
            f"describer={type(describer).__name__}. Pass an annotator such as "
            "PhraseAnnotator() or LLMAnnotator(client)."
        )

    def _encode(self, E) -> sp.csr_matrix:
        """Activations of embeddings as CSR float32, encoded in row blocks so a
        dense-output autoencoder never holds all rows densely."""
        parts = [
            _as_csr(self.sae_.transform(E[start : start + _ROW_BLOCK]))
            for start in range(0, E.shape[0], _ROW_BLOCK)
        ]
        return sp.vstack(parts, format="csr", dtype=np.float32)

    # --------------------------------------------------------------- labelling
    def _label(self, latents, describer, annotator, desc="Labelling latents"):
        """Label ``latents`` on the labelling texts, score them on the held-out
        ones, and write the rows of ``labels_``."""
        texts, Z, held, seed = self._corpus
        fires = binarize_activations(Z, self.thresholds_)
        # The describer sees activations where the latent fires, zero elsewhere.
        A = sp.csr_matrix(Z.multiply(fires), dtype=np.float32)
        A.eliminate_zeros()
        label_rows, held_rows = np.flatnonzero(~held), np.flatnonzero(held)
        label_texts = [texts[i] for i in label_rows]
        held_texts = [texts[i] for i in held_rows]
        A_label = A[label_rows].tocsc()
        F_held = sp.csc_matrix(fires[held_rows])
        latents = [int(j) for j in latents]
        size = self.batch_size or max(len(latents), 1)
        name = type(describer).__name__
        tqdm = import_optional("tqdm.auto", "Progress bars").tqdm
        with tqdm(
            total=len(latents),
            desc=desc,
            unit="latent",
            disable=not self.verbose,
        ) as bar:
            for start in range(0, len(latents), size):
                batch = latents[start : start + size]
                found = describer.describe(
                    label_texts,
                    A_label[:, batch],
                    annotator=annotator,
                    random_state=seed,
                )
                self._usage = self._usage + found.usage
                labels = {
                    batch[int(c)]: str(d)
                    for c, d in zip(
                        found.table["column"], found.table["description"], strict=True
                    )
                }
                rows = self.labels_["latent"].isin(batch)
                self.labels_.loc[rows, ["label", "describer"]] = None
                self.labels_.loc[rows, ["fidelity", "precision", "recall"]] = np.nan
                self.labels_.loc[rows, ["n_fidelity_texts", "n_fidelity_fires"]] = 0
                for c, why in found.missing.items():
                    j = batch[int(c)]
                    if why == "never fires":
                        why = (
                            "fires on none of the labelling texts (only held-out ones)"
                        )
                    self.labels_.loc[j, "reason"] = f"no label: {why}"
                for j, label in labels.items():
                    self.labels_.at[j, "label"] = label
                    self.labels_.at[j, "describer"] = name
                    self.labels_.at[j, "reason"] = None
                self._score(labels, held_texts, F_held, annotator, seed)
                bar.update(len(batch))

    def _score(self, labels, texts, fires, annotator, seed):
        """Held-out fidelity of each label (``{latent: label}``)."""
        if not labels:
            return
        latents = list(labels)
        if getattr(annotator, "expensive", False):
            truth = {j: fires[:, [j]].toarray().ravel() for j in latents}
            answers = self._ask_samples(labels, texts, truth, annotator, seed)
            # One column per latent, padded with NaN (not asked) to the
            # longest sample, so that all are scored at once.
            values = np.full(
                (max(len(r) for r, _ in answers.values()), len(latents)), np.nan
            )
            fired = np.zeros(values.shape, dtype=bool)
            for c, j in enumerate(latents):
                rows, v = answers[j]
                values[: len(rows), c], fired[: len(rows), c] = v, truth[j][rows]
            self._write_scores(latents, values, fired)
            return
        for start in range(0, len(latents), _CONCEPT_BLOCK):
            block = latents[start : start + _CONCEPT_BLOCK]
            found = annotator.annotate(texts, [labels[j] for j in block])
            self._usage = self._usage + getattr(found, "usage", Usage())
            values = np.asarray(getattr(found, "values", found), dtype=float)
            self._write_scores(block, values, fires[:, block].toarray())

    def _write_scores(self, latents, values, fired):
        """Fidelity of ``latents`` from their annotations (``values``, NaN
        where not asked) and firing on the same texts, one column each."""
        asked = ~np.isnan(values)
        latents = np.asarray(latents)
        n_fires = np.count_nonzero(asked & fired, axis=0)
        self.labels_.loc[latents, "n_fidelity_texts"] = asked.sum(axis=0)
        self.labels_.loc[latents, "n_fidelity_fires"] = n_fires
        self.labels_.loc[latents[n_fires == 0], "reason"] = (
            "fidelity not measured: fires on none of the held-out texts scored"
        )
        measured = n_fires > 0
        scores = column_fidelity_scores(values[:, measured], fired[:, measured])
        for column, key in _SCORE_COLUMNS.items():
            self.labels_.loc[latents[measured], column] = scores[key]

    def _ask_samples(self, labels, texts, truth, annotator, seed):
        """An expensive annotator asked about a balanced sample of held-out
        texts per latent; a text sampled for several latents is one group."""
        samples, by_text = {}, {}
        for j in labels:
            rng = np.random.default_rng([seed, j])
            fire = rng.permutation(np.flatnonzero(truth[j]))
            quiet = rng.permutation(np.flatnonzero(~truth[j]))
            n_fire = min(len(fire), self.n_fidelity // 2)
            n_quiet = min(len(quiet), self.n_fidelity - n_fire)
            n_fire = min(len(fire), self.n_fidelity - n_quiet)
            samples[j] = np.sort(np.concatenate([fire[:n_fire], quiet[:n_quiet]]))
            for i in samples[j]:
                by_text.setdefault(int(i), []).append(j)
        order = sorted(by_text)
        groups = [(texts[i], [labels[j] for j in by_text[i]]) for i in order]
        if hasattr(annotator, "annotate_groups"):
            rows, usage = annotator.annotate_groups(groups, desc="Held-out fidelity")
        else:
            rows, usage = [], Usage()
            for text, concepts in groups:
                found = annotator.annotate([text], concepts)
                rows.append(np.asarray(getattr(found, "values", found), float)[0])
                usage = usage + getattr(found, "usage", Usage())
        self._usage = self._usage + usage
        value = {}
        for i, row in zip(order, rows, strict=True):
            for j, v in zip(by_text[i], np.asarray(row, dtype=float), strict=True):
                value[(i, j)] = v
        return {
            j: (rows_j, np.array([value[(int(i), j)] for i in rows_j], dtype=float))
            for j, rows_j in samples.items()
        }

    def _rename(self, latents=None):
        self.labels_["name"] = _feature_names(self.labels_, latents)
        self.labels_ = self.labels_.astype(
            {"n_fidelity_texts": int, "n_fidelity_fires": int, "live": bool}
            | dict.fromkeys(["fidelity", "precision", "recall", "frequency"], float)
        )
        self.usage_ = self._usage.as_dict()

    def _check_latents(self, latents, method):
        live = self.labels_["live"].to_numpy()
        if isinstance(latents, str) and latents == "all":
            return np.flatnonzero(live)
        chosen = np.atleast_1d(np.asarray(latents))
        if chosen.dtype.kind not in "iu" or chosen.ndim != 1:
            raise ValueError(
                f"The 'latents' parameter of InterpretableEmbedder.{method} must be "
                f"'all' or a list of latent indices (ints). Got {latents!r} instead."
            )
        bad = [int(j) for j in chosen if not 0 <= j < len(live)]
        if bad:
            raise ValueError(
                f"The 'latents' parameter of InterpretableEmbedder.{method} must hold "
                f"ints in [0, {len(live)}). Got {bad[:10]} instead."
            )
        dead = [int(j) for j in chosen if not live[j]]
        if dead:
            raise ValueError(
                f"InterpretableEmbedder.{method}: latent(s) {dead[:10]} never fire on "
                "the fit texts (dead), so there is nothing to label. Leave them out "
                "(labels_.live says which are live)."
            )
        return np.unique(chosen)

    def relabel(self, latents, describer=None):
        """Label chosen latents again, with the same or another describer.

        Only the rows of ``labels_`` (and output names) of these latents
        change; fidelity is scored on the same held-out texts as in ``fit``.
        The describer draws its examples with the fit's seed, so the same
        describer on the same batch of latents asks the same questions, which
        the LLM cache answers: for new labels, change the describer (more
        ``n_candidates``, another model or ``instructions``).

        Parameters
        ----------
        latents : "all" or array-like of int
            Latent indices (live ones), or "all" for every live latent (after
            a ``dry_run`` fit, this labels them).
        describer : describer or None, default=None
            None reuses ``describer_``; another one is cloned and used for
            these latents, with ``annotator`` (or its own default annotator).

        Returns
        -------
        self : InterpretableEmbedder
        """
        check_is_fitted(self)
        chosen = self._check_latents(latents, "relabel")
        describer, annotator = self._strategies(describer)
        self._label(chosen, describer, annotator)
        self._rename(chosen)
        return self

    def estimate_cost(self, latents="all", describer=None) -> CostEstimate:
        """What labelling latents would send to an LLM, without sending it.

        The describer runs against stand-in clients that answer from the LLM
        cache where they can and count every other request (as the client
        would deduplicate them), with estimated prompt tokens and, from the
        clients' ``prices``, cost. An offline describer needs no request.

        Parameters
        ----------
        latents : "all" or array-like of int, default="all"
            The latents to (re)label.
        describer : describer or None, default=None
            None is ``describer_``.

        Returns
        -------
        estimate : CostEstimate
            ``print(estimate)`` shows it per step.
        """
        check_is_fitted(self)
        chosen = self._check_latents(latents, "estimate_cost")
        describer, annotator = self._strategies(describer)
        return self._estimate(chosen, describer, annotator)

    def _strategies(self, describer):
        if describer is None:
            return self.describer_, self.annotator_
        describer = clone(describer)
        return describer, self._annotator_for(describer)

    def _estimate(self, latents, describer, annotator) -> CostEstimate:
        log = []
        probe_describer = with_dry_run_clients(describer, log)
        if (
            self.annotator is None
            and annotator is not None
            and hasattr(probe_describer, "default_annotator")
        ):
            probe_annotator = probe_describer.default_annotator()
        else:
            probe_annotator = with_dry_run_clients(annotator, log)
        # Labelling runs on copies: the stand-ins write into them, not labels_.
        saved, usage = self.labels_.copy(), self._usage
        try:
            self._label(
                latents, probe_describer, probe_annotator, "Estimating (dry run)"
            )
        finally:
            self.labels_, self._usage = saved, usage
        return summarise_requests(log)

    # --------------------------------------------------------------- inference
    def transform(self, X):
        """Activations of the latents on texts.

        Parameters
        ----------
        X : sequence of str
            Texts.

        Returns
        -------
        activations : sparse matrix, ndarray or DataFrame of shape (n_texts, n_latents)
            Float32; CSR by default (see ``sparse_output``); a DataFrame named
            by :meth:`get_feature_names_out` after
            ``set_output(transform="pandas")``.
        """
        check_is_fitted(self)
        texts = self._texts(X, "transform")
        return self._output(self._encode(_plain(self.embedder_.transform(texts))))

    def _output(self, Z):
        sparse = self.sparse_output
        if sparse == "auto":
            sparse = _get_output_config("transform", self)["dense"] == "default"
        return Z if sparse else Z.toarray()

    def binarize(self, X):
        """Which latents fire on which texts, by ``thresholds_``.

        Parameters
        ----------
        X : sequence of str, or {array-like, sparse matrix, DataFrame} of shape \
(n_texts, n_latents)
            Texts, or activations from :meth:`transform`.

        Returns
        -------
        fires : scipy.sparse.csr_matrix of bool, shape (n_texts, n_latents)
        """
        check_is_fitted(self)
        values = _plain(X)
        numeric = sp.issparse(values) or (
            isinstance(values, np.ndarray)
            and values.ndim == 2
            and values.dtype.kind in "biuf"
        )
        if not numeric:
            values = self._encode(
                _plain(self.embedder_.transform(self._texts(X, "binarize")))
            )
        elif values.shape[1] != len(self.thresholds_):
            raise ValueError(
                "The 'X' parameter of InterpretableEmbedder.binarize must be texts or "
                f"activations with {len(self.thresholds_)} columns (one per latent). "
                f"Got shape {values.shape} instead."
            )
        return binarize_activations(values, self.thresholds_)

    def get_feature_names_out(self, input_features=None):
        """The latents' names: sanitized labels, ``dead_<j>``, ``latent_<j>``.

        A label's name has its whitespace collapsed and is cut to
        ``MAX_NAME_CHARS`` characters; a repeated name gets `` (latent <j>)``.
        A dead latent is ``dead_<j>``, a live one without label ``latent_<j>``.

        Parameters
        ----------
        input_features : None
            Ignored.

        Returns
        -------
        names : ndarray of str objects, shape (n_latents,)
        """
        check_is_fitted(self)
        return np.asarray(self.labels_["name"], dtype=object)

    def _texts(self, X, method):
        return check_texts(X, caller=f"InterpretableEmbedder.{method}", param="X")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.one_d_array = True
        tags.input_tags.string = True
        tags.transformer_tags.preserves_dtype = []
        return tags
