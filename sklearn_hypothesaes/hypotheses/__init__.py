"""Stages 3-5, latents -> hypotheses -> statistics.

- :class:`LatentSelector` picks the latents that predict the target.
- Describers turn latent activations + texts into one description per latent,
  with fidelity (``describe(texts, activations, *, annotator,
  random_state)``): :class:`TermDescriber` (offline) and
  :class:`LLMDescriber`.
- Annotators turn texts x concepts into a matrix (``annotate(texts,
  concepts)``): :class:`PhraseAnnotator` (offline) and :class:`LLMAnnotator`.
- :class:`HypothesisGenerator` composes a describer and an annotator into a
  scikit-learn estimator; :func:`evaluate_hypotheses` holds the statistics.
- Pairwise tasks (two texts per row): :class:`PairwiseDifference` turns a
  texts -> features transformer into pair features ``inner(a) - inner(b)``,
  and ``HypothesisGenerator(pairwise=True)`` tests concepts present in one
  text of a pair and not the other.
"""

from ._annotate import annotate_texts, annotation_agreement
from ._annotators import Annotations, LLMAnnotator, PhraseAnnotator
from ._describers import Descriptions, LLMDescriber, TermDescriber
from ._fidelity import column_fidelity_scores, fidelity_scores
from ._generator import HypothesisGenerator
from ._interpret import interpret_latents
from ._pairwise import PairwiseDifference
from ._selection import LatentSelector
from ._stats import evaluate_hypotheses
from ._terms import contrastive_terms, format_hypothesis, match_terms

__all__ = [
    "Annotations",
    "Descriptions",
    "HypothesisGenerator",
    "LLMAnnotator",
    "LLMDescriber",
    "LatentSelector",
    "PairwiseDifference",
    "PhraseAnnotator",
    "TermDescriber",
    "annotate_texts",
    "annotation_agreement",
    "contrastive_terms",
    "evaluate_hypotheses",
    "column_fidelity_scores",
    "fidelity_scores",
    "format_hypothesis",
    "interpret_latents",
    "match_terms",
]
