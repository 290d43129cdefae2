"""interpret_latents: planted concepts, held-out fidelity equal to hand counts."""

import re
import warnings

import numpy as np
import pytest
from fake_openai import FakeOpenAIServer, concept_judge, last_user_message
from scipy import sparse

from sklearn_hypothesaes import interpret_latents
from sklearn_hypothesaes.hypotheses import fidelity_scores
from sklearn_hypothesaes.hypotheses._interpret import parse_hypothesis


def make_corpus():
    """80 texts; latent 0 fires on dogs (strongly) and puppies (weakly),
    latent 1 on rain, latent 2 never fires."""
    texts, acts = [], np.zeros((80, 3))
    for i in range(80):
        if i % 4 == 0:
            texts.append(f"review {i}: my dog sat by the door")
            acts[i, 0] = 1.0 + i % 7
        elif i % 8 == 1:
            texts.append(f"review {i}: a puppy slept all day")
            acts[i, 0] = 0.5
        elif i % 4 == 2:
            texts.append(f"review {i}: rain again on the coast")
            acts[i, 1] = 2.0 + i % 3
        else:
            texts.append(f"review {i}: the bus was late")
    return texts, acts


def section(prompt, title):
    block = prompt.split(title, 1)[1].split("\n\n", 1)[0]
    return re.findall(r'^\d+\. """(.+)"""$', block, re.M)


def interpreter():
    """Names rain correctly; for dogs the first answer is vague, later precise."""
    asked = {"dog": 0}

    def chat(body):
        prompt = last_user_message(body)
        if "Texts where it fires:" not in prompt:
            return concept_judge(body)
        fires = section(prompt, "Texts where it fires:")
        if sum("rain" in t for t in fires) > len(fires) / 2:
            return "Mentions rain."
        asked["dog"] += 1
        return "Mentions animals." if asked["dog"] == 1 else '- "Mentions a dog."'

    return chat


def test_parse_hypothesis():
    assert parse_hypothesis('- "Mentions retriever dogs."') == "mentions retriever dogs"
    assert parse_hypothesis("<think>hmm</think>\nFeature: Describes rain\nmore") == (
        "describes rain"
    )
    assert parse_hypothesis("1. **uses slang**") == "uses slang"
    with pytest.raises(ValueError):
        parse_hypothesis("  \n ")


def test_fidelity_equals_hand_counts():
    annotations = np.array([1.0, 1.0, 0.0, 0.0, np.nan, 1.0])
    fires = np.array([True, False, True, False, True, True])
    acts = np.array([2.0, 0.0, 1.0, 0.0, 5.0, 3.0])
    got = fidelity_scores(annotations, acts)
    assert np.array_equal(acts > 0, fires)
    # Kept: pred [1,1,0,0,1], true [1,0,1,0,1] -> TP 2, FP 1, FN 1.
    assert got["precision"] == pytest.approx(2 / 3)
    assert got["recall"] == pytest.approx(2 / 3)
    assert got["f1"] == pytest.approx(2 / 3)
    pred, kept = np.array([1, 1, 0, 0, 1.0]), np.array([2.0, 0, 1, 0, 3])
    assert got["correlation"] == pytest.approx(np.corrcoef(pred, kept)[0, 1])


def test_planted_concepts_and_fidelity(make_client):
    texts, acts = make_corpus()
    with FakeOpenAIServer(chat=interpreter()) as srv:
        client = make_client(srv, n_concurrent=1)
        with pytest.warns(UserWarning, match="1 latent"):
            frame = interpret_latents(
                texts,
                acts,
                client=client,
                n_candidates=2,
                n_examples=6,
                n_fidelity=20,
                random_state=0,
                concepts_per_request=2,
            )
        prompts = [last_user_message(r["body"]) for r in srv.requests]
        n_requests = len(srv.requests)

        # Same sampling from a sparse matrix: identical prompts, all cached.
        with pytest.warns(UserWarning, match="1 latent"):
            again = interpret_latents(
                texts,
                sparse.csr_matrix(acts),
                client=client,
                n_candidates=2,
                n_examples=6,
                n_fidelity=20,
                random_state=0,
                concepts_per_request=2,
            )
        assert len(srv.requests) == n_requests
    assert again.equals(frame)

    assert list(frame.columns) == [
        "latent",
        "candidate",
        "hypothesis",
        "precision",
        "recall",
        "f1",
        "correlation",
        "best",
    ]
    best = frame[frame["best"]].set_index("latent")["hypothesis"].to_dict()
    assert best == {0: "mentions a dog", 1: "mentions rain"}
    assert frame.loc[frame["latent"] == 2, "hypothesis"].isna().all()
    assert frame.loc[frame["latent"] == 0, "hypothesis"].tolist() == [
        "mentions animals",
        "mentions a dog",
    ]

    interpret_prompts = [p for p in prompts if "Texts where it fires:" in p]
    annotate_prompts = [p for p in prompts if p.startswith("For each numbered")]
    assert len(interpret_prompts) == 4  # 2 live latents x 2 candidates
    index = {t: i for i, t in enumerate(texts)}
    for latent, keyword in ((0, "dog"), (1, "rain")):
        held = [
            p.rpartition("Text: ")[2].strip().strip('"')
            for p in annotate_prompts
            if keyword in p.split("Text: ")[0]
        ]
        rows = np.array([index[t] for t in held])
        assert len(rows) == 20 and (acts[rows, latent] > 0).sum() == 10
        shown = {
            t
            for p in interpret_prompts
            if (keyword == "rain") == ("rain" in section(p, "fires:")[0])
            for t in section(p, "fires:") + section(p, "not fire:")
        }
        assert not shown & set(held), "held-out texts were shown in a prompt"
        # Hand-computed fidelity of the planted concept on those texts.
        pred = np.array([keyword in texts[i] for i in rows])
        true = acts[rows, latent] > 0
        tp = (pred & true).sum()
        row = frame[(frame["latent"] == latent) & frame["best"]].iloc[0]
        assert row["precision"] == pytest.approx(tp / pred.sum())
        assert row["recall"] == pytest.approx(tp / true.sum())
        p, r = tp / pred.sum(), tp / true.sum()
        assert row["f1"] == pytest.approx(2 * p * r / (p + r))
        assert row["correlation"] == pytest.approx(
            np.corrcoef(pred.astype(float), acts[rows, latent])[0, 1]
        )
    vague = frame[(frame["latent"] == 0) & (frame["candidate"] == 0)].iloc[0]
    assert (vague["precision"], vague["recall"], vague["f1"]) == (0.0, 0.0, 0.0)


def test_top_sampling_shows_the_strongest(make_client):
    texts, acts = make_corpus()
    with FakeOpenAIServer(chat=interpreter()) as srv:
        frame = interpret_latents(
            texts,
            acts,
            [1],
            client=make_client(srv),
            sampling="top",
            n_examples=5,
            n_fidelity=0,
            instructions="Focus on weather.",
        )
        prompt = last_user_message(srv.requests[0]["body"])
    assert len(srv.requests) == 1  # no fidelity scoring
    assert "Focus on weather." in prompt
    shown = [texts.index(t) for t in section(prompt, "Texts where it fires:")]
    assert sorted(acts[shown, 1]) == sorted(np.sort(acts[:, 1])[-5:])
    assert frame["best"].tolist() == [True]
    assert np.isnan(frame["f1"]).all()


def test_bad_arguments(make_client):
    texts, acts = make_corpus()
    with FakeOpenAIServer() as srv:
        client = make_client(srv)
        with pytest.raises(ValueError, match="'activations' parameter"):
            interpret_latents(texts[:5], acts, client=client)
        with pytest.raises(ValueError, match="'latent_indices'"):
            interpret_latents(texts, acts, [3], client=client)
        with pytest.raises(ValueError, match="'sampling'"):
            interpret_latents(texts, acts, client=client, sampling="random")
        with pytest.raises(ValueError, match=r"placeholder \{instructions\}"):
            interpret_latents(texts, acts, [0], client=client, prompt_template="{x}")


@pytest.mark.parametrize(
    "answer, concept",
    [
        ("Here is the property:\n\nMentions a refund.", "mentions a refund"),
        ("Sure! The property is: uses sarcasm", "uses sarcasm"),
        ('<think>dogs?</think>\n**Property:** "Mentions dogs."', "mentions dogs"),
    ],
)
def test_parse_hypothesis_drops_the_preamble(answer, concept):
    assert parse_hypothesis(answer) == concept


@pytest.mark.parametrize(
    "answer",
    [
        "I'm sorry, but I can't help with that.",
        "As an AI language model, I cannot judge these texts.",
        "<think>The texts where it fires all mention",
        "Here is the property:",
        '{"1": 1}',
    ],
)
def test_parse_hypothesis_refuses_unusable_answers(answer):
    with pytest.raises(ValueError):
        parse_hypothesis(answer)


def refusing_interpreter(body):
    """Refuses the dog latent, answers the rain latent after a lead-in."""
    prompt = body["messages"][0]["content"]  # the same when asked again
    if "Texts where it fires:" not in prompt:
        return concept_judge(body)
    fires = section(prompt, "Texts where it fires:")
    if sum("rain" in t for t in fires) > len(fires) / 2:
        return "Here is the property:\n\nMentions rain."
    return "I'm sorry, but I can't help with that."


def test_refusals_never_become_hypotheses(make_client):
    texts, acts = make_corpus()
    with FakeOpenAIServer(chat=refusing_interpreter) as srv:
        with pytest.warns(
            RuntimeWarning, match=r"Unusable LLM answers: 3 \(3 refusal\)"
        ):
            frame = interpret_latents(
                texts, acts, [0, 1], client=make_client(srv), n_fidelity=0
            )
        assert len(srv.requests) == 1 + 3  # the refused prompt asked 3 times
    assert frame["hypothesis"].isna().tolist() == [True, False]
    assert frame["hypothesis"][1] == "mentions rain"
    assert frame["best"].tolist() == [False, True]


def test_no_usable_description_at_all_says_why_and_what_to_change(make_client):
    texts, acts = make_corpus()
    with FakeOpenAIServer(chat=lambda body: "Sorry, I cannot do that.") as srv:
        with pytest.raises(RuntimeError) as info:
            interpret_latents(texts, acts, client=make_client(srv), n_fidelity=0)
    message = str(info.value)
    assert message.startswith(
        "The LLM gave no usable description for any latent: all 2 interpretation "
        "prompts ended without one (unusable answers: 6 refusal; requests: 6, "
        "failed: 2). No hypothesis can be made from them. To fix: the model "
        "refused: write what the texts are in instructions=..., or use another "
        "model. The client said: "
    )
    assert "last error: unusable answer 'Sorry, I cannot do that.'" in message


def test_a_prompt_too_long_for_a_short_context_is_flagged(make_client):
    texts = [("dog " * 1000).strip()] * 10 + ["cat"] * 10  # 3,999 characters each
    acts = np.array([[1.0]] * 10 + [[0.0]] * 10)
    with FakeOpenAIServer(chat=lambda body: "Mentions dogs.") as srv:
        client = make_client(srv)
        with pytest.warns(
            UserWarning,
            match=r"the longest interpretation prompt is about 7,317 tokens .*"
            r"lower max_text_chars \(now None\) or n_examples \(now 7\)",
        ):
            interpret_latents(
                texts,
                acts,
                client=client,
                n_fidelity=0,
                n_examples=7,
                max_text_chars=None,
            )
        # Cut at the default 500 characters, the same prompt is short enough.
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            interpret_latents(texts, acts, client=client, n_fidelity=0, n_examples=7)


def test_candidates_scored_at_once_equal_one_at_a_time():
    from sklearn_hypothesaes.hypotheses._interpret import _candidate_scores

    rng = np.random.default_rng(0)
    keys, answers = [], []
    for j in range(60):
        acts = rng.random(80) * (rng.random(80) < 0.3)
        if j % 7 == 0:
            acts[:] = 0.5  # constant: correlation 0.0
        held = np.sort(rng.choice(80, rng.integers(1, 30), replace=False))
        named = [c for c in range(3) if rng.random() > 0.3] or [1]
        for _ in held:
            row = (rng.random(len(named)) > 0.5).astype(float)
            row[rng.random(len(named)) < 0.1] = np.nan  # no usable answer
            if j % 11 == 0:
                row[:] = np.nan  # none at all: every score NaN
            answers.append(row)
        keys.append((j, named, held, acts))
    got = _candidate_scores(keys, answers)
    offset = 0
    for j, named, held, acts in keys:
        block = np.vstack(answers[offset : offset + len(held)])
        offset += len(held)
        for col, c in enumerate(named):
            expected = fidelity_scores(block[:, col], acts[held])
            assert got[(j, c)].keys() == expected.keys()
            for key, value in expected.items():  # the same floats, NaN included
                assert np.array_equal(got[(j, c)][key], value, equal_nan=True)
    assert len(got) == sum(len(named) for _, named, _, _ in keys)
