"""Annotators: texts x concepts -> a matrix saying which text has which concept.

The protocol is one method, ``annotate(texts, concepts) -> Annotations``. Two
implementations ship: :class:`PhraseAnnotator` (offline, whole-phrase matching
of the quoted terms that :class:`TermDescriber` writes) and
:class:`LLMAnnotator` (an LLM asked about each text). An annotator with a true
``expensive`` attribute is sampled, not run on every training text, by
:class:`HypothesisGenerator`.
"""

from __future__ import annotations

import dataclasses
import re
from numbers import Integral

import numpy as np
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions

from ..llm import Usage
from ..utils._validation import check_texts
from ._annotate import annotate_groups
from ._base import Strategy
from ._terms import PhraseMatcher

_QUOTED = re.compile(r'"([^"]+)"')


@dataclasses.dataclass
class Annotations:
    """What an annotator returns.

    Attributes
    ----------
    values : ndarray of shape (n_texts, n_concepts)
        1.0 / 0.0, or a probability; NaN where no usable answer came back.
    usage : Usage
        The LLM usage of this call (zeros offline).
    """

    values: np.ndarray
    usage: Usage = dataclasses.field(default_factory=Usage)

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.values, dtype=dtype)


class PhraseAnnotator(Strategy):
    """Offline annotator: a text has a concept when it contains a quoted term.

    Concepts are read as :class:`TermDescriber` writes them, ``mentions "a",
    "b" or "c"``: a text has the concept when it contains one of the quoted
    terms as a whole phrase (case-insensitive, on word boundaries, with the
    tokenisation of the offline describer, so "best film" matches "Best film!"
    but not "best films").

    See Also
    --------
    LLMAnnotator : Annotates any concept in words, with an LLM.
    TermDescriber : Writes concepts this annotator reads.

    Examples
    --------
    >>> from sklearn_hypothesaes import PhraseAnnotator
    >>> PhraseAnnotator().annotate(
    ...     ["The best film.", "Dull, dull.", "best films"],
    ...     ['mentions "brilliant" or "best film"', 'mentions "dull"'],
    ... ).values
    array([[1., 0.],
           [0., 1.],
           [0., 0.]])
    """

    expensive = False

    def annotate(self, texts, concepts) -> Annotations:
        """0/1 per text and concept.

        Parameters
        ----------
        texts : sequence of str
            The texts.
        concepts : sequence of str
            Concepts that quote their terms, e.g. ``mentions "a" or "b"``.

        Returns
        -------
        annotations : Annotations
        """
        texts = check_texts(texts, caller="PhraseAnnotator.annotate")
        concepts = check_texts(
            concepts, caller="PhraseAnnotator.annotate", param="concepts"
        )
        terms = [_QUOTED.findall(c) for c in concepts]
        unquoted = [c for c, t in zip(concepts, terms, strict=True) if not t]
        if unquoted:
            raise ValueError(
                "PhraseAnnotator annotates concepts that quote their terms, such as "
                f'mentions "a" or "b" (as TermDescriber writes them). Got '
                f"{unquoted[0]!r}. Use LLMAnnotator for concepts in free words."
            )
        return Annotations(PhraseMatcher(terms).annotate(texts))


class LLMAnnotator(Strategy):
    """Annotator that asks an LLM whether each text has each concept.

    Parameters
    ----------
    client : LLMClient
        The endpoint, its concurrency and its answer cache.
    mode : {"multi", "single"}, default="multi"
        "multi" asks about up to ``concepts_per_call`` concepts of one text in
        one request with a JSON answer (each text is sent once per chunk);
        "single" asks one yes/no question per (text, concept).
    concepts_per_call : int, default=10
        Concepts per request in multi mode.
    probabilities : bool, default=False
        P(yes) from the first output token's logprobs instead of 0/1.
    max_text_chars : int or None, default=None
        Texts longer than this are cut.
    prompt_template : str or None, default=None
        Replaces the packaged prompt (see :func:`annotate_texts`).

    See Also
    --------
    annotate_texts : The function this calls.
    PhraseAnnotator : The offline annotator.

    Examples
    --------
    >>> from sklearn_hypothesaes import LLMClient
    >>> from sklearn_hypothesaes import LLMAnnotator
    >>> client = LLMClient(base_url="http://localhost:8000/v1")
    >>> annotator = LLMAnnotator(client, mode="single")
    >>> annotator.annotate(["A dog barked."], ["mentions a dog"])  # doctest: +SKIP
    Annotations(values=array([[1.]]), usage=Usage(calls=1, ...))
    """

    expensive = True

    _parameter_constraints: dict = {
        "client": [HasMethods(["complete_parsed"])],
        "mode": [StrOptions({"multi", "single"})],
        "concepts_per_call": [Interval(Integral, 1, None, closed="left")],
        "probabilities": ["boolean"],
        "max_text_chars": [Interval(Integral, 1, None, closed="left"), None],
        "prompt_template": [str, None],
    }

    def __init__(
        self,
        client,
        *,
        mode="multi",
        concepts_per_call=10,
        probabilities=False,
        max_text_chars=None,
        prompt_template=None,
    ):
        self.client = client
        self.mode = mode
        self.concepts_per_call = concepts_per_call
        self.probabilities = probabilities
        self.max_text_chars = max_text_chars
        self.prompt_template = prompt_template

    def annotate(self, texts, concepts, *, desc="Annotating") -> Annotations:
        """Ask the LLM about every (text, concept) pair.

        Parameters
        ----------
        texts : sequence of str
            The texts.
        concepts : sequence of str
            Concepts in words, e.g. ``"mentions a dog"``.
        desc : str, default="Annotating"
            Label of the progress bar.

        Returns
        -------
        annotations : Annotations
            NaN where no usable answer came back (counted in a warning).
        """
        texts = check_texts(texts, caller="LLMAnnotator.annotate")
        concepts = check_texts(
            concepts, caller="LLMAnnotator.annotate", param="concepts"
        )
        groups = [(text, concepts) for text in texts]
        rows, usage = self.annotate_groups(groups, desc=desc)
        values = np.full((len(texts), len(concepts)), np.nan)
        if rows:
            values[:] = rows
        return Annotations(values, usage)

    def annotate_groups(self, groups, *, desc="Annotating"):
        """Annotate ``[(text, [concept, ...]), ...]`` in one batch of requests.

        Each text is asked about its own concepts only (a describer scoring
        fidelity asks each held-out text about one latent's candidates).

        Returns
        -------
        rows : list of ndarray
            One array of 0/1 (or P(yes), NaN if missing) per group.
        usage : Usage
        """
        self._validate_params()
        if not groups:
            return [], Usage()
        return annotate_groups(
            groups,
            client=self.client,
            mode=self.mode,
            concepts_per_call=self.concepts_per_call,
            probabilities=self.probabilities,
            max_text_chars=self.max_text_chars,
            prompt_template=self.prompt_template,
            desc=desc,
        )
