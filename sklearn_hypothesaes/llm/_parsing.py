"""Reading a model's answer: reasoning blocks dropped, lead-ins dropped, yes/no
understood, and unusable answers (empty, cut off mid-thought, refusals) named."""

from __future__ import annotations

import re

from sklearn.utils._param_validation import validate_params

_THINK_BLOCK = re.compile(r"<think(?:ing)?>.*?</think(?:ing)?>", re.DOTALL | re.I)
_THINK_END = re.compile(r"</think(?:ing)?>", re.I)
_THINK_OPEN = re.compile(r"<think(?:ing)?>", re.I)

# Refusals open the answer; matched on the first words only, so a hypothesis
# that merely mentions an apology ("Mentions that the writer cannot...") is kept.
_REFUSAL = re.compile(
    r"""^\W*(?:
        (?:i'?m|i\s+am)\s+(?:sorry|afraid|unable|not\s+able)\b
      | sorry\b
      | i\s+(?:cannot|can'?t|can\s+not|won'?t|will\s+not|must\s+decline
              |apologi[sz]e|do\s+not\s+feel\s+comfortable|am\s+not\s+able)\b
      | (?:unfortunately|regrettably),?\s+i\s+(?:cannot|can'?t|can\s+not|am\s+unable)\b
      | as\s+an\s+ai\b
      | as\s+a\s+(?:large\s+)?language\s+model\b
    )""",
    re.I | re.X,
)
# Lead-ins a model puts before the answer it was asked for.
_INTERJECTION = re.compile(
    r"^(?:sure|certainly|of\s+course|okay|ok|absolutely|great|alright|all\s+right"
    r"|got\s+it|understood)(?:\s+thing)?(?:\s*[!.,:;]+|\s+(?=here\b))\s*",
    re.I,
)
_HERE_IS = re.compile(r"^here(?:'s|\s+is|\s+are)\b[^:\n]{0,80}(?::|\n)[\s*]*", re.I)
_LABEL = re.compile(
    r"^[*#\s]*(?:(?:the|my|a|an|one)\s+)?(?:(?:final|new|proposed|resulting|short|concise"
    r"|refined|revised|single|common|shared|key|main|identified)\s+)?"
    r"(?:property|properties|hypothesis|hypotheses|concept|feature|description"
    r"|answer|label|interpretation|output|response|result)"
    r"(?:\s+(?:is|would\s+be))?\s*\**\s*(?::|\s[-\u2013\u2014])\s*\**\s*",
    re.I,
)


def _normalise_quotes(text: str) -> str:
    return text.replace("\u2019", "'").replace("\u2018", "'")


@validate_params({"text": [str, None]}, prefer_skip_nested_validation=True)
def strip_thinking(text: str | None) -> str | None:
    """Drop reasoning blocks (``<think>...</think>``) from a model's answer.

    Some servers strip the opening tag, so text up to a lone closing tag goes
    too. An unclosed block (an answer cut off mid-thought) is left as it is:
    :func:`answer_problem` reports it.

    Parameters
    ----------
    text : str or None
        An answer.

    Returns
    -------
    str or None
        The answer after its last reasoning block, stripped; None for None.

    Examples
    --------
    >>> from sklearn_hypothesaes.llm import strip_thinking
    >>> strip_thinking("<think>hmm, maybe</think> Yes.")
    'Yes.'
    """
    if text is None:
        return None
    text = _THINK_BLOCK.sub("", text)
    return _THINK_END.split(text)[-1].strip()


@validate_params({"text": [str, None]}, prefer_skip_nested_validation=True)
def strip_preamble(text: str | None) -> str | None:
    """Drop the lead-in a model puts before its answer.

    Removes, repeatedly from the start, reasoning blocks, interjections
    ("Sure!", "Certainly.", "Okay,"), "Here is/Here's ...:" lines and labels
    such as "Property:", "The property is:" or "**Hypothesis:**".

    Parameters
    ----------
    text : str or None
        An answer.

    Returns
    -------
    str or None
        The substantive rest, stripped ("" when nothing is left); None for None.

    See Also
    --------
    answer_problem : Whether an answer is usable at all.

    Examples
    --------
    >>> from sklearn_hypothesaes.llm import strip_preamble
    >>> strip_preamble("Here is the property:\\n\\nMentions a refund.")
    'Mentions a refund.'
    >>> strip_preamble("Sure! The property is: uses sarcasm")
    'uses sarcasm'
    >>> strip_preamble("Mentions the price.")
    'Mentions the price.'
    """
    if text is None:
        return None
    rest = strip_thinking(text)
    while True:
        before = rest
        for pattern in (_INTERJECTION, _HERE_IS, _LABEL):
            rest = pattern.sub("", _normalise_quotes(rest), count=1).strip()
        if rest == before:
            return rest


@validate_params({"text": [str, None]}, prefer_skip_nested_validation=True)
def answer_problem(text: str | None) -> str | None:
    """Why an answer is unusable, or None when it can be used.

    Parameters
    ----------
    text : str or None
        An answer's content, as the server sent it (reasoning blocks included).

    Returns
    -------
    str or None
        ``"empty"`` (None, blank, or nothing but reasoning and a lead-in),
        ``"unclosed thinking"`` (a ``<think>`` or ``<thinking>`` block that
        never ends: the answer was cut off mid-thought), ``"refusal"`` (opens
        with "I'm sorry", "I can't", "As an AI", ...); None for a usable
        answer.

    See Also
    --------
    strip_preamble : Drop the lead-in before an answer.

    Examples
    --------
    >>> from sklearn_hypothesaes.llm import answer_problem
    >>> answer_problem("<think>The text mentions a dog, so")
    'unclosed thinking'
    >>> answer_problem("I'm sorry, but I can't help with that.")
    'refusal'
    >>> answer_problem("<think>ok</think>Yes") is None
    True
    """
    if text is None or not text.strip():
        return "empty"
    closed = _THINK_BLOCK.sub("", text)
    if _THINK_OPEN.search(closed):
        return "unclosed thinking"
    rest = strip_preamble(text)
    if not rest:
        return "empty"
    if _REFUSAL.match(_normalise_quotes(rest)):
        return "refusal"
    return None


@validate_params({"text": [str, None]}, prefer_skip_nested_validation=True)
def parse_yes_no(text: str | None) -> int:
    """1 for an answer starting with yes/true/1, 0 for no/false/0, else raise.

    Parameters
    ----------
    text : str or None
        An answer; reasoning blocks and lead-ins ("Answer:") are ignored.

    Returns
    -------
    int
        1 or 0.

    Raises
    ------
    ValueError
        When the first word is none of the above.

    Examples
    --------
    >>> from sklearn_hypothesaes.llm import parse_yes_no
    >>> parse_yes_no("<think>...</think> No, it does not.")
    0
    """
    words = re.findall(r"[a-z0-9]+", (strip_preamble(text or "") or "").lower())
    if words:
        if words[0] in ("yes", "y", "true", "1"):
            return 1
        if words[0] in ("no", "n", "false", "0"):
            return 0
    raise ValueError(f"Expected an answer starting with yes or no. Got {text!r}.")
