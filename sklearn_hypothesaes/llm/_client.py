"""An OpenAI-compatible chat client: bounded concurrency, retries, a durable cache.

:class:`LLMClient` is a plain configuration object (cloneable, picklable). The
``openai`` SDK client, the SQLite cache and the locks are built on first use
and never pickled. Every answer is written to the cache as it arrives, so a
run that is killed resumes where it stopped and pays for nothing twice.
"""

from __future__ import annotations

import functools
import importlib.resources
import math
import os
import re
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor, as_completed
from numbers import Integral, Real
from urllib.parse import urlparse

from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval

from ..utils._misc import import_optional, resolve_cache_dir, stable_hash, warn_user
from ..utils._retry import backoff_delay, is_retryable, retry_after
from ..utils._store import SQLiteStore

_THINK_BLOCK = re.compile(r"<think(?:ing)?>.*?</think(?:ing)?>", re.DOTALL | re.I)
_THINK_END = re.compile(r"</think(?:ing)?>", re.I)
_RUNTIME_LOCK = threading.Lock()
_USAGE_KEYS = (
    "calls",
    "cache_hits",
    "prompt_tokens",
    "completion_tokens",
    "retries",
    "reasks",
    "failures",
)


def strip_thinking(text: str | None) -> str | None:
    """Drop reasoning blocks (``<think>...</think>``) from a model's answer.

    Some servers strip the opening tag, so text up to a lone closing tag goes
    too.
    """
    if text is None:
        return None
    text = _THINK_BLOCK.sub("", text)
    parts = _THINK_END.split(text)
    return parts[-1].strip()


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


class _Runtime:
    """Everything that is built lazily and left out of pickles."""

    def __init__(self, client: LLMClient):
        openai = import_optional("openai", "LLMClient")
        base_url = client._resolved_base_url()
        key = os.environ.get(client.api_key_env) if client.api_key_env else None
        if not key:
            if _is_openai_host(base_url):
                raise ValueError(
                    f"LLMClient needs an API key for {base_url or 'api.openai.com'}: "
                    f"set the environment variable named by api_key_env "
                    f"({client.api_key_env!r}). It is unset or empty."
                )
            key = "not-needed"  # local servers ignore it, the SDK insists on one
        self.openai = openai
        # Retries are ours (backoff with jitter, Retry-After, accounting).
        self.sdk = openai.OpenAI(
            api_key=key, base_url=base_url, timeout=client.timeout, max_retries=0
        )
        folder = resolve_cache_dir(client.cache_dir)
        self.store = None if folder is None else SQLiteStore(folder / "llm.sqlite")
        self.limiter = (
            _RateLimiter(client.requests_per_minute, client.tokens_per_minute)
            if client.requests_per_minute or client.tokens_per_minute
            else None
        )
        self.lock = threading.Lock()
        self.last_error: str | None = None


def _is_openai_host(base_url: str | None) -> bool:
    if not base_url:
        return True
    host = (urlparse(base_url).hostname or "").lower()
    return host == "openai.com" or host.endswith(".openai.com")


def _as_messages(item) -> list[dict]:
    if isinstance(item, str):
        return [{"role": "user", "content": item}]
    return list(item)


class LLMClient(BaseEstimator):
    """Configuration of an OpenAI-compatible chat endpoint, and a fast runner.

    Works with OpenAI and with any OpenAI-compatible server (vLLM, llama.cpp
    server, Ollama). Requests run on ``n_concurrent`` threads, are retried with
    exponential backoff and jitter on 429, 5xx, timeouts and connection errors
    (honouring ``Retry-After``), and answers are cached durably in SQLite.

    Parameters
    ----------
    model : str, default="gpt-4o-mini"
        Model name sent to the endpoint.
    base_url : str or None, default=None
        Endpoint, e.g. ``"http://localhost:8000/v1"``. None reads
        ``$OPENAI_BASE_URL``, else OpenAI's API.
    api_key_env : str, default="OPENAI_API_KEY"
        Name of the environment variable holding the key. A key is only
        required for OpenAI's own API.
    temperature : float or None, default=0.0
        Sampling temperature; None omits it (some reasoning models reject it).
    max_tokens : int or None, default=512
        Maximum output tokens per answer; None omits it.
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

    Attributes
    ----------
    usage_ : dict
        Running totals: calls, cache_hits, prompt_tokens, completion_tokens,
        retries, reasks, failures, cost. Also returned by :meth:`usage`.

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
    >>> client.usage()["calls"]
    0
    """

    _parameter_constraints: dict = {
        "model": [str],
        "base_url": [str, None],
        "api_key_env": [str, None],
        "temperature": [Interval(Real, 0, None, closed="left"), None],
        "max_tokens": [Interval(Integral, 1, None, closed="left"), None],
        "n_concurrent": [Interval(Integral, 1, None, closed="left")],
        "timeout": [Interval(Real, 0, None, closed="neither")],
        "max_retries": [Interval(Integral, 0, None, closed="left")],
        "requests_per_minute": [Interval(Integral, 1, None, closed="left"), None],
        "tokens_per_minute": [Interval(Integral, 1, None, closed="left"), None],
        "cache_dir": [str, os.PathLike, None, "boolean"],
        "prices": [dict, None],
        "verbose": ["boolean"],
    }

    def __init__(
        self,
        model="gpt-4o-mini",
        base_url=None,
        api_key_env="OPENAI_API_KEY",
        temperature=0.0,
        max_tokens=512,
        n_concurrent=16,
        timeout=60,
        max_retries=6,
        requests_per_minute=None,
        tokens_per_minute=None,
        cache_dir=None,
        prices=None,
        verbose=False,
    ):
        self.model = model
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.n_concurrent = n_concurrent
        self.timeout = timeout
        self.max_retries = max_retries
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self.cache_dir = cache_dir
        self.prices = prices
        self.verbose = verbose

    # Pickling: configuration and totals only --------------------------------
    def __getstate__(self):
        state = dict(super().__getstate__())  # a copy: never touch the live object
        state.pop("_rt", None)
        return state

    def set_params(self, **params):
        # The SDK client, cache and limits were built from the old values.
        self.__dict__.pop("_rt", None)
        return super().set_params(**params)

    def _resolved_base_url(self) -> str | None:
        return self.base_url or os.environ.get("OPENAI_BASE_URL") or None

    def _runtime(self) -> _Runtime:
        rt = self.__dict__.get("_rt")
        if rt is None:
            with _RUNTIME_LOCK:
                rt = self.__dict__.get("_rt")
                if rt is None:
                    self._validate_params()
                    if self.cache_dir is True:
                        raise ValueError(
                            "The 'cache_dir' parameter of LLMClient must be a path, "
                            "None or False. Got True instead."
                        )
                    rt = self._rt = _Runtime(self)
                    if not hasattr(self, "usage_"):
                        self.usage_ = self._zero_usage()
        return rt

    # Accounting ---------------------------------------------------------------
    def _zero_usage(self) -> dict:
        usage = dict.fromkeys(_USAGE_KEYS, 0)
        usage["cost"] = self._cost(0, 0)
        return usage

    def _cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        price = (self.prices or {}).get(self.model)
        if price is None:
            return None
        return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1e6

    def _add_usage(self, **counts):
        with self._runtime().lock:
            for key, value in counts.items():
                self.usage_[key] += value
            self.usage_["cost"] = self._cost(
                self.usage_["prompt_tokens"], self.usage_["completion_tokens"]
            )

    def usage(self) -> dict:
        """A copy of the running totals (zeros before the first request)."""
        usage = getattr(self, "usage_", None)
        return dict(usage) if usage is not None else self._zero_usage()

    def reset_usage(self):
        """Set the running totals back to zero."""
        self.usage_ = self._zero_usage()
        return self

    # Requests -----------------------------------------------------------------
    def _sampling(self, sampling: dict) -> dict:
        merged = {"temperature": self.temperature, "max_tokens": self.max_tokens}
        merged.update(sampling)
        return {k: v for k, v in merged.items() if v is not None}

    def cache_key(self, messages, **sampling) -> str:
        """The cache key of one request (model, full messages, sampling)."""
        return stable_hash(
            {
                "model": self.model,
                "messages": _as_messages(messages),
                "sampling": self._sampling(sampling),
            }
        )

    def _request(self, messages: list[dict], sampling: dict) -> dict | None:
        """One answer, retried on transient errors; None after max_retries."""
        rt = self._runtime()
        errors = rt.openai
        if rt.limiter is not None:
            chars = sum(len(str(m.get("content", ""))) for m in messages)
            rt.limiter.acquire(chars // 4 + (sampling.get("max_tokens") or 0))
        for attempt in range(self.max_retries + 1):
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
                    rt.last_error = f"HTTP {exc.status_code}: {exc.message}"
                    self._add_usage(failures=1)
                    return None
                wait = retry_after(exc)
                error = exc
            else:
                return self._record(resp)
            if attempt == self.max_retries:
                rt.last_error = f"{type(error).__name__}: {error}"
                self._add_usage(failures=1)
                return None
            self._add_usage(retries=1)
            time.sleep(backoff_delay(attempt, wait))
        return None  # pragma: no cover

    def _record(self, resp) -> dict:
        usage = getattr(resp, "usage", None)
        self._add_usage(
            calls=1,
            prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
        )
        choice = resp.choices[0] if resp.choices else None
        message = getattr(choice, "message", None)
        answer = {"text": strip_thinking(getattr(message, "content", None))}
        logprobs = getattr(choice, "logprobs", None)
        content = getattr(logprobs, "content", None)
        if content:
            first = content[0]
            tops = first.top_logprobs or [first]
            answer["top_logprobs"] = [[t.token, t.logprob] for t in tops]
        return answer

    def _run(self, messages_list, sampling, accept, desc, max_attempts) -> list:
        """Answer records aligned with ``messages_list`` (None where missing).

        ``accept(record)`` (one callable, or one per request) returns the value
        to give back or raises; a cached record that it rejects is asked again.
        """
        rt = self._runtime()
        rt.last_error = None
        messages_list = [_as_messages(m) for m in messages_list]
        sampling = self._sampling(sampling)
        keys = [
            stable_hash({"model": self.model, "messages": m, "sampling": sampling})
            for m in messages_list
        ]
        unique = dict(zip(keys, messages_list, strict=True))
        if callable(accept):
            accepts = dict.fromkeys(keys, accept)
        else:
            accepts = dict(zip(keys, accept, strict=True))
        values: dict[str, object] = {}
        cached = rt.store.get_json(unique) if rt.store is not None else {}
        for key, record in cached.items():
            try:
                values[key] = accepts[key](record)
            except Exception:
                continue
        self._add_usage(cache_hits=sum(k in values for k in keys))
        todo = [k for k in unique if k not in values]

        def work(key):
            for attempt in range(max_attempts):
                record = self._request(unique[key], sampling)
                if record is None:
                    return None
                try:
                    value = accepts[key](record)
                except Exception as exc:
                    if attempt + 1 < max_attempts:
                        self._add_usage(reasks=1)
                    else:
                        rt.last_error = (
                            f"unusable answer {record.get('text')!r} ({exc})"
                        )
                    continue
                if rt.store is not None:
                    rt.store.put_json({key: record})
                return value
            self._add_usage(failures=1)
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
        missing = sum(k not in values for k in keys)
        if missing:
            warn_user(
                f"{missing} of {len(keys)} LLM requests got no usable answer "
                f"(reported as None); last error: {rt.last_error}",
                RuntimeWarning,
            )
        return [values.get(k) for k in keys]

    def complete(self, messages_list, *, desc=None, **sampling) -> list:
        """Answer many chat requests; thinking blocks are stripped.

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

        Returns
        -------
        list of str or None
            Answers in input order; None where a request failed.
        """
        return self.complete_parsed(messages_list, None, desc=desc, **sampling)

    def complete_parsed(
        self, messages_list, parse, *, desc=None, max_attempts=3, **sampling
    ) -> list:
        """Answer many requests and parse each answer.

        An answer for which ``parse(text)`` raises is asked again (bypassing the
        cache) up to ``max_attempts`` times in all, then reported as None. Only
        parseable answers are cached.

        Parameters
        ----------
        messages_list : list of (list of dict or str)
            As in :meth:`complete`.
        parse : callable, list of callables or None
            ``parse(text) -> value``, one for all requests or one per request;
            None returns the text.
        desc : str, default=None
            Label of the progress bar.
        max_attempts : int, default=3
            Requests per item, counting the first, before it is missing.
        **sampling
            As in :meth:`complete`.

        Returns
        -------
        list
            ``parse(text)`` per request in input order, or None where missing.
        """

        def accepter(fn):
            def accept(record):
                text = record.get("text")
                if text is None:
                    raise ValueError("empty answer")
                return text if fn is None else fn(text)

            return accept

        if parse is None or callable(parse):
            accept = accepter(parse)
        else:
            accept = [accepter(fn) for fn in parse]
        return self._run(messages_list, sampling, accept, desc, max_attempts)

    def yes_probabilities(
        self, messages_list, *, desc=None, max_attempts=3, **sampling
    ) -> list:
        """P(yes) for yes/no questions, read from the first output token.

        Uses ``logprobs`` (top 10 alternatives) where the endpoint returns
        them: P(yes) = p(yes) / (p(yes) + p(no)). Endpoints without logprobs
        give 1.0 or 0.0 from the answer text.

        Returns
        -------
        list of float or None
        """
        sampling = {"logprobs": True, "top_logprobs": 10, "max_tokens": 1, **sampling}

        def accept(record):
            p_yes = p_no = 0.0
            for token, logprob in record.get("top_logprobs") or []:
                word = token.strip().lower()
                if word in ("yes", "y"):
                    p_yes += math.exp(logprob)
                elif word in ("no", "n"):
                    p_no += math.exp(logprob)
            if p_yes + p_no > 0:
                return p_yes / (p_yes + p_no)
            return float(parse_yes_no(record.get("text")))

        return self._run(messages_list, sampling, accept, desc, max_attempts)


def parse_yes_no(text: str | None) -> int:
    """1 for an answer starting with yes/true/1, 0 for no/false/0, else raise."""
    words = re.findall(r"[a-z0-9]+", strip_thinking(text or "").lower())
    if words:
        if words[0] in ("yes", "y", "true", "1"):
            return 1
        if words[0] in ("no", "n", "false", "0"):
            return 0
    raise ValueError(f"Expected an answer starting with yes or no. Got {text!r}.")


@functools.cache
def load_prompt(name: str) -> str:
    """The text of ``sklearn_hypothesaes/llm/prompts/<name>.txt``."""
    path = (
        importlib.resources.files("sklearn_hypothesaes.llm") / "prompts" / f"{name}.txt"
    )
    return path.read_text(encoding="utf-8")


def fill_prompt(template: str, param: str, **fields) -> str:
    """Replace ``{field}`` placeholders; other braces (JSON examples) stay.

    ``param`` names the parameter the template came from, for the error.
    """
    for name in fields:
        if "{" + name + "}" not in template:
            raise ValueError(
                f"The {param!r} template must contain the placeholder {{{name}}}. "
                f"Got a template without it: {template[:80]!r}..."
            )
    # One pass, so that a value containing "{name}" is never substituted again.
    pattern = re.compile("|".join(re.escape("{" + n + "}") for n in fields))
    return pattern.sub(lambda m: str(fields[m.group(0)[1:-1]]), template)
