"""The interpretable-embedding toolkit: labelled SAE latents as named dimensions.

Once every live latent of a sparse autoencoder has a label, its sparse
activations are an embedding whose dimensions are concepts, and analyses
become counting:

- :func:`binarize_activations` and :func:`latent_thresholds`: when a latent
  "fires" on a document (shared by every analysis below).
- :class:`InterpretableEmbedder`: texts -> activations of labelled latents.
- :func:`diff_corpora`: latents ranked by how differently often they fire in
  two corpora, with exact tests; :func:`summarize_differences` has an LLM
  write the top ones in words and :func:`verify_differences` checks each.
- :func:`concept_correlations`: latent pairs ranked by NPMI of co-firing,
  with synonym pairs filtered by label similarity.
- :class:`ConceptClustering` and :class:`PropertySearch`: clustering along a
  named axis and retrieval by a property described in words.
"""

from ._binarize import binarize_activations, latent_thresholds
from ._clustering import ConceptClustering
from ._correlations import concept_correlations
from ._diff import (
    DifferenceSummary,
    diff_corpora,
    summarize_differences,
    verify_differences,
)
from ._embedder import CostEstimate, InterpretableEmbedder, default_describer
from ._search import PropertySearch

__all__ = [
    "ConceptClustering",
    "PropertySearch",
    "CostEstimate",
    "DifferenceSummary",
    "InterpretableEmbedder",
    "binarize_activations",
    "concept_correlations",
    "default_describer",
    "diff_corpora",
    "latent_thresholds",
    "summarize_differences",
    "verify_differences",
]
