"""Annotation: does a text have a concept? Asked of an LLM, many at once.

Multi-concept prompts put up to ``concepts_per_call`` numbered concepts and one
text in a single request and ask for a compact JSON answer, so each text is
sent once rather than once per concept. Every request goes through
:meth:`LLMClient.complete_parsed`, so answers are cached, resumable and
re-asked when they cannot be parsed.
"""

from __future__ import annotations

import functools
import json
import re
import warnings
from numbers import Integral

import numpy as np
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    StrOptions,
    validate_params,
)

from ..llm import Usage, fill_prompt, load_prompt, parse_yes_no, strip_thinking
from ..utils._misc import warn_user
from ..utils._validation import check_texts

_FENCE = re.compile(r"```[a-zA-Z]*")
_PAIR = re.compile(
    r"""["']?(\d+)["']?\s*[:=)\-.]\s*["']?(yes|no|true|false|1|0)\b""", re.I
)
_TRUE = {"1", "yes", "y", "true"}
_FALSE = {"0", "no", "n", "false"}


def _as_binary(value) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and value in (0, 1):
        return float(value)
    word = str(value).strip().lower()
    if word in _TRUE:
        return 1.0
    if word in _FALSE:
        return 0.0
    raise ValueError(f"Expected 1/0 or yes/no for a concept. Got {value!r}.")


def parse_multi_answer(text: str, n_concepts: int) -> list[float]:
    """0/1 per numbered concept from a JSON-ish answer, or raise ValueError.

    Accepts ``{"1": 1, "2": 0}`` (inside code fences or after a thinking block),
    a JSON list ``[1, 0]``, or lines such as ``1: yes``.

    Examples
    --------
    >>> parse_multi_answer('```json\\n{"1": 1, "2": "no"}\\n```', 2)
    [1.0, 0.0]
    """
    body = _FENCE.sub("", strip_thinking(text) or "")
    found: dict[int, float] = {}
    start, end = body.find("{"), body.rfind("}")
    if 0 <= start < end:
        try:
            obj = json.loads(body[start : end + 1])
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            for key, value in obj.items():
                digits = re.sub(r"\D", "", str(key))
                if digits:
                    found[int(digits)] = _as_binary(value)
    if not found:
        start, end = body.find("["), body.rfind("]")
        if 0 <= start < end:
            try:
                obj = json.loads(body[start : end + 1])
            except json.JSONDecodeError:
                obj = None
            if isinstance(obj, list) and len(obj) == n_concepts:
                found = {i + 1: _as_binary(v) for i, v in enumerate(obj)}
    if not found:
        found = {int(k): _as_binary(v) for k, v in _PAIR.findall(body)}
    missing = [i for i in range(1, n_concepts + 1) if i not in found]
    if missing:
        raise ValueError(
            f"Expected an answer for concepts 1..{n_concepts}; missing {missing} "
            f"in {text!r}."
        )
    return [found[i] for i in range(1, n_concepts + 1)]


def shorten_text(text: str, max_chars: int | None) -> str:
    text = " ".join(str(text).split())  # newlines would break the prompt layout
    if max_chars is not None and len(text) > max_chars:
        return text[:max_chars].rstrip() + "..."
    return text


def annotate_groups(
    groups,
    *,
    client,
    mode="multi",
    concepts_per_call=10,
    probabilities=False,
    max_text_chars=None,
    prompt_template=None,
    desc=None,
) -> tuple[list[np.ndarray], Usage]:
    """Annotate ``[(text, [concept, ...]), ...]``; one float array per group.

    The shared engine of :func:`annotate_texts` and :class:`LLMAnnotator`: all
    requests go to the client in one batch. Returns the arrays and the usage
    of this batch.
    """
    single = mode == "single" or probabilities
    template = prompt_template or load_prompt(
        "annotate_single" if single else "annotate_multi"
    )
    messages, parsers, slots = [], [], []
    results = [np.full(len(concepts), np.nan) for _, concepts in groups]
    for g, (text, concepts) in enumerate(groups):
        text = shorten_text(text, max_text_chars)
        if single:
            for c, concept in enumerate(concepts):
                prompt = fill_prompt(
                    template, "prompt_template", concept=concept, text=text
                )
                messages.append(prompt)
                slots.append((g, [c]))
            continue
        for first in range(0, len(concepts), concepts_per_call):
            chunk = list(range(first, min(first + concepts_per_call, len(concepts))))
            listing = "\n".join(f"{i + 1}. {concepts[c]}" for i, c in enumerate(chunk))
            prompt = fill_prompt(
                template, "prompt_template", concepts=listing, text=text
            )
            messages.append(prompt)
            parsers.append(functools.partial(parse_multi_answer, n_concepts=len(chunk)))
            slots.append((g, chunk))
    # The client's own warning about missing answers is folded into ours.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        if probabilities:
            answers = client.yes_probabilities(messages, desc=desc)
        elif single:
            answers = client.complete_parsed(messages, parse_yes_no, desc=desc)
        else:
            answers = client.complete_parsed(messages, parsers, desc=desc)
    usage = answers.usage
    for (g, cols), answer in zip(slots, answers, strict=True):
        if answer is not None:
            results[g][cols] = answer
    n_missing = sum(int(np.isnan(r).sum()) for r in results)
    if n_missing:
        detail = "; ".join(str(w.message) for w in caught[-1:])
        warn_user(
            f"{n_missing} of {sum(r.size for r in results)} annotations are missing "
            "(NaN) because the LLM gave no usable answer after retries. Run again "
            f"to retry only those; answers already received are cached. {detail}",
            UserWarning,
        )
    return results, usage


@validate_params(
    {
        "texts": ["array-like"],
        "concepts": ["array-like"],
        "client": [HasMethods(["complete_parsed"])],
        "mode": [StrOptions({"multi", "single"})],
        "concepts_per_call": [Interval(Integral, 1, None, closed="left")],
        "probabilities": ["boolean"],
        "max_text_chars": [Interval(Integral, 1, None, closed="left"), None],
        "desc": [str, None],
        "prompt_template": [str, None],
    },
    prefer_skip_nested_validation=True,
)
def annotate_texts(
    texts,
    concepts,
    *,
    client,
    mode="multi",
    concepts_per_call=10,
    probabilities=False,
    max_text_chars=None,
    desc=None,
    prompt_template=None,
) -> np.ndarray:
    """Ask an LLM whether each text has each concept.

    Parameters
    ----------
    texts : list of str
        Texts to annotate.
    concepts : list of str
        Natural-language concepts, e.g. ``"mentions a dog"``.
    client : LLMClient
        The endpoint, its concurrency and its cache.
    mode : {"multi", "single"}, default="multi"
        "multi" asks about up to ``concepts_per_call`` concepts of one text in
        one request with a JSON answer; "single" asks one yes/no question per
        (text, concept).
    concepts_per_call : int, default=10
        Concepts per request in multi mode.
    probabilities : bool, default=False
        Return P(yes) read from the first output token's logprobs (single
        prompts with a one-token answer, whatever ``mode``). Endpoints without
        logprobs give 0/1.
    max_text_chars : int or None, default=None
        Texts longer than this are cut.
    desc : str, default=None
        Label of the progress bar (shown when ``client.verbose``).
    prompt_template : str, default=None
        Replaces the packaged prompt; it must contain ``{text}`` and
        ``{concepts}`` (multi) or ``{concept}`` (single).

    Returns
    -------
    ndarray of shape (n_texts, n_concepts)
        1.0 / 0.0 (or P(yes)); NaN where no usable answer came back, counted
        in a warning.

    See Also
    --------
    LLMClient : Concurrency, retries, caching and accounting.

    Examples
    --------
    >>> from sklearn_hypothesaes import LLMClient, annotate_texts
    >>> client = LLMClient(base_url="http://localhost:8000/v1")  # doctest: +SKIP
    >>> annotate_texts(["A dog barked."], ["mentions a dog", "is about food"],
    ...                client=client)  # doctest: +SKIP
    array([[1., 0.]])
    """
    texts = check_texts(texts, caller="annotate_texts")
    concepts = check_texts(concepts, caller="annotate_texts", param="concepts")
    out = np.full((len(texts), len(concepts)), np.nan)
    if not texts or not concepts:
        return out
    rows, _ = annotate_groups(
        [(text, concepts) for text in texts],
        client=client,
        mode=mode,
        concepts_per_call=int(concepts_per_call),
        probabilities=probabilities,
        max_text_chars=max_text_chars,
        prompt_template=prompt_template,
        desc=desc or "Annotating",
    )
    out[:] = rows
    return out
