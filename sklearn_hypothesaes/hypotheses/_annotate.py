"""Annotation: does a text have a concept? Asked of an LLM.

The protocol is one setting, ``concepts_per_request``: 1 asks one yes/no
question per (text, concept), as the HypotheSAEs paper and its reference code
do; more puts that many numbered concepts and one text in a request and asks
for a JSON object, so that each text is sent fewer times. A list invites
position bias (a model answers the concepts late in the list worse), so the
order of the concepts is shuffled per text, with a seed, and a concept that an
answer leaves out is asked again alone with the others left out, not with the
whole list. :func:`annotation_agreement` measures, on the user's own texts and
model, how far several concepts per request agree with one.

Every request goes through :meth:`LLMClient.complete_parsed`, so answers are
cached, resumable, validated (refusals, cut-off thinking and empty answers are
never used) and asked again when they cannot be parsed.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from numbers import Integral

import numpy as np
import pandas as pd
from sklearn.metrics import cohen_kappa_score
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    StrOptions,
    validate_params,
)

from ..llm import (
    Usage,
    answer_problem,
    fill_prompt,
    load_prompt,
    parse_yes_no,
    strip_thinking,
)
from ..utils._misc import warn_user
from ..utils._validation import check_texts

#: Texts are cut to this many characters, by default, everywhere an LLM reads
#: them: examples shown to the interpreter, fidelity and final annotation.
MAX_TEXT_CHARS = 500
#: The delimiter around a text in every prompt; the text's own line breaks
#: stay inside it, so layout is visible and a list of texts stays readable.
QUOTE = '"""'
#: Rounds of asking again the concepts that answers left out.
_ROUNDS = 3

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
    return np.nan  # an answer such as "maybe" or "<1 or 0>" counts as missing


def parse_multi_answer(text: str, n_concepts: int) -> list[float]:
    """0/1 per numbered concept from a JSON-ish answer; NaN where it has none.

    Accepts ``{"1": 1, "2": 0}`` (inside code fences or after a thinking block),
    a JSON list ``[1, 0]``, or lines such as ``1: yes``. A concept the answer
    leaves out (or answers with anything but 1/0, yes/no, true/false) is NaN;
    raises ValueError when no concept is answered at all.

    Examples
    --------
    >>> parse_multi_answer('```json\\n{"1": 1, "2": "no"}\\n```', 2)
    [1.0, 0.0]
    >>> parse_multi_answer('{"1": 1, "3": "maybe"}', 3)
    [1.0, nan, nan]
    """
    problem = answer_problem(text)
    if problem is not None:
        raise ValueError(f"Unusable answer ({problem}): {text!r}.")
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
    values = [found.get(i, np.nan) for i in range(1, n_concepts + 1)]
    if all(np.isnan(values)):
        raise ValueError(
            f"Expected a 1/0 answer for some of the concepts 1..{n_concepts}; "
            f"found none in {text!r}."
        )
    return values


def multi_answer_schema(n_concepts: int) -> dict:
    """JSON Schema of the answer to a request about ``n_concepts`` concepts.

    An object with one required key per concept number, each 0 or 1, as
    OpenAI's strict structured output wants it.

    Examples
    --------
    >>> multi_answer_schema(2)["required"]
    ['1', '2']
    """
    keys = [str(i) for i in range(1, n_concepts + 1)]
    return {
        "type": "object",
        "properties": {k: {"type": "integer", "enum": [0, 1]} for k in keys},
        "required": keys,
        "additionalProperties": False,
    }


def quote_text(text: str, max_chars: int | None) -> str:
    """A text as prompts show it: between triple quotes, cut to ``max_chars``.

    Line breaks are kept (layout can be what a latent detects); a text longer
    than ``max_chars`` ends with ``[...]``.

    Examples
    --------
    >>> print(quote_text("Dear Sir,\\nI am writing to complain.", 20))
    \"\"\"Dear Sir,
    I am writi [...]\"\"\"
    """
    text = str(text)
    if max_chars is not None and len(text) > max_chars:
        text = text[:max_chars].rstrip() + " [...]"
    # A text cannot close its own quotes early.
    return QUOTE + text.replace(QUOTE, "'''") + QUOTE


def concept_order(text: str, n_concepts: int, seed: int) -> np.ndarray:
    """The order in which ``n_concepts`` concepts are listed for ``text``.

    A permutation seeded by ``seed`` and the text itself, so each text gets
    its own order (a model's bias for a position in the list spreads over all
    concepts instead of always hitting the same one) and the same text gets
    the same prompts on every run (the answer cache is reused).
    """
    digest = hashlib.sha256(str(text).encode("utf-8")).digest()
    rng = np.random.default_rng([int(seed), int.from_bytes(digest[:8], "little")])
    return rng.permutation(n_concepts)


def _seed(random_state) -> int:
    if isinstance(random_state, Integral):
        return int(random_state)
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def annotate_groups(
    groups,
    *,
    client,
    concepts_per_request=1,
    probabilities=False,
    max_text_chars=MAX_TEXT_CHARS,
    prompt_template=None,
    random_state=0,
    desc=None,
) -> tuple[list[np.ndarray], Usage]:
    """Annotate ``[(text, [concept, ...]), ...]``; one float array per group.

    The shared engine of :func:`annotate_texts` and :class:`LLMAnnotator`: all
    requests of a round go to the client in one batch. Returns the arrays and
    the usage of all rounds.
    """
    single = concepts_per_request == 1 or probabilities
    template = prompt_template or load_prompt(
        "annotate_single" if single else "annotate_multi"
    )
    results = [np.full(len(concepts), np.nan) for _, concepts in groups]
    quoted = [quote_text(text, max_text_chars) for text, _ in groups]
    # The client's own warnings are folded into one of ours, with the count.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        if single:
            usage = _ask_single(
                groups, quoted, results, client, template, probabilities, desc
            )
        else:
            usage = _ask_multi(
                groups,
                quoted,
                results,
                client,
                template,
                concepts_per_request,
                _seed(random_state),
                desc,
            )
    total = sum(r.size for r in results)
    n_missing = sum(int(np.isnan(r).sum()) for r in results)
    # The client's last word on what went wrong goes with our count of what
    # is missing; its other notes (no logprobs, no structured output) are
    # passed on as they are.
    folded = [w for w in caught[-1:] if n_missing and w.category is RuntimeWarning]
    for w in caught:
        if w not in folded:
            warn_user(str(w.message), w.category)
    detail = " ".join(str(w.message) for w in folded)
    if total and n_missing == total:
        unusable = ", ".join(f"{n} {why}" for why, n in usage.unusable.items())
        raise RuntimeError(
            f"The LLM gave no usable answer for any of the {total} annotations "
            f"({usage.calls} requests; unusable answers: {unusable or 'none'}; "
            f"failed requests: {usage.failures}). Every statistic would be NaN, "
            "so the run stops here. "
            + (
                "A model that cannot keep to the JSON format of several concepts "
                "per request may answer one at a time: concepts_per_request=1. "
                if not single
                else ""
            )
            + f"Try the model by hand on one prompt with client.complete([...]). "
            f"{detail}"
        )
    if n_missing:
        warn_user(
            f"{n_missing} of {total} annotations are missing (NaN) because the LLM "
            "gave no usable answer after retries. Run again to retry only those; "
            f"answers already received are cached. {detail}",
            UserWarning,
        )
    return results, usage


def _ask_single(groups, quoted, results, client, template, probabilities, desc):
    messages, slots = [], []
    for g, (_, concepts) in enumerate(groups):
        for c, concept in enumerate(concepts):
            messages.append(
                fill_prompt(
                    template, "prompt_template", concept=concept, text=quoted[g]
                )
            )
            slots.append((g, c))
    if probabilities:
        answers = client.yes_probabilities(messages, desc=desc)
    else:
        answers = client.complete_parsed(messages, parse_yes_no, desc=desc)
    for (g, c), answer in zip(slots, answers, strict=True):
        if answer is not None:
            results[g][c] = answer
    return answers.usage


def _ask_multi(groups, quoted, results, client, template, per_request, seed, desc):
    """Chunks of shuffled concepts; the concepts an answer leaves out are asked
    again, only they, for up to ``_ROUNDS`` rounds."""
    pending = [
        (g, concept_order(text, len(concepts), seed))
        for g, (text, concepts) in enumerate(groups)
        if len(concepts)
    ]
    usage = Usage()
    for round_ in range(_ROUNDS):
        messages, slots = [], []
        for g, order in pending:
            concepts = groups[g][1]
            for first in range(0, len(order), per_request):
                chunk = order[first : first + per_request]
                listing = "\n".join(
                    f"{i}. {concepts[c]}" for i, c in enumerate(chunk, 1)
                )
                messages.append(
                    fill_prompt(
                        template, "prompt_template", concepts=listing, text=quoted[g]
                    )
                )
                slots.append((g, chunk))
        if not messages:
            break
        # One call per chunk size: structured output names every key.
        sizes = sorted({len(chunk) for _, chunk in slots})
        answers = [None] * len(messages)
        for size in sizes:
            idx = [i for i, (_, chunk) in enumerate(slots) if len(chunk) == size]
            got = client.complete_parsed(
                [messages[i] for i in idx],
                lambda text, n=size: parse_multi_answer(text, n),
                json_schema=multi_answer_schema(size),
                desc=desc if round_ == 0 else f"{desc or 'Annotating'} (left out)",
            )
            usage = usage + got.usage
            for i, answer in zip(idx, got, strict=True):
                answers[i] = answer
        left_out: dict[int, list[int]] = {}
        for (g, chunk), answer in zip(slots, answers, strict=True):
            if answer is None:
                continue  # the client asked again already; it stays missing
            values = np.asarray(answer, dtype=float)
            results[g][chunk] = values
            missed = chunk[np.isnan(values)]
            if missed.size:
                left_out.setdefault(g, []).extend(missed.tolist())
        pending = [(g, np.asarray(cols)) for g, cols in left_out.items()]
    return usage


@validate_params(
    {
        "texts": ["array-like"],
        "concepts": ["array-like"],
        "client": [HasMethods(["complete_parsed"])],
        "concepts_per_request": [Interval(Integral, 1, None, closed="left")],
        "mode": [StrOptions({"multi", "single"}), None],
        "probabilities": ["boolean"],
        "max_text_chars": [Interval(Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
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
    concepts_per_request=1,
    mode=None,
    probabilities=False,
    max_text_chars=MAX_TEXT_CHARS,
    random_state=0,
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
    concepts_per_request : int, default=1
        Concepts asked about in one request. 1 asks a yes/no question per
        (text, concept), the protocol of the HypotheSAEs paper; more lists that
        many concepts, in an order shuffled per text, and asks for a JSON
        object (with structured output where the server supports it), sending
        each text fewer times. Measure what it does to your model's answers
        with :func:`annotation_agreement`.
    mode : {"multi", "single"} or None, default=None
        Kept for older code: "single" is ``concepts_per_request=1``; "multi"
        uses ``concepts_per_request`` if above 1, else 10.
    probabilities : bool, default=False
        Return P(yes) read from the first output token's logprobs; asks one
        concept per request whatever ``concepts_per_request``.
    max_text_chars : int or None, default=500
        Texts longer than this are cut (and end with ``[...]``); None sends
        them whole.
    random_state : int, RandomState instance or None, default=0
        Seeds the order of the concepts in each text's requests (with the
        text). Keep an int: the same prompts on every run reuse the cache.
    desc : str, default=None
        Label of the progress bar (shown when ``client.verbose``).
    prompt_template : str, default=None
        Replaces the packaged prompt; it must contain ``{text}`` and
        ``{concept}`` (one concept per request) or ``{concepts}`` (several).

    Returns
    -------
    ndarray of shape (n_texts, n_concepts)
        1.0 / 0.0 (or P(yes)); NaN where no usable answer came back, counted
        in a warning.

    Raises
    ------
    RuntimeError
        When no annotation at all got a usable answer; the message gives the
        reasons and what to change.

    See Also
    --------
    LLMClient : Concurrency, retries, caching and accounting.
    annotation_agreement : Several concepts per request against one.

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
        concepts_per_request=resolve_mode(mode, concepts_per_request),
        probabilities=probabilities,
        max_text_chars=max_text_chars,
        prompt_template=prompt_template,
        random_state=random_state,
        desc=desc or "Annotating",
    )
    out[:] = rows
    return out


def resolve_mode(mode, concepts_per_request) -> int:
    """Concepts per request from the older ``mode`` parameter, if given."""
    if mode == "single":
        return 1
    if mode == "multi" and concepts_per_request == 1:
        return 10  # what "multi" meant before concepts_per_request existed
    return int(concepts_per_request)


@validate_params(
    {
        "texts": ["array-like"],
        "concepts": ["array-like"],
        "client": [HasMethods(["complete_parsed"])],
        "concepts_per_request": ["array-like"],
        "n_texts": [Interval(Integral, 1, None, closed="left")],
        "max_text_chars": [Interval(Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def annotation_agreement(
    texts,
    concepts,
    client,
    *,
    concepts_per_request=(1, 10),
    n_texts=50,
    max_text_chars=MAX_TEXT_CHARS,
    random_state=0,
) -> pd.DataFrame:
    """How far several concepts per request agree with one, on your texts.

    Annotates a random sample of ``texts`` with every concept once per value
    of ``concepts_per_request``, with your model, and compares each protocol
    with the first (by default one concept per request, the protocol of the
    HypotheSAEs paper): the share of (text, concept) answers that agree,
    Cohen's kappa (agreement beyond chance, which matters when most answers
    are "no"), the worst concept's agreement, and the requests and tokens each
    protocol used. Use it to choose ``concepts_per_request`` before an
    expensive run: several per request is cheaper, and as good only where
    the agreement says so.

    Parameters
    ----------
    texts : sequence of str
        Your texts; ``n_texts`` of them are drawn.
    concepts : sequence of str
        Concepts to annotate, e.g. the hypotheses of a first run.
    client : LLMClient
        Your model. Tokens count the requests sent: use ``cache_dir=False``
        (or a fresh cache) to measure them all.
    concepts_per_request : sequence of int, default=(1, 10)
        The protocols to compare; the first is the reference.
    n_texts : int, default=50
        Texts in the sample (all of them if there are fewer).
    max_text_chars : int or None, default=500
        Texts are cut to this many characters, as in annotation.
    random_state : int, RandomState instance or None, default=0
        The sample and the concept order.

    Returns
    -------
    table : pandas.DataFrame
        One row per protocol: ``concepts_per_request``, ``agreement`` (share
        of the answers given by both protocols that are equal), ``kappa``
        (Cohen's kappa; NaN when one protocol answers one value only),
        ``worst_concept_agreement``, ``positive_rate``, ``missing`` (share of
        NaN), ``calls``, ``cache_hits``, ``prompt_tokens``,
        ``completion_tokens`` and ``tokens_per_annotation``. The reference
        row agrees with itself (1.0).

    See Also
    --------
    annotate_texts : The annotation measured.

    Examples
    --------
    >>> from sklearn_hypothesaes import LLMClient
    >>> from sklearn_hypothesaes import annotation_agreement
    >>> client = LLMClient(base_url="http://localhost:8000/v1", cache_dir=False)
    >>> annotation_agreement(texts, hypotheses, client)  # doctest: +SKIP
       concepts_per_request  agreement  kappa  ...  prompt_tokens  ...
    0                     1      1.000  1.000  ...          61240  ...
    1                    10      0.962  0.871  ...          11905  ...
    """
    texts = check_texts(texts, caller="annotation_agreement")
    concepts = check_texts(concepts, caller="annotation_agreement", param="concepts")
    sizes = [int(k) for k in concepts_per_request]
    if not sizes or min(sizes) < 1 or not concepts or not texts:
        raise ValueError(
            "annotation_agreement needs texts, concepts and 'concepts_per_request' "
            f"values >= 1. Got {len(texts)} texts, {len(concepts)} concepts and "
            f"concepts_per_request={sizes}."
        )
    rng = check_random_state(random_state)
    rows = np.sort(rng.choice(len(texts), min(n_texts, len(texts)), replace=False))
    sample = [(texts[i], concepts) for i in rows]
    seed = int(rng.randint(np.iinfo(np.int32).max))
    found = []
    for size in sizes:
        values, usage = annotate_groups(
            sample,
            client=client,
            concepts_per_request=size,
            max_text_chars=max_text_chars,
            random_state=seed,
            desc=f"{size} concept(s) per request",
        )
        found.append((size, np.vstack(values), usage))
    reference = found[0][1]
    table = []
    for size, values, usage in found:
        both = ~np.isnan(reference) & ~np.isnan(values)
        same = (reference == values) & both
        per_concept = same.sum(axis=0) / np.maximum(both.sum(axis=0), 1)
        per_concept = np.where(both.sum(axis=0) > 0, per_concept, np.nan)
        a, b = reference[both], values[both]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            kappa = (
                float(cohen_kappa_score(a, b))
                if len(np.unique(a)) > 1 or len(np.unique(b)) > 1
                else np.nan
            )
        n = values.size
        table.append(
            {
                "concepts_per_request": size,
                "agreement": float(same.sum() / both.sum()) if both.any() else np.nan,
                "kappa": kappa,
                "worst_concept_agreement": float(np.nanmin(per_concept))
                if np.isfinite(per_concept).any()
                else np.nan,
                "positive_rate": float(np.nanmean(values)),
                "missing": float(np.isnan(values).sum() / n),
                "calls": usage.calls,
                "cache_hits": usage.cache_hits,
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "tokens_per_annotation": (usage.prompt_tokens + usage.completion_tokens)
                / n,
            }
        )
    hits = sum(row["cache_hits"] for row in table)
    if hits:
        warn_user(
            f"annotation_agreement: {hits} answers came from the cache, so their "
            "tokens are not counted; pass a client with cache_dir=False to "
            "measure every request.",
            UserWarning,
        )
    return pd.DataFrame(table)
