"""Retry policy shared by the clients of OpenAI-compatible endpoints.

Both the embeddings backend and :class:`LLMClient` retry transient failures
themselves (the SDK's own retries are turned off) with the same rules: 408,
409, 429 and 5xx responses, timeouts and connection errors are retried; a
server's ``Retry-After`` is honoured; otherwise the wait doubles per attempt,
with jitter so that concurrent workers do not return in lockstep.

Why not the ``openai`` SDK's own retry policy (checked on openai 3.57 against
a loopback server): the SDK reports how many retries it took only on raw
responses of requests that succeeded, and nothing on its final exception, so
per-call ``usage.retries`` could not be counted; it gives up at once when
``Retry-After`` exceeds 120 s instead of waiting; it sleeps exactly
``Retry-After`` with no jitter, so every worker told to wait returns at the
same instant; and a client built by the user brings its own ``max_retries``,
which would multiply ours. tests/test_llm.py shows the retries counted, the
long ``Retry-After`` waited for and the attempts not multiplied.
"""

from __future__ import annotations

import email.utils
import random
import time

RETRY_STATUSES = frozenset({408, 409, 429})
BACKOFF_BASE = 0.5  # seconds before the first retry, doubling per attempt
BACKOFF_CAP = 60.0
MAX_RETRY_AFTER = 120.0


def retry_after(exc) -> float | None:
    """Seconds asked for by a ``Retry-After-Ms`` or ``Retry-After`` header."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            try:
                date = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                continue
            return max(0.0, date.timestamp() - time.time())
    return None


def backoff_delay(attempt: int, server_wait: float | None = None) -> float:
    """Seconds to sleep before retry ``attempt`` (0-based)."""
    if server_wait is not None:
        return min(server_wait, MAX_RETRY_AFTER) * random.uniform(1.0, 1.1)
    return min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt) * random.uniform(0.5, 1.0)


def is_retryable(exc, openai) -> bool:
    """Whether an ``openai`` SDK error is worth another try."""
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in RETRY_STATUSES or exc.status_code >= 500
    return isinstance(exc, openai.APIConnectionError)  # includes timeouts
