"""The interpretable-embedding toolkit: labelled SAE latents as named dimensions.

Once every live latent of a sparse autoencoder has a label, its sparse
activations are an embedding whose dimensions are concepts, and analyses
become counting:

- :func:`binarize_activations` and :func:`latent_thresholds`: when a latent
  "fires" on a document (shared by every analysis below).
"""

from ._binarize import binarize_activations, latent_thresholds

__all__ = ["binarize_activations", "latent_thresholds"]
