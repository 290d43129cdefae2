"""LLMClient against a real loopback OpenAI-compatible server."""

import copy
import html
import pickle
import threading

import numpy as np
import openai
import pytest
from fake_openai import FakeOpenAIServer, last_user_message
from sklearn.base import BaseEstimator, clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.utils import estimator_checks, estimator_html_repr, get_tags
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_hypothesaes import HypothesisGenerator, LLMClient, LLMDescriber
from sklearn_hypothesaes.llm import (
    Completions,
    Usage,
    answer_problem,
    fill_prompt,
    load_prompt,
    parse_yes_no,
    strip_preamble,
    strip_thinking,
)
from sklearn_hypothesaes.llm import _client as _llm
from sklearn_hypothesaes.utils import _retry
from sklearn_hypothesaes.utils._misc import redact_url


def _gaps(requests):
    times = [r["time"] for r in requests]
    return [b - a for a, b in zip(times, times[1:], strict=False)]


def test_retry_after_is_honoured_on_429(fake_server, make_client):
    fake_server.fail(status=429, times=2, retry_after=0.3)
    client = make_client(fake_server)
    assert client.complete(["hello"]) == ["no"]
    assert [r["status"] for r in fake_server.requests] == [429, 429, 200]
    # Each retry waited at least the server's Retry-After.
    assert all(gap >= 0.29 for gap in _gaps(fake_server.requests))
    usage = client.usage()
    assert (usage["calls"], usage["retries"], usage["failures"]) == (1, 2, 0)


def test_500_is_retried_then_reported_missing(fake_server, make_client, fast_backoff):
    client = make_client(fake_server, max_retries=2)
    fake_server.fail(status=500, times=2)
    assert client.complete(["first"]) == ["no"]
    assert client.usage()["retries"] == 2

    fake_server.reset()
    fake_server.fail(status=503, times=10)
    with pytest.warns(RuntimeWarning, match="1 of 1 LLM requests"):
        answers = client.complete(["second"])
    assert answers == [None]
    assert len(fake_server.requests) == 3  # first try + max_retries
    # The call's own usage counts the retries of a request that failed in the
    # end: the SDK's retry loop reports nothing on its final exception.
    assert (answers.usage.retries, answers.usage.failures) == (2, 1)
    assert answers.usage.calls == 0
    assert client.usage()["failures"] == 1
    assert client.usage()["retries"] == 4


def test_client_errors_are_not_retried(fake_server, make_client):
    client = make_client(fake_server)
    fake_server.fail(status=400, times=1)
    with pytest.warns(RuntimeWarning, match="HTTP 400"):
        assert client.complete(["bad"]) == [None]
    assert len(fake_server.requests) == 1
    fake_server.fail(status=401, times=1)
    with pytest.raises(openai.AuthenticationError):
        client.complete(["unauthorised"])


def test_concurrency_is_bounded(fake_server, make_client):
    fake_server.delay = 0.05
    client = make_client(fake_server, n_concurrent=3, cache_dir=False)
    answers = client.complete([f"question {i}" for i in range(24)])
    assert answers == ["no"] * 24
    assert fake_server.in_flight_max == 3


def test_second_run_is_served_from_cache(tmp_path):
    rules = [(r"number (\d+)", lambda m, body: f"answer {m.group(1)}")]
    prompts = [f"number {i}" for i in range(10)] + ["number 3"]  # one duplicate
    with FakeOpenAIServer(chat=rules) as srv:
        first = LLMClient(base_url=srv.base_url, cache_dir=tmp_path)
        answers = first.complete(prompts)
        assert answers == [f"answer {i}" for i in range(10)] + ["answer 3"]
        assert len(srv.requests) == 10  # duplicates are asked once
        # A fresh client (as in a new process) finds everything in the cache.
        second = LLMClient(base_url=srv.base_url, cache_dir=tmp_path)
        assert second.complete(prompts) == answers
        assert len(srv.requests) == 10
        assert second.usage()["cache_hits"] == 11
        assert second.usage()["calls"] == 0
        # A different sampling parameter is a different request.
        second.complete(prompts[:1], temperature=0.5)
        assert len(srv.requests) == 11


def test_thinking_blocks_are_stripped(make_client):
    replies = [
        (r"tagged", "<think>maybe yes?\nno...</think>\n\nfinal answer"),
        (r"lone", "reasoning without an opening tag</think> final answer"),
        (r"field", {"content": "final answer", "reasoning_content": "long thoughts"}),
    ]
    with FakeOpenAIServer(chat=replies) as srv:
        client = make_client(srv)
        assert client.complete(["tagged", "lone", "field"]) == ["final answer"] * 3
        # Reasoning is paid for (the server counts whitespace-split words).
        assert client.usage()["completion_tokens"] == 5 + 7 + 2 + 2
    assert strip_thinking("<thinking>a</thinking> b") == "b"
    assert strip_thinking(None) is None


def test_unparseable_answer_is_reasked_then_missing(fake_server, make_client):
    client = make_client(fake_server)
    fake_server.malformed(times=1)
    assert client.complete_parsed(["q1"], parse_yes_no) == [0]
    assert len(fake_server.requests) == 2
    assert client.usage()["reasks"] == 1

    fake_server.malformed(times=3)
    with pytest.warns(RuntimeWarning, match="unusable answer"):
        assert client.complete_parsed(["q2"], parse_yes_no, max_attempts=3) == [None]
    assert len(fake_server.requests) == 5
    # Nothing unusable was cached: the next run asks again and succeeds.
    assert client.complete_parsed(["q2"], parse_yes_no) == [0]
    assert len(fake_server.requests) == 6


def test_parse_yes_no():
    assert parse_yes_no("Yes, clearly.") == 1
    assert parse_yes_no("<think>yes?</think> No.") == 0
    assert parse_yes_no("  TRUE") == 1
    with pytest.raises(ValueError, match="yes or no"):
        parse_yes_no("perhaps")


def test_token_accounting_and_cost(make_client):
    with FakeOpenAIServer(chat=[(r".", "one two three")]) as srv:
        client = make_client(srv, prices={"fake-model": (1.0, 2.0)})
        messages = [
            {"role": "system", "content": "s"},
            {"role": "user", "content": "x"},
        ]
        client.complete(["a b c d", messages])
    usage = client.usage()
    assert usage["calls"] == 2
    assert usage["prompt_tokens"] == srv.usage["prompt_tokens"] == 4 + 2
    assert usage["completion_tokens"] == 6
    assert usage["cost"] == pytest.approx((6 * 1.0 + 6 * 2.0) / 1e6)
    assert client.reset_usage().usage()["calls"] == 0


def test_yes_probability_from_logprobs(make_client):
    top = [
        {"token": "Yes", "logprob": -0.22314355, "bytes": None},
        {"token": " no", "logprob": -1.60943791, "bytes": None},
        {"token": "Maybe", "logprob": -3.0, "bytes": None},
    ]
    logprobs = {"content": [{"token": "Yes", "logprob": -0.223, "top_logprobs": top}]}
    rules = [(r"dog", {"content": "Yes", "logprobs": logprobs}), (r"cat", "No")]
    with FakeOpenAIServer(chat=rules) as srv:
        client = make_client(srv)
        p_dog, p_cat = client.yes_probabilities(["a dog?", "a cat?"])
        assert srv.requests[0]["body"]["logprobs"] is True
    assert p_dog == pytest.approx(0.8)
    # The server's default logprobs give the answered token probability 1.
    assert p_cat == 0.0


def test_pickle_clone_and_set_params(fake_server, make_client):
    client = make_client(fake_server, n_concurrent=2)
    client.complete(["warm up"])
    assert "_rt" in client.__dict__
    restored = pickle.loads(pickle.dumps(client))
    assert "_rt" not in restored.__dict__
    assert restored.usage()["calls"] == 1
    assert restored.complete(["warm up"]) == ["no"]  # rebuilt lazily, from cache
    assert copy.deepcopy(client).get_params() == client.get_params()
    twin = clone(client)
    assert twin.get_params() == client.get_params()
    assert "_rt" not in twin.__dict__
    client.set_params(n_concurrent=5)
    assert "_rt" not in client.__dict__


def test_api_key_rules(monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("MY_KEY", raising=False)
    with pytest.raises(ValueError, match="'MY_KEY'"):
        LLMClient(api_key_env="MY_KEY", cache_dir=False).complete(["x"])
    with FakeOpenAIServer() as srv:
        # Local servers need no key; OPENAI_BASE_URL is read when base_url=None.
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        assert LLMClient(api_key_env="MY_KEY", cache_dir=False).complete(["x"]) == [
            "no"
        ]
        assert len(srv.requests) == 1


def test_invalid_parameters_are_named():
    with pytest.raises(ValueError, match="'n_concurrent' parameter of LLMClient"):
        LLMClient(n_concurrent=0, cache_dir=False).complete(["x"])
    with pytest.raises(ValueError, match=r"placeholder \{text\}"):
        fill_prompt("no placeholder", "prompt_template", text="x")
    # A value containing a placeholder is not substituted twice.
    assert fill_prompt("{a}|{b}", "t", a="{b}", b="B") == "{b}|B"


class _VirtualTime:
    """A clock that advances only when someone sleeps."""

    def __init__(self):
        self.now = 0.0

    def monotonic(self):
        return self.now

    def time(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_rate_limits_per_minute(monkeypatch):
    clock = _VirtualTime()
    monkeypatch.setattr(_llm, "time", clock)
    limiter = _llm._RateLimiter(rpm=2, tpm=None)
    starts = []
    for _ in range(5):
        limiter.acquire(tokens=10)
        starts.append(round(clock.now))
    assert starts == [0, 0, 60, 60, 120]

    clock.now = 0.0
    limiter = _llm._RateLimiter(rpm=None, tpm=100)
    starts = []
    for tokens in (60, 30, 60, 500):
        limiter.acquire(tokens)
        starts.append(round(clock.now))
    # 60+30 fit; the next 60 waits a minute; an oversized request goes alone.
    assert starts == [0, 0, 60, 120]


@pytest.mark.parametrize(
    "check",
    [
        estimator_checks.check_estimator_cloneable,
        estimator_checks.check_get_params_invariance,
        estimator_checks.check_set_params,
        estimator_checks.check_do_not_raise_errors_in_init_or_set_params,
        estimator_checks.check_no_attributes_set_in_init,
        estimator_checks.check_estimator_repr,
    ],
    ids=lambda check: check.__name__,
)
def test_sklearn_api_checks(check):
    check("LLMClient", LLMClient(cache_dir=False))


# The cache key names the endpoint ---------------------------------------------
def test_same_model_on_two_servers_is_not_shared_through_the_cache(tmp_path):
    with (
        FakeOpenAIServer(default_reply="answer of A") as srv_a,
        FakeOpenAIServer(default_reply="answer of B") as srv_b,
    ):
        a = LLMClient(model="same-model", base_url=srv_a.base_url, cache_dir=tmp_path)
        b = LLMClient(model="same-model", base_url=srv_b.base_url, cache_dir=tmp_path)
        assert a.complete(["question"]) == ["answer of A"]
        assert b.complete(["question"]) == ["answer of B"]
        assert (len(srv_a.requests), len(srv_b.requests)) == (1, 1)
        # Each answer is cached under its own endpoint.
        again = LLMClient(model="same-model", base_url=srv_a.base_url + "/")
        again.set_params(cache_dir=tmp_path)
        assert again.complete(["question"]) == ["answer of A"]
        assert again.complete(["question"]).usage.cache_hits == 1
        assert (len(srv_a.requests), len(srv_b.requests)) == (1, 1)
    assert a.cache_key("question") != b.cache_key("question")


# Usage is returned per call -----------------------------------------------------
def test_concurrent_calls_each_get_their_own_usage(make_client, fast_backoff):
    lock, seen = threading.Lock(), {}

    def chat(body):
        text = last_user_message(body)
        with lock:
            seen[text] = seen.get(text, 0) + 1
            if text == "beta x 0" and seen[text] <= 2:
                raise RuntimeError("flaky")  # the server answers 500
        return "no"

    prompts = {
        "A": ["alpha one", "alpha two", "alpha three"],  # 2 words each
        "B": [f"beta x {i}" for i in range(5)],  # 3 words each
    }
    with FakeOpenAIServer(chat=chat, delay=0.2) as srv:
        client = make_client(srv, n_concurrent=8, prices={"fake-model": (1.0, 2.0)})
        start, results = threading.Barrier(2), {}

        def ask(name):
            start.wait()
            results[name] = client.complete(prompts[name])

        threads = [threading.Thread(target=ask, args=(n,)) for n in prompts]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # More requests were in flight together than either call sent alone.
        assert srv.in_flight_max > 5

    a, b = results["A"], results["B"]
    assert isinstance(a, Completions) and isinstance(a, list)
    assert a == ["no"] * 3 and b == ["no"] * 5
    assert a.usage == Usage(
        calls=3, prompt_tokens=6, completion_tokens=3, cost=(6 + 2 * 3) / 1e6
    )
    assert b.usage == Usage(
        calls=5,
        prompt_tokens=15,
        completion_tokens=5,
        retries=2,
        cost=(15 + 2 * 5) / 1e6,
    )
    total = client.usage()
    assert (total["calls"], total["retries"], total["prompt_tokens"]) == (8, 2, 21)
    assert total["cost"] == pytest.approx(37e-6)


def test_usage_of_cached_and_reasked_calls(fake_server, make_client):
    client = make_client(fake_server)
    first = client.complete(["q"])
    assert first.usage == Usage(calls=1, prompt_tokens=1, completion_tokens=1)
    second = client.complete(["q", "q"])
    assert second.usage == Usage(cache_hits=2)
    fake_server.malformed(times=1)
    parsed = client.complete_parsed(["other"], parse_yes_no)
    assert parsed == [0]
    assert (parsed.usage.calls, parsed.usage.reasks) == (2, 1)
    probs = client.yes_probabilities(["third"])
    assert probs == [0.0] and probs.usage.calls == 1


# LLMClient is a configuration ---------------------------------------------------
def test_llmclient_is_a_configuration_object():
    client = LLMClient(model="m", n_concurrent=3, cache_dir=False)
    assert get_tags(client).requires_fit is False
    twin = clone(client)
    assert twin is not client
    assert twin.get_params() == client.get_params()
    assert not hasattr(client, "fit")
    assert not [name for name in vars(client) if name.endswith("_")]
    with pytest.raises(ValueError, match="Invalid parameter 'modle' for LLMClient"):
        client.set_params(modle="x")


# A user-built client -------------------------------------------------------------
class _AsksTheLLM(BaseEstimator):
    """A parent estimator holding an LLMClient, as a describer or annotator does."""

    def __init__(self, llm=None, expected="yes"):
        self.llm = llm
        self.expected = expected

    def fit(self, X, y=None):
        self.n_answers_ = len(self.llm.complete(list(X)))
        return self

    def score(self, X, y=None, sample_weight=None):
        answers = self.llm.complete(list(X))
        return float(np.mean([a == self.expected for a in answers]))


def test_user_built_openai_client(fake_server, tmp_path):
    sdk = openai.OpenAI(base_url=fake_server.base_url, api_key="x")
    client = LLMClient(model="fake-model", client=sdk, cache_dir=tmp_path)
    assert client.complete(["hi"]) == ["no"]
    assert len(fake_server.requests) == 1
    # Its endpoint is the SDK client's base_url: the same cache entry as a
    # client built from that URL.
    built = LLMClient(model="fake-model", base_url=fake_server.base_url)
    assert client.cache_key("hi") == built.set_params(cache_dir=tmp_path).cache_key(
        "hi"
    )
    assert built.complete(["hi"]).usage.cache_hits == 1

    # clone shares it (deep-copying an SDK client fails on its locks).
    assert clone(client).client is sdk
    assert copy.deepcopy(client).client is sdk
    parent = _AsksTheLLM(llm=client)
    assert clone(parent).llm.client is sdk
    texts = [f"text {i}" for i in range(6)]
    search = GridSearchCV(parent, {"expected": ["yes", "no"]}, cv=2).fit(texts)
    assert search.best_params_ == {"expected": "no"}
    assert search.best_estimator_.llm.client is sdk
    assert search.best_estimator_.llm is not client

    # It is never pickled; the unpickled client says how to give it back.
    restored = pickle.loads(pickle.dumps(parent)).llm
    assert restored.client is None
    with pytest.raises(ValueError, match=r"Pass it again with set_params\(client="):
        restored.complete(["hi"])
    with pytest.raises(ValueError, match=r"set_params\(client="):
        clone(restored).complete(["hi"])
    assert restored.set_params(client=sdk).complete(["again"]) == ["no"]

    with pytest.raises(ValueError, match="'client' parameter of LLMClient"):
        LLMClient(client="not a client", cache_dir=False).complete(["x"])


def test_user_client_retries_are_not_multiplied(fake_server, fast_backoff):
    # The SDK client retries twice by default; only our max_retries applies.
    sdk = openai.OpenAI(base_url=fake_server.base_url, api_key="x")
    assert sdk.max_retries == 2
    client = LLMClient(model="m", client=sdk, max_retries=1, cache_dir=False)
    fake_server.fail(status=503, times=10)
    with pytest.warns(RuntimeWarning, match="1 of 1 LLM requests"):
        answers = client.complete(["x"])
    assert len(fake_server.requests) == 2
    assert (answers.usage.retries, answers.usage.failures) == (1, 1)
    assert sdk.max_retries == 2  # the user's client is left as it was


def test_retry_after_above_the_sdk_cap_is_waited_for(fake_server, monkeypatch):
    # The SDK gives up at once on a Retry-After above its cap (120 s) ...
    fake_server.fail(status=429, times=1, retry_after=200)
    sdk = openai.OpenAI(base_url=fake_server.base_url, api_key="x", max_retries=2)
    with pytest.raises(openai.RateLimitError):
        sdk.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}]
        )
    assert len(fake_server.requests) == 1
    # ... ours waits as long as its own cap allows (shortened here) and retries.
    monkeypatch.setattr(_retry, "MAX_RETRY_AFTER", 0.2)
    fake_server.reset()
    fake_server.fail(status=429, times=1, retry_after=200)
    client = LLMClient(model="m", base_url=fake_server.base_url, cache_dir=False)
    answers = client.complete(["x"])
    assert answers == ["no"]
    assert (answers.usage.retries, answers.usage.calls) == (1, 1)
    gap = fake_server.requests[1]["time"] - fake_server.requests[0]["time"]
    assert gap >= 0.19


# Credentials in base_url ---------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://me:s3cret@host/v1", "https://me:***@host/v1"),
        ("https://tok-s3cret@host:8443/v1", "https://***@host:8443/v1"),
        (
            "https://host/v1?api-version=2024&api-key=s3cret",
            "https://host/v1?api-version=2024&api-key=***",
        ),
        (
            "https://h/v1?X-Amz-Signature=s3cret&access_token=s3cret&flag",
            "https://h/v1?X-Amz-Signature=***&access_token=***&flag",
        ),
        ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
        (None, None),
    ],
)
def test_redact_url(url, expected):
    assert redact_url(url) == expected


def test_credentials_in_base_url_are_not_written(fake_server, tmp_path):
    port = fake_server.port
    url = f"http://user:s3cret@127.0.0.1:{port}/v1"
    client = LLMClient(model="fake-model", base_url=url, cache_dir=tmp_path)
    assert client.complete(["hi"]) == ["no"]  # the real URL is used
    assert repr(client) == (
        f"LLMClient(model='fake-model', base_url='http://user:***@127.0.0.1:{port}"
        f"/v1', cache_dir={tmp_path!r})"
    )
    azure = LLMClient(base_url="https://h.example.com/v1?api-key=s3cret")
    assert repr(azure) == "LLMClient(base_url='https://h.example.com/v1?api-key=***')"
    parent = _AsksTheLLM(llm=client)
    assert "s3cret" not in repr(parent) and "user:***@" in repr(parent)
    blob = pickle.dumps(parent)
    assert b"s3cret" not in blob and b"s3cret" not in pickle.dumps(azure)
    # A changed password keeps the cache: the key holds the redacted URL.
    other = clone(client).set_params(base_url=url.replace("s3cret", "other"))
    assert other.cache_key("hi") == client.cache_key("hi")

    restored = pickle.loads(blob).llm
    assert restored.base_url == f"http://user:***@127.0.0.1:{port}/v1"
    with pytest.raises(ValueError, match=r"set_params\(base_url=\.\.\.\)") as info:
        restored.complete(["hi"])
    assert "'OPENAI_API_KEY'" in str(info.value)
    with pytest.raises(ValueError, match="replaced by"):
        clone(restored).complete(["hi"])
    restored.set_params(base_url=url)
    assert restored.complete(["hi"]) == ["no"]
    assert len(fake_server.requests) == 1  # from the cache


def test_credentials_are_hidden_by_every_display_of_an_estimator_holding_it():
    # scikit-learn's HTML display lists a parent's get_params(deep=True) by repr,
    # describer__client__base_url among them: it showed 'pw' and 'abc'.
    url = "https://u:pw@h/v1?api_key=abc"
    shown = "https://u:***@h/v1?api_key=***"
    generator = HypothesisGenerator(LLMDescriber(LLMClient(base_url=url)))
    displays = {
        "repr": repr(generator),
        "html": estimator_html_repr(generator),
        "_repr_html_": generator._repr_html_(),
        "pipeline html": estimator_html_repr(make_pipeline(generator)),
        "grid search html": estimator_html_repr(
            GridSearchCV(generator, {"describer__client__model": ["a", "b"]})
        ),
        "params": repr(generator.get_params()),
    }
    for name, text in displays.items():
        assert "pw" not in text and "abc" not in text, name
        assert shown in html.unescape(text), name
    # The parameters are the values given: equal strings, which clone copies.
    params = generator.get_params()
    assert params["describer__client__base_url"] == url
    assert str(params["describer__client__base_url"]) == url
    twin = clone(generator)
    assert twin.get_params()["describer__client__base_url"] == url
    assert type(twin.describer.client.base_url) is str
    assert twin.describer.client.base_url == url
    assert pickle.loads(pickle.dumps(params["describer__client__base_url"])) == url
    again = clone(generator).set_params(
        describer__client__base_url=params["describer__client__base_url"]
    )
    assert type(again.describer.client.base_url) is str
    assert again.describer.client.cache_key("hi") == LLMClient(base_url=url).cache_key(
        "hi"
    )
    # A URL without credentials is given back as it is.
    plain = LLMClient(base_url="http://127.0.0.1:8000/v1").get_params()["base_url"]
    assert type(plain) is str


# Public functions validate their parameters -------------------------------------
def test_public_functions_validate_parameters(fake_server, make_client):
    with pytest.raises(InvalidParameterError, match="'template' parameter of fill_"):
        fill_prompt(3, "prompt_template", text="x")
    with pytest.raises(InvalidParameterError, match="'text' parameter of parse_yes"):
        parse_yes_no(1)
    with pytest.raises(InvalidParameterError, match="'url' parameter of redact_url"):
        redact_url(b"http://h")
    with pytest.raises(ValueError, match="'name' parameter of load_prompt must be"):
        load_prompt("nope")
    client = make_client(fake_server)
    with pytest.raises(InvalidParameterError, match="'max_attempts' parameter"):
        client.complete_parsed(["x"], parse_yes_no, max_attempts=0)
    with pytest.raises(InvalidParameterError, match="'messages_list' parameter"):
        client.complete("a bare string")
    with pytest.raises(ValueError, match="one per request \\(2\\). Got a list of 1"):
        client.complete_parsed(["x", "y"], [parse_yes_no])
    assert fake_server.requests == []


# Reading answers ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (None, "empty"),
        ("  \n", "empty"),
        ("<think>the text mentions a dog, so", "unclosed thinking"),
        ("<think>a</think> <thinking>b", "unclosed thinking"),
        ("<think>done</think>", "empty"),
        ("Here is the property:", "empty"),
        ("I'm sorry, but I can't help with that.", "refusal"),
        ("I\u2019m sorry, I cannot do this.", "refusal"),
        ("I cannot help with that request.", "refusal"),
        ("As an AI language model, I do not judge texts.", "refusal"),
        ("Sure! I can't answer this one.", "refusal"),
        ("<think>ok</think>Yes", None),
        ("Mentions that the writer cannot help with the move.", None),
        ("Sorrowful tone about a lost pet.", None),
        ('{"1": 1, "2": 0}', None),
        ("No.", None),
    ],
)
def test_answer_problem(text, problem):
    assert answer_problem(text) == problem


@pytest.mark.parametrize(
    ("text", "rest"),
    [
        ("Here is the property:\n\nMentions a refund.", "Mentions a refund."),
        ("Sure! The property is: uses sarcasm", "uses sarcasm"),
        ("Property: Mentions X", "Mentions X"),
        ("**Hypothesis:** Mentions X", "Mentions X"),
        ("## Final answer: yes", "yes"),
        (
            "Certainly. Here's a concise description:\nPraises the actors",
            "Praises the actors",
        ),
        ("<think>hmm</think>\nOkay, here is the feature:\nMentions X", "Mentions X"),
        ("Hypothesis - mentions cats", "mentions cats"),
        # Not lead-ins: kept whole.
        ("Great acting praised", "Great acting praised"),
        ("Feature-rich product described", "Feature-rich product described"),
        (
            "Mentions a product feature: battery life",
            "Mentions a product feature: battery life",
        ),
        ("Here and there mentions travel", "Here and there mentions travel"),
    ],
)
def test_strip_preamble(text, rest):
    assert strip_preamble(text) == rest
