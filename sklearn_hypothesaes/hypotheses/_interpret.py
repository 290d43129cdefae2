"""Interpretation: one sparse-autoencoder latent -> one natural-language concept.

For each latent, an LLM sees numbered texts where the latent fires and texts
where it does not, and names the concept. Each candidate description is then
scored on held-out texts that no prompt showed: an annotator LLM labels them
with the description, and precision, recall and F1 against "the latent fires"
(and the correlation with the activation) say how faithful it is.
"""

from __future__ import annotations

import re
import warnings
from numbers import Integral

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    StrOptions,
    validate_params,
)

from ..llm import Usage, answer_problem, fill_prompt, load_prompt, strip_preamble
from ..utils._misc import warn_user
from ..utils._validation import check_texts
from ._annotate import MAX_TEXT_CHARS, quote_text
from ._annotators import LLMAnnotator
from ._fidelity import FIDELITY_KEYS, column_fidelity_scores, label_correlation

_COLUMNS = [
    "latent",
    "candidate",
    "hypothesis",
    "precision",
    "recall",
    "f1",
    "correlation",
    "best",
]
# A prompt above this many tokens may be cut, silently, by a local server.
_SHORT_CONTEXT = 4096
_CHARS_PER_TOKEN = 4
_LEAD = re.compile(
    r"^(?:[-*\u2022>\s]+|\d+[.)]\s*|(?:feature|property|concept)\s*:\s*)+", re.I
)


def parse_hypothesis(text: str) -> str:
    """The concept from an interpreter's answer, or raise ValueError.

    Reasoning blocks and lead-ins ("Here is the property:", "Sure!") are
    dropped, then the first line is kept without bullets or quotes. Refusals,
    empty answers and answers cut off mid-thought are refused (see
    :func:`~sklearn_hypothesaes.llm.answer_problem`), and so is a line that
    cannot be a concept (a lead-in with nothing after it, markup, more than
    40 words).

    Examples
    --------
    >>> parse_hypothesis('- "Mentions retriever dogs."')
    'mentions retriever dogs'
    >>> parse_hypothesis("Here is the property:\\n\\nMentions a refund.")
    'mentions a refund'
    """
    problem = answer_problem(text)
    if problem is not None:
        raise ValueError(f"Unusable answer ({problem}): {text!r}.")
    lines = [ln.strip() for ln in (strip_preamble(text) or "").splitlines()]
    line = next((ln for ln in lines if ln), "")
    line = _LEAD.sub("", line).strip().strip("\"'`*").strip().rstrip(".").strip()
    if (
        not line
        or len(line.split()) > 40
        or line.endswith(":")
        or line.startswith(("<", "{", "["))
    ):
        raise ValueError(f"Expected one short concept. Got {text!r}.")
    return line[0].lower() + line[1:]


def _column(activations, j: int) -> np.ndarray:
    if sparse.issparse(activations):
        return np.asarray(activations[:, [j]].toarray()).ravel()
    return np.asarray(activations[:, j], dtype=float)


def _sample_prompts(acts, n_candidates, n_examples, n_fidelity, sampling, rng):
    """Held-out fidelity indices, and per candidate (positives, negatives)."""
    fire = np.flatnonzero(acts > 0)
    quiet = np.flatnonzero(acts <= 0)
    fire, quiet = rng.permutation(fire), rng.permutation(quiet)
    # Hold out at most half of each side, so prompts keep examples to show.
    n_pos = min(n_fidelity // 2, len(fire) // 2)
    n_neg = min(n_fidelity - n_pos, len(quiet) // 2)
    held = np.concatenate([fire[:n_pos], quiet[:n_neg]])
    fire, quiet = fire[n_pos:], quiet[n_neg:]
    shown = []
    if sampling == "top":
        ranked = fire[np.argsort(-acts[fire], kind="stable")]
    for c in range(n_candidates):
        if sampling == "top":
            # Interleaved ranks: every candidate sees equally strong examples.
            pos = ranked[c::n_candidates][:n_examples]
            if len(pos) == 0:
                pos = ranked[:n_examples]
        else:
            # One example per percentile bin of the non-zero activations.
            order = fire[np.argsort(acts[fire], kind="stable")]
            bins = np.array_split(order, min(n_examples, len(order)))
            pos = np.array([rng.choice(b) for b in bins if len(b)], dtype=int)
            pos = pos[::-1]  # strongest first
        start = (c * n_examples) % max(len(quiet), 1)
        neg = np.roll(quiet, -start)[:n_examples]
        shown.append((pos, neg))
    return held, shown


def _numbered(texts, indices, max_chars) -> str:
    return "\n".join(
        f"{i}. {quote_text(texts[j], max_chars)}" for i, j in enumerate(indices, 1)
    )


@validate_params(
    {
        "texts": ["array-like"],
        "activations": ["array-like", "sparse matrix"],
        "latent_indices": ["array-like", None],
        "client": [HasMethods(["complete_parsed"])],
        "annotator": [HasMethods(["complete_parsed"]), HasMethods(["annotate"]), None],
        "n_candidates": [Interval(Integral, 1, None, closed="left")],
        "n_examples": [Interval(Integral, 1, None, closed="left")],
        "sampling": [StrOptions({"bins", "top"})],
        "instructions": [str, None],
        "n_fidelity": [Interval(Integral, 0, None, closed="left")],
        "prompt_template": [str, None],
        "random_state": ["random_state"],
        "max_text_chars": [Interval(Integral, 1, None, closed="left"), None],
        "concepts_per_request": [Interval(Integral, 1, None, closed="left")],
    },
    prefer_skip_nested_validation=True,
)
def interpret_latents(
    texts,
    activations,
    latent_indices=None,
    *,
    client,
    annotator=None,
    n_candidates=1,
    n_examples=10,
    sampling="bins",
    instructions=None,
    n_fidelity=40,
    prompt_template=None,
    random_state=None,
    max_text_chars=MAX_TEXT_CHARS,
    concepts_per_request=1,
) -> pd.DataFrame:
    """Describe latents with an LLM and score each description's fidelity.

    Parameters
    ----------
    texts : list of str
        The texts the activations were computed on.
    activations : {ndarray, sparse matrix} of shape (n_texts, n_latents)
        Latent activations; a latent "fires" on a text when it is > 0.
    latent_indices : list of int, default=None
        Latents to interpret; None means all.
    client : LLMClient
        The interpreter model.
    annotator : LLMClient, annotator or None, default=None
        What labels held-out texts for fidelity: an annotator object (with
        ``annotate(texts, concepts)``, such as :class:`LLMAnnotator`), or an
        LLMClient (asked ``concepts_per_request`` concepts at a time, with
        texts cut at ``max_text_chars``); None uses ``client``.
    n_candidates : int, default=1
        Descriptions per latent, each from different examples.
    n_examples : int, default=10
        Firing examples shown per prompt (and as many non-firing ones).
    sampling : {"bins", "top"}, default="bins"
        "bins": one firing example per percentile bin of the non-zero
        activations (less over-specific descriptions); "top": the strongest.
    instructions : str, default=None
        Task-specific guidance inserted in the prompt.
    n_fidelity : int, default=40
        Held-out texts per latent for fidelity (half firing, half not), never
        shown in a prompt; 0 skips scoring.
    prompt_template : str, default=None
        Replaces the packaged prompt; must contain ``{instructions}``,
        ``{positives}`` and ``{negatives}``.
    random_state : int, RandomState instance or None, default=None
        Controls example sampling.
    max_text_chars : int or None, default=500
        Texts are cut to this many characters in prompts and in fidelity
        annotation; None shows them whole.
    concepts_per_request : int, default=1
        How an LLMClient ``annotator`` asks (see :func:`annotate_texts`).

    Returns
    -------
    DataFrame
        One row per (latent, candidate): ``latent``, ``candidate``,
        ``hypothesis`` (None where the LLM gave no usable answer or the
        latent never fires), ``precision``, ``recall``, ``f1``,
        ``correlation`` and ``best`` (the top-F1 candidate of its latent).

    Raises
    ------
    RuntimeError
        When no latent that fires got a usable description (every answer
        refused, empty, cut off or unparseable); the message counts the
        reasons and says what to change.

    See Also
    --------
    LLMDescriber : The describer built on this function, with usage per call.
    annotate_texts : The annotation used for fidelity.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_hypothesaes import LLMClient, interpret_latents
    >>> texts = ["a dog", "a cat", "dogs bark", "fish swim"]
    >>> acts = np.array([[1.0], [0.0], [2.0], [0.0]])
    >>> client = LLMClient(base_url="http://localhost:8000/v1")  # doctest: +SKIP
    >>> interpret_latents(texts, acts, client=client, n_fidelity=0)  # doctest: +SKIP
       latent  candidate     hypothesis  precision  recall  f1  correlation  best
    0       0          0  mentions dogs        NaN     NaN NaN          NaN  True
    """
    if annotator is None or not hasattr(annotator, "annotate"):
        annotator = LLMAnnotator(
            annotator if annotator is not None else client,
            concepts_per_request=concepts_per_request,
            max_text_chars=max_text_chars,
        )
    frame, _ = describe_latents_with_llm(
        texts,
        activations,
        latent_indices,
        client=client,
        annotator=annotator,
        n_candidates=n_candidates,
        n_examples=n_examples,
        sampling=sampling,
        instructions=instructions,
        n_fidelity=n_fidelity,
        prompt_template=prompt_template,
        random_state=random_state,
        max_text_chars=max_text_chars,
    )
    return frame


def describe_latents_with_llm(
    texts,
    activations,
    latent_indices=None,
    *,
    client,
    annotator,
    n_candidates=1,
    n_examples=10,
    sampling="bins",
    instructions=None,
    n_fidelity=40,
    prompt_template=None,
    random_state=None,
    max_text_chars=MAX_TEXT_CHARS,
    warn_dead=True,
):
    """The engine of :func:`interpret_latents`: returns ``(frame, usage)``,
    the usage summed over the interpreter's and the annotator's calls."""
    texts = check_texts(texts, caller="interpret_latents")
    if not sparse.issparse(activations):
        activations = np.asarray(activations, dtype=float)
    if activations.ndim != 2 or activations.shape[0] != len(texts):
        raise ValueError(
            "The 'activations' parameter of interpret_latents must have shape "
            f"(n_texts, n_latents) = ({len(texts)}, n_latents). Got "
            f"{activations.shape} instead."
        )
    if sparse.issparse(activations):
        activations = sparse.csc_matrix(activations)
    n_latents = activations.shape[1]
    latents = range(n_latents) if latent_indices is None else latent_indices
    latents = [int(j) for j in latents]
    if any(not 0 <= j < n_latents for j in latents):
        raise ValueError(
            "The 'latent_indices' parameter of interpret_latents must hold ints in "
            f"[0, {n_latents}). Got {sorted(set(latents))[:10]} instead."
        )
    template = prompt_template or load_prompt("interpret")
    extra = f"{instructions.strip()}\n" if instructions else ""
    seed = check_random_state(random_state).randint(np.iinfo(np.int32).max)

    prompts, owners, held_out, dead = [], [], {}, []
    for j in latents:
        acts = _column(activations, j)
        if not (acts > 0).any():
            dead.append(j)
            continue
        # Seeded per latent: a latent's examples do not depend on the others.
        rng = np.random.default_rng([seed, j])
        held, shown = _sample_prompts(
            acts, n_candidates, n_examples, n_fidelity, sampling, rng
        )
        held_out[j] = (held, acts)
        for c, (pos, neg) in enumerate(shown):
            prompts.append(
                fill_prompt(
                    template,
                    "prompt_template",
                    instructions=extra,
                    positives=_numbered(texts, pos, max_text_chars),
                    negatives=_numbered(texts, neg, max_text_chars) or "(none)",
                )
            )
            owners.append((j, c))
    longest = max((len(p) for p in prompts), default=0) // _CHARS_PER_TOKEN
    if longest > _SHORT_CONTEXT:
        warn_user(
            f"interpret_latents: the longest interpretation prompt is about "
            f"{longest:,} tokens (at {_CHARS_PER_TOKEN} characters a token). A "
            f"server with a short context cuts such prompts without an error "
            f"(Ollama's default is {_SHORT_CONTEXT:,} tokens or fewer): raise its "
            "context (Ollama options.num_ctx, llama.cpp server --ctx-size, vLLM "
            "--max-model-len), or lower max_text_chars "
            f"(now {max_text_chars}) or n_examples (now {n_examples}).",
            UserWarning,
        )
    if dead and warn_dead:
        warn_user(
            f"interpret_latents: {len(dead)} latent(s) never fire and get no "
            f"hypothesis: {dead[:10]}",
            UserWarning,
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        answers = client.complete_parsed(
            prompts, parse_hypothesis, desc="Interpreting latents"
        )
    if answers and all(a is None for a in answers):
        # The client's account (the server's own error message among it) goes
        # into the error instead of a warning before it.
        detail = " ".join(str(w.message) for w in caught)
        raise RuntimeError(_no_description_message(answers.usage, len(answers), detail))
    for w in caught:
        warn_user(str(w.message), w.category)
    hypotheses = dict(zip(owners, answers, strict=True))

    usage = answers.usage
    scores = {}
    if n_fidelity > 0:
        groups, keys = [], []
        for j, (held, acts) in held_out.items():
            cands = [hypotheses[(j, c)] for c in range(n_candidates)]
            named = [c for c in range(n_candidates) if cands[c] is not None]
            if not named or len(held) == 0:
                continue
            for i in held:
                groups.append((texts[i], [cands[c] for c in named]))
            keys.append((j, named, held, acts))
        annotated, used = _annotate_groups(annotator, groups)
        usage = usage + used
        scores = _candidate_scores(keys, annotated)

    rows = []
    for j in latents:
        for c in range(n_candidates):
            score = scores.get((j, c), dict.fromkeys(FIDELITY_KEYS, np.nan))
            rows.append(
                {
                    "latent": j,
                    "candidate": c,
                    "hypothesis": hypotheses.get((j, c)),
                    **score,
                }
            )
    frame = pd.DataFrame(rows, columns=_COLUMNS[:-1])
    frame["best"] = False
    if len(frame):
        ranked = frame.assign(
            _named=frame["hypothesis"].notna(),
            _f1=frame["f1"].fillna(-1.0),
            _corr=frame["correlation"].fillna(-2.0),
        ).sort_values(
            ["latent", "_named", "_f1", "_corr", "candidate"],
            ascending=[True, False, False, False, True],
            kind="stable",
        )
        frame.loc[ranked.groupby("latent", sort=False).head(1).index, "best"] = True
        frame.loc[frame["hypothesis"].isna(), "best"] = False
    return frame, usage


def _candidate_scores(keys, annotated):
    """``{(latent, candidate): fidelity_scores(...)}`` of every candidate at
    once: one column each, padded with NaN (not asked) to the longest sample.

    Precision, recall and F1 by :func:`column_fidelity_scores`; the
    correlation by :func:`label_correlation`, as :func:`fidelity_scores`
    computes it (the vectorised one differs by rounding, which could reorder
    candidates tied on F1).
    """
    pairs = [(j, c) for j, named, _, _ in keys for c in named]
    if not pairs:
        return {}
    values = np.full((max(len(held) for _, _, held, _ in keys), len(pairs)), np.nan)
    activations = np.zeros(values.shape)
    offset, column = 0, 0
    for _, named, held, acts in keys:
        block = np.vstack(annotated[offset : offset + len(held)])
        offset += len(held)
        values[: len(held), column : column + len(named)] = block
        activations[: len(held), column : column + len(named)] = acts[held, None]
        column += len(named)
    found = column_fidelity_scores(values, activations)
    scores = {}
    for col, pair in enumerate(pairs):
        score = {key: float(found[key][col]) for key in FIDELITY_KEYS}
        answered = ~np.isnan(values[:, col])
        if answered.any():
            score["correlation"] = label_correlation(
                values[answered, col] > 0.5, activations[answered, col]
            )
        scores[pair] = score
    return scores


def _annotate_groups(annotator, groups):
    """Each held-out text asked about its own latent's candidates: in one batch
    when the annotator can (LLMAnnotator.annotate_groups), else per group."""
    if hasattr(annotator, "annotate_groups"):
        return annotator.annotate_groups(groups, desc="Scoring fidelity")
    rows, usage = [], Usage()
    for text, concepts in groups:
        out = annotator.annotate([text], concepts)
        rows.append(np.asarray(out.values, dtype=float)[0])
        usage = usage + out.usage
    return rows, usage


def _no_description_message(usage, n_prompts, detail="") -> str:
    """Why no latent got a description, and what to change."""
    reasons = usage.unusable
    listing = ", ".join(f"{n} {why}" for why, n in reasons.items()) or "none"
    fixes = {
        "refusal": "the model refused: write what the texts are in "
        "instructions=..., or use another model",
        "unclosed thinking": "a thinking model ran out of tokens: raise "
        "max_tokens or turn thinking off with LLMClient(extra_body={"
        "'chat_template_kwargs': {'enable_thinking': False}})",
        "cut off": "answers reached max_tokens: raise LLMClient(max_tokens=...)",
        "empty": "the server sent empty answers: check the model's chat template "
        "(a reasoning parser sends thinking apart; turn thinking off)",
        "unparseable": "answers were not one short property: use a larger "
        "model, or a prompt_template that your model follows",
    }
    advice = [fixes[why] for why in reasons if why in fixes]
    if usage.failures and not reasons:
        advice.append(
            "requests failed: check base_url, the model name and the server's log"
        )
    return (
        f"The LLM gave no usable description for any latent: all {n_prompts} "
        f"interpretation prompts ended without one (unusable answers: {listing}; "
        f"requests: {usage.calls}, failed: {usage.failures}). No hypothesis "
        "can be made from them. To fix: "
        + ("; ".join(advice) or "try the model by hand on one prompt")
        + "."
        + (f" The client said: {detail}" if detail else "")
    )
