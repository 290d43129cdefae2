"""HypothesisGenerator: selected latents -> hypotheses -> annotations -> a model.

The last step of the HypotheSAEs pipeline. Each selected latent becomes one
natural-language hypothesis (an LLM's description, or offline the words that
distinguish the texts where it fires), texts are annotated with the
hypotheses, and a linear model on those annotations predicts y, so that a
cross-validated score measures the hypotheses themselves.
"""

from __future__ import annotations

import re
import warnings
from numbers import Integral, Real

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import accuracy_score, r2_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils._tags import ClassifierTags, RegressorTags
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

from ..llm import USAGE_KEYS as _USAGE_KEYS
from ..utils._misc import warn_user
from ._annotate import annotate_texts
from ._describe import _fidelity, interpret_latents
from ._stats import evaluate_hypotheses
from ._terms import PhraseAnnotator, contrastive_terms, format_hypothesis

_TRAILING_INT = re.compile(r"(\d+)$")
# Columns a hypothesis row gets from _offline or _interpret, so hypotheses_
# has them all even when no latent gets a hypothesis.
_ROW_COLUMNS = ["hypothesis", "fidelity", "precision", "recall", "terms"]


# No set_output wrapping: it would make X a required argument of transform.
class HypothesisGenerator(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
    """Turn selected latents into hypotheses, annotations and predictions.

    ``fit`` receives the selected latent activations as X (from
    :class:`LatentSelector`) and the raw texts through scikit-learn metadata
    routing (``texts``). It describes each latent by a hypothesis:

    - with an ``interpreter`` (:class:`LLMClient`), by
      :func:`interpret_latents`: the LLM names the concept shared by texts
      where the latent fires, and each candidate's fidelity (F1 of the
      annotator's labels against "the latent fires" on held-out texts) picks
      the best;
    - offline (``interpreter=None``), by :func:`contrastive_terms`: the words
      and phrases that most distinguish the texts where the latent fires from
      those where it is silent; a text has the hypothesis when it contains one
      of them (phrase matching), and fidelity is that match's F1 against
      "fires" on the fit texts.

    A linear model on the annotations of the fit texts then serves
    :meth:`predict`, :meth:`predict_proba` and :meth:`score`: logistic
    regression for classes, least squares for a continuous y, with missing
    annotations imputed by the training mean. With an LLM this costs
    annotating training texts, so at most ``max_fit_annotations`` of them
    (a random sample) are annotated for it.

    A single estimator serves both tasks: the task is learned in ``fit``
    (``task_``) and ``score`` is R^2 for regression, ROC AUC for binary
    classification (the paper's measure) and accuracy for multiclass. Set
    ``task`` explicitly for :func:`~sklearn.base.is_classifier` to know it
    (and cross-validation to stratify). Multiclass y is handled one-vs-rest:
    each hypothesis is attached to the class it is most associated with
    (``class`` column) and :meth:`evaluate` returns one table per class.

    Parameters
    ----------
    interpreter : LLMClient or None, default=None
        The LLM that names latents; None is the offline mode.
    annotator : LLMClient or None, default=None
        The LLM that annotates texts; None uses ``interpreter``.
    n_candidates : int, default=1
        Candidate descriptions per latent (LLM mode); the one with the best
        fidelity is kept.
    n_examples : int, default=10
        Firing (and as many silent) examples per interpretation prompt.
    sampling : {"bins", "top"}, default="bins"
        How firing examples are chosen (see :func:`interpret_latents`).
    instructions : str or None, default=None
        Task-specific guidance for the interpreter prompt.
    n_fidelity : int, default=40
        Held-out texts per latent on which fidelity is scored (LLM mode).
    annotation_mode : {"multi", "single"}, default="multi"
        How the LLM annotates (see :func:`annotate_texts`).
    probabilities : bool, default=False
        LLM annotations as P(yes) rather than 0/1.
    n_terms : int, default=6
        Offline mode: most terms per hypothesis.
    min_term_score : "auto" or float, default="auto"
        Offline mode: smallest z-score of a term (``min_score`` of
        :func:`contrastive_terms`; "auto" is a Bonferroni bound over the
        vocabulary). Latents with no term this distinctive get no hypothesis;
        on a few hundred texts a lower bound such as 2.0 finds more.
    task : {"auto", "regression", "classification"}, default="auto"
        ``"auto"`` reads y with :func:`~sklearn.utils.multiclass.type_of_target`.
    correction : {"bonferroni", "holm", "fdr_bh", "none"}, default="bonferroni"
        Multiple-testing correction of :meth:`evaluate`.
    alpha : float in (0, 1), default=0.05
        Significance level of :meth:`evaluate`.
    max_fit_annotations : int, default=2000
        LLM mode: training texts annotated to fit the predictive model.
    max_redundancy : float in (0, 1] or None, default=0.8
        A hypothesis whose annotations of the fit texts correlate above this
        with those of a hypothesis more associated with y is dropped, with a
        warning: two latents for one concept give near-duplicate hypotheses,
        which add nothing and can make the joint regression unidentifiable.
        None keeps every hypothesis.
    random_state : int, RandomState instance or None, default=None
        Controls example sampling and the sample of ``max_fit_annotations``.
    verbose : int, default=0
        Print what each step does.

    Attributes
    ----------
    hypotheses_ : pandas.DataFrame
        One row per hypothesis: ``latent`` (index in the sparse autoencoder,
        read from feature names such as ``sparseautoencoder12``, else the
        column position), ``feature`` (input column name), ``class``
        (multiclass only), ``association`` (Pearson r with y, or with the
        class indicator, on the fit data), ``hypothesis``, ``fidelity`` (F1),
        ``precision``, ``recall`` and ``terms`` (offline mode, else None).
        Latents that never fire or get no description are left out, with a
        warning. The columns are always there: when no latent gets a
        hypothesis the table has zero rows (and fit warns why).
    model_ : estimator
        The model on annotations behind :meth:`predict`. With no hypothesis
        it is a constant model, :class:`~sklearn.dummy.DummyClassifier`
        (class priors) or :class:`~sklearn.dummy.DummyRegressor` (training
        mean), so predict still answers and score is that of a constant
        (ROC AUC 0.5 for a binary y).
    task_ : str
        ``"regression"``, ``"binary"`` or ``"multiclass"``.
    classes_ : ndarray
        Class labels (classification only).
    usage_ : dict
        LLM usage of this estimator's calls, summed over interpreter and
        annotator: ``calls``, ``cache_hits``, ``prompt_tokens``,
        ``completion_tokens``, ``retries``, ``reasks``, ``failures``,
        ``cost`` (None without prices). Zeros offline.
    n_features_in_ : int
        Number of selected latents seen during :meth:`fit`.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Their names, when X has string column names.

    See Also
    --------
    LatentSelector : Selects the latents this describes.
    evaluate_hypotheses : The statistics behind :meth:`evaluate`.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_hypothesaes import HypothesisGenerator
    >>> texts = [f"a brilliant film {i}" for i in range(20)] + [
    ...     f"a dull plot {i}" for i in range(20)]
    >>> y = np.array([1] * 20 + [0] * 20)
    >>> X = np.array([[1.0, 0.0]] * 20 + [[0.0, 1.0]] * 20)
    >>> gen = HypothesisGenerator(random_state=0).fit(X, y, texts=texts)
    >>> gen.hypotheses_[["latent", "hypothesis", "fidelity"]]
       latent                 hypothesis  fidelity
    0       0  mentions "brilliant film"       1.0
    1       1       mentions "dull plot"       1.0
    >>> gen.transform(texts=["A brilliant film!", "Dull plot."])
    array([[1., 0.],
           [0., 1.]])
    >>> new = ["brilliant film", "dull plot", "a brilliant film"]
    >>> gen.score(None, [1, 0, 1], texts=new)
    1.0
    """

    __metadata_request__fit = {"texts": True}
    __metadata_request__transform = {"texts": True}
    __metadata_request__predict = {"texts": True}
    __metadata_request__predict_proba = {"texts": True}
    __metadata_request__score = {"texts": True}

    _parameter_constraints: dict = {
        "interpreter": [HasMethods(["complete_parsed"]), None],
        "annotator": [HasMethods(["complete_parsed"]), None],
        "n_candidates": [Interval(Integral, 1, None, closed="left")],
        "n_examples": [Interval(Integral, 1, None, closed="left")],
        "sampling": [StrOptions({"bins", "top"})],
        "instructions": [str, None],
        "n_fidelity": [Interval(Integral, 0, None, closed="left")],
        "annotation_mode": [StrOptions({"multi", "single"})],
        "probabilities": ["boolean"],
        "n_terms": [Interval(Integral, 1, None, closed="left")],
        "min_term_score": [
            StrOptions({"auto"}),
            Interval(Real, None, None, closed="neither"),
        ],
        "task": [StrOptions({"auto", "regression", "classification"})],
        "correction": [StrOptions({"bonferroni", "holm", "fdr_bh", "none"})],
        "alpha": [Interval(Real, 0, 1, closed="neither")],
        "max_fit_annotations": [Interval(Integral, 1, None, closed="left")],
        "max_redundancy": [Interval(Real, 0, 1, closed="right"), None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        interpreter=None,
        annotator=None,
        *,
        n_candidates=1,
        n_examples=10,
        sampling="bins",
        instructions=None,
        n_fidelity=40,
        annotation_mode="multi",
        probabilities=False,
        n_terms=6,
        min_term_score="auto",
        task="auto",
        correction="bonferroni",
        alpha=0.05,
        max_fit_annotations=2000,
        max_redundancy=0.8,
        random_state=None,
        verbose=0,
    ):
        self.interpreter = interpreter
        self.annotator = annotator
        self.n_candidates = n_candidates
        self.n_examples = n_examples
        self.sampling = sampling
        self.instructions = instructions
        self.n_fidelity = n_fidelity
        self.annotation_mode = annotation_mode
        self.probabilities = probabilities
        self.n_terms = n_terms
        self.min_term_score = min_term_score
        self.task = task
        self.correction = correction
        self.alpha = alpha
        self.max_fit_annotations = max_fit_annotations
        self.max_redundancy = max_redundancy
        self.random_state = random_state
        self.verbose = verbose

    # ----------------------------------------------------------------- fitting
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, texts=None):
        """Describe each selected latent and fit the model on annotations.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_texts, n_selected)
            Activations of the selected latents (any non-negative activations
            or, without a sparse autoencoder, any features whose positive
            values mark a text).
        y : array-like of shape (n_texts,)
            Target: continuous values or class labels.
        texts : sequence of str of length n_texts
            The texts X was computed from (routed metadata in a Pipeline).

        Returns
        -------
        self : HypothesisGenerator
            The fitted generator.
        """
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse=("csr", "csc"),
            dtype=(np.float64, np.float32),
        )
        texts = self._check_texts(texts, X.shape[0], "fit")
        targets = self._encode_target(y)
        acts = sparse.csc_matrix(X) if sparse.issparse(X) else np.asarray(X)
        dense = acts.toarray() if sparse.issparse(acts) else acts
        names = getattr(self, "feature_names_in_", None)
        if names is None:
            names = np.array([f"x{j}" for j in range(X.shape[1])], dtype=object)
        latents = _latent_ids(names)
        assoc = _pearson(dense, targets)  # (n_targets, n_features)
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(np.iinfo(np.int32).max))
        clients = self._clients()
        before = [c.usage() for c in clients]

        if self.interpreter is None:
            rows, keep = self._offline(texts, acts, dense)
        else:
            rows, keep = self._interpret(texts, acts, seed)
        self._warn_dropped(latents, keep, dense)
        table = pd.DataFrame(rows, columns=_ROW_COLUMNS).astype(
            {"hypothesis": object, "fidelity": float, "precision": float}
            | {"recall": float, "terms": object}
        )
        table.insert(0, "latent", np.array([latents[j] for j in keep], dtype=int))
        table.insert(1, "feature", [str(names[j]) for j in keep])
        best = np.abs(np.nan_to_num(assoc[:, keep])).argmax(axis=0)
        if self.task_ == "multiclass":
            table.insert(2, "class", self.classes_[best])
        table.insert(
            2 + (self.task_ == "multiclass"),
            "association",
            assoc[best, keep] if keep else np.zeros(0),
        )
        self.hypotheses_ = table.reset_index(drop=True)
        self._columns = list(keep)

        self._fit_model(texts, y, rng)
        self.usage_ = _usage_delta(clients, before)
        return self

    def _warn_dropped(self, latents, keep, dense):
        dropped = [j for j in range(len(latents)) if j not in keep]
        if not dropped:
            return
        silent = sum(not (dense[:, j] > 0).any() for j in dropped)
        reasons = [f"{silent} never fire on the fit texts"] if silent else []
        if len(dropped) > silent and self.interpreter is not None:
            reasons.append(
                f"the LLM gave no usable description of {len(dropped) - silent}"
            )
            advice = "check usage_['failures'] and the selected latents"
        elif len(dropped) > silent:
            reasons.append(
                f"{len(dropped) - silent} have no word or phrase whose z-score "
                f"reaches min_term_score={self.min_term_score!r}"
            )
        if self.interpreter is None:
            advice = (
                "a lower min_term_score (e.g. 2.0), more texts, or more selected "
                "latents may find some"
            )
        elif not silent < len(dropped):
            advice = "select latents that fire on the fit texts"
        why = " and ".join(reasons)
        ids = [int(latents[j]) for j in dropped]
        if not keep:
            warn_user(
                f"HypothesisGenerator found no hypothesis: none of the "
                f"{len(dropped)} latent(s) got one ({why}). hypotheses_ is empty, "
                "transform returns no columns and predict uses a constant model "
                f"(the training prior or mean); {advice}."
            )
        else:
            warn_user(
                f"HypothesisGenerator: {len(dropped)} latent(s) got no hypothesis "
                f"({why}) and are left out: {ids[:10]}"
                + (" ..." if len(ids) > 10 else "")
            )

    def _offline(self, texts, acts, dense):
        terms = contrastive_terms(
            texts, acts, n_terms=self.n_terms, min_score=self.min_term_score
        )
        keep = [j for j, t in enumerate(terms) if t]
        term_lists = [[w for w, _ in terms[j]] for j in keep]
        matched = PhraseAnnotator(term_lists).annotate(texts)
        rows = []
        for col, j in enumerate(keep):
            fires = dense[:, j] > 0
            score = _fidelity(matched[:, col], fires, dense[:, j])
            rows.append(
                {
                    "hypothesis": format_hypothesis(term_lists[col]),
                    "fidelity": score["f1"],
                    "precision": score["precision"],
                    "recall": score["recall"],
                    "terms": term_lists[col],
                }
            )
        return rows, keep

    def _interpret(self, texts, acts, seed):
        with warnings.catch_warnings():
            # Dead latents are reported once, by fit.
            warnings.filterwarnings("ignore", "interpret_latents: ")
            frame = interpret_latents(
                texts,
                acts,
                client=self.interpreter,
                annotator=self.annotator,
                n_candidates=self.n_candidates,
                n_examples=self.n_examples,
                sampling=self.sampling,
                instructions=self.instructions,
                n_fidelity=self.n_fidelity,
                random_state=seed,
                annotation_mode=self.annotation_mode,
            )
        best = frame[frame["best"]].sort_values("latent", kind="stable")
        rows = [
            {
                "hypothesis": r.hypothesis,
                "fidelity": r.f1,
                "precision": r.precision,
                "recall": r.recall,
                "terms": None,
            }
            for r in best.itertuples()
        ]
        return rows, [int(j) for j in best["latent"]]

    def _fit_model(self, texts, y, rng):
        n = len(texts)
        rows = np.arange(n)
        if self.interpreter is not None and n > self.max_fit_annotations:
            rows = np.sort(rng.choice(n, self.max_fit_annotations, replace=False))
        classify = self.task_ != "regression"
        if len(self.hypotheses_) == 0:
            model = DummyClassifier() if classify else DummyRegressor()
            A = np.zeros((len(rows), 0))
        else:
            A = self._annotate([texts[i] for i in rows], "Annotating fit texts")
            keep = self._drop_redundant(A)
            A = A[:, keep]
            final = LogisticRegression() if classify else LinearRegression()
            # Missing LLM answers get the column's training mean, not a guess.
            model = make_pipeline(
                SimpleImputer(strategy="mean", keep_empty_features=True), final
            )
        self.model_ = model.fit(A, np.asarray(y)[rows])

    def _drop_redundant(self, A):
        """Keep hypotheses whose fit-text annotations are not near-copies of a
        hypothesis more associated with y; returns the kept columns."""
        n_hyp = A.shape[1]
        if self.max_redundancy is None or n_hyp < 2:
            return np.arange(n_hyp)
        filled = np.where(np.isnan(A), np.nanmean(A, axis=0), A)
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = np.nan_to_num(np.corrcoef(filled, rowvar=False))
        strength = np.abs(self.hypotheses_["association"].to_numpy(dtype=float))
        kept, pairs = [], []
        for j in np.argsort(-strength, kind="stable"):
            twin = next(
                (i for i in kept if abs(corr[i, j]) > self.max_redundancy), None
            )
            if twin is None:
                kept.append(j)
            else:
                pairs.append((j, twin))
        if not pairs:
            return np.arange(n_hyp)
        names = self.hypotheses_["hypothesis"].to_numpy()
        listed = "; ".join(f"{names[j]!r} ~ {names[i]!r}" for j, i in pairs[:5])
        warn_user(
            f"HypothesisGenerator dropped {len(pairs)} hypothesis(es) that annotate "
            f"the fit texts almost like a hypothesis more associated with y "
            f"(correlation above max_redundancy={self.max_redundancy}): {listed}"
            + (" ..." if len(pairs) > 5 else "")
            + ". Near-duplicates add nothing and destabilise the joint regression; "
            "set max_redundancy=None to keep them."
        )
        kept = np.sort(kept)
        self.hypotheses_ = self.hypotheses_.iloc[kept].reset_index(drop=True)
        self._columns = [self._columns[j] for j in kept]
        self.__dict__.pop("_phrases", None)
        return kept

    def _encode_target(self, y):
        y = np.asarray(y)
        task = self.task
        if task == "auto":
            kind = type_of_target(y, input_name="y")
            if kind not in ("continuous", "binary", "multiclass"):
                raise ValueError(
                    "HypothesisGenerator needs a continuous, binary or multiclass "
                    f"y; got a {kind!r} target."
                )
            task = "regression" if kind == "continuous" else "classification"
        if task == "regression":
            try:
                y = y.astype(np.float64)
            except (TypeError, ValueError) as exc:
                raise ValueError(
                    "HypothesisGenerator with task='regression' needs a numeric y; "
                    f"got dtype {y.dtype}."
                ) from exc
            self.task_ = "regression"
            return y[None, :]
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError(
                "HypothesisGenerator needs at least 2 classes in y; got "
                f"{len(self.classes_)}."
            )
        self.task_ = "binary" if len(self.classes_) == 2 else "multiclass"
        if self.task_ == "binary":
            return (y == self.classes_[1]).astype(np.float64)[None, :]
        return np.stack([(y == c).astype(np.float64) for c in self.classes_])

    # --------------------------------------------------------------- inference
    def transform(self, X=None, texts=None):
        """Annotate texts with each hypothesis.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_texts, n_selected) or None
            Ignored apart from checking its shape: the annotations depend on
            the texts only. Accepted so that the generator works in a Pipeline.
        texts : sequence of str
            The texts to annotate.

        Returns
        -------
        annotations : ndarray of shape (n_texts, n_hypotheses)
            1/0 (or P(yes) with ``probabilities=True``); NaN where an LLM gave
            no usable answer. Shape (n_texts, 0) when there is no hypothesis.
        """
        check_is_fitted(self)
        texts = self._check_inputs(X, texts, "transform")
        before = [c.usage() for c in self._clients()]
        out = self._annotate(texts, "Annotating")
        self._add_usage(_usage_delta(self._clients(), before))
        return out

    def fit_transform(self, X, y, texts=None):
        """Fit, then annotate the fit texts (see :meth:`fit`, :meth:`transform`)."""
        return self.fit(X, y, texts=texts).transform(X, texts=texts)

    def predict(self, X=None, texts=None):
        """Predict y from the texts' annotations with ``model_``.

        Parameters
        ----------
        X : {array-like, sparse matrix} or None
            Ignored apart from its shape (see :meth:`transform`).
        texts : sequence of str
            The texts to predict for.

        Returns
        -------
        y_pred : ndarray of shape (n_texts,)
            With no hypothesis, the constant prediction of ``model_`` (the
            most frequent class or the training mean).
        """
        return self.model_.predict(self.transform(X, texts=texts))

    def predict_proba(self, X=None, texts=None):
        """Class probabilities from the texts' annotations (classification).

        Returns
        -------
        proba : ndarray of shape (n_texts, n_classes)
        """
        check_is_fitted(self)
        if self.task_ == "regression":
            raise AttributeError(
                "predict_proba is only available when HypothesisGenerator was fit "
                "on classes; it was fit on a continuous y."
            )
        return self.model_.predict_proba(self.transform(X, texts=texts))

    def score(self, X, y, sample_weight=None, texts=None):
        """Held-out predictiveness of the hypotheses.

        R^2 for regression, ROC AUC of the positive class for a binary y (as
        the paper), accuracy for multiclass.

        Parameters
        ----------
        X : {array-like, sparse matrix} or None
            Ignored apart from its shape.
        y : array-like of shape (n_texts,)
            True targets.
        sample_weight : array-like of shape (n_texts,), default=None
            Sample weights.
        texts : sequence of str
            The texts.

        Returns
        -------
        score : float
        """
        check_is_fitted(self)
        A = self.transform(X, texts=texts)
        y = np.asarray(y)
        if self.task_ == "regression":
            return float(
                r2_score(y, self.model_.predict(A), sample_weight=sample_weight)
            )
        if self.task_ == "binary":
            proba = self.model_.predict_proba(A)[:, 1]
            return float(
                roc_auc_score(y == self.classes_[1], proba, sample_weight=sample_weight)
            )
        return float(
            accuracy_score(y, self.model_.predict(A), sample_weight=sample_weight)
        )

    def evaluate(self, texts, y, X=None, annotations=None):
        """Statistics of each hypothesis on (held-out) texts.

        Parameters
        ----------
        texts : sequence of str
            Texts, annotated unless ``annotations`` is given.
        y : array-like of shape (n_texts,)
            Their targets.
        X : ignored, default=None
            Accepted for symmetry with :meth:`transform`.
        annotations : array-like of shape (n_texts, n_hypotheses), default=None
            Precomputed annotations (e.g. from :meth:`transform`).

        Returns
        -------
        result : EvaluationResult or dict of EvaluationResult
            See :func:`evaluate_hypotheses`; a dict per class for multiclass.
            With no hypothesis, the table has its columns and no rows, and the
            metrics (``n_hypotheses=0``) are those of an intercept-only model.
        """
        check_is_fitted(self)
        if annotations is None:
            annotations = self.transform(X, texts=texts)
        annotations = np.asarray(annotations, dtype=np.float64)
        if annotations.ndim != 2 or annotations.shape[1] != len(self.hypotheses_):
            raise ValueError(
                "The 'annotations' parameter of HypothesisGenerator.evaluate must "
                f"have {len(self.hypotheses_)} columns (one per hypothesis). Got "
                f"shape {annotations.shape} instead."
            )
        return evaluate_hypotheses(
            annotations,
            y,
            hypotheses=list(self.hypotheses_["hypothesis"]),
            task=self.task_,
            correction=self.correction,
            alpha=self.alpha,
        )

    def examples(self, texts, annotations, n=3, random_state=None):
        """Texts with and without each hypothesis, for reading.

        Parameters
        ----------
        texts : sequence of str
            Annotated texts.
        annotations : array-like of shape (n_texts, n_hypotheses)
            Their annotations (>0.5 is "present"; NaN is skipped).
        n : int, default=3
            Most texts per side.
        random_state : int, RandomState instance or None, default=None
            Which texts are drawn.

        Returns
        -------
        examples : list of dict
            Per hypothesis, ``{"present": [...], "absent": [...]}``.
        """
        check_is_fitted(self)
        texts = list(texts)
        A = np.asarray(annotations, dtype=np.float64)
        if A.shape != (len(texts), len(self.hypotheses_)):
            raise ValueError(
                "The 'annotations' parameter of HypothesisGenerator.examples must "
                f"have shape ({len(texts)}, {len(self.hypotheses_)}). Got "
                f"{A.shape} instead."
            )
        rng = check_random_state(random_state)
        out = []
        for col in A.T:
            sides = {}
            for side, mask in (("present", col > 0.5), ("absent", col <= 0.5)):
                rows = np.flatnonzero(mask)
                pick = rng.choice(rows, min(n, len(rows)), replace=False)
                sides[side] = [texts[i] for i in pick]
            out.append(sides)
        return out

    def get_feature_names_out(self, input_features=None):
        """The hypotheses, as output feature names (made unique).

        Returns
        -------
        names : ndarray of str of shape (n_hypotheses,)
        """
        check_is_fitted(self)
        names, seen = [], set()
        for h, latent in zip(
            self.hypotheses_["hypothesis"], self.hypotheses_["latent"], strict=True
        ):
            name = str(h) if str(h) not in seen else f"{h} [latent {latent}]"
            seen.add(name)
            names.append(name)
        return np.asarray(names, dtype=object)

    # ---------------------------------------------------------------- helpers
    def _clients(self):
        clients = []
        for c in (self.interpreter, self.annotator):
            if c is not None and all(c is not d for d in clients):
                clients.append(c)
        return clients

    def _add_usage(self, delta):
        for key, value in delta.items():
            if key == "cost":
                if value is not None:
                    self.usage_["cost"] = (self.usage_["cost"] or 0.0) + value
            else:
                self.usage_[key] += value

    def _annotate(self, texts, desc):
        if len(self.hypotheses_) == 0:
            return np.zeros((len(texts), 0))
        if self.interpreter is None:
            phrases = self.__dict__.get("_phrases")
            if phrases is None:
                phrases = self._phrases = PhraseAnnotator(
                    list(self.hypotheses_["terms"])
                )
            return phrases.annotate(texts)
        return annotate_texts(
            texts,
            list(self.hypotheses_["hypothesis"]),
            client=self.annotator if self.annotator is not None else self.interpreter,
            mode=self.annotation_mode,
            probabilities=self.probabilities,
            desc=desc,
        )

    def _check_texts(self, texts, n_rows, method):
        if texts is None:
            raise ValueError(
                f"HypothesisGenerator.{method} needs the 'texts' parameter (the "
                "raw texts, one per row of X); got None. In a Pipeline, pass "
                "texts=... with sklearn.set_config(enable_metadata_routing=True)."
            )
        if isinstance(texts, str):
            raise TypeError(
                f"The 'texts' parameter of HypothesisGenerator.{method} must be a "
                "sequence of str; got a single str."
            )
        texts = [
            str(t) for t in (texts.tolist() if hasattr(texts, "tolist") else texts)
        ]
        if n_rows is not None and len(texts) != n_rows:
            raise ValueError(
                f"The 'texts' parameter of HypothesisGenerator.{method} must hold "
                f"one text per row of X ({n_rows}); got {len(texts)}."
            )
        return texts

    def _check_inputs(self, X, texts, method):
        n_rows = None
        if X is not None:
            X = validate_data(
                self, X, accept_sparse=("csr", "csc"), dtype=None, reset=False
            )
            n_rows = X.shape[0]
        return self._check_texts(texts, n_rows, method)

    def __getstate__(self):
        state = dict(super().__getstate__())
        state.pop("_phrases", None)
        return state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.target_tags.required = True
        if self.task == "classification":
            tags.estimator_type = "classifier"
            tags.classifier_tags = ClassifierTags()
        elif self.task == "regression":
            tags.estimator_type = "regressor"
            tags.regressor_tags = RegressorTags()
        return tags


def _latent_ids(names):
    """SAE latent index from names like ``sparseautoencoder12``, else position."""
    found = [_TRAILING_INT.search(str(n)) for n in names]
    if all(found) and all(str(n).startswith("sparseautoencoder") for n in names):
        return np.array([int(m.group(1)) for m in found])
    return np.arange(len(names))


def _pearson(X, targets):
    """Pearson r of each column of dense X with each target row; NaN if constant."""
    Xc = X - X.mean(axis=0)
    Tc = targets - targets.mean(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (Tc @ Xc) / np.outer(np.linalg.norm(Tc, axis=1), np.linalg.norm(Xc, axis=0))
    return np.where(np.isfinite(r), r, np.nan)


def _usage_delta(clients, before):
    delta = dict.fromkeys(_USAGE_KEYS, 0)
    delta["cost"] = None
    for client, old in zip(clients, before, strict=True):
        new = client.usage()
        for key in _USAGE_KEYS:
            delta[key] += new.get(key, 0) - old.get(key, 0)
        if new.get("cost") is not None:
            delta["cost"] = (delta["cost"] or 0.0) + new["cost"] - (old["cost"] or 0.0)
    return delta
