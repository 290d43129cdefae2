"""Stage 1, texts -> embeddings: :class:`TextEmbedder` and its backends
(sentence-transformers models on this machine, or an OpenAI-compatible
embeddings endpoint), with a durable per-text cache; and, per token,
:class:`TokenEmbedder` (hidden states of one layer, as :class:`TokenStates`)."""

from ._embedder import TextEmbedder
from ._tokens import TokenEmbedder, TokenStates, hidden_state_layer

__all__ = ["TextEmbedder", "TokenEmbedder", "TokenStates", "hidden_state_layer"]
