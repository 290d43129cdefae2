"""Describers: latent activations + texts -> one description per latent.

The protocol is one method, ``describe(texts, activations, *, annotator,
random_state=None) -> Descriptions``: each column of ``activations`` gets a
description in words (or a reason why not), with its fidelity measured by the
``annotator`` that will later annotate texts with it. A describer may also
offer ``default_annotator()``, the annotator its descriptions are written for,
and accept ``y`` in ``describe`` (the encoded target, one column per class),
which :class:`HypothesisGenerator` then passes.
Two implementations ship: :class:`TermDescriber` (offline contrastive terms)
and :class:`LLMDescriber` (an LLM names the concept).
"""

from __future__ import annotations

import dataclasses
from numbers import Integral, Real

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions

from ..llm import Usage
from ..utils._validation import check_texts, resolve_task
from ._annotate import MAX_TEXT_CHARS
from ._annotators import LLMAnnotator, PhraseAnnotator
from ._base import Strategy
from ._fidelity import column_fidelity_scores
from ._interpret import describe_latents_with_llm
from ._terms import (
    PhraseMatcher,
    contrastive_terms,
    document_terms,
    format_hypothesis,
    text_fingerprint,
)

#: Columns every describer's table has, in this order (extra ones follow).
DESCRIPTION_COLUMNS = ["column", "description", "fidelity", "precision", "recall"]
# Latents whose activations are made dense at once to score fidelity.
_FIDELITY_BLOCK = 256


@dataclasses.dataclass
class Descriptions:
    """What a describer returns.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per described column of the activations, in column order:
        ``column`` (index into the activations), ``description``,
        ``fidelity`` (F1 of the annotator's labels against "the latent
        fires"), ``precision``, ``recall``, then describer-specific columns
        (``terms`` for :class:`TermDescriber`).
    missing : dict
        ``{column: reason}`` for columns that got no description.
    usage : Usage
        LLM usage of this call, fidelity scoring included (zeros offline).
    """

    table: pd.DataFrame
    missing: dict = dataclasses.field(default_factory=dict)
    usage: Usage = dataclasses.field(default_factory=Usage)


def _as_columns(activations, n_texts, caller):
    if sparse.issparse(activations):
        activations = sparse.csc_matrix(activations, dtype=np.float64)
    else:
        activations = np.asarray(activations, dtype=np.float64)
    if activations.ndim != 2 or activations.shape[0] != n_texts:
        raise ValueError(
            f"The 'activations' parameter of {caller} must have shape (n_texts, "
            f"n_latents) = ({n_texts}, n_latents). Got {activations.shape} instead."
        )
    return activations


def _column(activations, j):
    if sparse.issparse(activations):
        return activations[:, [j]].toarray().ravel()
    return activations[:, j]


class TermDescriber(Strategy):
    """Offline describer: the words that distinguish the texts where a latent fires.

    Each latent is described by the words and phrases with the highest
    log-odds z-score between the texts where it fires and those where it is
    silent (:func:`contrastive_terms`), written as ``mentions "a", "b" or
    "c"``. Its default annotator, :class:`PhraseAnnotator`, says a text has the
    description when it contains one of the terms; fidelity is that match's
    agreement with "the latent fires" on the texts given. Given the target
    (``describe(..., y=y)``), a latent's terms are only those that go with y
    the way the latent does, so the description keeps the latent's signal.

    Parameters
    ----------
    n_terms : int, default=20
        Most terms per description. Many terms match more of the texts where
        the latent fires: on the Rotten Tomatoes benchmark
        (``benchmarks/bench_offline.py``) 20 keep more of the latents'
        held-out AUC than 6.
    min_score : {"auto", "bonferroni"} or float, default="auto"
        Smallest z-score of a term: "auto" is a Benjamini-Hochberg threshold
        per latent (10% false discovery rate over the vocabulary),
        "bonferroni" a stricter bound (see :func:`contrastive_terms`). A
        latent with no term this distinctive gets no description; on a few
        hundred texts a lower bound such as 2.0 finds more. On the 132
        training speeches of ``load_convention_speeches`` (about 700 words
        each, so a vocabulary of thousands of terms to correct for), "auto"
        describes one latent of 20 or none, while 2.0 describes all 20 with
        a held-out AUC of 0.78-0.88 against the latents' 0.85-0.93
        (``benchmarks/bench_offline.py``).
    exclusive : bool, default=True
        Each term describes only the latent where it scores highest, so two
        latents' descriptions (and annotations) share few words; a latent
        always keeps its own best term (see :func:`contrastive_terms`).
    n_fidelity : int or None, default=None
        Texts (a random sample) on which an *expensive* annotator (an LLM)
        scores fidelity; None scores on every text, which is what a cheap
        annotator always does.

    Notes
    -----
    Reading the texts (repairing, tokenising, counting phrases) is most of
    the cost of offline labelling, so the describer keeps the document-term
    matrix of the last texts it described (recognised by a hash of the
    texts; never pickled or cloned): calls on the same texts, such as the
    batches of latents of :class:`InterpretableEmbedder`, read them once.
    With :class:`PhraseAnnotator`, fidelity is read off the same matrix; the
    numbers are those of annotating the texts.

    See Also
    --------
    LLMDescriber : Descriptions in words, by an LLM.
    contrastive_terms : The scores behind the terms.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_hypothesaes import PhraseAnnotator, TermDescriber
    >>> texts = [f"a brilliant film {i}" for i in range(20)] + [
    ...     f"a dull plot {i}" for i in range(20)]
    >>> acts = np.array([[1.0, 0.0]] * 20 + [[0.0, 1.0]] * 20)
    >>> found = TermDescriber().describe(texts, acts, annotator=PhraseAnnotator())
    >>> found.table[["column", "description", "fidelity"]]
       column                description  fidelity
    0       0  mentions "brilliant film"       1.0
    1       1       mentions "dull plot"       1.0
    """

    _parameter_constraints: dict = {
        "n_terms": [Interval(Integral, 1, None, closed="left")],
        "min_score": [
            StrOptions({"auto", "bonferroni"}),
            Interval(Real, None, None, closed="neither"),
        ],
        "n_fidelity": [Interval(Integral, 1, None, closed="left"), None],
        "exclusive": ["boolean"],
    }

    def __init__(self, n_terms=20, min_score="auto", n_fidelity=None, exclusive=True):
        self.n_terms = n_terms
        self.min_score = min_score
        self.n_fidelity = n_fidelity
        self.exclusive = exclusive

    def default_annotator(self):
        """:class:`PhraseAnnotator`, which reads the quoted terms."""
        return PhraseAnnotator()

    def describe(self, texts, activations, *, annotator, random_state=None, y=None):
        """Describe every column of ``activations``.

        Parameters
        ----------
        texts : sequence of str
            The texts the activations were computed on.
        activations : {array-like, sparse matrix} of shape (n_texts, n_latents)
            Latent activations; a latent fires on a text when > 0.
        annotator : annotator
            Scores fidelity (an object with ``annotate(texts, concepts)``).
        random_state : int, RandomState instance or None, default=None
            The fidelity sample of an expensive annotator.
        y : array-like of shape (n_texts,) or (n_texts, n_targets), default=None
            The target, optional. When given, a latent's terms are only those
            whose presence goes with y the way the latent does (same sign of
            correlation), so an antonym that co-occurs with the latent but
            goes with the other outcome is left out. A 1-D y is read as
            :func:`resolve_task` reads it (class labels or values); a 2-D y
            is taken as numeric columns, e.g. one 0/1 column per class.

        Returns
        -------
        descriptions : Descriptions
        """
        self._validate_params()
        texts = check_texts(texts, caller="TermDescriber.describe")
        acts = _as_columns(activations, len(texts), "TermDescriber.describe")
        documents = self._documents(texts)
        terms = contrastive_terms(
            texts,
            acts,
            y=_encode_target(y, len(texts)),
            n_terms=self.n_terms,
            min_score=self.min_score,
            exclusive=self.exclusive,
            documents=documents,
        )
        keep = [j for j, t in enumerate(terms) if t]
        fires_somewhere = _fires_somewhere(acts)
        missing = {
            j: "never fires"
            if not fires_somewhere[j]
            else f"no term reaches min_score={self.min_score!r}"
            for j, t in enumerate(terms)
            if not t
        }
        term_lists = [[w for w, _ in terms[j]] for j in keep]
        descriptions = [format_hypothesis(t) for t in term_lists]
        rows = np.arange(len(texts))
        if getattr(annotator, "expensive", False) and self.n_fidelity is not None:
            rng = check_random_state(random_state)
            size = min(self.n_fidelity, len(texts))
            rows = np.sort(rng.choice(len(texts), size, replace=False))
        usage = Usage()
        scores = dict.fromkeys(("f1", "precision", "recall"), np.empty(0))
        if keep:
            # PhraseAnnotator reads the quoted terms back and looks for them
            # as this describer read the texts: its answers are the columns
            # of the document-term matrix, with no second reading of the texts.
            matched = None
            if type(annotator) is PhraseAnnotator and len(rows) == len(texts):
                matched = PhraseMatcher(term_lists).annotate_documents(documents)
            if matched is None:
                found = annotator.annotate([texts[i] for i in rows], descriptions)
                matched, usage = np.asarray(found.values, dtype=float), found.usage
            scores = _column_scores(matched, acts, rows, keep)
        table = pd.DataFrame(
            {
                "column": np.asarray(keep, dtype=int),
                "description": pd.Series(descriptions, dtype=object),
                "fidelity": scores["f1"],
                "precision": scores["precision"],
                "recall": scores["recall"],
                "terms": pd.Series(term_lists, dtype=object),
            },
            columns=[*DESCRIPTION_COLUMNS, "terms"],
        )
        return Descriptions(_typed(table), missing, usage)

    def _documents(self, texts):
        """The texts read once for all calls on the same texts (the batches of
        latents of :class:`InterpretableEmbedder`), recognised by their hash."""
        cached = getattr(self, "_documents_cache", None)
        if cached is None or cached.fingerprint != text_fingerprint(texts):
            cached = document_terms(texts)
            self._documents_cache = cached
        return cached

    def __getstate__(self):
        # A cache of the last texts read, not a parameter: never pickled.
        state = dict(super().__getstate__())
        state.pop("_documents_cache", None)
        return state


class LLMDescriber(Strategy):
    """Describer that asks an LLM to name the concept where a latent fires.

    The LLM sees numbered texts where the latent fires and texts where it
    does not, and names the shared concept; each of ``n_candidates``
    descriptions (from different examples) is scored on ``n_fidelity``
    held-out texts that no prompt showed, by the annotator, and the best is
    kept (see :func:`interpret_latents`).

    Parameters
    ----------
    client : LLMClient
        The interpreter model.
    n_candidates : int, default=1
        Candidate descriptions per latent; the best fidelity wins.
    n_examples : int, default=10
        Firing (and as many silent) examples per prompt.
    sampling : {"bins", "top"}, default="bins"
        How firing examples are chosen (see :func:`interpret_latents`).
    instructions : str or None, default=None
        Task-specific guidance for the prompt.
    n_fidelity : int, default=40
        Held-out texts per latent for fidelity; 0 skips scoring (the first
        candidate is kept).
    prompt_template : str or None, default=None
        Replaces the packaged prompt.
    max_text_chars : int or None, default=500
        Texts are cut to this many characters: the examples in prompts and,
        through :meth:`default_annotator`, fidelity and final annotation, so
        that a description is scored and used on what its interpreter read.
        None shows texts whole (mind the model's context length: a prompt
        holds ``2 * n_examples`` texts).
    concepts_per_request : int, default=1
        Concepts per annotation request of :meth:`default_annotator` (see
        :class:`LLMAnnotator`).

    See Also
    --------
    TermDescriber : The offline describer.
    LLMAnnotator : The default annotator of these descriptions.

    Examples
    --------
    >>> from sklearn_hypothesaes import LLMClient
    >>> from sklearn_hypothesaes import LLMDescriber
    >>> describer = LLMDescriber(LLMClient(model="gpt-4o-mini"), n_candidates=3)
    >>> describer.default_annotator().client.model
    'gpt-4o-mini'
    """

    _parameter_constraints: dict = {
        "client": [HasMethods(["complete_parsed"])],
        "n_candidates": [Interval(Integral, 1, None, closed="left")],
        "n_examples": [Interval(Integral, 1, None, closed="left")],
        "sampling": [StrOptions({"bins", "top"})],
        "instructions": [str, None],
        "n_fidelity": [Interval(Integral, 0, None, closed="left")],
        "prompt_template": [str, None],
        "max_text_chars": [Interval(Integral, 1, None, closed="left"), None],
        "concepts_per_request": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        client,
        *,
        n_candidates=1,
        n_examples=10,
        sampling="bins",
        instructions=None,
        n_fidelity=40,
        prompt_template=None,
        max_text_chars=MAX_TEXT_CHARS,
        concepts_per_request=1,
    ):
        self.client = client
        self.n_candidates = n_candidates
        self.n_examples = n_examples
        self.sampling = sampling
        self.instructions = instructions
        self.n_fidelity = n_fidelity
        self.prompt_template = prompt_template
        self.max_text_chars = max_text_chars
        self.concepts_per_request = concepts_per_request

    def default_annotator(self):
        """:class:`LLMAnnotator` on the same client, with the same
        ``max_text_chars`` and ``concepts_per_request``."""
        return LLMAnnotator(
            self.client,
            concepts_per_request=self.concepts_per_request,
            max_text_chars=self.max_text_chars,
        )

    def describe(self, texts, activations, *, annotator, random_state=None):
        """Describe every column of ``activations`` (see :class:`TermDescriber`).

        Returns
        -------
        descriptions : Descriptions
            The table has a ``terms`` column of None, so that tables of both
            describers line up.

        Raises
        ------
        RuntimeError
            When no latent that fires got a usable description (refusals,
            empty or cut-off answers); the message counts the reasons and
            names the setting that fixes them.
        """
        self._validate_params()
        texts = check_texts(texts, caller="LLMDescriber.describe")
        acts = _as_columns(activations, len(texts), "LLMDescriber.describe")
        frame, usage = describe_latents_with_llm(
            texts,
            acts,
            client=self.client,
            annotator=annotator,
            n_candidates=self.n_candidates,
            n_examples=self.n_examples,
            sampling=self.sampling,
            instructions=self.instructions,
            n_fidelity=self.n_fidelity,
            prompt_template=self.prompt_template,
            random_state=random_state,
            max_text_chars=self.max_text_chars,
            warn_dead=False,
        )
        best = frame[frame["best"]].sort_values("latent", kind="stable")
        described = set(best["latent"])
        missing = {
            j: "never fires"
            if not (_column(acts, j) > 0).any()
            else "the LLM gave no usable description (see the LLM warning)"
            for j in range(acts.shape[1])
            if j not in described
        }
        table = pd.DataFrame(
            {
                "column": best["latent"].to_numpy(dtype=int),
                "description": best["hypothesis"].to_numpy(dtype=object),
                "fidelity": best["f1"].to_numpy(dtype=float),
                "precision": best["precision"].to_numpy(dtype=float),
                "recall": best["recall"].to_numpy(dtype=float),
                "terms": [None] * len(best),
            },
            columns=[*DESCRIPTION_COLUMNS, "terms"],
        )
        return Descriptions(_typed(table), missing, usage)


def _encode_target(y, n_texts):
    """y as numeric columns for contrastive_terms: the values, 0/1 for two
    classes, one 0/1 column per class for more; 2-D y as it is."""
    if y is None or np.ndim(y) == 2:
        return y
    y = column_or_1d(y, warn=True)
    if len(y) != n_texts:
        raise ValueError(
            f"The 'y' parameter of TermDescriber.describe must have one value per "
            f"text ({n_texts}). Got {len(y)} instead."
        )
    task = resolve_task(y, caller="TermDescriber.describe")
    if task == "regression":
        return y.astype(np.float64)
    return LabelBinarizer().fit_transform(y).astype(np.float64)


def _fires_somewhere(activations):
    """Whether each column has a value > 0."""
    if sparse.issparse(activations):
        return np.asarray((activations > 0).sum(axis=0)).ravel() > 0
    return (activations > 0).any(axis=0)


def _column_scores(matched, activations, rows, columns):
    """Fidelity of ``matched[:, c]`` against column ``columns[c]`` of the
    activations on ``rows``, as :func:`fidelity_scores` gives it per column."""
    scores = {key: np.empty(len(columns)) for key in ("f1", "precision", "recall")}
    for start in range(0, len(columns), _FIDELITY_BLOCK):
        block = slice(start, start + _FIDELITY_BLOCK)
        cols = columns[block]
        if sparse.issparse(activations):
            fired = activations[:, cols][rows].toarray()
        else:
            fired = activations[np.ix_(rows, cols)]
        found = column_fidelity_scores(matched[:, block], fired)
        for key, values in scores.items():
            values[block] = found[key]
    return scores


def _typed(table):
    return table.astype(
        {"column": int, "description": object, "fidelity": float}
        | {"precision": float, "recall": float}
    ).reset_index(drop=True)
