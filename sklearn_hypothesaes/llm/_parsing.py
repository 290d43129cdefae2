"""Reading a model's answer: reasoning blocks dropped, yes/no understood."""

from __future__ import annotations

import re

from sklearn.utils._param_validation import validate_params

_THINK_BLOCK = re.compile(r"<think(?:ing)?>.*?</think(?:ing)?>", re.DOTALL | re.I)
_THINK_END = re.compile(r"</think(?:ing)?>", re.I)


@validate_params({"text": [str, None]}, prefer_skip_nested_validation=True)
def strip_thinking(text: str | None) -> str | None:
    """Drop reasoning blocks (``<think>...</think>``) from a model's answer.

    Some servers strip the opening tag, so text up to a lone closing tag goes
    too.

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
def parse_yes_no(text: str | None) -> int:
    """1 for an answer starting with yes/true/1, 0 for no/false/0, else raise.

    Parameters
    ----------
    text : str or None
        An answer; reasoning blocks are ignored.

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
    words = re.findall(r"[a-z0-9]+", strip_thinking(text or "").lower())
    if words:
        if words[0] in ("yes", "y", "true", "1"):
            return 1
        if words[0] in ("no", "n", "false", "0"):
            return 0
    raise ValueError(f"Expected an answer starting with yes or no. Got {text!r}.")
