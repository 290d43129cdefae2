"""Stage 1, texts -> embeddings: :class:`TextEmbedder` and its backends
(sentence-transformers models on this machine, or an OpenAI-compatible
embeddings endpoint), with a durable per-text cache."""

from ._embedder import TextEmbedder

__all__ = ["TextEmbedder"]
