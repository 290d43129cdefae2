"""HypothesisGenerator: selected latents -> hypotheses -> annotations -> a model.

The last step of the HypotheSAEs pipeline. It composes two strategies: a
*describer* names each selected latent in words, with a fidelity score, and an
*annotator* says which texts have each description. A linear model on the
annotations then predicts y, so that a cross-validated score measures the
hypotheses themselves, and :meth:`HypothesisGenerator.evaluate` tests them.
"""

from __future__ import annotations

import inspect
import sys
from numbers import Integral, Real

import numpy as np
import pandas as pd
import sklearn
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context, clone
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils._tags import ClassifierTags, RegressorTags
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted, validate_data

from ..llm import Usage
from ..utils._misc import warn_user
from ..utils._validation import TASKS, check_texts, resolve_task
from ._annotators import Annotations
from ._describers import TermDescriber
from ._pairwise import TextPairs, check_text_pairs
from ._stats import evaluate_hypotheses

_ROUTING_HINT = (
    "In a Pipeline, turn on metadata routing with "
    "sklearn.set_config(enable_metadata_routing=True) and pass texts=texts to "
    "fit, predict, transform and score (GridSearchCV(...).fit(X, y, texts=texts), "
    "cross_val_score(..., params={'texts': texts}))."
)
#: Columns of ``hypotheses_`` before the describer's own (multiclass adds
#: ``class`` after ``feature``).
_LEAD_COLUMNS = ["column", "feature"]


def _can_predict_proba(self):
    """predict_proba exists for classes only (the task learned, else asked)."""
    return (getattr(self, "task_", None) or self.task) != "regression"


def _called_by_pipeline_without_routing() -> bool:
    """True when a scikit-learn Pipeline calls us with metadata routing off.

    Then the texts can reach ``fit`` (as ``hypotheses__texts``) but never
    ``predict``, ``transform`` or ``score``, and a search would score every
    candidate NaN; we refuse instead. Looking at the callers' modules is the
    only way to tell this call from a direct ``fit(X, y, texts=texts)``.
    """
    if sklearn.get_config().get("enable_metadata_routing", False):
        return False
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_globals.get("__name__") == "sklearn.pipeline":
            return True
        frame = frame.f_back
    return False


# No set_output wrapping by sklearn: it would make X a required argument of
# transform. set_output is implemented below instead.
class HypothesisGenerator(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
    """Turn selected latents into hypotheses, annotations and predictions.

    ``fit`` receives the selected latent activations as X (from
    :class:`LatentSelector`) and the raw texts through scikit-learn metadata
    routing (``texts``). It composes two strategies:

    - a **describer** gives each latent (column of X) a description in words
      with its fidelity: :class:`TermDescriber` offline (the words that
      distinguish texts where the latent fires) or :class:`LLMDescriber` (an
      LLM names the concept);
    - an **annotator** says which texts have each description:
      :class:`PhraseAnnotator` offline or :class:`LLMAnnotator`. The default
      is the describer's ``default_annotator()``.

    A linear model on the annotations of the fit texts then serves
    :meth:`predict`, :meth:`predict_proba` and :meth:`score`: logistic
    regression for classes, least squares for a continuous y, with missing
    annotations imputed by the training mean. An expensive annotator (an LLM)
    annotates at most ``max_fit_annotations`` training texts (a random
    sample) for it.

    ``score`` is R^2 for regression and ROC AUC for classes: of the positive
    class for a binary y (the paper's measure), and the mean one-vs-rest ROC
    AUC over the classes present for multiclass. Multiclass y is handled
    one-vs-rest: each hypothesis is attached to the class it is most
    associated with (``class`` column) and :meth:`evaluate` returns one table
    per class.

    Parameters
    ----------
    describer : describer or None, default=None
        An object with ``describe(texts, activations, *, annotator,
        random_state)`` (see :class:`TermDescriber`); None is
        ``TermDescriber()``.
    annotator : annotator or None, default=None
        An object with ``annotate(texts, concepts)`` (see
        :class:`PhraseAnnotator`); None is the describer's
        ``default_annotator()``.
    task : {"auto", "binary", "multiclass", "regression"}, default="auto"
        ``"auto"`` reads y (integers with more than 10 distinct values are a
        regression). Set it for :func:`~sklearn.base.is_classifier` to know
        the task before fit (and cross-validation to stratify).
    correction : {"bonferroni", "holm", "fdr_bh", "none"}, default="bonferroni"
        Multiple-testing correction of :meth:`evaluate`.
    alpha : float in (0, 1), default=0.05
        Significance level of :meth:`evaluate`.
    max_fit_annotations : int, default=2000
        Training texts an expensive annotator annotates to fit the model.
    max_redundancy : float in (0, 1] or None, default=0.8
        A hypothesis whose annotations of the fit texts correlate above this
        with those of a hypothesis more associated with y is dropped, with a
        warning: two latents for one concept give near-duplicate hypotheses,
        which add nothing and make the joint regression unstable. None keeps
        every hypothesis.
    concepts_per_request : int or None, default=None
        Concepts asked about in one annotation request, set on the describer
        and the annotator that take it (:class:`LLMDescriber`,
        :class:`LLMAnnotator`); None keeps theirs (1: one yes/no question per
        text and concept). More is cheaper and may be less accurate: see
        :func:`annotation_agreement`.
    max_text_chars : int or None, default=None
        Texts are cut to this many characters wherever an LLM reads them
        (examples, fidelity, final annotation), set on the describer and the
        annotator that take it; None keeps theirs (500).
    random_state : int, RandomState instance or None, default=None
        Controls the describer's sampling and the sample of
        ``max_fit_annotations``.
    pairwise : bool, default=False
        Pairwise task: each row of X and of ``texts`` is a pair of texts
        (``texts`` of shape (n_pairs, 2)), X holds the differences of the
        pair's latent activations (see :class:`PairwiseDifference`), and y
        says whether the first text wins (two classes) or by how much (a
        number); multiclass y is refused. A hypothesis is a concept present in
        one text of a pair and not the other: each selected latent is
        described on the pooled individual texts, where the first text of a
        pair gets the activation ``max(d, 0)`` and the second ``max(-d, 0)``
        for the pair's difference d (the step sees differences only, and
        this marks the text that has more of the latent than its partner,
        which is what the model uses; a concept present in both texts of a
        pair counts as absent from both); describers that take y see the
        first text's outcome and its opposite for the second. Both texts of
        each pair are annotated (each distinct text once) and
        :meth:`transform`, :meth:`annotate`, :meth:`predict`, :meth:`score`
        and :meth:`evaluate` use the differences of annotations, in {-1, 0,
        1} (first minus second).
    verbose : int, default=0
        Print what each step does.

    Attributes
    ----------
    hypotheses_ : pandas.DataFrame
        One row per hypothesis: ``column`` (its column in X), ``feature``
        (that column's name), ``class`` (multiclass only), ``association``
        (Pearson r with y, or with the class indicator, on the fit data),
        ``hypothesis``, ``fidelity`` (F1 of the annotator against "the latent
        fires"), ``precision``, ``recall`` and ``terms`` (offline, else None).
        Which sparse-autoencoder latent a column is, only the selector before
        this step knows: :func:`pipeline_hypotheses` adds a ``latent`` column
        for a fitted Pipeline. Latents that get no description are left out,
        with a warning; with none the table has its columns and zero rows.
    describer_ : describer
        The fitted clone of ``describer`` (or the default).
    annotator_ : annotator
        The annotator used by :meth:`transform`.
    model_ : estimator
        The model on annotations behind :meth:`predict`. With no hypothesis,
        :class:`~sklearn.dummy.DummyClassifier` (class priors) or
        :class:`~sklearn.dummy.DummyRegressor` (training mean).
    task_ : str
        ``"binary"``, ``"multiclass"`` or ``"regression"``.
    classes_ : ndarray
        Class labels (classification only).
    usage_ : dict
        LLM usage of ``fit`` (describing and annotating the fit texts):
        ``calls``, ``cache_hits``, ``prompt_tokens``, ``completion_tokens``,
        ``retries``, ``reasks``, ``failures``, ``cost``. Zeros offline. The
        usage of later annotation comes with :meth:`annotate`.
    n_features_in_ : int
        Number of selected latents seen during :meth:`fit`.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Their names, when X has string column names.

    See Also
    --------
    LatentSelector : Selects the latents this describes.
    TermDescriber, LLMDescriber : The describers.
    PhraseAnnotator, LLMAnnotator : The annotators.
    evaluate_hypotheses : The statistics behind :meth:`evaluate`.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_hypothesaes import HypothesisGenerator
    >>> texts = ([f"a brilliant film {i}" for i in range(20)]
    ...          + [f"a dull plot {i}" for i in range(20)]
    ...          + [f"a film about trains {i}" for i in range(20)])
    >>> y = np.array([1] * 20 + [0] * 20 + [1, 0] * 10)
    >>> X = np.array([[1.0, 0.0]] * 20 + [[0.0, 1.0]] * 20 + [[0.0, 0.0]] * 20)
    >>> gen = HypothesisGenerator(random_state=0).fit(X, y, texts=texts)
    >>> gen.hypotheses_[["column", "hypothesis", "fidelity"]]
       column                 hypothesis  fidelity
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
        "describer": [HasMethods(["describe"]), None],
        "annotator": [HasMethods(["annotate"]), None],
        "task": [StrOptions({"auto", *TASKS})],
        "correction": [StrOptions({"bonferroni", "holm", "fdr_bh", "none"})],
        "alpha": [Interval(Real, 0, 1, closed="neither")],
        "max_fit_annotations": [Interval(Integral, 1, None, closed="left")],
        "max_redundancy": [Interval(Real, 0, 1, closed="right"), None],
        "concepts_per_request": [Interval(Integral, 1, None, closed="left"), None],
        "max_text_chars": [Interval(Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
        "pairwise": ["boolean"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        describer=None,
        annotator=None,
        *,
        task="auto",
        correction="bonferroni",
        alpha=0.05,
        max_fit_annotations=2000,
        max_redundancy=0.8,
        concepts_per_request=None,
        max_text_chars=None,
        random_state=None,
        pairwise=False,
        verbose=0,
    ):
        self.describer = describer
        self.annotator = annotator
        self.task = task
        self.correction = correction
        self.alpha = alpha
        self.max_fit_annotations = max_fit_annotations
        self.max_redundancy = max_redundancy
        self.concepts_per_request = concepts_per_request
        self.max_text_chars = max_text_chars
        self.random_state = random_state
        self.pairwise = pairwise
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
            Target: class labels or continuous values.
        texts : sequence of str of length n_texts
            The texts X was computed from (routed metadata in a Pipeline);
            with ``pairwise=True``, the pairs, of shape (n_pairs, 2).

        Returns
        -------
        self : HypothesisGenerator
            The fitted generator.
        """
        if _called_by_pipeline_without_routing():
            raise RuntimeError(
                "HypothesisGenerator is being fit inside a Pipeline with "
                "scikit-learn's metadata routing off: the texts can reach fit, "
                "but never predict, transform or score, so every cross-validated "
                "score would be NaN. " + _ROUTING_HINT
            )
        X, y = validate_data(
            self, X, y, accept_sparse=("csr", "csc"), dtype=(np.float64, np.float32)
        )
        texts = self._check_texts(texts, "fit", X.shape[0])
        targets = self._encode_target(y)
        if self.pairwise and self.task_ == "multiclass":
            raise ValueError(
                "HypothesisGenerator with pairwise=True needs y saying whether the "
                "first text of a pair wins (two classes) or by how much (numbers); "
                f"got {len(self.classes_)} classes. Use two classes, or "
                "pairwise=False."
            )
        describer = (
            clone(self.describer) if self.describer is not None else TermDescriber()
        )
        protocol = {
            name: value
            for name, value in (
                ("concepts_per_request", self.concepts_per_request),
                ("max_text_chars", self.max_text_chars),
            )
            if value is not None
        }
        _set_protocol(describer, protocol)
        if self.annotator is not None:
            annotator = clone(self.annotator)
        elif hasattr(describer, "default_annotator"):
            annotator = describer.default_annotator()
        else:
            raise ValueError(
                f"The 'annotator' parameter of HypothesisGenerator is required with "
                f"a describer that has no default_annotator(); got annotator=None "
                f"with describer={type(describer).__name__}. Pass an annotator "
                "such as PhraseAnnotator() or LLMAnnotator(client)."
            )
        taken = _set_protocol(annotator, protocol) | _set_protocol(describer, protocol)
        for name in set(protocol) - taken:
            raise ValueError(
                f"The {name!r} parameter of HypothesisGenerator is set "
                f"({name}={protocol[name]}), but neither the describer "
                f"({type(describer).__name__}) nor the annotator "
                f"({type(annotator).__name__}) takes it: it applies to an LLM "
                f"(LLMDescriber, LLMAnnotator). Leave it None offline."
            )
        self.describer_, self.annotator_ = describer, annotator
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(np.iinfo(np.int32).max))

        extra = {}
        if "y" in inspect.signature(describer.describe).parameters:
            # The encoded target (one column per class), as for `association`.
            extra["y"] = targets.T
        if self.pairwise:
            described, activations, extra = _pooled(texts, X, extra, self.task_)
        else:
            described, activations = texts, X
        found = describer.describe(
            described, activations, annotator=annotator, random_state=seed, **extra
        )
        table = found.table.rename(columns={"description": "hypothesis"})
        keep = table["column"].to_numpy(dtype=int)
        self._warn_missing(found.missing, X.shape[1], len(keep))
        names = getattr(self, "feature_names_in_", None)
        if names is None:
            names = np.array([f"x{j}" for j in range(X.shape[1])], dtype=object)
        table.insert(1, "feature", [str(names[j]) for j in keep])
        dense = X[:, keep].toarray() if hasattr(X, "toarray") else X[:, keep]
        assoc = _pearson(np.asarray(dense, dtype=float), targets)
        best = np.abs(np.nan_to_num(assoc)).argmax(axis=0)
        at = 2
        if self.task_ == "multiclass":
            table.insert(at, "class", self.classes_[best])
            at += 1
        table.insert(at, "association", assoc[best, np.arange(len(keep))])
        self.hypotheses_ = table.reset_index(drop=True)

        self.usage_ = (found.usage + self._fit_model(texts, y, rng)).as_dict()
        return self

    def _warn_missing(self, missing, n_columns, n_found):
        if not missing:
            return
        reasons = {}
        for column, reason in missing.items():
            reasons.setdefault(reason, []).append(int(column))
        why = "; ".join(
            f"{len(cols)} {reason}: columns {cols[:10]}"
            + (" ..." if len(cols) > 10 else "")
            for reason, cols in reasons.items()
        )
        if n_found == 0:
            warn_user(
                f"HypothesisGenerator found no hypothesis: none of the {n_columns} "
                f"latent(s) got one ({why}). hypotheses_ is empty, transform returns "
                "no columns and predict uses a constant model (the training prior "
                "or mean). With TermDescriber, a lower min_score (2.0 finds more on a "
                "few hundred texts), more texts or more selected latents may find some."
            )
        else:
            warn_user(
                f"HypothesisGenerator: {len(missing)} latent(s) got no hypothesis "
                f"and are left out ({why})."
            )

    def _fit_model(self, texts, y, rng) -> Usage:
        n = len(texts)
        rows = np.arange(n)
        if (
            getattr(self.annotator_, "expensive", False)
            and n > self.max_fit_annotations
        ):
            rows = np.sort(rng.choice(n, self.max_fit_annotations, replace=False))
        classify = self.task_ != "regression"
        usage = Usage()
        if len(self.hypotheses_) == 0:
            model = DummyClassifier() if classify else DummyRegressor()
            A = np.zeros((len(rows), 0))
        else:
            found = self._annotate_with(
                self.annotator_, _take(texts, rows), "Annotating fit texts"
            )
            A, usage = np.asarray(found.values, dtype=float), found.usage
            keep = self._drop_redundant(A)
            A = A[:, keep]
            final = LogisticRegression() if classify else LinearRegression()
            # Missing LLM answers get the column's training mean, not a guess.
            model = make_pipeline(
                SimpleImputer(strategy="mean", keep_empty_features=True), final
            )
        self.model_ = model.fit(A, np.asarray(y)[rows])
        return usage

    def _drop_redundant(self, A):
        """Keep hypotheses whose fit-text annotations are not near-copies of a
        hypothesis more associated with y; returns the kept columns."""
        n_hyp = A.shape[1]
        if self.max_redundancy is None or n_hyp < 2:
            return np.arange(n_hyp)
        with np.errstate(invalid="ignore", divide="ignore"):
            filled = np.where(np.isnan(A), np.nanmean(A, axis=0), A)
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
        columns = self.hypotheses_["column"].to_numpy()

        def pair(j, i):
            if names[j] == names[i]:
                return (
                    f"column {columns[j]} has the same description as column "
                    f"{columns[i]}, {names[i]!r}"
                )
            return (
                f"{names[j]!r} (column {columns[j]}) ~ {names[i]!r} "
                f"(column {columns[i]}), r={corr[i, j]:.2f}"
            )

        listed = "; ".join(pair(j, i) for j, i in pairs[:5])
        warn_user(
            f"HypothesisGenerator dropped {len(pairs)} hypothesis(es) that mark "
            "almost the same fit texts as a hypothesis more associated with y "
            f"(correlation of annotations above max_redundancy="
            f"{self.max_redundancy}): {listed}"
            + (" ..." if len(pairs) > 5 else "")
            + ". Two descriptions of one concept add nothing and make the joint "
            "regression unstable; set max_redundancy=None to keep them."
        )
        kept = np.sort(kept)
        self.hypotheses_ = self.hypotheses_.iloc[kept].reset_index(drop=True)
        return kept

    def _encode_target(self, y):
        self.task_ = resolve_task(y, self.task, caller="HypothesisGenerator")
        y = np.asarray(y)
        if self.task_ == "regression":
            return y.astype(np.float64)[None, :]
        self.classes_ = np.unique(y)
        if self.task_ == "binary":
            return (y == self.classes_[1]).astype(np.float64)[None, :]
        return np.stack([(y == c).astype(np.float64) for c in self.classes_])

    # --------------------------------------------------------------- inference
    def annotate(self, texts, X=None) -> Annotations:
        """Annotate texts with each hypothesis, with the usage of this call.

        Parameters
        ----------
        texts : sequence of str, or array-like of shape (n_pairs, 2)
            The texts to annotate.
        X : {array-like, sparse matrix} or None, default=None
            Ignored apart from checking its shape.

        Returns
        -------
        annotations : Annotations
            ``values`` of shape (n_texts, n_hypotheses): 1/0 (or P(yes)); NaN
            where an LLM gave no usable answer. ``usage``: this call's LLM
            usage.
        """
        check_is_fitted(self)
        texts = self._check_inputs(X, texts, "annotate")
        return self._annotate_with(self.annotator_, texts, "Annotating")

    def _annotate_with(self, annotator, texts, desc) -> Annotations:
        concepts = list(self.hypotheses_["hypothesis"])
        if not concepts or not len(texts):
            return Annotations(np.zeros((len(texts), len(concepts))))
        if isinstance(texts, TextPairs):
            # Each distinct text once; a pair's annotation is first - second.
            unique, first, second = texts.unique()
            found = self._annotate_with(annotator, unique, desc)
            values = np.asarray(found.values, dtype=float)
            return Annotations(values[first] - values[second], found.usage)
        if hasattr(annotator, "annotate_groups"):
            return annotator.annotate(texts, concepts, desc=desc)
        return annotator.annotate(texts, concepts)

    def transform(self, X=None, texts=None):
        """Annotate texts with each hypothesis.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_texts, n_selected) or None
            Ignored apart from checking its shape: the annotations depend on
            the texts only. Accepted so that the generator works in a Pipeline.
        texts : sequence of str, or array-like of shape (n_pairs, 2)
            The texts to annotate.

        Returns
        -------
        annotations : ndarray or DataFrame of shape (n_texts, n_hypotheses)
            1/0 (or P(yes)); NaN where an LLM gave no usable answer. A
            DataFrame named by the hypotheses after
            ``set_output(transform="pandas")``.
        """
        check_is_fitted(self)
        texts = self._check_inputs(X, texts, "transform")
        values = np.asarray(
            self._annotate_with(self.annotator_, texts, "Annotating").values,
            dtype=float,
        )
        return self._wrap(values, X)

    def fit_transform(self, X, y, texts=None):
        """Fit, then annotate the fit texts (see :meth:`fit`, :meth:`transform`)."""
        return self.fit(X, y, texts=texts).transform(X, texts=texts)

    def set_output(self, *, transform=None):
        """Set the container of :meth:`transform`: "default", "pandas" or None.

        Returns
        -------
        self : HypothesisGenerator
        """
        if transform not in (None, "default", "pandas"):
            raise ValueError(
                "The 'transform' parameter of HypothesisGenerator.set_output must "
                f"be 'default', 'pandas' or None. Got {transform!r} instead."
            )
        if transform is not None:
            self._output_transform = transform
        return self

    def _wrap(self, values, X):
        container = (
            getattr(self, "_output_transform", None)
            or sklearn.get_config()["transform_output"]
        )
        if container != "pandas":
            return values
        index = X.index if isinstance(X, pd.DataFrame) else None
        return pd.DataFrame(values, columns=self.get_feature_names_out(), index=index)

    def predict(self, X=None, texts=None):
        """Predict y from the texts' annotations with ``model_``.

        Parameters
        ----------
        X : {array-like, sparse matrix} or None
            Ignored apart from its shape (see :meth:`transform`).
        texts : sequence of str, or array-like of shape (n_pairs, 2)
            The texts to predict for.

        Returns
        -------
        y_pred : ndarray of shape (n_texts,)
            With no hypothesis, the constant prediction of ``model_`` (the
            most frequent class or the training mean).
        """
        check_is_fitted(self)
        return self.model_.predict(self._annotations(X, texts, "predict"))

    @available_if(_can_predict_proba)
    def predict_proba(self, X=None, texts=None):
        """Class probabilities from the texts' annotations (classification).

        Parameters
        ----------
        X : {array-like, sparse matrix} or None
            Ignored apart from its shape.
        texts : sequence of str, or array-like of shape (n_pairs, 2)
            The texts.

        Returns
        -------
        proba : ndarray of shape (n_texts, n_classes)
        """
        check_is_fitted(self)
        return self.model_.predict_proba(self._annotations(X, texts, "predict_proba"))

    def _annotations(self, X, texts, method):
        texts = self._check_inputs(X, texts, method)
        found = self._annotate_with(self.annotator_, texts, "Annotating")
        return np.asarray(found.values, dtype=float)

    def score(self, X, y, sample_weight=None, texts=None):
        """Held-out predictiveness of the hypotheses.

        R^2 for regression; ROC AUC of the positive class for a binary y (as
        the paper); for multiclass, the macro average over the classes present
        in y of each class's one-vs-rest ROC AUC (0.5 for a constant model,
        like the binary score; classes absent from y are left out of the
        average).

        Parameters
        ----------
        X : {array-like, sparse matrix} or None
            Ignored apart from its shape.
        y : array-like of shape (n_texts,)
            True targets.
        sample_weight : array-like of shape (n_texts,), default=None
            Sample weights.
        texts : sequence of str, or array-like of shape (n_pairs, 2)
            The texts.

        Returns
        -------
        score : float
        """
        check_is_fitted(self)
        return self.score_annotations(
            self._annotations(X, texts, "score"), y, sample_weight=sample_weight
        )

    def score_annotations(self, annotations, y, sample_weight=None):
        """:meth:`score` from annotations already made (e.g. by :meth:`annotate`).

        Parameters
        ----------
        annotations : array-like of shape (n_texts, n_hypotheses)
            The texts' annotations.
        y : array-like of shape (n_texts,)
            True targets.
        sample_weight : array-like of shape (n_texts,), default=None
            Sample weights.

        Returns
        -------
        score : float
        """
        check_is_fitted(self)
        A = np.asarray(annotations, dtype=np.float64)
        if A.ndim != 2 or A.shape[1] != len(self.hypotheses_):
            raise ValueError(
                "The 'annotations' parameter of HypothesisGenerator."
                f"score_annotations must have {len(self.hypotheses_)} columns (one "
                f"per hypothesis). Got shape {A.shape} instead."
            )
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
        return _macro_ovr_auc(
            y, self.model_.predict_proba(A), self.model_.classes_, sample_weight
        )

    def evaluate(self, texts, y, X=None, annotations=None):
        """Statistics of each hypothesis on (held-out) texts.

        Parameters
        ----------
        texts : sequence of str, or array-like of shape (n_pairs, 2)
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
            annotations = self._annotations(X, texts, "evaluate")
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
            # The fit's classes: one absent from these texts is reported, not lost.
            classes=getattr(self, "classes_", None),
            correction=self.correction,
            alpha=self.alpha,
            pairwise=self.pairwise,
        )

    def examples(self, texts, annotations, n=3, random_state=None):
        """Texts with and without each hypothesis, for reading.

        Parameters
        ----------
        texts : sequence of str, or array-like of shape (n_pairs, 2)
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
            Per hypothesis, ``{"present": [...], "absent": [...]}``. With
            ``pairwise=True``, ``texts`` are pairs, ``annotations`` their
            differences, and the two lists are aligned: ``present[i]`` is the
            text of a pair that has the concept and ``absent[i]`` its partner,
            which does not.
        """
        check_is_fitted(self)
        if self.pairwise:
            return self._pair_examples(texts, annotations, n, random_state)
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

    def _pair_examples(self, texts, annotations, n, random_state):
        pairs = check_text_pairs(texts, caller="HypothesisGenerator.examples")
        D = np.asarray(annotations, dtype=np.float64)
        if D.shape != (len(pairs), len(self.hypotheses_)):
            raise ValueError(
                "The 'annotations' parameter of HypothesisGenerator.examples must "
                f"have shape ({len(pairs)}, {len(self.hypotheses_)}) (one "
                f"difference per pair and hypothesis). Got {D.shape} instead."
            )
        rng = check_random_state(random_state)
        out = []
        for col in D.T:
            rows = np.flatnonzero(np.abs(np.nan_to_num(col)) >= 0.5)
            pick = rng.choice(rows, min(n, len(rows)), replace=False)
            first = col[pick] > 0
            out.append(
                {
                    "present": [
                        (pairs.first if f else pairs.second)[i]
                        for i, f in zip(pick, first, strict=True)
                    ],
                    "absent": [
                        (pairs.second if f else pairs.first)[i]
                        for i, f in zip(pick, first, strict=True)
                    ],
                }
            )
        return out

    def get_feature_names_out(self, input_features=None):
        """The hypotheses, as output feature names (made unique).

        Returns
        -------
        names : ndarray of str of shape (n_hypotheses,)
        """
        check_is_fitted(self)
        names, seen = [], set()
        for h, column in zip(
            self.hypotheses_["hypothesis"], self.hypotheses_["column"], strict=True
        ):
            name = str(h) if str(h) not in seen else f"{h} [column {column}]"
            seen.add(name)
            names.append(name)
        return np.asarray(names, dtype=object)

    # ---------------------------------------------------------------- helpers
    def _check_inputs(self, X, texts, method):
        n_rows = None
        if X is not None:
            X = validate_data(
                self, X, accept_sparse=("csr", "csc"), dtype=None, reset=False
            )
            n_rows = X.shape[0]
        return self._check_texts(texts, method, n_rows)

    def _check_texts(self, texts, method, n_rows):
        """A list of str, or TextPairs with ``pairwise=True``."""
        check = check_text_pairs if self.pairwise else check_texts
        return check(
            texts,
            caller=f"HypothesisGenerator.{method}",
            n_rows=n_rows,
            hint=_ROUTING_HINT,
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.target_tags.required = True
        if self.task in ("binary", "multiclass"):
            tags.estimator_type = "classifier"
            tags.classifier_tags = ClassifierTags(multi_class=self.task == "multiclass")
        elif self.task == "regression":
            tags.estimator_type = "regressor"
            tags.regressor_tags = RegressorTags()
        else:  # "auto": either, decided by y in fit
            tags.classifier_tags = ClassifierTags()
            tags.regressor_tags = RegressorTags()
        return tags


def _set_protocol(strategy, protocol) -> set:
    """Set the annotation settings a strategy takes; returns their names."""
    params = strategy.get_params(deep=False) if hasattr(strategy, "get_params") else {}
    taken = {name: value for name, value in protocol.items() if name in params}
    if taken:
        strategy.set_params(**taken)
    return set(taken)


def _take(texts, rows):
    """The texts (or pairs) at ``rows``."""
    if isinstance(texts, TextPairs):
        return texts.take(rows)
    return [texts[i] for i in rows]


def _pooled(pairs, D, extra, task):
    """Per-text texts, activations and target for describing pair differences.

    The first texts, then the second: the first text of a pair gets the
    positive part of the pair's difference d and the second the negative
    part, so a latent "fires" on the text that has more of it than its
    partner. The first text's outcome is y; the second's is its opposite (the
    other class, or -y for a regression target, a margin of a over b).
    """
    D = D.toarray() if hasattr(D, "toarray") else np.asarray(D)
    texts = pairs.first + pairs.second
    activations = np.vstack([np.maximum(D, 0), np.maximum(-D, 0)])
    if "y" in extra:
        y = extra["y"]
        flipped = -y if task == "regression" else 1 - y
        extra = {**extra, "y": np.vstack([y, flipped])}
    return texts, activations, extra


def class_aucs(y, proba, classes, sample_weight=None):
    """One-vs-rest ROC AUC of each class present in y with both sides.

    Returns
    -------
    aucs : list of (int, float)
        ``(column of proba, AUC)`` for each class that y holds and does not
        hold everywhere; the multiclass score is their mean.
    """
    found = []
    for col, cls in enumerate(classes):
        truth = y == cls
        if truth.any() and not truth.all():
            found.append(
                (col, roc_auc_score(truth, proba[:, col], sample_weight=sample_weight))
            )
    return found


def _macro_ovr_auc(y, proba, classes, sample_weight=None):
    """Mean over the classes present in y (with both sides) of the one-vs-rest
    ROC AUC of that class's probability."""
    aucs = [auc for _, auc in class_aucs(y, proba, classes, sample_weight)]
    if not aucs:
        raise ValueError(
            "HypothesisGenerator.score needs at least two classes of the fit in y "
            f"to compute a ROC AUC; got {np.unique(y).tolist()[:5]}."
        )
    return float(np.mean(aucs))


def _pearson(X, targets):
    """Pearson r of each column of dense X with each target row; NaN if constant."""
    Xc = X - X.mean(axis=0)
    Tc = targets - targets.mean(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (Tc @ Xc) / np.outer(np.linalg.norm(Tc, axis=1), np.linalg.norm(Xc, axis=0))
    return np.where(np.isfinite(r), r, np.nan)
