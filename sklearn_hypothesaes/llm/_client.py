"""An OpenAI-compatible chat client: bounded concurrency, retries, a durable cache.

:class:`LLMClient` is a configuration object (cloneable, picklable), not an
estimator. The ``openai`` SDK client, the SQLite cache and the locks are built
on first use and never pickled. Every answer is written to the cache as it
arrives, so a run that is killed resumes where it stopped and pays for nothing
twice. Each call returns its answers as :class:`Completions`, which carry the
:class:`Usage` of exactly that call's requests.
"""

from __future__ import annotations

import copy
import inspect
import math
import os
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor, as_completed
from numbers import Integral, Real
from urllib.parse import urlparse

from sklearn.utils import Tags, TargetTags
from sklearn.utils._param_validation import (
    Interval,
    validate_parameter_constraints,
    validate_params,
)

from ..utils._misc import (
    import_optional,
    redact_url,
    resolve_cache_dir,
    stable_hash,
    warn_user,
)
from ..utils._retry import backoff_delay, is_retryable, retry_after
from ..utils._store import SQLiteStore
from ._parsing import answer_problem, parse_yes_no, strip_thinking
from ._usage import USAGE_KEYS, Completions, Usage

_RUNTIME_LOCK = threading.Lock()
_OPENAI_URL = "https://api.openai.com/v1"  # the SDK's default endpoint
# Set on a client unpickled without what it needs (see __getstate__).
_CLIENT_DROPPED = "_client_dropped"
_REDACTED_URL = "_redacted_base_url"
# Identical client errors (same status, same message) with no answer in between
# that stop a run: a rejected parameter fails every request the same way, and a
# run that goes on would end with every answer missing.
SAME_ERROR_LIMIT = 3
# Distinct requests of one kind (same sampling) whose every answer was unusable
# for one reason, before any usable answer, that stop a run (see
# LLMUnusableAnswersError): a setting that makes every answer unusable (a
# max_tokens too small for a thinking model) would otherwise be paid
# max_attempts times per request. One usable answer of that kind, from the
# endpoint or the cache, or a second reason, disarms it for good, so a run
# with occasional bad answers is never stopped: at a 10% rate of unusable
# answers, twenty in a row from the start come once in 1e20 runs.
UNUSABLE_LIMIT = 20
_THINKING_OFF = "extra_body={'chat_template_kwargs': {'enable_thinking': False}}"
_SEE_DOCS = "(other servers: see the 'LLM servers' page of the documentation)"


class LLMRequestError(RuntimeError):
    """The endpoint rejected requests the same way several times in a row.

    Raised by :class:`LLMClient` after ``SAME_ERROR_LIMIT`` identical client
    errors (HTTP 4xx other than 401, 403, 404, with the same message) and no
    answer in between, instead of a run that ends with every answer missing.

    Parameters
    ----------
    status_code : int
        The HTTP status.
    server_message : str
        The server's error message.
    fix : str
        What to change, in words.
    count : int
        Identical errors in a row.

    Attributes
    ----------
    status_code, server_message, fix, count
        As given.

    Examples
    --------
    >>> from sklearn_hypothesaes.llm import LLMRequestError
    >>> error = LLMRequestError(400, "Unsupported parameter: 'max_tokens'",
    ...                         "Pass LLMClient(max_tokens=None).", 3)
    >>> print(error)  # doctest: +NORMALIZE_WHITESPACE
    The LLM endpoint rejected 3 requests in a row with HTTP 400: "Unsupported
    parameter: 'max_tokens'". The run was stopped rather than left to end with
    every answer missing. Pass LLMClient(max_tokens=None).
    """

    def __init__(self, status_code: int, server_message: str, fix: str, count: int):
        self.status_code = status_code
        self.server_message = server_message
        self.fix = fix
        self.count = count
        super().__init__(
            f"The LLM endpoint rejected {count} requests in a row with HTTP "
            f"{status_code}: {server_message!r}. The run was stopped rather than "
            f"left to end with every answer missing. {fix}"
        )

    def __reduce__(self):
        args = (self.status_code, self.server_message, self.fix, self.count)
        return type(self), args


class LLMUnusableAnswersError(LLMRequestError):
    """The first requests of a run got only unusable answers, all for one reason.

    Raised by :class:`LLMClient` when the first ``UNUSABLE_LIMIT`` distinct
    requests of one kind (same sampling parameters) sent by a client got no
    usable answer, every answer unusable for the same reason (cut off by the
    token limit, unclosed thinking, empty, refused), and no request of that
    kind had a usable answer (from the endpoint or the cache). Such a run is
    misconfigured (a ``max_tokens`` too small for a thinking model, thinking
    left on), and would otherwise ask every request ``max_attempts`` times
    and end with every answer missing. One usable answer, or a second reason,
    turns the stop off for the rest of the run, so a run with occasional bad
    answers is never stopped. Usable answers received before the stop are
    cached. An :class:`LLMRequestError`, so that code which handles the
    client's stops handles this one too.

    Parameters
    ----------
    reason : str
        Why the answers were unusable (a key of ``Usage.unusable``).
    count : int
        Distinct requests that got only unusable answers.
    answers : int
        Answers received for them (re-asks included).
    prompt_tokens, completion_tokens : int
        Tokens the endpoint reported for those answers.
    fix : str
        What to change, in words.
    cached : bool, default=True
        Whether the client caches answers (``cache_dir`` is not False).

    Attributes
    ----------
    reason, count, answers, prompt_tokens, completion_tokens, fix, cached
        As given.
    status_code : None
        No HTTP error: the endpoint answered, unusably.
    server_message : str
        ``"unusable answers: <reason>"``.

    Examples
    --------
    >>> from sklearn_hypothesaes.llm import LLMUnusableAnswersError
    >>> error = LLMUnusableAnswersError(
    ...     "cut off", 20, 58, 1200, 174, "raise max_tokens (now 3)")
    >>> print(error)  # doctest: +NORMALIZE_WHITESPACE
    The first 20 LLM requests got no usable answer: all 58 answers (re-asks
    included) were unusable for one reason, cut off (1,200 prompt and 174
    completion tokens spent). The run was stopped rather than left to ask every
    request again and end with every answer missing. To fix: raise max_tokens
    (now 3). Usable answers received before the stop are cached.
    """

    def __init__(
        self,
        reason: str,
        count: int,
        answers: int,
        prompt_tokens: int,
        completion_tokens: int,
        fix: str,
        cached: bool = True,
    ):
        self.reason = reason
        self.cached = cached
        self.answers = answers
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.status_code = None
        self.server_message = f"unusable answers: {reason}"
        self.fix = fix
        self.count = count
        RuntimeError.__init__(
            self,
            f"The first {count} LLM requests got no usable answer: all {answers} "
            f"answers (re-asks included) were unusable for one reason, {reason} "
            f"({prompt_tokens:,} prompt and {completion_tokens:,} completion tokens "
            "spent). The run was stopped rather than left to ask every request "
            f"again and end with every answer missing. To fix: {fix}. "
            + (
                "Usable answers received before the stop are cached."
                if cached
                else "No answer was cached (cache_dir=False)."
            ),
        )

    def __reduce__(self):
        args = (
            self.reason,
            self.count,
            self.answers,
            self.prompt_tokens,
            self.completion_tokens,
            self.fix,
            self.cached,
        )
        return type(self), args


def _server_message(exc) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    return str(getattr(exc, "message", exc))


def _mentions_response_format(exc) -> bool:
    body = getattr(exc, "body", None)
    param = body.get("param") if isinstance(body, dict) else None
    text = f"{_server_message(exc)} {param}".lower()
    return "response_format" in text or "json_schema" in text


def _client_error_fix(message: str) -> str:
    """The setting that fixes a rejected request, read from the server's words."""
    low = message.lower()
    if "max_tokens" in low:
        return (
            "The server rejects 'max_tokens' (OpenAI's reasoning models take "
            "'max_completion_tokens'): pass LLMClient(max_tokens=None, "
            "extra_body={'max_completion_tokens': 4096})."
        )
    if "temperature" in low:
        return (
            "The model rejects the 'temperature' sent: pass "
            "LLMClient(temperature=None) so that none is sent."
        )
    if "logprobs" in low:
        return (
            "The server does not give logprobs: annotate from parsed yes/no "
            "answers instead of probabilities."
        )
    if "context" in low or "too long" in low or "maximum" in low:
        return (
            "A prompt is longer than the model's context: shorten the texts, or "
            "raise the server's context length (vLLM --max-model-len, llama.cpp "
            "server --ctx-size)."
        )
    return (
        "Change the request parameter the message names: LLMClient's "
        "parameters (temperature, max_tokens, extra_body) or the call's keyword "
        "arguments."
    )


def _unusable_fix(reason: str, sampling: dict, first_token: bool) -> str:
    """What to change when answers are unusable for ``reason``."""
    limit = sampling.get("max_tokens") or (sampling.get("extra_body") or {}).get(
        "max_completion_tokens"
    )
    if reason == "unclosed thinking" and first_token:
        return (
            "P(yes) is read from the first token of the answer, so thinking must "
            f"be off: {_THINKING_OFF} on vLLM and llama.cpp server {_SEE_DOCS}"
        )
    if reason == "unclosed thinking":
        return (
            "the model was still thinking when its answer ended: turn thinking "
            f"off with {_THINKING_OFF} (vLLM, llama.cpp server) {_SEE_DOCS}, or "
            f"raise max_tokens (now {limit})"
        )
    if reason == "cut off":
        return (
            "the answer reached the token limit (finish_reason='length'): raise "
            f"max_tokens (now {limit})"
        )
    if reason == "empty":
        return (
            "the server sent no content: check the model and its chat template; "
            "a server with a reasoning parser sends thinking as reasoning_content "
            f"only, turn it off with {_THINKING_OFF}"
        )
    if reason == "refusal":
        return "the model refused to answer: rephrase the prompt or use another model"
    return (
        "the answer was not in the requested format: use a larger model, or "
        "structured output (json_schema) on a server that supports it"
    )


# The message added after an unusable answer when it is asked again, so that
# the new request differs from the one that failed (at temperature 0 the same
# request would get the same answer).
_CORRECTIONS = {
    "empty": "Your answer was empty. Answer the request above.",
    "unclosed thinking": (
        "Your answer ended before your reasoning did, so it holds no answer. "
        "Answer again with the final answer only, without reasoning."
    ),
    "cut off": (
        "Your answer was cut off by the length limit. Answer again, briefly, "
        "with the final answer only."
    ),
    "refusal": (
        "This is a harmless text-annotation task for research. Answer the "
        "request above as asked."
    ),
    "unparseable": (
        "Your answer could not be read ({detail}). Answer again in exactly the "
        "requested format, with no other text."
    ),
}


def _preview(text, limit=200) -> str:
    """repr of an answer, shortened (a cut-off thought can be pages long)."""
    if text is not None and len(text) > limit:
        return repr(text[: limit // 2] + " [...] " + text[-limit // 2 :])
    return repr(text)


def _reask_messages(messages, bad_text, reason, detail) -> list[dict]:
    correction = _CORRECTIONS[reason].format(detail=detail)
    return [
        *messages,
        {"role": "assistant", "content": bad_text or "(empty answer)"},
        {"role": "user", "content": correction},
    ]


class _RedactedRepr(str):
    """A URL that is the string given (equal, hashed, ``str()`` and sent as
    it is) but whose ``repr`` hides its credentials.

    ``LLMClient.get_params()`` gives ``base_url`` as one: a parent estimator's
    repr and HTML display (scikit-learn's parameter table shows ``repr`` of
    each of the parent's ``get_params(deep=True)`` values, ``client__base_url``
    among them) then show ``***``, whoever holds the client, while clone and
    set_params get the value itself. Copies and pickles are plain strings.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(redact_url(str(self)))

    def __reduce_ex__(self, protocol):
        return str, (str(self),)


class _RateLimiter:
    """Sliding one-minute window over requests and (estimated) tokens."""

    window_s = 60.0

    def __init__(self, rpm, tpm):
        self.rpm, self.tpm = rpm, tpm
        self.window: deque[tuple[float, int]] = deque()
        self.lock = threading.Lock()

    def acquire(self, tokens: int):
        while True:
            with self.lock:
                now = time.monotonic()
                while self.window and now - self.window[0][0] >= self.window_s:
                    self.window.popleft()
                used = sum(t for _, t in self.window)
                fits_rpm = self.rpm is None or len(self.window) < self.rpm
                fits_tpm = (
                    self.tpm is None or not self.window or used + tokens <= self.tpm
                )
                if fits_rpm and fits_tpm:
                    self.window.append((now, tokens))
                    return
                wait = self.window_s - (now - self.window[0][0]) + 1e-3
            time.sleep(wait)


class _Tally:
    """The counts of one call, added to from its worker threads."""

    def __init__(self):
        self.counts = dict.fromkeys(USAGE_KEYS, 0)
        self.unusable: dict[str, int] = {}
        self.last_error: str | None = None
        self.stopped = False  # set when the run is stopped: ask nothing more
        self.lock = threading.Lock()

    def add(self, **counts):
        with self.lock:
            for key, value in counts.items():
                self.counts[key] += value

    def add_unusable(self, reason: str):
        with self.lock:
            self.unusable[reason] = self.unusable.get(reason, 0) + 1

    def usage(self, cost) -> Usage:
        with self.lock:
            counts, unusable = dict(self.counts), dict(self.unusable)
        prompt, completion = counts["prompt_tokens"], counts["completion_tokens"]
        return Usage(**counts, unusable=unusable, cost=cost(prompt, completion))


class _UnusableRun:
    """Requests of one kind, while every answer to them has been unusable for
    one reason (see ``UNUSABLE_LIMIT``)."""

    def __init__(self, reason: str):
        self.reason = reason
        self.keys: set[str] = set()
        self.answers = self.prompt_tokens = self.completion_tokens = 0


class _Runtime:
    """Everything that is built lazily and left out of pickles."""

    def __init__(self, client: LLMClient):
        self.openai = import_optional("openai", "LLMClient")
        if client.client is not None:
            sdk = client.client
            # Retries are ours (see LLMClient._request); the SDK's would multiply
            # the attempts. with_options copies the client, sharing its pool.
            if hasattr(sdk, "with_options"):
                sdk = sdk.with_options(max_retries=0)
        else:
            base_url = client._resolved_base_url()
            key = os.environ.get(client.api_key_env) if client.api_key_env else None
            if not key:
                if _is_openai_host(base_url):
                    raise ValueError(
                        "LLMClient needs an API key for "
                        f"{redact_url(base_url) or 'api.openai.com'}: set the "
                        "environment variable named by api_key_env "
                        f"({client.api_key_env!r}). It is unset or empty."
                    )
                key = "not-needed"  # local servers ignore it, the SDK insists
            sdk = self.openai.OpenAI(
                api_key=key, base_url=base_url, timeout=client.timeout, max_retries=0
            )
        self.sdk = sdk
        folder = resolve_cache_dir(client.cache_dir)
        self.store = None if folder is None else SQLiteStore(folder / "llm.sqlite")
        self.limiter = (
            _RateLimiter(client.requests_per_minute, client.tokens_per_minute)
            if client.requests_per_minute or client.tokens_per_minute
            else None
        )
        self.lock = threading.Lock()
        # What this run has learnt about the endpoint, and said once.
        self.no_response_format: str | None = None  # the server's refusal
        self.same_errors: dict[tuple[int, str], int] = {}
        self.warned: set[str] = set()
        # Per kind of request (its sampling); None once the stop is off.
        self.unusable_runs: dict[str, _UnusableRun | None] = {}

    def count_client_error(self, status: int, message: str) -> int:
        with self.lock:
            key = (status, message)
            self.same_errors[key] = self.same_errors.get(key, 0) + 1
            return self.same_errors[key]

    def answered(self):
        if self.same_errors:
            with self.lock:
                self.same_errors.clear()

    def count_unusable(self, kind: str, key: str, reason: str, tokens) -> tuple:
        """Count an unusable answer to request ``key``; the distinct requests,
        answers and tokens of the run so far, or None once the stop is off."""
        with self.lock:
            if kind in self.unusable_runs and self.unusable_runs[kind] is None:
                return None
            run = self.unusable_runs.get(kind) or _UnusableRun(reason)
            if run.reason != reason:
                self.unusable_runs[kind] = None  # no single setting to blame
                return None
            self.unusable_runs[kind] = run
            run.keys.add(key)
            run.answers += 1
            run.prompt_tokens += tokens[0]
            run.completion_tokens += tokens[1]
            return len(run.keys), run.answers, run.prompt_tokens, run.completion_tokens

    def disarm(self, kind: str):
        """A usable answer of this kind: the settings work, never stop for it."""
        if self.unusable_runs.get(kind, False) is not None:
            with self.lock:
                self.unusable_runs[kind] = None

    def first_time(self, note: str) -> bool:
        with self.lock:
            new = note not in self.warned
            self.warned.add(note)
            return new


def _is_openai_host(base_url: str | None) -> bool:
    if not base_url:
        return True
    host = (urlparse(base_url).hostname or "").lower()
    return host == "openai.com" or host.endswith(".openai.com")


def _as_messages(item) -> list[dict]:
    if isinstance(item, str):
        return [{"role": "user", "content": item}]
    return list(item)


def _has_chat_create(client) -> bool:
    completions = getattr(getattr(client, "chat", None), "completions", None)
    return callable(getattr(completions, "create", None))


_CALL_CONSTRAINTS = {
    "messages_list": ["array-like"],
    "desc": [str, None],
    "max_attempts": [Interval(Integral, 1, None, closed="left")],
}


class LLMClient:
    """Configuration of an OpenAI-compatible chat endpoint, and a fast runner.

    A configuration object, not an estimator: it has no ``fit`` and learns
    nothing. It supports ``get_params``, ``set_params``, :func:`~sklearn.base.clone`
    and pickling so that estimators can hold it as a parameter (and
    ``GridSearchCV`` can clone them).

    Works with OpenAI and with any OpenAI-compatible server (vLLM, llama.cpp
    server, Ollama). Requests run on ``n_concurrent`` threads, are retried with
    exponential backoff and jitter on 429, 5xx, timeouts and connection errors
    (honouring ``Retry-After``), and answers are cached durably in SQLite,
    keyed on the endpoint, the model, the messages and the sampling parameters
    (``extra_body`` included).

    Answers are checked, never trusted: one cut off by the token limit
    (``finish_reason="length"``), still inside an unclosed ``<think>`` block,
    empty (a server with a reasoning parser sends the thinking as
    ``reasoning_content`` and no content), or a refusal (``message.refusal``
    or a text such as "I'm sorry, but I can't...") is neither cached nor used.
    It is asked again with the bad answer and a correction appended (so the
    request changes), and the call warns how many answers were unusable, why,
    and which setting fixes it; ``Completions.unusable`` counts them by
    reason. The same client error (HTTP 4xx, e.g. a rejected ``max_tokens``
    or ``temperature``) ``SAME_ERROR_LIMIT`` times in a row stops the run with
    :class:`LLMRequestError`, which carries the server's message and the fix.
    When the first ``UNUSABLE_LIMIT`` (20) distinct requests of one kind got
    only answers unusable for one reason (every answer cut off: a thinking
    model with too small a ``max_tokens``), the run stops with
    :class:`LLMUnusableAnswersError`, which names the reason, the answers and
    tokens spent and the fix, instead of asking every request again; one
    usable answer of that kind turns this stop off for the client's lifetime
    (until ``set_params``), so occasional bad answers never stop a run.

    Parameters
    ----------
    model : str, default="gpt-4o-mini"
        Model name sent to the endpoint.
    base_url : str or None, default=None
        Endpoint, e.g. ``"http://localhost:8000/v1"``. None reads
        ``$OPENAI_BASE_URL``, else OpenAI's API. Credentials written in it
        (``https://user:secret@host/v1``, ``?api-key=...``) are replaced by
        ``***`` in the repr, the cache key and pickles, and in the repr and
        HTML display of any estimator that holds the client (``get_params()``
        gives the string as given, whose ``repr`` is redacted). Prefer the
        environment variable named by ``api_key_env``, or pass ``client``.
    api_key_env : str, default="OPENAI_API_KEY"
        Name of the environment variable holding the key. A key is only
        required for OpenAI's own API.
    temperature : float or None, default=0.0
        Sampling temperature; None omits it (some reasoning models reject it).
    max_tokens : int or None, default=512
        Maximum output tokens per answer; None omits it. Thinking models spend
        these on their reasoning first.
    extra_body : dict or None, default=None
        Extra fields merged into the body of every request (a call's own
        ``extra_body`` wins key by key) and into the cache key, e.g.
        ``{"chat_template_kwargs": {"enable_thinking": False}}`` (thinking off
        on vLLM and llama.cpp server), ``{"reasoning_effort": "none"}``
        (thinking off on Ollama) or ``{"max_completion_tokens": 4096}``
        (OpenAI's reasoning models, with ``max_tokens=None``). See the "LLM
        servers" page of the documentation.
    n_concurrent : int, default=16
        Requests in flight at once.
    timeout : float, default=60
        Seconds before one request times out (and is retried).
    max_retries : int, default=6
        Retries per request on transient errors before it counts as failed.
    requests_per_minute, tokens_per_minute : int or None, default=None
        Client-side rate limits (tokens estimated as characters / 4 plus
        ``max_tokens``).
    cache_dir : str, path, None or False, default=None
        Folder of the answer cache ``llm.sqlite``. None uses
        ``$SKLEARN_HYPOTHESAES_CACHE_DIR`` or the user cache folder; False
        disables caching.
    prices : dict or None, default=None
        ``{model: (usd_per_1M_prompt_tokens, usd_per_1M_completion_tokens)}``
        used to report ``cost``.
    verbose : bool, default=False
        Show a progress bar.
    client : openai.OpenAI or None, default=None
        A client you built (or any object with ``.chat.completions.create``),
        used instead of one built from ``base_url``, ``api_key_env`` and
        ``timeout``, which are then ignored. Its own retries are turned off
        (``with_options(max_retries=0)``) in favour of ``max_retries``. The
        cache key's endpoint is its ``base_url``. ``clone`` shares it; it is
        never pickled: after unpickling, pass it again with
        ``set_params(client=...)``.

    See Also
    --------
    annotate_texts : Ask whether texts satisfy concepts.
    interpret_latents : Describe sparse-autoencoder latents with an LLM.

    Examples
    --------
    >>> from sklearn_hypothesaes import LLMClient
    >>> client = LLMClient(model="gpt-4o-mini", n_concurrent=8, cache_dir=False)
    >>> client.get_params()["n_concurrent"]
    8
    >>> LLMClient(base_url="https://me:hunter2@llm.example.com/v1")
    LLMClient(base_url='https://me:***@llm.example.com/v1')

    Request fields that are not parameters go in ``extra_body``, which is part
    of the cache key (answers with thinking on and off are kept apart):

    >>> no_thinking = LLMClient(
    ...     extra_body={"chat_template_kwargs": {"enable_thinking": False}},
    ...     cache_dir=False,
    ... )
    >>> no_thinking.cache_key("hi") == client.cache_key("hi")
    False

    Each call returns a list of answers with the usage of that call:

    >>> answers = client.complete(["Say yes."])  # doctest: +SKIP
    >>> answers.usage.calls, answers.usage.cost  # doctest: +SKIP
    (1, None)
    """

    _parameter_constraints: dict = {
        "model": [str],
        "base_url": [str, None],
        "api_key_env": [str, None],
        "temperature": [Interval(Real, 0, None, closed="left"), None],
        "max_tokens": [Interval(Integral, 1, None, closed="left"), None],
        "extra_body": [dict, None],
        "n_concurrent": [Interval(Integral, 1, None, closed="left")],
        "timeout": [Interval(Real, 0, None, closed="neither")],
        "max_retries": [Interval(Integral, 0, None, closed="left")],
        "requests_per_minute": [Interval(Integral, 1, None, closed="left"), None],
        "tokens_per_minute": [Interval(Integral, 1, None, closed="left"), None],
        "cache_dir": [str, os.PathLike, None, "boolean"],
        "prices": [dict, None],
        "verbose": ["boolean"],
        "client": "no_validation",  # duck-typed, checked in _runtime
    }

    def __init__(
        self,
        model="gpt-4o-mini",
        base_url=None,
        api_key_env="OPENAI_API_KEY",
        temperature=0.0,
        max_tokens=512,
        extra_body=None,
        n_concurrent=16,
        timeout=60,
        max_retries=6,
        requests_per_minute=None,
        tokens_per_minute=None,
        cache_dir=None,
        prices=None,
        verbose=False,
        client=None,
    ):
        self.model = model
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.extra_body = extra_body
        self.n_concurrent = n_concurrent
        self.timeout = timeout
        self.max_retries = max_retries
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self.cache_dir = cache_dir
        self.prices = prices
        self.verbose = verbose
        self.client = client

    # The parameter protocol (what clone, GridSearchCV and repr use) ----------
    # Not a BaseEstimator: sklearn's pretty printer reads a nested estimator's
    # parameters directly, which would print a base_url's credentials inside
    # every parent's repr; a plain object is printed through __repr__ below.
    # A parent's HTML display lists its get_params(deep=True), ours included,
    # by repr: base_url comes as a string whose repr is redacted.
    @classmethod
    def _get_param_names(cls) -> list[str]:
        params = inspect.signature(cls.__init__).parameters
        return [name for name in params if name != "self"]

    def get_params(self, deep=True) -> dict:
        """The constructor parameters (``deep`` is accepted for sklearn).

        ``base_url`` is the string given, whose ``repr`` has its credentials
        replaced by ``***`` (so that no parent's repr or HTML display shows
        them).
        """
        params = {name: getattr(self, name) for name in self._get_param_names()}
        url = params["base_url"]
        if isinstance(url, str) and redact_url(url) != url:
            params["base_url"] = _RedactedRepr(url)
        return params

    def set_params(self, **params):
        """Set constructor parameters; the SDK client and cache are rebuilt."""
        valid = self._get_param_names()
        for name in params:
            if name not in valid:
                raise ValueError(
                    f"Invalid parameter {name!r} for LLMClient. Valid parameters "
                    f"are: {valid!r}."
                )
        # The SDK client, cache and limits were built from the old values.
        self.__dict__.pop("_rt", None)
        if "client" in params:
            self.__dict__.pop(_CLIENT_DROPPED, None)
        for name, value in params.items():
            if isinstance(value, _RedactedRepr):
                value = str(value)
            setattr(self, name, value)
        return self

    def __sklearn_clone__(self):
        # The SDK client is shared, never deep-copied (that fails on its locks
        # and connection pool); everything else is copied as clone would.
        params = {
            name: value if name == "client" else copy.deepcopy(value)
            for name, value in self.get_params().items()
        }
        twin = type(self)(**params)
        for marker in (_CLIENT_DROPPED, _REDACTED_URL):
            if marker in self.__dict__:
                twin.__dict__[marker] = self.__dict__[marker]
        return twin

    def __deepcopy__(self, memo):
        twin = object.__new__(type(self))
        memo[id(self)] = twin
        for name, value in self.__dict__.items():
            if name == "_rt":
                continue
            twin.__dict__[name] = (
                value if name == "client" else copy.deepcopy(value, memo)
            )
        return twin

    def __sklearn_tags__(self) -> Tags:
        return Tags(
            estimator_type=None,
            target_tags=TargetTags(required=False),
            requires_fit=False,
        )

    def __repr__(self) -> str:
        defaults = inspect.signature(type(self).__init__).parameters
        shown = []
        for name, value in self.get_params().items():
            if name == "base_url" and isinstance(value, str):
                value = redact_url(value)
            if repr(value) != repr(defaults[name].default):
                shown.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"

    def _validate_params(self):
        validate_parameter_constraints(
            self._parameter_constraints,
            self.get_params(deep=False),
            caller_name=type(self).__name__,
        )
        if self.cache_dir is True:
            raise ValueError(
                "The 'cache_dir' parameter of LLMClient must be a path, None or "
                "False. Got True instead."
            )
        if self.client is not None and not _has_chat_create(self.client):
            raise ValueError(
                "The 'client' parameter of LLMClient must be an openai.OpenAI "
                "client (or an object with .chat.completions.create) or None. "
                f"Got {type(self.client).__name__} instead."
            )

    # Pickling: configuration and totals only, never a secret ------------------
    def __getstate__(self):
        state = {k: v for k, v in self.__dict__.items() if k != "_rt"}
        if state.get("client") is not None:
            state["client"] = None
            state[_CLIENT_DROPPED] = True
        if isinstance(self.base_url, str):
            redacted = redact_url(self.base_url)
            if redacted != self.base_url:
                state["base_url"] = state[_REDACTED_URL] = redacted
        return state

    def _check_restorable(self):
        if self.client is not None:
            return
        if self.__dict__.get(_CLIENT_DROPPED):
            raise ValueError(
                "This LLMClient was unpickled without its 'client' parameter: an "
                "SDK client is never pickled. Pass it again with "
                "set_params(client=...)."
            )
        if self.base_url is not None and self.base_url == self.__dict__.get(
            _REDACTED_URL
        ):
            raise ValueError(
                f"The 'base_url' parameter of LLMClient is {self.base_url!r}: its "
                "credentials were replaced by *** when it was pickled. Pass it "
                "again with set_params(base_url=...), or give a base_url without "
                "credentials and put the key in the environment variable named by "
                f"api_key_env ({self.api_key_env!r})."
            )

    def _resolved_base_url(self) -> str | None:
        url = self.base_url or os.environ.get("OPENAI_BASE_URL") or None
        return None if url is None else str(url)

    def _runtime(self) -> _Runtime:
        rt = self.__dict__.get("_rt")
        if rt is None:
            with _RUNTIME_LOCK:
                rt = self.__dict__.get("_rt")
                if rt is None:
                    self._validate_params()
                    self._check_restorable()
                    rt = self._rt = _Runtime(self)
        return rt

    # Accounting ---------------------------------------------------------------
    def _cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        price = (self.prices or {}).get(self.model)
        if price is None:
            return None
        return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1e6

    def usage(self) -> dict:
        """The running totals over every call, as a dict.

        Zeros before the first request. The usage of one call is the
        ``.usage`` of the :class:`Completions` it returned; prefer that where
        calls may run concurrently.
        """
        total = self.__dict__.get("_usage_total")
        return (total or Usage(cost=self._cost(0, 0))).as_dict()

    def reset_usage(self):
        """Set the running totals back to zero."""
        self._usage_total = Usage(cost=self._cost(0, 0))
        return self

    # Requests -----------------------------------------------------------------
    def _sampling(self, sampling: dict) -> dict:
        merged = {"temperature": self.temperature, "max_tokens": self.max_tokens}
        merged.update(sampling)
        extra = {**(self.extra_body or {}), **(merged.get("extra_body") or {})}
        merged["extra_body"] = extra or None
        return {k: v for k, v in merged.items() if v is not None}

    def _endpoint(self) -> str:
        """Where requests go, without credentials (part of the cache key)."""
        if self.client is not None:
            url = getattr(self.client, "base_url", None)
            if url is None:
                kind = type(self.client)
                return f"{kind.__module__}.{kind.__qualname__}"
            url = str(url)
        else:
            url = self._resolved_base_url() or _OPENAI_URL
        return redact_url(url.rstrip("/"))

    def _key(self, endpoint: str, messages: list[dict], sampling: dict) -> str:
        return stable_hash(
            {
                "endpoint": endpoint,
                "model": self.model,
                "messages": messages,
                "sampling": sampling,
            }
        )

    def cache_key(self, messages, **sampling) -> str:
        """The cache key of one request: endpoint, model, messages and sampling.

        Sampling is the client's ``temperature``, ``max_tokens`` and
        ``extra_body`` updated with ``sampling``, as in a request.

        The endpoint is the resolved ``base_url`` (or the ``client``'s) with
        its credentials redacted, so changing a password keeps the cache.
        """
        return self._key(
            self._endpoint(), _as_messages(messages), self._sampling(sampling)
        )

    # Our retry loop is kept over the SDK's (turned off with max_retries=0):
    # openai 3.57 reports retries only on raw responses of requests that
    # succeeded (nothing on the final exception, so usage.retries would be
    # wrong), gives up at once on a Retry-After above 120 s, sends concurrent
    # workers back together after a Retry-After (no jitter on it), and a
    # user-built client would bring its own max_retries. See utils/_retry.py.
    def _request(
        self, messages: list[dict], sampling: dict, tally: _Tally
    ) -> dict | None:
        """One response, retried on transient errors; None after max_retries.

        Returns ``{"record": ..., "problem": ..., "raw": ...}``: the record to
        cache (``text`` with thinking stripped, ``top_logprobs``), why it is
        unusable (None if it is not) and the text the server sent.
        """
        rt = self._runtime()
        errors = rt.openai
        if rt.limiter is not None:
            chars = sum(len(str(m.get("content", ""))) for m in messages)
            rt.limiter.acquire(chars // 4 + (sampling.get("max_tokens") or 0))
        attempt = 0
        while True:
            if rt.no_response_format is not None:
                sampling = {k: v for k, v in sampling.items() if k != "response_format"}
            try:
                resp = rt.sdk.chat.completions.create(
                    model=self.model, messages=messages, **sampling
                )
            except (errors.APITimeoutError, errors.APIConnectionError) as exc:
                wait = None
                error = exc
            except errors.APIStatusError as exc:
                if not is_retryable(exc, errors):
                    if exc.status_code in (401, 403, 404):
                        raise  # configuration errors: every request would fail
                    if "response_format" in sampling and _mentions_response_format(exc):
                        # Structured output is not supported: parse free text
                        # for the rest of the run (the caller's parser is
                        # tolerant); this is no failure of the request.
                        with rt.lock:
                            if rt.no_response_format is None:
                                rt.no_response_format = _server_message(exc)
                        continue
                    stop = self._client_error(rt, tally, exc)
                    if stop is None:
                        return None
                    # Raised outside the handler, so that it carries no
                    # chained openai error: those cannot be unpickled, and
                    # Dask (tblib) pickles an exception with its causes.
                    break
                wait = retry_after(exc)
                error = exc
            else:
                rt.answered()
                return self._record(resp, tally)
            if attempt == self.max_retries:
                tally.last_error = f"{type(error).__name__}: {error}"
                tally.add(failures=1)
                return None
            tally.add(retries=1)
            time.sleep(backoff_delay(attempt, wait))
            attempt += 1
        raise stop

    def _client_error(self, rt: _Runtime, tally: _Tally, exc):
        """Count a rejected request; the error that stops the run when it keeps
        happening, else None."""
        message = _server_message(exc)
        tally.last_error = f"HTTP {exc.status_code}: {message}"
        tally.add(failures=1)
        count = rt.count_client_error(exc.status_code, message)
        if count >= SAME_ERROR_LIMIT:
            tally.stopped = True
            return LLMRequestError(
                exc.status_code, message, _client_error_fix(message), count
            )
        return None

    def _record(self, resp, tally: _Tally) -> dict:
        usage = getattr(resp, "usage", None)
        spent = (
            getattr(usage, "prompt_tokens", 0) or 0,
            getattr(usage, "completion_tokens", 0) or 0,
        )
        tally.add(calls=1, prompt_tokens=spent[0], completion_tokens=spent[1])
        choice = resp.choices[0] if resp.choices else None
        message = getattr(choice, "message", None)
        content = getattr(message, "content", None)
        record = {"text": strip_thinking(content)}
        logprobs = getattr(choice, "logprobs", None)
        tokens = getattr(logprobs, "content", None)
        if tokens:
            first = tokens[0]
            tops = first.top_logprobs or [first]
            record["top_logprobs"] = [[t.token, t.logprob] for t in tops]
        refusal = getattr(message, "refusal", None)
        # Servers with a reasoning parser (vLLM, llama.cpp, Ollama) send the
        # thinking apart from the content, under one of these names.
        reasoning = getattr(message, "reasoning_content", None) or getattr(
            message, "reasoning", None
        )
        cut_off = getattr(choice, "finish_reason", None) == "length"
        if refusal:
            problem, content = "refusal", refusal
        else:
            problem = answer_problem(content)
        if problem == "empty" and reasoning and cut_off:
            problem = "unclosed thinking"
        elif problem is None and cut_off:
            problem = "cut off"  # the caller may accept it (see _answer)
        return {"record": record, "problem": problem, "raw": content, "tokens": spent}

    def _unusable_stop(self, rt, tally, kind, key, got, reason, sampling, first_token):
        """Count an unusable answer; the error that stops the run when the
        first requests of this kind all got nothing else (see
        ``UNUSABLE_LIMIT``), else None."""
        if reason == "unparseable":
            # The model did answer: a parser's complaint, not a setting.
            rt.disarm(kind)
            return None
        run = rt.count_unusable(kind, key, reason, got["tokens"])
        if run is None or run[0] < UNUSABLE_LIMIT:
            return None
        with tally.lock:
            if tally.stopped:
                return None  # another thread is stopping the run already
            tally.stopped = True
        fix = _unusable_fix(reason, sampling, first_token)
        return LLMUnusableAnswersError(reason, *run, fix, rt.store is not None)

    def _run(
        self, messages_list, sampling, accept, desc, max_attempts, first_token=False
    ):
        """Answers aligned with ``messages_list`` (None where missing).

        ``accept(record, tally)`` (one callable, or one per request) returns the
        value to give back or raises; a cached record that it rejects is asked
        again. ``first_token``: only the first token is read (P(yes)), so an
        answer cut off by ``max_tokens`` is not a problem.
        """
        rt = self._runtime()
        tally = _Tally()
        sampling = self._sampling(sampling)
        try:
            values, keys = self._answer(
                rt,
                tally,
                messages_list,
                sampling,
                accept,
                desc,
                max_attempts,
                first_token,
            )
        finally:
            usage = tally.usage(self._cost)
            with rt.lock:
                total = self.__dict__.get("_usage_total")
                self._usage_total = usage if total is None else total + usage
        missing = sum(k not in values for k in keys)
        report = self._report(
            rt, tally, usage, sampling, missing, len(keys), first_token
        )
        if report:
            warn_user(report, RuntimeWarning)
        return Completions([values.get(k) for k in keys], usage=usage)

    def _report(self, rt, tally, usage, sampling, missing, n_requests, first_token):
        """One warning for a call: what went wrong, how often, and the fixes."""
        parts, fixes = [], []
        if usage.unusable:
            counts = sorted(usage.unusable.items(), key=lambda kv: (-kv[1], kv[0]))
            listing = ", ".join(f"{n} {reason}" for reason, n in counts)
            parts.append(
                f"unusable LLM answers: {sum(usage.unusable.values())} "
                f"({listing}), neither cached nor used"
            )
            fixes = [
                f"{reason}: {_unusable_fix(reason, sampling, first_token)}"
                for reason, _ in counts
            ]
        if missing:
            parts.append(
                f"{missing} of {n_requests} LLM requests got no usable answer "
                f"(reported as None); last error: {tally.last_error}"
            )
        if usage.yes_no_from_text and rt.first_time("yes_no_from_text"):
            parts.append(
                f"{usage.yes_no_from_text} P(yes) values are 0.0 or 1.0, read "
                "from the answer text, because the endpoint returned no logprobs "
                "for 'yes' or 'no' (a server that ignores 'logprobs'; "
                "usage.yes_no_from_text counts them; said once per run)"
            )
        if rt.no_response_format is not None and rt.first_time("response_format"):
            parts.append(
                "The endpoint rejected structured output (response_format): "
                f"{rt.no_response_format!r}; answers are parsed from free text for "
                "the rest of this run"
            )
        if not parts:
            return None
        text = "; ".join(parts) + "."
        text = text[0].upper() + text[1:]
        if fixes:
            text += " To fix: " + "; ".join(fixes) + "."
        return text

    def _answer(
        self,
        rt,
        tally,
        messages_list,
        sampling,
        accept,
        desc,
        max_attempts,
        first_token,
    ):
        messages_list = [_as_messages(m) for m in messages_list]
        endpoint = self._endpoint()
        keys = [self._key(endpoint, m, sampling) for m in messages_list]
        unique = dict(zip(keys, messages_list, strict=True))
        if callable(accept):
            accepts = dict.fromkeys(keys, accept)
        else:
            accepts = dict(zip(keys, accept, strict=True))
        values: dict[str, object] = {}
        cached = rt.store.get_json(unique) if rt.store is not None else {}
        for key, record in cached.items():
            # Older versions cached some unusable answers ("<think>...").
            if answer_problem(record.get("text")) is not None:
                continue
            try:
                values[key] = accepts[key](record, tally)
            except Exception:
                continue
        tally.add(cache_hits=sum(k in values for k in keys))
        # Requests of one kind share the stop for unusable answers.
        kind = stable_hash({"sampling": sampling, "first_token": first_token})
        if values:
            rt.disarm(kind)
        todo = [k for k in unique if k not in values]

        def work(key):
            messages = unique[key]
            for attempt in range(max_attempts):
                if tally.stopped:
                    return None
                got = self._request(messages, sampling, tally)
                if got is None:
                    return None
                problem = got["problem"]
                if problem == "cut off" and first_token:
                    problem = None
                detail = problem
                if problem is None:
                    try:
                        value = accepts[key](got["record"], tally)
                    except Exception as exc:
                        problem, detail = "unparseable", str(exc)
                if problem is None:
                    if rt.store is not None:
                        rt.store.put_json({key: got["record"]})
                    rt.disarm(kind)
                    return value
                tally.add_unusable(problem)
                stop = self._unusable_stop(
                    rt, tally, kind, key, got, problem, sampling, first_token
                )
                if stop is not None:
                    tally.add(failures=1)
                    raise stop  # no exception is being handled: no chained cause
                if attempt + 1 < max_attempts:
                    tally.add(reasks=1)
                    messages = _reask_messages(messages, got["raw"], problem, detail)
                else:
                    tally.last_error = (
                        f"unusable answer {_preview(got['raw'])} ({detail})"
                    )
            tally.add(failures=1)
            return None

        if todo:
            tqdm = import_optional("tqdm.auto", "Progress bars").tqdm
            bar = tqdm(total=len(todo), desc=desc or "LLM", disable=not self.verbose)
            pool = ThreadPoolExecutor(max_workers=min(self.n_concurrent, len(todo)))
            try:
                futures = {pool.submit(work, key): key for key in todo}
                for future in as_completed(futures):
                    value = future.result()
                    if value is not None:
                        values[futures[future]] = value
                    bar.update()
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
                bar.close()
        return values, keys

    @validate_params(
        {k: _CALL_CONSTRAINTS[k] for k in ("messages_list", "desc")},
        prefer_skip_nested_validation=True,
    )
    def complete(self, messages_list, *, desc=None, **sampling) -> Completions:
        """Answer many chat requests; thinking blocks are stripped.

        An unusable answer (cut off, unclosed thinking, empty, refused) is asked
        again, as in :meth:`complete_parsed`.

        Parameters
        ----------
        messages_list : list of (list of dict or str)
            Each item is a chat ``messages`` list, or a string sent as one user
            message.
        desc : str, default=None
            Label of the progress bar.
        **sampling
            Extra request parameters (``temperature``, ``max_tokens``, ``seed``,
            ``response_format``, ``extra_body``, ...); None drops a default.
            ``extra_body`` is merged into the client's own.

        Returns
        -------
        Completions
            A list of answers (str, or None where a request failed) in input
            order; its ``usage`` counts this call's requests and its
            ``unusable`` the answers that could not be used, by reason.
        """
        return self.complete_parsed(messages_list, None, desc=desc, **sampling)

    @validate_params(
        {
            **_CALL_CONSTRAINTS,
            "parse": [callable, list, tuple, None],
            "json_schema": [dict, None],
        },
        prefer_skip_nested_validation=True,
    )
    def complete_parsed(
        self,
        messages_list,
        parse,
        *,
        desc=None,
        max_attempts=3,
        json_schema=None,
        **sampling,
    ) -> Completions:
        """Answer many requests and parse each answer.

        An unusable answer (cut off, unclosed thinking, empty, refused: see
        :func:`~sklearn_hypothesaes.llm.answer_problem`) or one for which
        ``parse(text)`` raises is asked again, with the bad answer and a
        correction appended to the messages, up to ``max_attempts`` requests
        in all, then reported as None. Only usable, parseable answers are
        cached (under the key of the original request).

        Parameters
        ----------
        messages_list : list of (list of dict or str)
            As in :meth:`complete`.
        parse : callable, list of callables or None
            ``parse(text) -> value``, one for all requests or one per request;
            None returns the text. ``text`` has its thinking blocks stripped.
        desc : str, default=None
            Label of the progress bar.
        max_attempts : int, default=3
            Requests per item, counting the first, before it is missing.
        json_schema : dict or None, default=None
            JSON Schema of the answer, sent as structured output:
            ``response_format={"type": "json_schema", "json_schema": {"name":
            "answer", "schema": json_schema, "strict": True}}`` (OpenAI's strict
            mode needs ``"additionalProperties": false`` and every property
            required). Where the endpoint answers HTTP 400 naming
            ``response_format``, the request is sent again without it, and so
            is every later request of this client (one warning): ``parse``
            must therefore also read free text. The schema is part of the cache
            key.
        **sampling
            As in :meth:`complete`.

        Returns
        -------
        Completions
            ``parse(text)`` per request in input order, or None where missing;
            its ``usage`` counts this call's requests and its ``unusable`` the
            answers that could not be used, by reason.

        Raises
        ------
        LLMRequestError
            When the endpoint rejected ``SAME_ERROR_LIMIT`` requests in a row
            with the same client error (HTTP 4xx).
        LLMUnusableAnswersError
            When the first ``UNUSABLE_LIMIT`` distinct requests of this kind
            got only answers unusable for one reason (see
            :class:`LLMUnusableAnswersError`).
        """
        if not (parse is None or callable(parse)) and len(parse) != len(messages_list):
            raise ValueError(
                "The 'parse' parameter of LLMClient.complete_parsed must be one "
                "callable or a list with one per request "
                f"({len(messages_list)}). Got a list of {len(parse)} instead."
            )
        if json_schema is not None:
            sampling["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": "answer",
                    "schema": json_schema,
                    "strict": True,
                },
            }

        def accepter(fn):
            def accept(record, tally):
                text = record.get("text")
                return text if fn is None else fn(text)

            return accept

        if parse is None or callable(parse):
            accept = accepter(parse)
        else:
            accept = [accepter(fn) for fn in parse]
        return self._run(messages_list, sampling, accept, desc, max_attempts)

    @validate_params(_CALL_CONSTRAINTS, prefer_skip_nested_validation=True)
    def yes_probabilities(
        self, messages_list, *, desc=None, max_attempts=3, **sampling
    ) -> Completions:
        """P(yes) for yes/no questions, read from the first output token.

        Asks for ``logprobs`` (top 10 alternatives of one token) and returns
        P(yes) = p(yes) / (p(yes) + p(no)). Where the endpoint returns no
        logprobs (some ignore the parameter), or none for "yes" or "no", the
        answer text is parsed instead and the value is 1.0 or 0.0: such values
        are counted in ``usage.yes_no_from_text`` and the first call that meets
        them warns. A first token that opens a thinking block is unusable
        (thinking must be off: see ``extra_body``).

        Parameters
        ----------
        messages_list : list of (list of dict or str)
            As in :meth:`complete`.
        desc : str, default=None
            Label of the progress bar.
        max_attempts : int, default=3
            Requests per item, counting the first, before it is missing.
        **sampling
            As in :meth:`complete`.

        Returns
        -------
        Completions
            P(yes) (float, or None where missing) per request in input order;
            its ``usage`` counts this call's requests.

        Raises
        ------
        LLMRequestError
            When the endpoint rejected ``SAME_ERROR_LIMIT`` requests in a row
            with the same client error (HTTP 4xx).
        LLMUnusableAnswersError
            When the first ``UNUSABLE_LIMIT`` distinct requests of this kind
            got only answers unusable for one reason (see
            :class:`LLMUnusableAnswersError`).
        """
        sampling = {"logprobs": True, "top_logprobs": 10, "max_tokens": 1, **sampling}

        def accept(record, tally):
            p_yes = p_no = 0.0
            for token, logprob in record.get("top_logprobs") or []:
                word = token.strip().strip(".,:;!").lower()
                if word in ("yes", "y"):
                    p_yes += math.exp(logprob)
                elif word in ("no", "n"):
                    p_no += math.exp(logprob)
            if p_yes + p_no > 0:
                return p_yes / (p_yes + p_no)
            value = float(parse_yes_no(record.get("text")))
            tally.add(yes_no_from_text=1)
            return value

        return self._run(
            messages_list, sampling, accept, desc, max_attempts, first_token=True
        )
