"""The annotation protocol through the loopback server: concepts per request,
the shuffled order, re-asking only what an answer left out, structured output,
one text length, and annotation_agreement against a judge with known errors."""

import json
import math
import re
import warnings

import numpy as np
import pytest
from fake_openai import FakeOpenAIServer, concept_judge, concept_present
from judges import error_rate, position_biased_judge, read_annotation_prompt, uniform
from sklearn.metrics import cohen_kappa_score

from sklearn_hypothesaes import (
    HypothesisGenerator,
    LLMAnnotator,
    LLMDescriber,
    annotate_texts,
)
from sklearn_hypothesaes.hypotheses._annotate import (
    annotation_agreement,
    concept_order,
)

TEXTS = [
    f"note {i}: "
    + ("a dog " if i % 2 else "")
    + ("rain " if i % 3 else "")
    + ("coffee " if i % 5 == 0 else "")
    + ("a train" if i % 4 == 1 else "")
    for i in range(12)
]
CONCEPTS = [
    f"mentions {w}"
    for w in (
        "dog",
        "rain",
        "coffee",
        "train",
        "cat",
        "bus",
        "sun",
        "tea",
        "film",
        "snow",
        "note",
        "bike",
    )
]


def truth(texts, concepts):
    return np.array([[concept_present(c, t) for c in concepts] for t in texts])


def prompts_of(server):
    return [r["body"]["messages"][0]["content"] for r in server.requests]


def expected_judge_answers(texts, concepts, per_request, seed, base, slope):
    """What position_biased_judge answers, from the documented order: each
    concept's position in its text's request is its place in concept_order
    within its chunk."""
    out = np.zeros((len(texts), len(concepts)))
    for t, text in enumerate(texts):
        order = concept_order(text, len(concepts), seed) if per_request > 1 else None
        for c, concept in enumerate(concepts):
            position = 1
            if order is not None:
                position = int(np.flatnonzero(order == c)[0]) % per_request + 1
            wrong = uniform(0, f"{text}", concept) < error_rate(position, base, slope)
            out[t, c] = float(concept_present(concept, text) != wrong)
    return out


def test_one_and_ten_concepts_per_request_through_the_server(make_client):
    """Exact answers of a position-biased judge: one concept per request is
    always at position 1; ten per request put each concept where its text's
    shuffled order puts it."""
    base, slope = 0.05, 0.04  # 5% at position 1, 41% at position 10
    found = {}
    for per_request in (1, 10):
        judge = position_biased_judge(base_error=base, error_per_position=slope)
        with FakeOpenAIServer(chat=judge) as srv:
            client = make_client(srv, cache_dir=False)
            found[per_request] = annotate_texts(
                TEXTS,
                CONCEPTS,
                client=client,
                concepts_per_request=per_request,
                random_state=7,
            )
            # 12 concepts: 12 yes/no questions per text, or 2 lists (10 + 2).
            assert len(srv.requests) == len(TEXTS) * (12 if per_request == 1 else 2)
            if per_request == 10:
                formats = [r["body"].get("response_format") for r in srv.requests]
                sizes = sorted(
                    f["json_schema"]["schema"]["required"][-1] for f in formats
                )
                assert sizes == ["10"] * 12 + ["2"] * 12
    for per_request, values in found.items():
        np.testing.assert_array_equal(
            values,
            expected_judge_answers(TEXTS, CONCEPTS, per_request, 7, base, slope),
        )
    right = truth(TEXTS, CONCEPTS)
    assert (found[1] == right).mean() == pytest.approx(133 / 144)
    assert (found[10] == right).mean() == pytest.approx(105 / 144)


def test_order_is_shuffled_per_text_and_the_same_on_every_run(make_client):
    orders = {tuple(concept_order(t, len(CONCEPTS), 0)) for t in TEXTS}
    assert len(orders) == len(TEXTS)  # every text its own order
    assert list(concept_order(TEXTS[0], 12, 0)) == list(concept_order(TEXTS[0], 12, 0))
    assert list(concept_order(TEXTS[0], 12, 0)) != list(concept_order(TEXTS[0], 12, 1))
    with FakeOpenAIServer(chat=concept_judge) as srv:
        client = make_client(srv)
        first = annotate_texts(TEXTS, CONCEPTS, client=client, concepts_per_request=5)
        listed = [read_annotation_prompt(p) for p in prompts_of(srv)]
        # The answers do not depend on the order: the right ones, in the
        # caller's order of concepts.
        np.testing.assert_array_equal(first, truth(TEXTS, CONCEPTS))
        # Same seed: the same prompts, all answered by the cache.
        again = annotate_texts(TEXTS, CONCEPTS, client=client, concepts_per_request=5)
        assert len(srv.requests) == len(listed) == len(TEXTS) * 3
        np.testing.assert_array_equal(again, first)
        # Another seed: other orders, so new prompts.
        annotate_texts(
            TEXTS, CONCEPTS, client=client, concepts_per_request=5, random_state=1
        )
        assert len(srv.requests) == 2 * len(listed)
    # Each text's three requests list the slices of its own order.
    for text in TEXTS:
        order = [CONCEPTS[c] for c in concept_order(text, 12, 0)]
        chunks = {tuple(order[i : i + 5]) for i in (0, 5, 10)}
        assert {tuple(c) for t, c, _ in listed if t == text} == chunks


def test_only_the_concepts_an_answer_leaves_out_are_asked_again(make_client):
    """A judge that leaves "mentions rain" out of every list of several: each
    text is asked once more, about that concept alone."""

    def forgetful(body):
        answer = json.loads(concept_judge(body))
        text, concepts, multi = read_annotation_prompt(body["messages"][0]["content"])
        if len(concepts) > 1:
            answer.pop(str(concepts.index("mentions rain") + 1), None)
        return json.dumps(answer)

    with FakeOpenAIServer(chat=forgetful) as srv:
        client = make_client(srv)
        out = annotate_texts(TEXTS, CONCEPTS, client=client, concepts_per_request=12)
        prompts = prompts_of(srv)
    np.testing.assert_array_equal(out, truth(TEXTS, CONCEPTS))
    assert len(prompts) == 2 * len(TEXTS)  # not 3 (the whole list again)
    again = [read_annotation_prompt(p) for p in prompts[len(TEXTS) :]]
    assert all(concepts == ["mentions rain"] for _, concepts, _ in again)
    assert sorted(text for text, _, _ in again) == sorted(TEXTS)


def test_a_copied_answer_shape_is_not_an_answer(make_client):
    """The prompt's JSON shape has placeholders: a model that copies it gives
    no value, is asked again, and never yields a made-up annotation."""
    shape = re.compile(r"shaped like (\{.*?\}),")

    def copier(body):
        return shape.search(body["messages"][0]["content"]).group(1)

    with FakeOpenAIServer(chat=copier) as srv:
        client = make_client(srv, cache_dir=False)
        with pytest.raises(RuntimeError) as info:
            annotate_texts(
                TEXTS[:2], CONCEPTS[:3], client=client, concepts_per_request=3
            )
        assert len(srv.requests) == 2 * 3  # two texts, three attempts each
    assert str(info.value).startswith(
        "The LLM gave no usable answer for any of the 6 annotations (6 requests; "
        "unusable answers: 6 unparseable; failed requests: 2). Every statistic "
        "would be NaN, so the run stops here. A model that cannot keep to the "
        "JSON format of several concepts per request may answer one at a time: "
        "concepts_per_request=1."
    )


def test_every_annotation_refused_stops_with_the_reason(make_client):
    with FakeOpenAIServer(chat=lambda body: "I'm sorry, I can't do that.") as srv:
        with pytest.raises(
            RuntimeError,
            match=r"^The LLM gave no usable answer for "
            r"any of the 4 annotations \(12 requests; unusable "
            r"answers: 12 refusal; failed requests: 4\)",
        ):
            LLMAnnotator(make_client(srv)).annotate(TEXTS[:2], CONCEPTS[:2])


def test_line_breaks_stay_inside_the_quotes_and_one_length_everywhere(make_client):
    texts = ["Dear Sir,\n\nthe dog barked.\nRegards"] * 3 + ["no pets here"] * 3
    acts = np.array([[3.0], [2.0], [1.0], [0.0], [0.0], [0.0]])

    def chat(body):
        prompt = body["messages"][0]["content"]
        if "Texts where it fires:" in prompt:
            return "Here is the property:\n\nMentions a dog."
        return concept_judge(body)

    with FakeOpenAIServer(chat=chat) as srv:
        client = make_client(srv, cache_dir=False)
        gen = HypothesisGenerator(
            LLMDescriber(client, n_fidelity=2, n_examples=2),
            max_text_chars=20,
            concepts_per_request=3,
            random_state=0,
            max_redundancy=None,
        ).fit(acts, [1, 1, 1, 0, 0, 0], texts=texts)
        prompts = prompts_of(srv)
    assert list(gen.hypotheses_["hypothesis"]) == ["mentions a dog"]
    assert gen.describer_.max_text_chars == gen.annotator_.max_text_chars == 20
    assert gen.annotator_.concepts_per_request == 3
    quoted = {q for p in prompts for q in re.findall(r'"""(.*?)"""', p, re.S)}
    # Interpretation examples, fidelity and fit annotations alike: the first
    # 20 characters, line breaks kept ("Regards" is cut off).
    assert quoted == {"Dear Sir,\n\nthe dog b [...]", "no pets here"}
    assert math.isclose(gen.hypotheses_["fidelity"][0], 1.0)


def test_protocol_settings_need_a_strategy_that_takes_them():
    texts = [f"a brilliant film {i}" for i in range(20)] + [
        f"a dull plot {i}" for i in range(20)
    ]
    acts = np.array([[1.0]] * 20 + [[0.0]] * 20)
    with pytest.raises(
        ValueError,
        match=r"The 'concepts_per_request' parameter of HypothesisGenerator is set "
        r"\(concepts_per_request=5\), but neither the describer \(TermDescriber\) "
        r"nor the annotator \(PhraseAnnotator\) takes it",
    ):
        HypothesisGenerator(concepts_per_request=5).fit(
            acts, [1] * 20 + [0] * 20, texts=texts
        )


def test_annotation_agreement_equals_hand_counts(make_client):
    base, slope = 0.05, 0.04
    with FakeOpenAIServer(
        chat=position_biased_judge(base_error=base, error_per_position=slope)
    ) as srv:
        client = make_client(srv, cache_dir=False)
        table = annotation_agreement(
            TEXTS,
            CONCEPTS,
            client,
            concepts_per_request=(1, 10),
            n_texts=12,
            random_state=0,
        )
        n_requests = len(srv.requests)
        counted = srv.usage
    # The sample (all 12 texts) and then the seed of the order, as drawn.
    rng = np.random.RandomState(0)
    rng.choice(12, 12, replace=False)
    order_seed = int(rng.randint(np.iinfo(np.int32).max))
    one = expected_judge_answers(TEXTS, CONCEPTS, 1, order_seed, base, slope)
    ten = expected_judge_answers(TEXTS, CONCEPTS, 10, order_seed, base, slope)
    assert list(table["concepts_per_request"]) == [1, 10]
    assert list(table["calls"]) == [144, 24] and n_requests == 168
    assert list(table["agreement"]) == [1.0, (one == ten).mean()]
    assert table["kappa"][1] == pytest.approx(
        cohen_kappa_score(one.ravel(), ten.ravel())
    )
    assert table["agreement"][1] == pytest.approx(121 / 144)
    per_concept = (one == ten).mean(axis=0)
    assert table["worst_concept_agreement"][1] == pytest.approx(per_concept.min())
    assert table["positive_rate"][0] == pytest.approx(one.mean())
    assert (table["missing"] == 0).all()
    # The tokens the server counted, split by protocol.
    assert table["prompt_tokens"].sum() == counted["prompt_tokens"]
    assert table["completion_tokens"].sum() == counted["completion_tokens"]
    assert table["prompt_tokens"][0] > 2 * table["prompt_tokens"][1]


def corpus():
    """60 texts: latent 0 fires on dogs, latent 1 on rain; y follows dogs."""
    texts, acts = [], np.zeros((60, 2))
    for i in range(60):
        if i % 3 == 0:
            texts.append(f"day {i}: my dog sat by the door")
            acts[i, 0] = 1.0 + i % 4
        elif i % 3 == 1:
            texts.append(f"day {i}: rain again on the coast")
            acts[i, 1] = 1.0 + i % 5
        else:
            texts.append(f"day {i}: the bus was late")
    return texts, acts, (acts[:, 0] > 0).astype(int)


def planted(body):
    """Names dogs or rain from the first message (the same when asked again)."""
    prompt = body["messages"][0]["content"]
    if "Texts where it fires:" not in prompt:
        return concept_judge({"messages": body["messages"][:1]})
    fires = prompt.split("Texts where it fires:", 1)[1].split("\n\n", 1)[0]
    return "Mentions rain." if fires.count("rain") > 2 else "Mentions a dog."


THINKING_OFF = {"chat_template_kwargs": {"enable_thinking": False}}
RIGHT = ["mentions a dog", "mentions rain"]


@pytest.mark.parametrize(
    "shape, client_params, per_request, outcome",
    [
        ({}, {}, 1, RIGHT),
        ({"thinking": "tags"}, {}, 1, RIGHT),
        (
            {"thinking": "tags"},
            {"max_tokens": 20},
            1,
            "6 unclosed thinking.*"
            "To fix: a thinking model ran out of tokens: raise max_tokens or turn "
            "thinking off",
        ),
        (
            {"thinking": "tags"},
            {"max_tokens": 20, "extra_body": THINKING_OFF},
            1,
            RIGHT,
        ),
        ({"thinking": "parser"}, {"max_tokens": 20}, 1, "unclosed thinking"),
        ({"preamble": "Here is the property:\n\n"}, {}, 1, RIGHT),
        ({"preamble": "Here is the property:\n\n"}, {}, 2, RIGHT),
        ({"refusal": "text"}, {}, 1, "refusal.*To fix: the model refused"),
        ({"refusal": "field"}, {}, 1, "refusal.*To fix: the model refused"),
        ({"content_null": True}, {}, 1, "empty.*the server sent empty answers"),
        (
            {"truncate": True},
            {"max_tokens": 1},
            1,
            "cut off.*To fix: answers "
            r"reached max_tokens: raise LLMClient\(max_tokens=\.\.\.\)",
        ),
        (
            {"reject_params": ("max_tokens",)},
            {},
            1,
            "failed: 2.*The client said: .*HTTP 400: Unsupported parameter: "
            "'max_tokens'",
        ),
        ({"response_format": False}, {}, 2, RIGHT),
    ],
    ids=[
        "plain",
        "thinking",
        "thinking-cut-off",
        "thinking-off",
        "reasoning-parser-cut-off",
        "preamble",
        "preamble-json",
        "refusal-text",
        "refusal-field",
        "content-null",
        "truncated",
        "max_tokens-rejected",
        "no-structured-output",
    ],
)
def test_each_failure_shape_ends_right_or_with_the_fix(
    make_client, shape, client_params, per_request, outcome
):
    """A generator fit against each shape of answer real servers give: the
    right hypotheses, or an error naming the cause and the setting to change;
    never a junk hypothesis."""
    texts, acts, y = corpus()
    with FakeOpenAIServer(chat=planted, **shape) as srv:
        client = make_client(srv, cache_dir=False, **client_params)
        gen = HypothesisGenerator(
            LLMDescriber(client, n_fidelity=10, n_examples=5),
            concepts_per_request=per_request,
            max_fit_annotations=20,
            random_state=0,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if isinstance(outcome, list):
                gen.fit(acts, y, texts=texts)
                assert list(gen.hypotheses_["hypothesis"]) == outcome
                assert list(gen.hypotheses_["fidelity"]) == [1.0, 1.0]
                np.testing.assert_array_equal(
                    gen.transform(texts=texts[:6]), [[1, 0], [0, 1], [0, 0]] * 2
                )
            else:
                with pytest.raises(RuntimeError, match=outcome):
                    gen.fit(acts, y, texts=texts)
