"""Judges for the loopback server (``FakeOpenAIServer(chat=...)``) whose errors
are known: stand-ins for an LLM that annotates, with the weaknesses real ones
have, so that tests and benchmarks can measure what the annotation protocol
does about them.

:func:`position_biased_judge` answers this package's annotation prompts
(several numbered concepts and a JSON answer, or one concept and yes/no) by a
rule (:func:`fake_openai.concept_present`), and is wrong with a probability
that grows with the concept's position in the request: a model answering a
long list attends less to its end. Its errors are seeded and deterministic per
(text, concept): for each pair one uniform draw ``u`` is fixed, and the answer
is flipped when ``u`` is below the error rate of the position the concept has
in this request. So the same request always gets the same answer, and moving a
concept to a later position can only add errors.
"""

from __future__ import annotations

import hashlib
import json
import re

from fake_openai import concept_present, last_user_message

_NUMBERED = re.compile(r"^\s*(\d+)\.\s+(.+?)\s*$", re.M)
_SINGLE = re.compile(r"property: (.+)")


def uniform(seed: int, text: str, concept: str) -> float:
    """A number in [0, 1) fixed by the seed, the text and the concept."""
    digest = hashlib.sha256(f"{seed}\x00{text}\x00{concept}".encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2**64


def error_rate(position: int, base_error: float, error_per_position: float) -> float:
    """The judge's chance of a wrong answer at ``position`` (1 is the first)."""
    return min(1.0, base_error + error_per_position * (position - 1))


def read_annotation_prompt(prompt: str):
    """``(text, [concept, ...], multi)`` of one of this package's annotation
    prompts: the text after the last ``Text: `` (without its triple quotes)
    and the concepts in the order listed."""
    head, _, text = prompt.rpartition("Text: ")
    text = text.strip()
    if text.startswith('"""') and text.endswith('"""'):
        text = text[3:-3]
    numbered = _NUMBERED.findall(head)
    if numbered:
        return text, [concept for _, concept in numbered], True
    single = _SINGLE.search(head)
    if single is None:
        raise ValueError(f"Not an annotation prompt: {prompt[:80]!r}")
    return text, [single.group(1).strip()], False


def position_biased_judge(
    *, base_error=0.02, error_per_position=0.005, seed=0, truth=concept_present
):
    """A ``chat=`` callable that annotates with position-dependent errors.

    Parameters
    ----------
    base_error : float, default=0.02
        Error rate of the first concept of a request (and of every
        single-concept request).
    error_per_position : float, default=0.005
        Added to the error rate per position further down the list: with the
        defaults, 2% at position 1, 6.5% at 10, 11.5% at 20.
    seed : int, default=0
        Which (text, concept) pairs are answered wrongly.
    truth : callable, default=concept_present
        ``truth(concept, text) -> bool``, the right answer.

    Returns
    -------
    chat : callable
        ``chat(body) -> str``: JSON ``{"1": 0 or 1, ...}`` for a numbered list,
        "yes" or "no" for one concept. Its ``calls`` attribute counts the
        prompts it answered.
    """

    def answer(concept, text, position):
        right = bool(truth(concept, text))
        rate = error_rate(position, base_error, error_per_position)
        return right != (uniform(seed, text, concept) < rate)

    def chat(body):
        chat.calls += 1
        text, concepts, multi = read_annotation_prompt(last_user_message(body))
        if not multi:
            return "yes" if answer(concepts[0], text, 1) else "no"
        return json.dumps(
            {
                str(i): int(answer(concept, text, i))
                for i, concept in enumerate(concepts, 1)
            }
        )

    chat.calls = 0
    return chat
