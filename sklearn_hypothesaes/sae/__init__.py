"""Stage 2, embeddings -> latent activations: :class:`SparseAutoencoder` (the
scikit-learn estimator), its training loop and the torch kernels it runs on."""

from ._model import SparseAutoencoder

__all__ = ["SparseAutoencoder"]
