"""The LLM layer: :class:`LLMClient` (an OpenAI-compatible endpoint with bounded
concurrency, retries, a durable answer cache and per-call usage), the packaged
prompts and the parsing of answers. It knows nothing of latents or hypotheses."""

from ._client import LLMClient

__all__ = ["LLMClient"]
