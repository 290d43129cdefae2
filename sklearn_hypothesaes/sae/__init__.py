"""Stage 2, embeddings -> latent activations: :class:`SparseAutoencoder` (the
scikit-learn estimator: TopK, BatchTopK, JumpReLU or ReLU, with Matryoshka
prefixes), its training loop, the torch kernels it runs on (a training step
with hand-written sparse gradients, on CPU or CUDA), and its file formats
(:func:`save_sae`, :func:`load_sae`: arrays and JSON, no pickle)."""

from ._io import load_sae, save_sae
from ._model import SparseAutoencoder

__all__ = ["SparseAutoencoder", "load_sae", "save_sae"]
