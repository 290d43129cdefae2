"""The whole method in one call: fit on training texts, evaluate on a holdout."""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import time
from dataclasses import dataclass, field
from numbers import Integral

import numpy as np
import pandas as pd
from sklearn import config_context
from sklearn.pipeline import Pipeline
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    StrOptions,
    validate_params,
)
from sklearn.utils.validation import check_is_fitted

from ..hypotheses._generator import HypothesisGenerator
from ..hypotheses._pairwise import (
    PairwiseDifference,
    check_text_pairs,
    pair_differences,
)
from ..hypotheses._selection import LatentSelector
from ..llm import Usage
from ..sae._model import SparseAutoencoder
from ..text._embedder import TextEmbedder
from ..utils._validation import check_texts
from ._signal import embedding_signal, signal_share, warn_no_signal
from ._stability import RECURRENCE_THRESHOLD, other_seeds, seed_stability


@dataclass
class MethodResult:
    """What :func:`run_method` found.

    Attributes
    ----------
    pipeline : sklearn.pipeline.Pipeline
        The fitted embed -> sae -> select -> hypotheses pipeline; for pairs,
        features -> select -> hypotheses, where ``features`` is a
        :class:`PairwiseDifference` of the embed -> sae pipeline.
    hypotheses : pandas.DataFrame
        ``HypothesisGenerator.hypotheses_`` joined (on row order) with the
        holdout evaluation table (prevalence, separation and its test,
        marginal and joint coefficients, p-values, significant, sign flips,
        VIF, ``model``: the joint model behind ``coef``, ``"firth"`` where
        the Logit separated, ...). For multiclass y, each hypothesis gets the
        statistics of its own class. With ``n_seeds > 1``, a ``stability``
        column: the share of the other seeds whose selected latents include
        one that recurs (see :func:`run_method`).
    metrics : dict
        Holdout metrics of :func:`evaluate_hypotheses` (``per_class`` for
        multiclass) and ``score``, the generator's holdout score (ROC AUC for
        binary y, mean one-vs-rest ROC AUC for multiclass, R^2 for a
        regression). When no hypothesis was found, ``hypotheses`` has no
        rows, ``n_hypotheses`` is 0 and ``score`` is that of the generator's
        constant model. With the signal check on: ``embedding_score`` (the
        probe's held-out score, on the scale of ``score``),
        ``embedding_pvalue`` (classes: one-sided test that its AUC exceeds
        0.5; None for a regression), ``embedding_signal`` (whether the
        embeddings carry signal), ``embedding_probe`` (which probe) and
        ``signal_share``, the share of the embeddings' signal that the
        hypotheses recover: ``(score - 0.5) / (embedding_score - 0.5)`` for
        ROC AUC, ``score / embedding_score`` for R^2; NaN when the probe is
        at or below chance, since there is then no signal to recover.
    examples : list of dict
        Per hypothesis, ``{"present": [...], "absent": [...]}`` holdout texts.
    sae : SparseAutoencoder
        The fitted sparse autoencoder step.
    usage : dict
        LLM usage (zeros offline).
    timings : dict
        Seconds per step: ``embed``, ``sae``, ``select``, ``signal_check``
        (when on), ``hypotheses``, ``stability`` (with ``n_seeds > 1``),
        ``annotate_holdout``, ``evaluate``.
    settings : dict
        Parameters of each step (plain values; others as their repr), the
        split sizes and, with ``n_seeds > 1``, ``stability``: ``n_seeds``,
        the other ``seeds`` and the recurrence ``threshold``.
    """

    pipeline: Pipeline
    hypotheses: pd.DataFrame
    metrics: dict
    examples: list
    sae: SparseAutoencoder
    usage: dict
    timings: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)


@validate_params(
    {
        "texts": ["array-like"],
        "y": ["array-like"],
        "holdout_texts": ["array-like"],
        "holdout_y": ["array-like"],
        "embedder": [HasMethods(["fit", "transform"]), None],
        "sae": [HasMethods(["fit", "transform"]), None],
        "selector": [HasMethods(["fit", "transform", "get_support"]), None],
        "generator": [HasMethods(["fit", "annotate", "evaluate"]), None],
        "memory": [str, os.PathLike, HasMethods(["cache"]), None],
        "n_examples": [Interval(Integral, 0, None, closed="left")],
        "check_signal": ["boolean"],
        "n_seeds": [Interval(Integral, 1, None, closed="left")],
        "pairwise": [StrOptions({"auto"}), "boolean"],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=False,
)
def run_method(
    texts,
    y,
    *,
    holdout_texts,
    holdout_y,
    embedder=None,
    sae=None,
    selector=None,
    generator=None,
    memory=None,
    n_examples=3,
    check_signal=True,
    n_seeds=1,
    pairwise="auto",
    random_state=0,
) -> MethodResult:
    """Fit the HypotheSAEs pipeline on texts and evaluate it on a holdout.

    The four steps go into one :class:`~sklearn.pipeline.Pipeline`, fitted
    with metadata routing on (the generator receives the texts) in two
    stages: embed -> sae -> select first, then the generator. In between, the
    **signal check** scores a linear probe on the full training embeddings
    against the held-out texts (see ``check_signal``), so that it comes
    before any latent is described, hence before any LLM call. The
    hypotheses' ``latent`` column holds the sparse-autoencoder latent each
    one describes, read from the selector (:func:`pipeline_hypotheses`).

    **Pairs of texts** (a pairwise task: which of two texts wins, or by how
    much): give ``texts`` and ``holdout_texts`` of shape (n_pairs, 2), as a
    2-D array, a two-column DataFrame or a list of ``(text_a, text_b)``, and
    y saying whether the first text wins (two classes) or by how much (a
    number). The pipeline is then ``features`` -> ``select`` ->
    ``hypotheses``: ``features`` is a :class:`PairwiseDifference` of the
    embed -> sae pipeline (fit on the distinct texts of both columns,
    transforming a pair into the first text's latent activations minus the
    second's), the selector selects among those differences, and the
    generator, which must have ``pairwise=True`` (the default one does),
    tests concepts present in one text of a pair and not the other on the
    differences of their annotations. The signal check probes the
    differences of the embeddings; with ``n_seeds > 1`` each seed's SAE is
    fit on the distinct texts and its selection on the pairs' differences.

    Parameters
    ----------
    texts : sequence of str or array-like of shape (n_pairs, 2)
        Training texts, or pairs of texts.
    y : array-like of shape (n_texts,)
        Training targets.
    holdout_texts : sequence of str or array-like of shape (n_pairs, 2)
        Held-out texts (or pairs), annotated and evaluated.
    holdout_y : array-like of shape (n_holdout,)
        Their targets.
    embedder, sae, selector, generator : estimators, default=None
        The steps (the SAE is cloned when ``memory`` is set); None uses
        ``TextEmbedder()``, ``SparseAutoencoder(random_state=random_state)``,
        ``LatentSelector()`` and ``HypothesisGenerator(random_state=
        random_state)`` (offline).
    memory : str, path, object with ``cache`` or None, default=None
        Cache of fitted steps: a folder becomes an :class:`ArrayMemory`, which
        stores fitted sparse autoencoders as arrays and JSON (never pickles)
        and refits nothing on a rerun with the same data and parameters.
    n_examples : int, default=3
        Holdout texts shown per hypothesis and side.
    check_signal : bool, default=True
        Score a probe on the full embeddings before describing any latent:
        logistic regression (classes; penalty by 3-fold CV) or ridge
        (regression; penalty by leave-one-out), fit on the training
        embeddings and scored on the held-out ones with the generator's
        score. When the embeddings carry no signal (the probe's AUC is not
        significantly above 0.5 by a one-sided Mann-Whitney test at 0.05, or
        its R^2 <= 0), a ``NoSignalWarning`` (a UserWarning) is raised before
        the generator is fit; turn it into an error with
        ``warnings.filterwarnings("error", category=NoSignalWarning)`` to
        stop there. The holdout texts are embedded once more for it.
    n_seeds : int, default=1
        With more than 1, the SAE and the selection are fit again with
        ``n_seeds - 1`` other seeds (the SAE's ``random_state`` + 1, + 2, ...)
        on the same training embeddings, and each hypothesis gets a
        ``stability``: the share of those seeds where its concept recurs,
        i.e. where a selected latent's activations on the training texts
        correlate with those of the hypothesis' latent at Pearson r >= 0.5
        (``RECURRENCE_THRESHOLD``). No LLM call is made for it. Requires an
        SAE with a ``random_state`` parameter.
    pairwise : "auto" or bool, default="auto"
        Whether rows are pairs of texts: "auto" reads ``texts`` (two columns
        of texts, or a sequence of two-text tuples or lists, are pairs).
    random_state : int, RandomState instance or None, default=0
        Seeds every default step and which example texts are drawn: the same
        value gives the same hypotheses.

    Returns
    -------
    result : MethodResult

    Examples
    --------
    >>> from sklearn_hypothesaes import run_method  # doctest: +SKIP
    >>> from sklearn_hypothesaes.datasets import load_rotten_tomatoes
    >>> train = load_rotten_tomatoes(split="train")  # doctest: +SKIP
    >>> test = load_rotten_tomatoes(split="holdout")  # doctest: +SKIP
    >>> result = run_method(train.texts, train.target, holdout_texts=test.texts,
    ...                     holdout_y=test.target)  # doctest: +SKIP
    >>> result.hypotheses[["hypothesis", "coef", "significant"]]  # doctest: +SKIP
    """
    seed = check_random_state(random_state).randint(np.iinfo(np.int32).max)
    seed = random_state if isinstance(random_state, Integral) else int(seed)
    if pairwise == "auto":
        pairwise = is_text_pairs(texts)
    if pairwise:
        return _run_pairwise(
            texts,
            y,
            holdout_texts=holdout_texts,
            holdout_y=holdout_y,
            embedder=embedder,
            sae=sae,
            selector=selector,
            generator=generator,
            memory=memory,
            n_examples=n_examples,
            check_signal=check_signal,
            n_seeds=n_seeds,
            random_state=random_state,
            seed=seed,
        )
    steps = [
        ("embed", embedder if embedder is not None else TextEmbedder()),
        ("sae", sae if sae is not None else SparseAutoencoder(random_state=seed)),
        ("select", selector if selector is not None else LatentSelector()),
        (
            "hypotheses",
            generator
            if generator is not None
            else HypothesisGenerator(random_state=seed),
        ),
    ]
    texts = check_texts(texts, caller="run_method")
    holdout_texts = check_texts(
        holdout_texts, caller="run_method", param="holdout_texts"
    )
    y, holdout_y = np.asarray(y), np.asarray(holdout_y)
    sae_step = steps[1][1]
    if n_seeds > 1 and "random_state" not in sae_step.get_params(deep=False):
        raise ValueError(
            f"run_method with n_seeds={n_seeds} refits the SAE with other seeds, "
            "so the 'sae' parameter must take a random_state; got "
            f"{type(sae_step).__name__}, which has none. Use n_seeds=1 or a "
            "SparseAutoencoder."
        )
    pipeline = Pipeline(steps, memory=_as_memory(memory), verbose=True)
    timings = {}
    with config_context(enable_metadata_routing=True), _step_timings(timings):
        # Fitted in stages so that the signal check sees the embeddings and
        # comes before the generator describes any latent (LLM calls). The
        # slices share the steps; copying them back keeps the fits that a
        # memory cloned.
        embed, middle = pipeline[:1], pipeline[1:-1]
        embeddings = embed.fit_transform(texts, y)
        latents = middle.fit_transform(embeddings, y)
        pipeline.steps[:-1] = [*embed.steps, *middle.steps]
    signal = None
    if check_signal:
        signal = _signal_check(
            embeddings,
            y,
            lambda: pipeline[0].transform(holdout_texts),
            holdout_y,
            pipeline[-1],
            seed,
            timings,
        )
    with config_context(enable_metadata_routing=True), _step_timings(timings):
        pipeline[-1:].fit(latents, y, texts=texts)
    table = pipeline_hypotheses(pipeline)
    settings = {"n_train": len(texts), "n_holdout": len(holdout_texts)}
    if n_seeds > 1:
        settings["stability"] = _add_stability(
            table,
            latents,
            embeddings,
            y,
            sae=pipeline.named_steps["sae"],
            selector=pipeline[2],
            memory=pipeline.memory,
            n_seeds=n_seeds,
            seed=seed,
            timings=timings,
        )
    return _finish(
        pipeline,
        table,
        holdout_texts,
        holdout_y,
        signal=signal,
        timings=timings,
        n_examples=n_examples,
        random_state=random_state,
        settings=settings,
    )


def _finish(
    pipeline,
    table,
    holdout_texts,
    holdout_y,
    *,
    signal,
    timings,
    n_examples,
    random_state,
    settings,
):
    """Annotate and evaluate the holdout, and gather the MethodResult."""
    generator = pipeline[-1]
    start = time.perf_counter()
    annotated = generator.annotate(holdout_texts)
    timings["annotate_holdout"] = time.perf_counter() - start
    A = np.asarray(annotated.values, dtype=float)
    start = time.perf_counter()
    evaluation = generator.evaluate(holdout_texts, holdout_y, annotations=A)
    timings["evaluate"] = time.perf_counter() - start
    hypotheses, metrics = _join(table, evaluation)
    # With no hypothesis this is the score of the generator's constant model.
    metrics["score"] = generator.score_annotations(A, holdout_y)
    if signal is not None:
        metrics.update(
            embedding_score=signal.score,
            embedding_pvalue=signal.pvalue,
            embedding_signal=signal.has_signal,
            embedding_probe=signal.probe,
            signal_share=signal_share(metrics["score"], signal.score, signal.task),
        )
    examples = generator.examples(
        holdout_texts, A, n=n_examples, random_state=random_state
    )
    settings = {
        **{name: _plain_params(step) for name, step in pipeline.steps},
        **settings,
    }
    usage = Usage(**generator.usage_) + annotated.usage
    return MethodResult(
        pipeline=pipeline,
        hypotheses=hypotheses,
        metrics=metrics,
        examples=examples,
        sae=_fitted_sae(pipeline),
        usage=usage.as_dict(),
        timings=timings,
        settings=settings,
    )


@validate_params(
    {"pipeline": [Pipeline]},
    prefer_skip_nested_validation=True,
)
def pipeline_hypotheses(pipeline) -> pd.DataFrame:
    """The hypotheses of a fitted Pipeline, with the latent each describes.

    ``HypothesisGenerator.hypotheses_`` knows each hypothesis' column of its
    own input. This maps that column back through the selector steps before
    it (their ``get_support``) to the :class:`SparseAutoencoder` latent, and
    adds it as the ``latent`` column.

    Parameters
    ----------
    pipeline : sklearn.pipeline.Pipeline
        A fitted pipeline ending in a :class:`HypothesisGenerator`, with a
        :class:`SparseAutoencoder` step and only selectors (steps with
        ``get_support``) between the two. The SAE may be inside a
        :class:`PairwiseDifference` step (pairs of texts), whose columns are
        differences of the SAE's latents, one column per latent.

    Returns
    -------
    hypotheses : pandas.DataFrame
        A copy of ``hypotheses_`` with ``latent`` as its first column.
    """
    steps = _flat_steps(pipeline)
    generator = steps[-1]
    if not isinstance(generator, HypothesisGenerator):
        raise ValueError(
            "pipeline_hypotheses needs a Pipeline whose last step is a "
            f"HypothesisGenerator; got {type(generator).__name__}."
        )
    check_is_fitted(generator)
    index = np.arange(generator.n_features_in_)
    for step in reversed(steps[:-1]):
        if isinstance(step, SparseAutoencoder):
            break
        if not hasattr(step, "get_support"):
            raise ValueError(
                "pipeline_hypotheses can map the generator's columns to latents "
                "only through selectors (steps with get_support); got "
                f"{type(step).__name__} between the SparseAutoencoder and the "
                "HypothesisGenerator."
            )
        index = step.get_support(indices=True)[index]
    else:
        raise ValueError(
            "pipeline_hypotheses needs a SparseAutoencoder step before the "
            "HypothesisGenerator; the pipeline has none."
        )
    table = generator.hypotheses_.copy()
    columns = table["column"].to_numpy(dtype=int)
    table.insert(0, "latent", index[columns])
    try:  # the names the steps give their outputs, e.g. "sparseautoencoder12"
        names = pipeline[:-1].get_feature_names_out()
    except (AttributeError, ValueError, TypeError):
        names = None
    if names is not None and len(names) == generator.n_features_in_:
        table["feature"] = [str(n) for n in np.asarray(names)[columns]]
    return table


def is_text_pairs(texts) -> bool:
    """Whether ``texts`` holds pairs of texts: two columns, or a sequence
    whose first element is a two-item tuple or list."""
    shape = getattr(texts, "shape", None)
    if shape is not None:
        return len(shape) == 2 and shape[1] == 2
    if isinstance(texts, list | tuple) and len(texts):
        first = texts[0]
        return isinstance(first, list | tuple) and len(first) == 2
    return False


def _flat_steps(pipeline):
    """The pipeline's estimators, with a PairwiseDifference's inner steps in
    its place (its columns are differences of the inner output's columns)."""
    out = []
    for _, est in pipeline.steps:
        if est is None or (isinstance(est, str) and est == "passthrough"):
            continue
        if isinstance(est, PairwiseDifference) and hasattr(est, "transformer_"):
            inner = est.transformer_
            out.extend(_flat_steps(inner) if isinstance(inner, Pipeline) else [inner])
        else:
            out.append(est)
    return out


def _fitted_sae(pipeline):
    found = [s for s in _flat_steps(pipeline) if isinstance(s, SparseAutoencoder)]
    return found[-1] if found else None


def _pair_array(pairs):
    """TextPairs as an (n_pairs, 2) object array, what the pipeline takes."""
    out = np.empty((len(pairs), 2), dtype=object)
    out[:, 0], out[:, 1] = pairs.first, pairs.second
    return out


def _run_pairwise(
    texts,
    y,
    *,
    holdout_texts,
    holdout_y,
    embedder,
    sae,
    selector,
    generator,
    memory,
    n_examples,
    check_signal,
    n_seeds,
    random_state,
    seed,
):
    """run_method for pairs of texts (see its docstring)."""
    train_pairs = check_text_pairs(texts, caller="run_method")
    holdout_pairs = check_text_pairs(
        holdout_texts, caller="run_method", param="holdout_texts"
    )
    pairs, holdout = _pair_array(train_pairs), _pair_array(holdout_pairs)
    if generator is None:
        generator = HypothesisGenerator(random_state=seed, pairwise=True)
    elif not generator.get_params().get("pairwise", False):
        raise ValueError(
            "run_method with pairs of texts needs a generator with pairwise=True; "
            f"got {type(generator).__name__} with pairwise="
            f"{generator.get_params().get('pairwise')!r}. Pass "
            "HypothesisGenerator(pairwise=True, ...)."
        )
    inner_steps = [
        ("embed", embedder if embedder is not None else TextEmbedder()),
        ("sae", sae if sae is not None else SparseAutoencoder(random_state=seed)),
    ]
    if memory is not None:
        # A Pipeline caches every step but its last: a passthrough last step
        # lets the memory cache the SAE.
        inner_steps.append(("output", "passthrough"))
    inner = Pipeline(inner_steps, memory=_as_memory(memory), verbose=True)
    pipeline = Pipeline(
        [
            ("features", PairwiseDifference(inner)),
            ("select", selector if selector is not None else LatentSelector()),
            ("hypotheses", generator),
        ],
        verbose=True,
    )
    y, holdout_y = np.asarray(y), np.asarray(holdout_y)
    timings = {}
    with config_context(enable_metadata_routing=True), _step_timings(timings):
        latents = pipeline[:-1].fit_transform(pairs, y)
    timings.pop("output", None)  # the passthrough step that lets memory cache
    signal = None
    if check_signal:
        embed = pipeline[0].transformer_[0]  # the fitted embedder
        signal = _signal_check(
            pair_differences(embed, train_pairs),
            y,
            lambda: pair_differences(embed, holdout_pairs),
            holdout_y,
            generator,
            seed,
            timings,
        )
    with config_context(enable_metadata_routing=True), _step_timings(timings):
        pipeline[-1:].fit(latents, y, texts=pairs)
    table = pipeline_hypotheses(pipeline)
    settings = {"pairwise": True, "n_train": len(pairs), "n_holdout": len(holdout)}
    if n_seeds > 1:
        inner = pipeline[0].transformer_
        texts, first, second = train_pairs.unique()
        settings["stability"] = _add_stability(
            table,
            latents,
            inner[0].transform(texts),  # the embedder caches: no model work
            y,
            sae=inner.named_steps["sae"],
            selector=pipeline[1],
            memory=inner.memory,
            n_seeds=n_seeds,
            seed=seed,
            timings=timings,
            pairs=(first, second),
        )
    return _finish(
        pipeline,
        table,
        holdout,
        holdout_y,
        signal=signal,
        timings=timings,
        n_examples=n_examples,
        random_state=random_state,
        settings=settings,
    )


def _signal_check(X, y, holdout_X, holdout_y, generator, seed, timings):
    """The embeddings' signal, timed, with a warning when there is none.

    ``holdout_X`` is a callable, so that its embedding counts in the time."""
    start = time.perf_counter()
    signal = embedding_signal(
        X,
        y,
        holdout_X(),
        holdout_y,
        task=generator.get_params().get("task", "auto"),
        random_state=seed,
    )
    timings["signal_check"] = time.perf_counter() - start
    warn_no_signal(signal)
    return signal


def _add_stability(
    table,
    latents,
    embeddings,
    y,
    *,
    sae,
    selector,
    memory,
    n_seeds,
    seed,
    timings,
    pairs=None,
):
    """Add the ``stability`` column to ``table``; return the run's settings."""
    start = time.perf_counter()
    base = sae.get_params()["random_state"]
    base = base if isinstance(base, Integral) else seed
    found = seed_stability(
        embeddings,
        y,
        _columns(latents, table["column"].to_numpy(dtype=int)),
        sae=sae,
        selector=selector,
        seeds=other_seeds(base, n_seeds),
        memory=memory,
        pairs=pairs,
    )
    table["stability"] = found.stability
    timings["stability"] = time.perf_counter() - start
    return {"n_seeds": n_seeds, "seeds": found.seeds, "threshold": RECURRENCE_THRESHOLD}


def _columns(Z, columns):
    """Columns of the selector's output, dense (it may be sparse or a frame)."""
    Z = Z.toarray() if hasattr(Z, "toarray") else np.asarray(Z)
    return Z[:, columns]


def _as_memory(memory):
    if memory is None or hasattr(memory, "cache"):
        return memory
    from ._memory import ArrayMemory

    return ArrayMemory(memory)


_STEP_LOG = re.compile(r"Processing (\w+), total=\s*([\d.]+)(min|s)")


@contextlib.contextmanager
def _step_timings(timings):
    """Collect the per-step times that ``Pipeline(verbose=True)`` prints,
    instead of fitting the steps by hand to time them."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        try:
            yield
        finally:
            for line in buffer.getvalue().splitlines(keepends=True):
                found = _STEP_LOG.search(line)
                if found and line.startswith("[Pipeline]"):
                    name, value, unit = found.groups()
                    timings[name] = float(value) * (60.0 if unit == "min" else 1.0)
                else:  # what the steps themselves print still reaches the user
                    sys.stdout.write(line)


def _join(table, evaluation):
    table = table.reset_index(drop=True)
    if isinstance(evaluation, dict):  # multiclass: each row's own class
        columns = next(iter(evaluation.values())).table.columns
        stats = pd.DataFrame(
            [evaluation[cls].table.iloc[i] for i, cls in enumerate(table["class"])],
            columns=columns,
        ).reset_index(drop=True)
        metrics = {
            "task": "multiclass",
            "per_class": {cls: r.metrics for cls, r in evaluation.items()},
        }
    else:
        stats, metrics = evaluation.table, dict(evaluation.metrics)
    stats = stats.drop(columns=["hypothesis"]).reset_index(drop=True)
    return pd.concat([table, stats], axis=1), metrics


def _plain_params(estimator) -> dict:
    out = {}
    for key, value in estimator.get_params(deep=False).items():
        plain = value is None or isinstance(value, bool | int | float | str)
        out[key] = value if plain else repr(value)
    return out
