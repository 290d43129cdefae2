"""The LLM layer: :class:`LLMClient` (an OpenAI-compatible endpoint with bounded
concurrency, retries, a durable answer cache, answers checked before use),
:class:`Completions` and :class:`Usage` (the answers and cost of one call),
the packaged prompts (``_prompts``) and the reading of answers (``_parsing``:
thinking and lead-ins dropped, unusable answers named). It knows nothing of
latents or hypotheses."""

from ._client import LLMClient, LLMRequestError, LLMUnusableAnswersError
from ._parsing import answer_problem, parse_yes_no, strip_preamble, strip_thinking
from ._prompts import fill_prompt, load_prompt
from ._usage import USAGE_KEYS, Completions, Usage

__all__ = [
    "USAGE_KEYS",
    "Completions",
    "LLMClient",
    "LLMRequestError",
    "LLMUnusableAnswersError",
    "Usage",
    "answer_problem",
    "fill_prompt",
    "load_prompt",
    "parse_yes_no",
    "strip_preamble",
    "strip_thinking",
]
