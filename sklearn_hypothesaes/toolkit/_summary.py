"""The differences of two corpora in words, each checked on held-out texts.

:func:`diff_corpora` ranks labelled latents by how differently often they
fire in two corpora. :func:`summarize_differences` shows its top rows to an
LLM (labels, frequencies, examples; never the corpora themselves) and asks
for a few plain-language differences, each a property one text can have;
:func:`verify_differences` then annotates held-out texts of both corpora with
each property and keeps as verified only the differences whose corrected
test is significant in the stated direction.
"""

from __future__ import annotations

import dataclasses
import json
import re
from numbers import Integral, Real

import numpy as np
import pandas as pd
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

from ..llm import Usage, fill_prompt, strip_thinking
from ..utils._misc import warn_user
from ..utils._validation import check_texts
from ._fisher import CORRECTIONS, TESTS, correct_pvalues, two_proportion_stats

SUMMARY_PROMPT = """\
Two corpora of texts, {name_a} and {name_b}, were compared concept by concept. \
Each line is a concept detected in the texts, the share of texts of each corpus \
that have it, and examples.

{differences}

Summarise how the texts of {name_a} differ from those of {name_b} in at most \
{n_differences} plain-language differences, the largest first; merge concepts \
that say the same thing. Each difference is a property that one text can have \
and a reader can check on that text alone, e.g. "uses formal language". \
Answer with JSON only, a list of objects: \
[{"property": "...", "more_in": "{name_a}" or "{name_b}"}]"""

#: Columns of :attr:`DifferenceSummary.differences`, in this order.
SUMMARY_COLUMNS = [
    "property",
    "more_in",
    "count_a",
    "n_a",
    "count_b",
    "n_b",
    "freq_a",
    "freq_b",
    "difference",
    "pvalue",
    "pvalue_corrected",
    "verified",
]


@dataclasses.dataclass
class DifferenceSummary:
    """What :func:`summarize_differences` returns.

    Attributes
    ----------
    differences : pandas.DataFrame
        One row per difference the LLM wrote, checked on held-out texts:
        ``property``, ``more_in`` (``"a"`` or ``"b"``, the side the LLM said
        has more of it), ``count_a``/``n_a`` and ``count_b``/``n_b``
        (annotated texts with the property / texts with an answer),
        ``freq_a``, ``freq_b``, ``difference``, ``pvalue``,
        ``pvalue_corrected`` (over the differences) and ``verified`` (the
        corrected test is significant and the difference goes the stated way).
    share_verified : float
        The share of ``differences`` that are verified.
    usage : Usage
        Everything the LLM was asked: ``usage_summary + usage_verification``.
    usage_summary, usage_verification : Usage
        The summary request, and the annotation of the held-out texts.
    prompt : str
        The summary prompt as sent.
    """

    differences: pd.DataFrame
    share_verified: float
    usage: Usage
    usage_summary: Usage
    usage_verification: Usage
    prompt: str


def _side(value, names) -> str:
    word = str(value).strip().strip("\"'").lower()
    lowered = [n.lower() for n in names]
    if word in ("a", lowered[0]):
        return "a"
    if word in ("b", lowered[1]):
        return "b"
    raise ValueError(f"more_in must be {names[0]!r} or {names[1]!r}; got {value!r}")


def parse_differences(text: str, names=("A", "B")) -> list[tuple[str, str]]:
    """``[(property, "a" or "b"), ...]`` from the JSON list of a summary answer.

    Raises
    ------
    ValueError
        When the answer holds no such list (the client then asks again).

    Examples
    --------
    >>> parse_differences('```json\\n[{"property": "is angry", "more_in": "B"}]\\n```')
    [('is angry', 'b')]
    """
    text = strip_thinking(text) or ""
    start, stop = text.find("["), text.rfind("]")
    if start < 0 or stop < start:
        raise ValueError("no JSON list in the answer")
    items = json.loads(text[start : stop + 1])
    out = []
    for item in items:
        if not isinstance(item, dict):
            raise ValueError(f"expected objects in the list; got {item!r}")
        prop = str(item.get("property", "")).strip()
        if prop:
            out.append((prop, _side(item.get("more_in"), names)))
    if not out:
        raise ValueError("the list holds no property")
    return out


def _short(text: str, limit: int) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def summary_prompt(
    table,
    *,
    n_top=10,
    n_differences=5,
    n_examples=1,
    max_example_chars=200,
    names=("A", "B"),
    prompt_template=None,
) -> str:
    """The summary prompt for the first ``n_top`` rows of a diff table."""
    lines = []
    for i, row in enumerate(table.head(n_top).itertuples(index=False), 1):
        side = names[0] if row.more_in == "a" else names[1]
        line = (
            f'{i}. "{row.label}": {names[0]} {row.freq_a:.1%}, {names[1]} '
            f"{row.freq_b:.1%} (more in {side})"
        )
        sides = (
            (names[0], getattr(row, "examples_a", [])),
            (names[1], getattr(row, "examples_b", [])),
        )
        for name, examples in sides:
            for text in list(examples)[:n_examples]:
                line += f'\n   e.g. {name}: "{_short(text, max_example_chars)}"'
        lines.append(line)
    return fill_prompt(
        SUMMARY_PROMPT if prompt_template is None else prompt_template,
        "prompt_template",
        differences="\n".join(lines),
        n_differences=n_differences,
        name_a=names[0],
        name_b=names[1],
    )


@validate_params(
    {
        "properties": ["array-like"],
        "more_in": ["array-like"],
        "texts_a": ["array-like"],
        "texts_b": ["array-like"],
        "annotator": "no_validation",
        "max_texts": [Interval(Integral, 1, None, closed="left"), None],
        "test": [StrOptions(set(TESTS))],
        "correction": [StrOptions(set(CORRECTIONS))],
        "alpha": [Interval(Real, 0, 1, closed="neither")],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def verify_differences(
    properties,
    more_in,
    texts_a,
    texts_b,
    *,
    annotator,
    max_texts=200,
    test="fisher",
    correction="fdr_bh",
    alpha=0.05,
    random_state=0,
):
    """Check stated differences by annotating texts of both corpora.

    A difference "texts of A more often have property p" is verified when,
    on texts the statement was not written from, the annotated frequency of
    p is significantly higher in A (after correcting over the differences).

    Parameters
    ----------
    properties : sequence of str
        Properties a single text can have.
    more_in : sequence of {"a", "b"}
        The corpus said to have more of each property.
    texts_a, texts_b : sequence of str
        Held-out texts of the two corpora.
    annotator : annotator
        An object with ``annotate(texts, concepts) -> Annotations``, such as
        :class:`LLMAnnotator` or :class:`PhraseAnnotator`.
    max_texts : int or None, default=200
        Texts sampled from each corpus (None annotates all).
    test, correction, alpha
        As in :func:`diff_corpora`.
    random_state : int, RandomState instance or None, default=0
        The sample of texts.

    Returns
    -------
    differences : pandas.DataFrame
        The columns of :attr:`DifferenceSummary.differences`.
    usage : Usage
        What the annotation cost.

    Examples
    --------
    >>> from sklearn_hypothesaes import PhraseAnnotator
    >>> a = ["a great film"] * 30 + ["a film"] * 10
    >>> b = ["a film"] * 35 + ["a great film"] * 5
    >>> out, _ = verify_differences(['mentions "great"'], ["a"], a, b,
    ...                             annotator=PhraseAnnotator())
    >>> out[["freq_a", "freq_b", "verified"]]
       freq_a  freq_b  verified
    0    0.75   0.125      True
    """
    properties = check_texts(
        properties, caller="verify_differences", param="properties"
    )
    sides = [_side(s, ("a", "b")) for s in more_in]
    if len(sides) != len(properties):
        raise ValueError(
            "The 'more_in' parameter of verify_differences must hold one side per "
            f"property ({len(properties)}). Got {len(sides)} instead."
        )
    rng = check_random_state(random_state)
    samples = []
    for param, texts in (("texts_a", texts_a), ("texts_b", texts_b)):
        texts = check_texts(texts, caller="verify_differences", param=param)
        if not texts:
            raise ValueError(
                f"The {param!r} parameter of verify_differences is empty; the "
                "check needs held-out texts of both corpora."
            )
        if max_texts is not None and len(texts) > max_texts:
            keep = np.sort(rng.choice(len(texts), max_texts, replace=False))
            texts = [texts[i] for i in keep]
        samples.append(texts)
    if not properties:
        return pd.DataFrame(columns=SUMMARY_COLUMNS), Usage()
    found = annotator.annotate(samples[0] + samples[1], properties)
    values = np.asarray(found.values, dtype=float)
    usage = getattr(found, "usage", None) or Usage()
    parts = values[: len(samples[0])], values[len(samples[0]) :]
    answered = [np.sum(~np.isnan(v), axis=0) for v in parts]
    counts = [np.sum(np.nan_to_num(v, nan=0.0) >= 0.5, axis=0) for v in parts]
    if (np.concatenate(answered) == 0).any():
        raise RuntimeError(
            "The annotator answered for none of the held-out texts of one corpus "
            "for some property; no difference can be checked. Look at the "
            "annotator's warnings (failed LLM requests)."
        )
    rows = []
    for i in range(len(properties)):
        stat = two_proportion_stats(
            [counts[0][i]], answered[0][i], [counts[1][i]], answered[1][i], test=test
        ).iloc[0]
        rows.append(
            {
                "property": properties[i],
                "more_in": sides[i],
                "count_a": int(counts[0][i]),
                "n_a": int(answered[0][i]),
                "count_b": int(counts[1][i]),
                "n_b": int(answered[1][i]),
                "freq_a": stat["freq_a"],
                "freq_b": stat["freq_b"],
                "difference": stat["difference"],
                "pvalue": stat["pvalue"],
            }
        )
    out = pd.DataFrame(rows)
    out["pvalue_corrected"], reject = correct_pvalues(
        out["pvalue"].to_numpy(), method=correction, alpha=alpha
    )
    stated = np.where(out["more_in"] == "a", 1.0, -1.0)
    out["verified"] = reject & (np.sign(out["difference"].to_numpy()) == stated)
    return out[SUMMARY_COLUMNS], usage


@validate_params(
    {
        "table": [pd.DataFrame],
        "client": "no_validation",
        "texts_a": ["array-like"],
        "texts_b": ["array-like"],
        "annotator": "no_validation",
        "n_top": [Interval(Integral, 1, None, closed="left")],
        "n_differences": [Interval(Integral, 1, None, closed="left")],
        "n_examples": [Interval(Integral, 0, None, closed="left")],
        "max_example_chars": [Interval(Integral, 10, None, closed="left")],
        "significant_only": ["boolean"],
        "names": [tuple, list],
        "max_verify": [Interval(Integral, 1, None, closed="left"), None],
        "test": [StrOptions(set(TESTS))],
        "correction": [StrOptions(set(CORRECTIONS))],
        "alpha": [Interval(Real, 0, 1, closed="neither")],
        "random_state": ["random_state"],
        "prompt_template": [str, None],
    },
    prefer_skip_nested_validation=True,
)
def summarize_differences(
    table,
    client,
    texts_a,
    texts_b,
    *,
    annotator=None,
    n_top=10,
    n_differences=5,
    n_examples=1,
    max_example_chars=200,
    significant_only=True,
    names=("A", "B"),
    max_verify=200,
    test="fisher",
    correction="fdr_bh",
    alpha=0.05,
    random_state=0,
    prompt_template=None,
) -> DifferenceSummary:
    """The top rows of a diff table in plain words, each checked on held-out texts.

    One request shows the LLM the ``n_top`` first rows of ``table`` (labels,
    frequencies and examples) and asks for at most ``n_differences``
    differences, each a property one text can have and the corpus that has
    more of it; :func:`verify_differences` then annotates held-out texts of
    both corpora with each property. The LLM never reads the corpora
    themselves, which is where the saving over asking it to compare samples
    comes from.

    Parameters
    ----------
    table : pandas.DataFrame
        The output of :func:`diff_corpora` (its order is kept).
    client : LLMClient
        Writes the summary (and annotates, unless ``annotator`` is given).
    texts_a, texts_b : sequence of str
        Held-out texts of the two corpora: not those ``table`` was computed
        on (a warning says so when its examples are among them).
    annotator : annotator or None, default=None
        Checks each difference; None is ``LLMAnnotator(client)``.
    n_top : int, default=10
        Rows of ``table`` shown to the LLM.
    n_differences : int, default=5
        Most differences asked for.
    n_examples : int, default=1
        Example texts per side and row in the prompt.
    max_example_chars : int, default=200
        Examples are cut to this length.
    significant_only : bool, default=True
        Show only rows with ``significant`` True. Rows without a label
        (``labelled`` False) are never shown. With no row left, nothing is
        asked and the summary is empty (with a warning).
    names : (str, str), default=("A", "B")
        What the prompt calls the two corpora.
    max_verify : int or None, default=200
        Held-out texts annotated per corpus.
    test, correction, alpha
        Of the check, as in :func:`diff_corpora` (corrected over the
        differences).
    random_state : int, RandomState instance or None, default=0
        The sample of held-out texts.
    prompt_template : str or None, default=None
        Replaces the built-in prompt; it must contain ``{differences}``,
        ``{n_differences}``, ``{name_a}`` and ``{name_b}``.

    Returns
    -------
    summary : DifferenceSummary
        The differences with their check, the share verified, and the usage.

    See Also
    --------
    diff_corpora : The table this reads.
    verify_differences : The check alone, e.g. of differences from elsewhere.

    Examples
    --------
    >>> from sklearn_hypothesaes import LLMClient
    >>> client = LLMClient(base_url="http://localhost:8000/v1")
    >>> summary = summarize_differences(table, client, held_a, held_b)
    ... # doctest: +SKIP
    >>> summary.share_verified, summary.usage.prompt_tokens  # doctest: +SKIP
    (0.8, 1412)
    """
    from ..hypotheses import LLMAnnotator

    if len(names) != 2 or not all(isinstance(n, str) and n for n in names):
        raise ValueError(
            "The 'names' parameter of summarize_differences must be two non-empty "
            f"str. Got {names!r} instead."
        )
    needed = ["label", "freq_a", "freq_b", "more_in"]
    needed += ["significant"] if significant_only else []
    missing = [c for c in needed if c not in table]
    if missing:
        raise ValueError(
            "The 'table' parameter of summarize_differences must be a table of "
            f"diff_corpora; it lacks the columns {missing}."
        )
    shown = table[table["significant"]] if significant_only else table
    shown = shown[shown["more_in"] != "neither"]
    if "labelled" in shown:
        shown = shown[shown["labelled"]]  # a bare latent_<j> tells the LLM nothing
    held = set(check_texts(texts_a, caller="summarize_differences", param="texts_a"))
    held |= set(check_texts(texts_b, caller="summarize_differences", param="texts_b"))
    leaked = {
        t
        for col in ("examples_a", "examples_b")
        if col in shown
        for examples in shown[col].head(n_top)
        for t in examples
    } & held
    if leaked:
        warn_user(
            f"{len(leaked)} example texts of the table are among the texts used to "
            "verify the differences: pass held-out texts as texts_a and texts_b "
            "(not those the table was computed on), or the check is optimistic."
        )
    if shown.empty:
        warn_user(
            "summarize_differences: the table has no significant difference to "
            "summarise; no request was made."
        )
        return DifferenceSummary(
            pd.DataFrame(columns=SUMMARY_COLUMNS), float("nan"), Usage(), Usage(),
            Usage(), "",
        )  # fmt: skip
    prompt = summary_prompt(
        shown,
        n_top=n_top,
        n_differences=n_differences,
        n_examples=n_examples,
        max_example_chars=max_example_chars,
        names=tuple(names),
        prompt_template=prompt_template,
    )
    answers = client.complete_parsed(
        [prompt], lambda text: parse_differences(text, tuple(names)), desc="Summary"
    )
    if answers[0] is None:
        raise RuntimeError(
            "The LLM gave no usable summary (a JSON list of "
            '{"property": ..., "more_in": ...}) after retries; see the warning '
            "above for the last error."
        )
    found = answers[0][:n_differences]
    differences, usage_check = verify_differences(
        [p for p, _ in found],
        [s for _, s in found],
        texts_a,
        texts_b,
        annotator=LLMAnnotator(client) if annotator is None else annotator,
        max_texts=max_verify,
        test=test,
        correction=correction,
        alpha=alpha,
        random_state=random_state,
    )
    return DifferenceSummary(
        differences=differences,
        share_verified=float(differences["verified"].mean()),
        usage=answers.usage + usage_check,
        usage_summary=answers.usage,
        usage_verification=usage_check,
        prompt=prompt,
    )
