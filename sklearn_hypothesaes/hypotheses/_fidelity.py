"""Fidelity: how well a description's annotations agree with a latent firing."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import precision_recall_fscore_support
from sklearn.utils._param_validation import validate_params

FIDELITY_KEYS = ("precision", "recall", "f1", "correlation")


@validate_params(
    {"annotations": ["array-like"], "activations": ["array-like"]},
    prefer_skip_nested_validation=True,
)
def fidelity_scores(annotations, activations) -> dict:
    """Precision, recall and F1 of annotations against "the latent fires".

    Parameters
    ----------
    annotations : array-like of shape (n_texts,)
        An annotator's labels of the texts (> 0.5 is "has the concept"); NaN
        (no usable answer) is left out.
    activations : array-like of shape (n_texts,)
        The latent's activations on the same texts (> 0 is "fires").

    Returns
    -------
    scores : dict
        ``precision``, ``recall``, ``f1`` and ``correlation`` (Pearson r of the
        labels with the activations; 0.0 where either side is constant). All
        NaN when every annotation is missing.

    Examples
    --------
    >>> scores = fidelity_scores([1, 1, 0, 0], [2.0, 0.0, 1.0, 0.0])
    >>> scores["precision"], scores["recall"], scores["f1"]
    (0.5, 0.5, 0.5)
    """
    annotations = np.asarray(annotations, dtype=float)
    activations = np.asarray(activations, dtype=float)
    keep = ~np.isnan(annotations)
    if not keep.any():
        return dict.fromkeys(FIDELITY_KEYS, np.nan)
    pred, acts = annotations[keep] > 0.5, activations[keep]
    precision, recall, f1, _ = precision_recall_fscore_support(
        acts > 0, pred, average="binary", zero_division=0.0
    )
    # Undefined when either side is constant; 0.0, like the reference package.
    if pred.min() == pred.max() or acts.min() == acts.max():
        correlation = 0.0
    else:
        correlation = float(np.corrcoef(pred.astype(float), acts)[0, 1])
    return {
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "correlation": correlation,
    }
