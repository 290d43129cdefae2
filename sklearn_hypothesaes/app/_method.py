"""The whole method in one call: fit on training texts, evaluate on a holdout."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from ..hypotheses._generator import HypothesisGenerator
from ..hypotheses._selection import LatentSelector
from ..sae._model import SparseAutoencoder
from ..text._embedder import TextEmbedder


@dataclass
class MethodResult:
    """What :func:`run_method` found.

    Attributes
    ----------
    pipeline : sklearn.pipeline.Pipeline
        The fitted embed -> sae -> select -> hypotheses pipeline.
    hypotheses : pandas.DataFrame
        ``HypothesisGenerator.hypotheses_`` joined (on row order) with the
        holdout evaluation table (prevalence, separation, coef, p-values,
        significant, ...). For multiclass y, each hypothesis gets the
        statistics of its own class.
    metrics : dict
        Holdout metrics of :func:`evaluate_hypotheses` (``per_class`` for
        multiclass) and ``score``, the generator's holdout score (ROC AUC,
        R^2 or accuracy). When no hypothesis was found, ``hypotheses`` has
        no rows, ``n_hypotheses`` is 0 and ``score`` is that of the
        generator's constant model.
    examples : list of dict
        Per hypothesis, ``{"present": [...], "absent": [...]}`` holdout texts.
    sae : SparseAutoencoder
        The fitted sparse autoencoder step.
    usage : dict
        LLM usage (zeros offline).
    timings : dict
        Seconds per step: ``embed``, ``sae``, ``select``, ``hypotheses``,
        ``annotate_holdout``, ``evaluate``.
    settings : dict
        Parameters of each step (plain values; others as their repr) and the
        split sizes.
    """

    pipeline: Pipeline
    hypotheses: pd.DataFrame
    metrics: dict
    examples: list
    sae: SparseAutoencoder
    usage: dict
    timings: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)


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
    n_examples=3,
    random_state=0,
) -> MethodResult:
    """Fit the HypotheSAEs pipeline on texts and evaluate it on a holdout.

    The steps are fitted one by one (so each is timed) into the same fitted
    :class:`~sklearn.pipeline.Pipeline` that ``Pipeline.fit`` would give.
    The hypotheses' ``latent`` column holds the sparse-autoencoder latent
    each one describes (the selector's columns mapped back).

    Parameters
    ----------
    texts : sequence of str
        Training texts.
    y : array-like of shape (n_texts,)
        Training targets.
    holdout_texts : sequence of str
        Held-out texts, annotated and evaluated.
    holdout_y : array-like of shape (n_holdout,)
        Their targets.
    embedder, sae, selector, generator : estimators, default=None
        The steps (used as given, and fitted); None uses
        ``TextEmbedder()``, ``SparseAutoencoder()``, ``LatentSelector()``
        and ``HypothesisGenerator()`` (offline).
    n_examples : int, default=3
        Holdout texts shown per hypothesis and side.
    random_state : int, RandomState instance or None, default=0
        Which example texts are drawn.

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
    steps = [
        ("embed", embedder if embedder is not None else TextEmbedder()),
        ("sae", sae if sae is not None else SparseAutoencoder()),
        ("select", selector if selector is not None else LatentSelector()),
        ("hypotheses", generator if generator is not None else HypothesisGenerator()),
    ]
    (_, embedder), (_, sae), (_, selector), (_, generator) = steps
    texts, holdout_texts = list(texts), list(holdout_texts)
    y, holdout_y = np.asarray(y), np.asarray(holdout_y)
    timings = {}

    def timed(name, fn):
        start = time.perf_counter()
        out = fn()
        timings[name] = time.perf_counter() - start
        return out

    E = timed("embed", lambda: embedder.fit_transform(texts))
    Z = timed("sae", lambda: sae.fit(E).transform(E))
    S = timed("select", lambda: selector.fit(Z, y).transform(Z))
    timed("hypotheses", lambda: generator.fit(S, y, texts=texts))
    _map_latents(generator, sae, selector)
    pipeline = Pipeline(steps)

    A = timed("annotate_holdout", lambda: generator.transform(texts=holdout_texts))
    evaluation = timed(
        "evaluate",
        lambda: generator.evaluate(holdout_texts, holdout_y, annotations=A),
    )
    hypotheses, metrics = _join(generator, evaluation)
    # With no hypothesis this is the score of the generator's constant model.
    metrics["score"] = generator.score(None, holdout_y, texts=holdout_texts)
    examples = generator.examples(
        holdout_texts, A, n=n_examples, random_state=random_state
    )
    settings = {name: _plain_params(step) for name, step in steps}
    settings.update(n_train=len(texts), n_holdout=len(holdout_texts))
    return MethodResult(
        pipeline=pipeline,
        hypotheses=hypotheses,
        metrics=metrics,
        examples=examples,
        sae=sae,
        usage=dict(generator.usage_),
        timings=timings,
        settings=settings,
    )


def _map_latents(generator, sae, selector):
    """Selector columns -> SAE latent indices and names in ``hypotheses_``."""
    columns = np.flatnonzero(selector.get_support())
    names = selector.get_feature_names_out(sae.get_feature_names_out())
    kept = np.asarray(generator._columns, dtype=int)
    table = generator.hypotheses_
    table["latent"] = columns[kept].astype(int) if len(kept) else []
    table["feature"] = [str(n) for n in names[kept]] if len(kept) else []


def _join(generator, evaluation):
    table = generator.hypotheses_.reset_index(drop=True)
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
