"""What a batch of LLM requests cost, returned with the answers by the call that
made them (:class:`Completions`)."""

from __future__ import annotations

import dataclasses

USAGE_KEYS = (
    "calls",
    "cache_hits",
    "prompt_tokens",
    "completion_tokens",
    "retries",
    "reasks",
    "failures",
    "yes_no_from_text",
)


@dataclasses.dataclass
class Usage:
    """Counts of one call (or a sum of calls) to an LLM.

    Attributes
    ----------
    calls : int
        Requests answered by the endpoint.
    cache_hits : int
        Requests answered from the cache.
    prompt_tokens, completion_tokens : int
        Tokens reported by the endpoint.
    retries : int
        Transient errors (429, 5xx, timeouts) retried.
    reasks : int
        Unparseable answers asked again.
    failures : int
        Requests with no usable answer in the end.
    yes_no_from_text : int
        P(yes) values read from the answer text (0.0 or 1.0), because the
        endpoint returned no logprobs, or none for "yes" or "no".
    unusable : dict of str to int
        Answers received but not used (nor cached), by reason: ``"empty"``,
        ``"unclosed thinking"``, ``"cut off"``, ``"refusal"``,
        ``"unparseable"``. Each counts once per answer, re-asked or not.
    cost : float or None
        US dollars, when the client knows the model's prices.

    Examples
    --------
    >>> Usage(calls=2, prompt_tokens=10) + Usage(calls=1, cost=0.5)
    Usage(calls=3, cache_hits=0, prompt_tokens=10, completion_tokens=0, \
retries=0, reasks=0, failures=0, yes_no_from_text=0, unusable={}, cost=0.5)
    >>> Usage(unusable={"refusal": 1}) + Usage(unusable={"refusal": 2})
    Usage(..., unusable={'refusal': 3}, cost=None)
    """

    calls: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    reasks: int = 0
    failures: int = 0
    yes_no_from_text: int = 0
    unusable: dict = dataclasses.field(default_factory=dict)
    cost: float | None = None

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        counts = {k: getattr(self, k) + getattr(other, k) for k in USAGE_KEYS}
        unusable = dict(self.unusable)
        for reason, n in other.unusable.items():
            unusable[reason] = unusable.get(reason, 0) + n
        costs = [c for c in (self.cost, other.cost) if c is not None]
        return Usage(**counts, unusable=unusable, cost=sum(costs) if costs else None)

    def as_dict(self) -> dict:
        """The counts and cost as a plain dict (for JSON and reports)."""
        return dataclasses.asdict(self)


class Completions(list):
    """Answers of one call to :class:`LLMClient`, with what that call cost.

    A ``list`` (answers in input order, None where missing), so code that
    expects a list keeps working, plus the :class:`Usage` of exactly the
    requests this call made: concurrent calls on one client each get their own.

    Parameters
    ----------
    answers : iterable, default=()
        The answers.
    usage : Usage or None, default=None
        What the call cost; None means nothing (``Usage()``).

    Attributes
    ----------
    usage : Usage
        Requests, cache hits, tokens, retries, re-asks, failures, unusable
        answers and cost.
    unusable : dict of str to int
        Answers of this call that were received but not used, by reason
        (``usage.unusable``).

    Examples
    --------
    >>> answers = Completions(["yes", None], usage=Usage(calls=2))
    >>> answers == ["yes", None], answers.usage.calls
    (True, 2)
    """

    def __init__(self, answers=(), usage: Usage | None = None):
        super().__init__(answers)
        self.usage = Usage() if usage is None else usage

    @property
    def unusable(self) -> dict:
        return self.usage.unusable

    def __repr__(self) -> str:
        return f"Completions({list.__repr__(self)}, usage={self.usage!r})"
