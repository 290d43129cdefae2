"""Stage 2, embeddings -> latent activations: :class:`SparseAutoencoder` (the
scikit-learn estimator: TopK, BatchTopK, JumpReLU or ReLU, with Matryoshka
prefixes), its training loop, the torch kernels it runs on (a training step
with hand-written sparse gradients, on CPU or CUDA), and its file formats
(:func:`save_sae`, :func:`load_sae`: arrays and JSON, no pickle; and
:func:`load_pretrained`, :func:`save_pretrained`: SAELens folders). Also
out-of-core input (:class:`ChunkSource`), distributed training
(:func:`fit_distributed`) and token-level SAEs (:class:`TokenwiseTransformer`,
:class:`DocumentPooler`)."""

from ._distributed import fit_distributed
from ._io import load_sae, save_sae
from ._model import SparseAutoencoder
from ._pooling import DocumentPooler, TokenwiseTransformer
from ._pretrained import load_pretrained, save_pretrained
from ._streaming import ChunkSource

__all__ = [
    "ChunkSource",
    "DocumentPooler",
    "SparseAutoencoder",
    "TokenwiseTransformer",
    "fit_distributed",
    "load_pretrained",
    "load_sae",
    "save_pretrained",
    "save_sae",
]
