"""Hypotheses about text datasets from sparse autoencoders, the scikit-learn way.

Data flows one way: texts -> :class:`TextEmbedder` -> embeddings ->
:class:`SparseAutoencoder` -> latent activations -> :class:`LatentSelector` ->
:class:`HypothesisGenerator` -> hypotheses, annotations and statistics.

Public names are imported lazily so that ``import sklearn_hypothesaes`` stays
cheap (torch and sentence-transformers load only when used).
"""

import importlib

__version__ = "0.1.0"

_LAZY = {
    "SparseAutoencoder": "._sae",
    "TextEmbedder": "._embed",
    "LLMClient": "._llm",
    "interpret_latents": "._interpret",
    "annotate_texts": "._annotate",
    "LatentSelector": "._select",
    "HypothesisGenerator": "._hypotheses",
    "evaluate_hypotheses": "._stats",
    "run_method": "._method",
    "MethodResult": "._method",
    "render_report": "._report",
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
