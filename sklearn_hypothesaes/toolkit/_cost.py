"""What labelling latents would cost with an LLM, counted without sending.

:meth:`InterpretableEmbedder.estimate_cost` (and ``dry_run=True``) runs the
describer as it would label, but against stand-in clients: each answers from
the real client's LLM cache where it can, logs every other request (with the
client's own deduplication and cache keys) and makes up an answer the
caller's parser accepts, so the labelling runs to its end and its later
requests (held-out fidelity) are counted too. :func:`summarise_requests`
turns that log into a :class:`CostEstimate`.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
from sklearn.base import clone

from ..llm import Completions, LLMClient, Usage
from ..utils._misc import resolve_cache_dir
from ..utils._store import SQLiteStore

# The LLM client keeps its answers in this file of its cache folder.
_LLM_CACHE_FILE = "llm.sqlite"


@dataclasses.dataclass
class CostEstimate:
    """What labelling latents would send to an LLM, counted without sending.

    The count is exact when every answer parses and, with several batches,
    no two latents get the same label; otherwise it is an upper bound.

    Attributes
    ----------
    steps : pandas.DataFrame
        One row per step of the labelling (the progress label of each batch
        of requests, e.g. ``"Interpreting latents"``, ``"Held-out
        fidelity"``): ``requests`` (to be sent), ``cache_hits`` (answered by
        the LLM cache), ``prompt_chars``, ``prompt_tokens`` (estimated as
        characters / 4, the client's own rule for rate limits) and
        ``max_completion_tokens`` (requests times ``max_tokens``; NaN when a
        client sets no ``max_tokens``).
    prompt_cost : float or None
        US dollars for the prompt tokens, from the clients' ``prices``; None
        when a model that would be asked has no price.
    max_cost : float or None
        ``prompt_cost`` plus every answer at ``max_tokens``: an upper bound.
    assumptions : str
        What the counts assume.
    """

    steps: pd.DataFrame
    prompt_cost: float | None = None
    max_cost: float | None = None
    assumptions: str = (
        "every answer parses on the first try (no re-asks) and names a "
        "concept; when two latents get the same label, the cache answers some "
        "questions of later batches and fewer requests are sent"
    )

    @property
    def requests(self) -> int:
        """Requests that would be sent."""
        return int(self.steps["requests"].sum())

    @property
    def cache_hits(self) -> int:
        """Requests the LLM cache already answers."""
        return int(self.steps["cache_hits"].sum())

    @property
    def prompt_tokens(self) -> int:
        """Estimated prompt tokens of the requests to send."""
        return int(self.steps["prompt_tokens"].sum())

    def __str__(self) -> str:
        def money(value):
            return (
                "unknown (no price: LLMClient(prices=...))"
                if value is None
                else (f"${value:,.4f}")
            )

        table = self.steps.to_string(index=False) if len(self.steps) else "(none)"
        return (
            f"Labelling would send {self.requests:,} LLM request(s) "
            f"({self.cache_hits:,} more answered by the cache), about "
            f"{self.prompt_tokens:,} prompt tokens.\n{table}\n"
            f"Prompt cost: {money(self.prompt_cost)}; at most "
            f"{money(self.max_cost)} with every answer at max_tokens.\n"
            f"Assumes {self.assumptions}."
        )


class _DryRunClient:
    """Stands in for an :class:`LLMClient`: answers from its cache where it
    can, counts every other request (deduplicated as the client would) and
    sends nothing.

    Answers it makes up are the first of a few fixed forms that the caller's
    parser accepts (a unique concept, "no", a JSON object of zeros), so the
    describer runs to the end and its later prompts (fidelity annotations of
    the concepts) are counted too.
    """

    def __init__(self, client: LLMClient, log: list):
        self.client = client
        self.log = log
        folder = resolve_cache_dir(client.cache_dir)
        self.seen = set() if folder is not None else None
        path = None if folder is None else folder / _LLM_CACHE_FILE
        # Opening a missing file would create an empty cache.
        self.store = SQLiteStore(path) if path is not None and path.exists() else None

    def complete(self, messages_list, *, desc=None, **sampling):
        return self.complete_parsed(messages_list, None, desc=desc, **sampling)

    def complete_parsed(
        self, messages_list, parse, *, desc=None, max_attempts=3, **sampling
    ):
        parses = (
            [parse] * len(messages_list)
            if parse is None or callable(parse)
            else list(parse)
        )
        return self._run(messages_list, parses, desc, sampling, _accept_text)

    def yes_probabilities(
        self, messages_list, *, desc=None, max_attempts=3, **sampling
    ):
        # The sampling LLMClient.yes_probabilities adds, so cache keys match.
        sampling = {"logprobs": True, "top_logprobs": 10, "max_tokens": 1, **sampling}
        parses = [None] * len(messages_list)
        return self._run(messages_list, parses, desc, sampling, _accept_probability)

    def _run(self, messages_list, parses, desc, sampling, accept):
        keys = [self.client.cache_key(m, **sampling) for m in messages_list]
        cached = self.store.get_json(set(keys)) if self.store is not None else {}
        max_tokens = sampling.get("max_tokens", self.client.max_tokens)
        answers, asked = [], {}
        for key, messages, parse in zip(keys, messages_list, parses, strict=True):
            if key in asked:  # the client sends one request per distinct key
                answers.append(asked[key])
                continue
            value, hit = None, False
            if key in cached:
                try:
                    value, hit = accept(cached[key], parse), True
                except Exception:  # the client would ask this one again
                    hit = False
            if self.seen is not None and key in self.seen and not hit:
                hit = True  # answered earlier in this run, then cached
            if not hit:
                value = _placeholder(accept, parse, key)
            self.log.append(
                {
                    "step": desc or "LLM",
                    "model": self.client.model,
                    "prices": (self.client.prices or {}).get(self.client.model),
                    "cache_hit": hit,
                    "prompt_chars": _prompt_chars(messages),
                    "max_tokens": max_tokens,
                }
            )
            if self.seen is not None:
                self.seen.add(key)
            asked[key] = value
            answers.append(value)
        return Completions(answers, usage=Usage())


def _accept_text(record, parse):
    text = record.get("text")
    if text is None:
        raise ValueError("empty answer")
    return text if parse is None else parse(text)


def _accept_probability(record, parse):
    return 0.0


# Stand-in answers after the unique concept: a yes/no word, and JSON objects
# of zeros for numbered questions (extra numbers are ignored by the parser).
_FIXED_FORMS = (
    "no",
    *(json.dumps({str(i): 0 for i in range(1, n + 1)}) for n in (64, 1024)),
)


def _placeholder(accept, parse, key: str):
    """The value of a stand-in answer that ``parse`` accepts: a concept unique
    to the request (so that later prompts about it do not collapse into one),
    a yes/no word, or a JSON object of zeros for numbered questions."""
    for text in (f"dry run concept {key[:12]}", *_FIXED_FORMS):
        try:
            return accept({"text": text}, parse)
        except Exception:
            continue
    raise ValueError(
        "InterpretableEmbedder's cost estimate cannot stand in for an LLM answer "
        f"that {getattr(parse, '__name__', parse)!r} parses: none of the forms it "
        "knows (a short concept, yes/no, a JSON object of numbered 0/1) is "
        "accepted. Estimate from a real run on a few latents instead (relabel "
        "them and read usage_)."
    )


def _prompt_chars(messages) -> int:
    if isinstance(messages, str):
        return len(messages)
    return sum(len(str(m.get("content", ""))) for m in messages)


def with_dry_run_clients(strategy, log: list):
    """A clone of ``strategy`` whose LLM clients are dry-run stand-ins.

    Parameters
    ----------
    strategy : describer, annotator or None
        Its :class:`LLMClient` parameters, at any depth, are replaced by
        stand-ins that send nothing; the object passed is not touched.
    log : list
        Each stand-in appends one dict per request it sees (step, model,
        prices, cache hit, prompt characters, ``max_tokens``), the input of
        :func:`summarise_requests`.

    Returns
    -------
    strategy : describer, annotator or None
    """
    if strategy is None:
        return None
    strategy = clone(strategy)
    if not hasattr(strategy, "get_params"):
        return strategy
    swaps = {
        name: _DryRunClient(value, log)
        for name, value in strategy.get_params(deep=True).items()
        if isinstance(value, LLMClient)
    }
    # Deepest first: a parent swapped first would hide its children's names.
    for name in sorted(swaps, key=lambda n: -n.count("__")):
        strategy.set_params(**{name: swaps[name]})
    return strategy


def summarise_requests(log: list) -> CostEstimate:
    """Requests, cache hits, tokens and cost per step of a dry-run log.

    Parameters
    ----------
    log : list of dict
        What the stand-ins of :func:`with_dry_run_clients` logged.

    Returns
    -------
    estimate : CostEstimate
    """
    columns = [
        "step",
        "requests",
        "cache_hits",
        "prompt_chars",
        "prompt_tokens",
        "max_completion_tokens",
    ]
    frame = pd.DataFrame(log)
    if not len(frame):
        return CostEstimate(pd.DataFrame(columns=columns), 0.0, 0.0)
    frame["prompt_tokens"] = np.ceil(frame["prompt_chars"] / 4).astype(int)
    sent = frame[~frame["cache_hit"]]
    steps = []
    for step in dict.fromkeys(frame["step"]):
        mine, out = frame[frame["step"] == step], sent[sent["step"] == step]
        bounded = out["max_tokens"].notna().all()
        steps.append(
            {
                "step": step,
                "requests": len(out),
                "cache_hits": int(mine["cache_hit"].sum()),
                "prompt_chars": int(out["prompt_chars"].sum()),
                "prompt_tokens": int(out["prompt_tokens"].sum()),
                "max_completion_tokens": float(out["max_tokens"].sum())
                if bounded
                else np.nan,
            }
        )
    prompt_cost = max_cost = None
    priced = sent["prices"].map(lambda p: p is not None)
    if priced.all():
        per_prompt = sent["prices"].map(lambda p: p[0] if p else 0.0)
        per_answer = sent["prices"].map(lambda p: p[1] if p else 0.0)
        prompt_cost = float((sent["prompt_tokens"] * per_prompt).sum() / 1e6)
        if sent["max_tokens"].notna().all():
            answers = float((sent["max_tokens"] * per_answer).sum() / 1e6)
            max_cost = prompt_cost + answers
    return CostEstimate(pd.DataFrame(steps, columns=columns), prompt_cost, max_cost)
