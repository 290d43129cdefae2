"""annotate_texts against a real loopback server with a deterministic judge."""

import collections
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from fake_openai import FakeOpenAIServer, concept_judge, concept_present

from sklearn_hypothesaes import LLMClient, annotate_texts
from sklearn_hypothesaes.hypotheses._annotate import parse_multi_answer
from sklearn_hypothesaes.utils._store import SQLiteStore

TEXTS = [
    "The dog chased a ball in the park.",
    "Rain fell all night on the old roof.",
    "My cat ignores the dog next door.",
    "A quiet film about grief and rain.",
    "Stocks rose after the earnings call.",
]
CONCEPTS = ["mentions a dog", "mentions rain", "mentions a cat", "talks about stocks"]


def expected(texts, concepts):
    return np.array([[float(concept_present(c, t)) for c in concepts] for t in texts])


@pytest.mark.parametrize(
    "answer, n, values",
    [
        ('{"1": 1, "2": 0}', 2, [1.0, 0.0]),
        ('```json\n{"1": "yes", "2": "No"}\n```', 2, [1.0, 0.0]),
        ('<think>{"1": 0}</think>Sure: {"1": true, "2": false, "3": 1}', 3, [1, 0, 1]),
        ("[0, 1]", 2, [0.0, 1.0]),
        ("1: yes\n2) no\n3 = 1", 3, [1.0, 0.0, 1.0]),
        ('{"concept 1": 1, "concept 2": 0}', 2, [1.0, 0.0]),
    ],
)
def test_parse_multi_answer(answer, n, values):
    assert parse_multi_answer(answer, n) == values


@pytest.mark.parametrize(
    "answer, values",
    [('{"1": 1}', [1.0, np.nan]), ('{"1": 1, "2": "maybe"}', [1.0, np.nan])],
)
def test_parse_multi_answer_leaves_out_what_is_missing(answer, values):
    np.testing.assert_array_equal(parse_multi_answer(answer, 2), values)


@pytest.mark.parametrize(
    "answer",
    [
        "no idea",
        '{"1": <1 or 0>, "2": <1 or 0>, ...}',  # the prompt's shape, copied
        "I'm sorry, but I can't help with that.",
        "<think>The first property",
    ],
)
def test_parse_multi_answer_rejects_answers_without_any_value(answer):
    with pytest.raises(ValueError):
        parse_multi_answer(answer, 2)


def test_multi_mode_sends_each_text_once_per_chunk(make_client):
    with FakeOpenAIServer(chat=concept_judge) as srv:
        client = make_client(srv)
        out = annotate_texts(TEXTS, CONCEPTS, client=client, concepts_per_request=3)
        np.testing.assert_array_equal(out, expected(TEXTS, CONCEPTS))
        assert out.dtype == np.float64
        # 4 concepts in chunks of 3 -> 2 requests per text.
        assert len(srv.requests) == len(TEXTS) * 2
        again = annotate_texts(TEXTS, CONCEPTS, client=client, concepts_per_request=3)
        np.testing.assert_array_equal(again, out)
        assert len(srv.requests) == len(TEXTS) * 2  # all cached


def test_single_mode_matches_multi_mode(make_client):
    with FakeOpenAIServer(chat=concept_judge) as srv:
        out = annotate_texts(TEXTS, CONCEPTS, client=make_client(srv), mode="single")
        np.testing.assert_array_equal(out, expected(TEXTS, CONCEPTS))
        assert len(srv.requests) == len(TEXTS) * len(CONCEPTS)


def test_probabilities_use_logprobs(make_client):
    def judge(body):
        answer = concept_judge(body)
        top = [
            {"token": answer, "logprob": float(np.log(0.9))},
            {
                "token": "no" if answer == "yes" else "yes",
                "logprob": float(np.log(0.1)),
            },
        ]
        content = [{"token": answer, "logprob": top[0]["logprob"], "top_logprobs": top}]
        return {"content": answer, "logprobs": {"content": content}}

    with FakeOpenAIServer(chat=judge) as srv:
        out = annotate_texts(
            TEXTS[:2], CONCEPTS[:2], client=make_client(srv), probabilities=True
        )
        assert srv.requests[0]["body"]["max_tokens"] == 1
    np.testing.assert_allclose(out, [[0.9, 0.1], [0.1, 0.9]])


def test_missing_answers_are_nan_and_counted(make_client):
    with FakeOpenAIServer(chat=concept_judge) as srv:
        srv.malformed(times=3)  # the first text's three attempts all fail
        client = make_client(srv, n_concurrent=1)
        with pytest.warns(UserWarning, match="4 of 20 annotations are missing"):
            out = annotate_texts(TEXTS, CONCEPTS, client=client, concepts_per_request=4)
        assert np.isnan(out[0]).all()
        np.testing.assert_array_equal(out[1:], expected(TEXTS[1:], CONCEPTS))
        # A second run asks only for what is missing.
        n_before = len(srv.requests)
        out = annotate_texts(TEXTS, CONCEPTS, client=client, concepts_per_request=4)
        assert len(srv.requests) == n_before + 1
        np.testing.assert_array_equal(out, expected(TEXTS, CONCEPTS))


def test_long_texts_are_cut(make_client):
    with FakeOpenAIServer(chat=concept_judge) as srv:
        out = annotate_texts(
            ["x " * 100 + "dog"],
            ["mentions dog"],
            client=make_client(srv),
            max_text_chars=20,
        )
        assert out.tolist() == [[0.0]]  # "dog" was cut off
        assert srv.requests[0]["body"]["messages"][0]["content"].endswith(
            'Text: """x x x x x x x x x x [...]"""\n'
        )


def test_custom_prompt_and_bad_arguments(make_client):
    template = "Concepts:\n{concepts}\nJSON only.\nText: {text}"
    with FakeOpenAIServer(chat=concept_judge) as srv:
        out = annotate_texts(
            TEXTS[:1],
            CONCEPTS[:2],
            client=make_client(srv),
            prompt_template=template,
            concepts_per_request=2,
        )
        assert out.tolist() == [[1.0, 0.0]]
        assert srv.requests[0]["body"]["messages"][0]["content"].startswith("Concepts:")
    client = LLMClient(cache_dir=False)
    with pytest.raises(ValueError, match="'mode' parameter of annotate_texts"):
        annotate_texts(TEXTS, CONCEPTS, client=client, mode="batch")
    with pytest.raises(TypeError, match="'texts' parameter"):
        annotate_texts("one text", CONCEPTS, client=client)
    with pytest.raises(ValueError, match="'concepts_per_request'"):
        annotate_texts(TEXTS, CONCEPTS, client=client, concepts_per_request=0)
    assert annotate_texts([], CONCEPTS, client=client).shape == (0, 4)


_CHILD = """
import sys
from sklearn_hypothesaes import LLMClient, annotate_texts
texts = [f"text {i} about a {'dog' if i % 3 else 'cat'}" for i in range(30)]
client = LLMClient(base_url=sys.argv[1], cache_dir=sys.argv[2], n_concurrent=4,
                   max_retries=0)
annotate_texts(texts, ["mentions a dog", "mentions a cat"], client=client,
               concepts_per_request=2)
"""


def test_killed_run_resumes_without_asking_twice(tmp_path):
    """Kill a run midway; the rerun asks only for what was never answered."""
    texts = [f"text {i} about a {'dog' if i % 3 else 'cat'}" for i in range(30)]
    concepts = ["mentions a dog", "mentions a cat"]
    n_before_kill = 12
    answered = collections.Counter()
    gate, lock = threading.Event(), threading.Lock()

    def judge(body):
        with lock:
            allowed = gate.is_set() or sum(answered.values()) < n_before_kill
            if allowed:
                prompt = body["messages"][-1]["content"]
                answered[prompt] += 1
        if not allowed:
            gate.wait(timeout=30)
            raise RuntimeError("the client was killed while this request waited")
        return concept_judge(body)

    with FakeOpenAIServer(chat=judge) as srv:
        child = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(_CHILD), srv.base_url, str(tmp_path)]
        )
        try:
            deadline = time.monotonic() + 60
            db = tmp_path / "llm.sqlite"
            while time.monotonic() < deadline:
                if db.exists() and len(SQLiteStore(db)) >= n_before_kill:
                    break
                assert child.poll() is None, "the child exited before it was killed"
                time.sleep(0.02)
            child.kill()
            child.wait(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
        assert len(SQLiteStore(db)) == n_before_kill
        gate.set()

        client = LLMClient(base_url=srv.base_url, cache_dir=tmp_path, n_concurrent=4)
        out = annotate_texts(texts, concepts, client=client, concepts_per_request=2)
    np.testing.assert_array_equal(out, expected(texts, concepts))
    assert len(answered) == len(texts)
    assert set(answered.values()) == {1}  # nothing was paid for twice
    assert client.usage()["cache_hits"] == n_before_kill
