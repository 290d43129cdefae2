"""LLMClient against the answers real models give, replayed by the loopback server.

Each failure shape of tests/fake_openai.py goes end to end through the real
HTTP transport: thinking models cut off by max_tokens (with and without a
reasoning parser), answers cut off, preambles, refusals, empty content,
ignored logprobs, parameters the server rejects and servers without
structured output.
"""

import json
import pickle
import random
import warnings

import pytest
from fake_openai import REFUSAL_TEXT, FakeOpenAIServer
from sklearn.base import clone

from sklearn_hypothesaes import LLMClient
from sklearn_hypothesaes.llm import (
    LLMRequestError,
    LLMUnusableAnswersError,
    Usage,
    answer_problem,
    parse_yes_no,
    strip_preamble,
)
from sklearn_hypothesaes.llm import _client as _llm

ANSWER = "Mentions a refund that never arrived."
THINKING_OFF = {"chat_template_kwargs": {"enable_thinking": False}}


def _messages(request):
    return request["body"]["messages"]


def _no_warning(call):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return call()


# Thinking models -------------------------------------------------------------
def test_thinking_cut_off_is_not_used_nor_cached(make_client):
    with FakeOpenAIServer(default_reply=ANSWER, thinking="tags") as srv:
        client = make_client(srv, max_tokens=20)  # 40 words of thinking
        with pytest.warns(RuntimeWarning) as caught:
            answers = client.complete(["describe"])
        assert answers == [None]
        assert answers.unusable == {"unclosed thinking": 3}
        assert answers.usage == Usage(
            calls=3,
            prompt_tokens=srv.usage["prompt_tokens"],
            completion_tokens=60,
            reasks=2,
            failures=1,
            unusable={"unclosed thinking": 3},
        )
        message = str(caught[-1].message)
        assert message.startswith(
            "Unusable LLM answers: 3 (3 unclosed thinking), neither cached nor "
            "used; 1 of 1 LLM requests got no usable answer (reported as None)"
        )
        assert (
            "turn thinking off with extra_body={'chat_template_kwargs': "
            "{'enable_thinking': False}}" in message
        )
        assert "raise max_tokens (now 20)" in message
        # Nothing was cached: the same request is asked again.
        with pytest.warns(RuntimeWarning, match="unclosed thinking"):
            client.complete(["describe"])
        assert len(srv.requests) == 6

        # The fix the warning names works, and is part of the cache key.
        fixed = clone(client).set_params(extra_body=THINKING_OFF)
        assert _no_warning(lambda: fixed.complete(["describe"])) == [ANSWER]
        assert srv.requests[-1]["body"]["chat_template_kwargs"] == {
            "enable_thinking": False
        }
        assert fixed.cache_key("describe") != client.cache_key("describe")


def test_thinking_that_ends_is_stripped(make_client):
    with FakeOpenAIServer(default_reply=ANSWER, thinking="tags") as srv:
        client = make_client(srv, max_tokens=512)
        answers = _no_warning(lambda: client.complete(["describe"]))
    assert answers == [ANSWER]
    assert answers.unusable == {}


def test_reasoning_parser_with_no_content_left(make_client):
    # vLLM / llama.cpp with a reasoning parser: the thinking is sent apart
    # and the content is null when max_tokens ran out while thinking.
    with FakeOpenAIServer(default_reply=ANSWER, thinking="parser") as srv:
        client = make_client(srv, max_tokens=10)
        with pytest.warns(RuntimeWarning, match="3 unclosed thinking"):
            answers = client.complete(["describe"], max_attempts=3)
        assert answers == [None]
        body = srv.requests[0]["body"]
        assert body["max_tokens"] == 10
        # Newer vLLM names the field "reasoning": read too.
        srv.reasoning_field = "reasoning"
        with pytest.warns(RuntimeWarning, match="3 unclosed thinking"):
            assert client.complete(["other"]) == [None]
        srv.reasoning_field = "reasoning_content"
        roomy = clone(client).set_params(max_tokens=200)
        assert _no_warning(lambda: roomy.complete(["describe"])) == [ANSWER]


def test_yes_probability_of_a_thinking_model(make_client):
    # With max_tokens=1 the first token opens the thinking block: no P(yes).
    for shape in ("tags", "parser"):
        with FakeOpenAIServer(default_reply="Yes", thinking=shape) as srv:
            client = make_client(srv)
            with pytest.warns(RuntimeWarning) as caught:
                probs = client.yes_probabilities(["a dog?"], max_attempts=2)
            assert probs == [None]
            assert probs.unusable == {"unclosed thinking": 2}
            message = str(caught[-1].message)
            assert "P(yes) is read from the first token" in message
            assert "raise max_tokens" not in message
            fixed = clone(client).set_params(extra_body=THINKING_OFF)
            assert _no_warning(lambda c=fixed: c.yes_probabilities(["a dog?"])) == [1.0]


# Answers cut off, preambles, refusals, empty content --------------------------
def test_answer_cut_off_by_max_tokens(make_client):
    with FakeOpenAIServer(default_reply=ANSWER, truncate=True) as srv:
        client = make_client(srv, max_tokens=3)
        with pytest.warns(RuntimeWarning) as caught:
            answers = client.complete(["describe"])
        assert answers == [None]
        assert answers.unusable == {"cut off": 3}
        assert "cut off: the answer reached the token limit" in str(caught[-1].message)
        assert "raise max_tokens (now 3)" in str(caught[-1].message)
        # Reading only the first token is no problem: "Yes." is enough.
        srv.default_reply = "Yes. The text clearly matches."
        probs = _no_warning(lambda: client.yes_probabilities(["a dog?"]))
        assert probs == [1.0]
        assert srv.requests[-1]["body"]["max_tokens"] == 1


def test_preamble_is_dropped_by_strip_preamble(make_client):
    with FakeOpenAIServer(
        default_reply=ANSWER, preamble="Here is the property:\n\n"
    ) as srv:
        client = make_client(srv)
        raw = client.complete(["describe"])
        parsed = client.complete_parsed(["describe again"], strip_preamble)
    assert raw == ["Here is the property:\n\n" + ANSWER]
    assert parsed == [ANSWER]
    assert answer_problem(raw[0]) is None


def test_yes_no_after_a_preamble(make_client):
    with FakeOpenAIServer(default_reply="yes", preamble="Answer: ") as srv:
        client = make_client(srv)
        assert client.complete_parsed(["q"], parse_yes_no) == [1]


@pytest.mark.parametrize("shape", ["text", "field"])
def test_refusals_are_not_used(make_client, shape):
    with FakeOpenAIServer(default_reply=ANSWER, refusal=shape) as srv:
        client = make_client(srv)
        with pytest.warns(RuntimeWarning, match="3 refusal") as caught:
            answers = client.complete(["describe"])
        assert answers == [None]
        assert answers.unusable == {"refusal": 3}
        assert "the model refused to answer" in str(caught[-1].message)
        # The re-ask holds the refusal and a correction.
        reasked = _messages(srv.requests[1])
        assert reasked[1] == {"role": "assistant", "content": REFUSAL_TEXT}
        assert reasked[2]["role"] == "user"
        assert "harmless text-annotation task" in reasked[2]["content"]


def test_a_reask_that_succeeds_is_cached_under_the_original_request(make_client):
    def chat(body):
        if len(body["messages"]) == 1:
            return {"content": None, "refusal": REFUSAL_TEXT}
        return ANSWER

    with FakeOpenAIServer(chat=chat) as srv:
        client = make_client(srv)
        with pytest.warns(RuntimeWarning, match=r"Unusable LLM answers: 1 \(1 refusal"):
            answers = client.complete(["describe"])
        assert answers == [ANSWER]
        assert (answers.usage.calls, answers.usage.reasks) == (2, 1)
        again = _no_warning(lambda: client.complete(["describe"]))
        assert again == [ANSWER] and again.usage.cache_hits == 1
        assert len(srv.requests) == 2


def test_content_null_is_empty(make_client):
    with FakeOpenAIServer(default_reply=ANSWER, content_null=True) as srv:
        client = make_client(srv)
        with pytest.warns(RuntimeWarning, match="the server sent no content"):
            answers = client.complete(["describe"], max_attempts=2)
        assert answers == [None] and answers.unusable == {"empty": 2}
        assert _messages(srv.requests[1])[1] == {
            "role": "assistant",
            "content": "(empty answer)",
        }


def test_reask_changes_the_request(fake_server, make_client):
    client = make_client(fake_server)
    fake_server.malformed(times=1)
    with pytest.warns(RuntimeWarning, match="1 unparseable"):
        assert client.complete_parsed(["is it?"], parse_yes_no) == [0]
    first, second = (_messages(r) for r in fake_server.requests)
    assert first == [{"role": "user", "content": "is it?"}]
    assert second[:2] == [
        {"role": "user", "content": "is it?"},
        {
            "role": "assistant",
            "content": "<<garbled ~~ output #%$ without any answer>>",
        },
    ]
    assert second[2]["content"] == (
        "Your answer could not be read (Expected an answer starting with yes or "
        "no. Got '<<garbled ~~ output #%$ without any answer>>'.). Answer again "
        "in exactly the requested format, with no other text."
    )
    # The same sampling: the request differs by its messages.
    assert fake_server.requests[0]["body"]["temperature"] == 0.0
    assert fake_server.requests[1]["body"]["temperature"] == 0.0


def test_unusable_answers_cached_by_older_versions_are_asked_again(make_client):
    with FakeOpenAIServer(default_reply=ANSWER) as srv:
        client = make_client(srv)
        store = client._runtime().store
        store.put_json({client.cache_key("describe"): {"text": "<think>"}})
        assert client.complete(["describe"]) == [ANSWER]
        assert len(srv.requests) == 1


# Logprobs ----------------------------------------------------------------------
def test_ignored_logprobs_warn_once_and_are_counted(make_client):
    rules = [(r"dog", "Yes"), (r"cat", "No")]
    with FakeOpenAIServer(chat=rules, logprobs=False) as srv:
        client = make_client(srv)
        with pytest.warns(RuntimeWarning) as caught:
            probs = client.yes_probabilities(["a dog?", "a cat?"])
        assert probs == [1.0, 0.0]
        assert probs.usage.yes_no_from_text == 2
        assert "2 P(yes) values are 0.0 or 1.0, read from the answer text" in str(
            caught[-1].message
        )
        assert srv.requests[0]["body"]["logprobs"] is True
        # Said once per run, counted every time.
        again = _no_warning(lambda: client.yes_probabilities(["a dog?", "one cat"]))
        assert again == [1.0, 0.0]
        assert again.usage.yes_no_from_text == 2
        assert again.usage.cache_hits == 1
        assert client.usage()["yes_no_from_text"] == 4


def test_logprobs_give_probabilities_without_warning(make_client):
    with FakeOpenAIServer(chat=[(r"dog", "Yes")]) as srv:
        client = make_client(srv)
        probs = _no_warning(lambda: client.yes_probabilities(["a dog?"]))
    assert probs == [1.0] and probs.usage.yes_no_from_text == 0


# Parameters the server rejects -------------------------------------------------
def test_rejected_max_tokens_stops_the_run(make_client):
    with FakeOpenAIServer(default_reply=ANSWER, reject_params=("max_tokens",)) as srv:
        client = make_client(srv, n_concurrent=1)
        with pytest.raises(LLMRequestError) as info:
            client.complete([f"text {i}" for i in range(10)])
        assert len(srv.requests) == 3
        error = info.value
        assert error.status_code == 400
        assert error.server_message == (
            "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead."
        )
        assert str(error) == (
            "The LLM endpoint rejected 3 requests in a row with HTTP 400: "
            f"{error.server_message!r}. The run was stopped rather than left to end "
            "with every answer missing. The server rejects 'max_tokens' (OpenAI's "
            "reasoning models take 'max_completion_tokens'): pass "
            "LLMClient(max_tokens=None, extra_body={'max_completion_tokens': "
            "4096})."
        )
        assert client.usage()["failures"] == 3
        # The fix it names works.
        fixed = clone(client).set_params(
            max_tokens=None, extra_body={"max_completion_tokens": 64}
        )
        assert fixed.complete(["text 0"]) == [ANSWER]
        assert srv.requests[-1]["body"]["max_completion_tokens"] == 64
        assert "max_tokens" not in srv.requests[-1]["body"]
    assert pickle.loads(pickle.dumps(error)).fix == error.fix


def test_the_stop_pickles_the_way_dask_pickles_exceptions(make_client):
    # Dask workers send exceptions back pickled by tblib, with their causes;
    # the openai error a stop came from cannot be unpickled, so the stop must
    # not carry it.
    pickling_support = pytest.importorskip("tblib.pickling_support")
    pickling_support.install(LLMRequestError)
    with FakeOpenAIServer(default_reply=ANSWER, reject_params=("max_tokens",)) as srv:
        client = make_client(srv, n_concurrent=1)
        with pytest.raises(LLMRequestError) as info:
            client.complete(["text 0", "text 1", "text 2"])
    error = info.value
    assert error.__cause__ is None and error.__context__ is None
    assert pickle.loads(pickle.dumps(error)).server_message == error.server_message


def test_rejected_temperature_stops_the_run(make_client):
    with FakeOpenAIServer(default_reply=ANSWER, reject_params=("temperature",)) as srv:
        client = make_client(srv, n_concurrent=2)
        with pytest.raises(LLMRequestError, match=r"LLMClient\(temperature=None\)"):
            client.complete_parsed([f"t{i}" for i in range(8)], None)
        assert 3 <= len(srv.requests) <= 4  # two were in flight together
        fixed = clone(client).set_params(temperature=None)
        assert fixed.complete(["t0"]) == [ANSWER]
        assert "temperature" not in srv.requests[-1]["body"]


def test_a_rare_client_error_does_not_stop_the_run(make_client):
    # The same 400 four times, but answers in between: no configuration error.
    with FakeOpenAIServer(default_reply="ok") as srv:
        client = make_client(srv, n_concurrent=1)
        for batch in (["a", "b", "c"], ["d", "e", "f"]):
            srv.fail(status=400, times=2)
            with pytest.warns(RuntimeWarning, match="2 of 3 LLM requests"):
                answers = client.complete(batch)
            assert answers == [None, None, "ok"]
            assert answers.usage.failures == 2
        assert [r["status"] for r in srv.requests] == [400, 400, 200] * 2


# Answers unusable the same way, request after request ------------------------
def _items(n, tag="text"):
    return [f"describe {tag} {i}" for i in range(n)]


def test_answers_unusable_the_same_way_stop_the_run(make_client):
    # max_tokens=3 cuts every answer off. Before the stop each of the 60
    # requests was asked max_attempts=3 times (180 requests) and the call
    # returned 60 Nones; now the 20th distinct request ends the run.
    assert _llm.UNUSABLE_LIMIT == 20
    with FakeOpenAIServer(default_reply=ANSWER) as srv:
        client = make_client(srv, max_tokens=3, n_concurrent=1)
        srv.default_reply = "Yes."
        assert clone(client).complete(["answered before"]) == ["Yes."]
        srv.reset()
        srv.default_reply, srv.truncate = ANSWER, True
        with pytest.raises(LLMUnusableAnswersError) as info:
            client.complete(_items(60))
        assert len(srv.requests) == 19 * 3 + 1
        error = info.value
        assert (error.reason, error.count, error.answers) == ("cut off", 20, 58)
        assert error.completion_tokens == 58 * 3 == srv.usage["completion_tokens"]
        assert error.prompt_tokens == srv.usage["prompt_tokens"]
        assert str(error) == (
            "The first 20 LLM requests got no usable answer: all 58 answers "
            "(re-asks included) were unusable for one reason, cut off "
            f"({error.prompt_tokens:,} prompt and 174 completion tokens spent). "
            "The run was stopped rather than left to ask every request again and "
            "end with every answer missing. To fix: the answer reached the token "
            "limit (finish_reason='length'): raise max_tokens (now 3). Usable "
            "answers received before the stop are cached."
        )
        assert isinstance(error, LLMRequestError)
        assert client.usage()["calls"] == 58
        assert client.usage()["unusable"] == {"cut off": 58}
        # The same settings stop the next call at its first answer.
        with pytest.raises(LLMUnusableAnswersError, match="first 21 LLM requests"):
            client.complete(_items(5, "other"))
        assert len(srv.requests) == 59
        # What was answered before is still cached.
        assert client.complete(["answered before"]) == ["Yes."]
        assert len(srv.requests) == 59
        # The fix it names works.
        roomy = clone(client).set_params(max_tokens=50)
        assert _no_warning(lambda: roomy.complete(_items(3))) == [ANSWER] * 3


def test_the_unusable_stop_with_concurrent_requests_pickles(make_client):
    # A thinking model behind a reasoning parser, max_tokens too small: every
    # content is empty. 8 threads; before the stop: 200 x 3 requests.
    pickling_support = pytest.importorskip("tblib.pickling_support")
    pickling_support.install(LLMUnusableAnswersError)
    with FakeOpenAIServer(default_reply=ANSWER, thinking="parser") as srv:
        client = make_client(srv, max_tokens=10, n_concurrent=8)
        with pytest.raises(LLMUnusableAnswersError) as info:
            client.complete(_items(200))
        # Each thread asks one item at a time: at most 20 + 7 items started.
        assert len(srv.requests) <= (20 + 7) * 3
        error = info.value
        assert (error.reason, error.count) == ("unclosed thinking", 20)
        assert 20 <= error.answers <= len(srv.requests)
        assert (
            "To fix: the model was still thinking when its answer ended: turn "
            "thinking off with extra_body={'chat_template_kwargs': "
            "{'enable_thinking': False}} (vLLM, llama.cpp server)" in str(error)
        )
        assert "raise max_tokens (now 10)" in str(error)
        assert str(error).endswith(
            "Usable answers received before the stop are cached."
        )
    assert error.__cause__ is None and error.__context__ is None
    restored = pickle.loads(pickle.dumps(error))
    assert type(restored) is LLMUnusableAnswersError
    assert str(restored) == str(error)
    assert (restored.reason, restored.count, restored.fix) == (
        error.reason,
        error.count,
        error.fix,
    )
    uncached = LLMUnusableAnswersError("empty", 20, 20, 0, 0, "fix it", cached=False)
    assert str(uncached).endswith(
        "To fix: fix it. No answer was cached (cache_dir=False)."
    )
    assert pickle.loads(pickle.dumps(uncached)).cached is False


def _truncating_judge(rate, bad=lambda body: False):
    """Answers ANSWER, cut off at random at ``rate`` (seeded by the request)."""

    def chat(body):
        rng = random.Random(json.dumps(body["messages"]))
        if bad(body) or rng.random() < rate:
            return {"content": "Mentions a", "finish_reason": "length"}
        return ANSWER

    return chat


def test_a_run_with_occasional_unusable_answers_is_not_stopped(make_client):
    # 10% of answers cut off at random (seeded by each request's messages).
    with FakeOpenAIServer(chat=_truncating_judge(0.1)) as srv:
        client = make_client(srv, n_concurrent=4)
        with pytest.warns(RuntimeWarning, match="Unusable LLM answers") as caught:
            answers = client.complete(_items(200))
        assert answers == [ANSWER] * 200
        assert answers.unusable == {"cut off": 20}
        assert answers.usage.reasks == 20
        assert len(srv.requests) == 220
        assert "got no usable answer" not in str(caught[-1].message)


def _number(body):
    """The item's number, from the first message (re-asks append others)."""
    return int(body["messages"][0]["content"].split()[-1])


def test_one_usable_answer_among_the_first_turns_the_stop_off(make_client):
    # The first 19 requests (one at a time) and the last 5 are always cut off,
    # the 20th is answered: the run is not misconfigured, and goes on.
    def bad(body):
        return _number(body) != 19

    with FakeOpenAIServer(chat=_truncating_judge(0.0, bad)) as srv:
        client = make_client(srv, n_concurrent=1, cache_dir=False)
        with pytest.warns(RuntimeWarning, match="24 of 25 LLM requests"):
            answers = client.complete(_items(25))
        assert answers == [None] * 19 + [ANSWER] + [None] * 5
        assert len(srv.requests) == 24 * 3 + 1
        # Unusable for two reasons (cut off, then refused): no one setting to
        # blame, no stop.
        srv.chat = lambda body: (
            {"content": "Mentions a", "finish_reason": "length"}
            if _number(body) % 2
            else REFUSAL_TEXT
        )
        fresh = clone(client).set_params(n_concurrent=4)
        with pytest.warns(RuntimeWarning, match="24 of 24 LLM requests"):
            assert fresh.complete(_items(24, "again")) == [None] * 24


# Structured output -------------------------------------------------------------
SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}},
    "required": ["answer"],
    "additionalProperties": False,
}


def _parse_answer(text):
    """Tolerant: JSON where the server followed the schema, else free text."""
    try:
        return json.loads(text)["answer"]
    except (ValueError, KeyError, TypeError):
        return ["no", "yes"][parse_yes_no(text)]


def test_json_schema_is_sent_where_supported(make_client):
    def chat(body):
        fmt = body.get("response_format")
        return json.dumps({"answer": "yes"}) if fmt else "yes, it is"

    with FakeOpenAIServer(chat=chat) as srv:
        client = make_client(srv)
        answers = _no_warning(
            lambda: client.complete_parsed(["q"], _parse_answer, json_schema=SCHEMA)
        )
        assert answers == ["yes"]
        assert srv.requests[0]["body"]["response_format"] == {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": SCHEMA, "strict": True},
        }
        # The schema is part of the cache key.
        plain = client.complete_parsed(["q"], _parse_answer)
        assert plain == ["yes"] and plain.usage.calls == 1


def test_json_schema_falls_back_where_rejected(make_client):
    def chat(body):
        return "Yes, it does."

    with FakeOpenAIServer(chat=chat, response_format=False) as srv:
        client = make_client(srv)
        with pytest.warns(RuntimeWarning) as caught:
            answers = client.complete_parsed(["q1"], _parse_answer, json_schema=SCHEMA)
        assert answers == ["yes"]
        assert [r["status"] for r in srv.requests] == [400, 200]
        assert "response_format" not in srv.requests[1]["body"]
        assert answers.usage.failures == 0
        assert len(caught) == 1
        assert str(caught[0].message) == (
            "The endpoint rejected structured output (response_format): "
            "\"Invalid parameter: 'response_format' of type 'json_schema' is not "
            'supported with this model."; answers are parsed from free text for '
            "the rest of this run."
        )
        # Remembered for the run: no second 400, no second warning.
        again = _no_warning(
            lambda: client.complete_parsed(
                ["q2", "q3"], _parse_answer, json_schema=SCHEMA
            )
        )
        assert again == ["yes", "yes"]
        assert [r["status"] for r in srv.requests] == [400, 200, 200, 200]


# extra_body --------------------------------------------------------------------
def test_extra_body_is_merged_into_requests_and_the_cache_key(fake_server, make_client):
    client = make_client(
        fake_server, extra_body={"reasoning_effort": "low", "top_k": 20}
    )
    client.complete(["x"], extra_body={"top_k": 5, "seed_text": "s"})
    body = fake_server.requests[0]["body"]
    assert (body["reasoning_effort"], body["top_k"], body["seed_text"]) == (
        "low",
        5,
        "s",
    )
    assert client.cache_key("x") != clone(client).set_params(extra_body=None).cache_key(
        "x"
    )
    assert client.cache_key("x", extra_body={"top_k": 20}) == client.cache_key("x")
    # An empty extra_body is no extra_body: older cache entries stay valid.
    assert clone(client).set_params(extra_body={}).cache_key("x") == clone(
        client
    ).set_params(extra_body=None).cache_key("x")
    restored = pickle.loads(pickle.dumps(client))
    assert restored.get_params()["extra_body"] == {
        "reasoning_effort": "low",
        "top_k": 20,
    }
    assert clone(client).extra_body == client.extra_body
    assert clone(client).extra_body is not client.extra_body
    assert "extra_body={'reasoning_effort': 'low', 'top_k': 20}" in repr(client)
    with pytest.raises(ValueError, match="'extra_body' parameter of LLMClient"):
        LLMClient(extra_body="no", cache_dir=False).complete(["x"])
