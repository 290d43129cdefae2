"""LLMClient against a real loopback OpenAI-compatible server."""

import copy
import pickle

import openai
import pytest
from fake_openai import FakeOpenAIServer
from sklearn.base import clone
from sklearn.utils import estimator_checks

from sklearn_hypothesaes import LLMClient
from sklearn_hypothesaes.llm import _client as _llm
from sklearn_hypothesaes.llm import fill_prompt, parse_yes_no, strip_thinking


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
        assert client.complete(["second"]) == [None]
    assert len(fake_server.requests) == 3  # first try + max_retries
    assert client.usage()["failures"] == 1


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
