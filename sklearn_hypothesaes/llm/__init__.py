"""The LLM layer: :class:`LLMClient` (an OpenAI-compatible endpoint with bounded
concurrency, retries, a durable answer cache and per-call usage), the packaged
prompts and the parsing of answers. It knows nothing of latents or hypotheses."""

from ._client import (
    LLMClient,
    fill_prompt,
    load_prompt,
    parse_yes_no,
    strip_thinking,
)
from ._usage import USAGE_KEYS, Usage

__all__ = [
    "USAGE_KEYS",
    "LLMClient",
    "Usage",
    "fill_prompt",
    "load_prompt",
    "parse_yes_no",
    "strip_thinking",
]
