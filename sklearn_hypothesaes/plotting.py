"""Matplotlib plots of hypotheses and of sparse-autoencoder training.

The functions live in :mod:`sklearn_hypothesaes.app._plotting`; this public
module keeps their import path.
"""

from .app._plotting import (
    plot_hypotheses,
    plot_latent_frequency,
    plot_separation,
    plot_training_curve,
    rank_hypotheses,
)

__all__ = [
    "plot_hypotheses",
    "plot_latent_frequency",
    "plot_separation",
    "plot_training_curve",
    "rank_hypotheses",
]
