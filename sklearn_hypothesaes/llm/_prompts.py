"""The packaged prompt templates and how their placeholders are filled."""

from __future__ import annotations

import functools
import importlib.resources
import re

from sklearn.utils._param_validation import validate_params


def _prompt_names() -> list[str]:
    folder = importlib.resources.files("sklearn_hypothesaes.llm") / "prompts"
    return sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".txt"))


@validate_params({"name": [str]}, prefer_skip_nested_validation=True)
def load_prompt(name: str) -> str:
    """The text of the packaged prompt ``sklearn_hypothesaes/llm/prompts/<name>.txt``.

    Parameters
    ----------
    name : str
        The prompt's name, e.g. ``"interpret"`` or ``"annotate_single"``.

    Returns
    -------
    str
        The template, with ``{placeholders}`` for :func:`fill_prompt`.

    Examples
    --------
    >>> from sklearn_hypothesaes.llm import load_prompt
    >>> "{text}" in load_prompt("annotate_single")
    True
    """
    return _read_prompt(name)


@functools.cache
def _read_prompt(name: str) -> str:
    path = (
        importlib.resources.files("sklearn_hypothesaes.llm") / "prompts" / f"{name}.txt"
    )
    if not path.is_file():
        raise ValueError(
            f"The 'name' parameter of load_prompt must be one of {_prompt_names()}. "
            f"Got {name!r} instead."
        )
    return path.read_text(encoding="utf-8")


@validate_params(
    {"template": [str], "param": [str]}, prefer_skip_nested_validation=True
)
def fill_prompt(template: str, param: str, **fields) -> str:
    """Replace ``{field}`` placeholders; other braces (JSON examples) stay.

    Parameters
    ----------
    template : str
        A prompt with one ``{name}`` placeholder per field.
    param : str
        The parameter the template came from, named in the error.
    **fields
        Values for the placeholders (converted with ``str``).

    Returns
    -------
    str
        The filled prompt. A value that itself contains ``{name}`` is not
        substituted again.

    Raises
    ------
    ValueError
        When the template lacks the placeholder of a field.

    Examples
    --------
    >>> from sklearn_hypothesaes.llm import fill_prompt
    >>> fill_prompt('Answer {"ok": 1} about: {text}', "prompt", text="a cat")
    'Answer {"ok": 1} about: a cat'
    """
    for name in fields:
        if "{" + name + "}" not in template:
            raise ValueError(
                f"The {param!r} template must contain the placeholder {{{name}}}. "
                f"Got a template without it: {template[:80]!r}..."
            )
    if not fields:
        return template
    # One pass, so that a value containing "{name}" is never substituted again.
    pattern = re.compile("|".join(re.escape("{" + n + "}") for n in fields))
    return pattern.sub(lambda m: str(fields[m.group(0)[1:-1]]), template)
