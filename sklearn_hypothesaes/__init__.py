"""Hypotheses about text datasets from sparse autoencoders, the scikit-learn way.

Data flows one way: texts -> :class:`TextEmbedder` -> embeddings ->
:class:`SparseAutoencoder` -> latent activations -> :class:`LatentSelector` ->
:class:`HypothesisGenerator` -> hypotheses, annotations and statistics.

The package is laid out by stage: ``text/`` (embedding), ``sae/`` (the sparse
autoencoder), ``llm/`` (the LLM client), ``hypotheses/`` (selection, describers,
annotators, the generator and statistics), ``toolkit/`` (labelled latents as an
interpretable embedding: diffing, correlations, clustering, retrieval) and
``app/`` (run_method, command line, report, plots), over ``utils/``; each
imports only stages below it.

Public names are imported lazily so that ``import sklearn_hypothesaes`` stays
cheap (torch and sentence-transformers load only when used).
"""

import importlib

__version__ = "0.1.0"

_LAZY = {
    "TextEmbedder": ".text._embedder",
    "TokenEmbedder": ".text._tokens",
    "TokenStates": ".text._tokens",
    "hidden_state_layer": ".text._tokens",
    "TokenwiseTransformer": ".sae._pooling",
    "DocumentPooler": ".sae._pooling",
    "SparseAutoencoder": ".sae._model",
    "save_sae": ".sae._io",
    "load_sae": ".sae._io",
    "load_pretrained": ".sae._pretrained",
    "save_pretrained": ".sae._pretrained",
    "ChunkSource": ".sae._streaming",
    "fit_distributed": ".sae._distributed",
    "LLMClient": ".llm._client",
    "LLMRequestError": ".llm._client",
    "LLMUnusableAnswersError": ".llm._client",
    "CacheError": ".utils._store",
    "LatentSelector": ".hypotheses._selection",
    "interpret_latents": ".hypotheses._interpret",
    "TermDescriber": ".hypotheses._describers",
    "LLMDescriber": ".hypotheses._describers",
    "PhraseAnnotator": ".hypotheses._annotators",
    "LLMAnnotator": ".hypotheses._annotators",
    "annotate_texts": ".hypotheses._annotate",
    "annotation_agreement": ".hypotheses._annotate",
    "HypothesisGenerator": ".hypotheses._generator",
    "PairwiseDifference": ".hypotheses._pairwise",
    "evaluate_hypotheses": ".hypotheses._stats",
    "run_method": ".app._method",
    "MethodResult": ".app._method",
    "pipeline_hypotheses": ".app._method",
    "ArrayMemory": ".app._memory",
    "NoSignalWarning": ".app._signal",
    "render_report": ".app._report",
    "InterpretableEmbedder": ".toolkit._embedder",
    "CostEstimate": ".toolkit._cost",
    "latent_thresholds": ".toolkit._binarize",
    "binarize_activations": ".toolkit._binarize",
    "diff_corpora": ".toolkit._diff",
    "summarize_differences": ".toolkit._summary",
    "verify_differences": ".toolkit._summary",
    "DifferenceSummary": ".toolkit._summary",
    "concept_correlations": ".toolkit._correlations",
    "ConceptClustering": ".toolkit._clustering",
    "PropertySearch": ".toolkit._search",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
