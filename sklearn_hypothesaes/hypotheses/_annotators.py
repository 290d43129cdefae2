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
from ._annotate import MAX_TEXT_CHARS, annotate_groups, resolve_mode
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
    concepts_per_request : int, default=1
        Concepts asked about in one request. 1 asks one yes/no question per
        (text, concept), as the HypotheSAEs paper does; more lists that many
        concepts (in an order shuffled per text) and asks for a JSON object,
        sending each text fewer times. ``benchmarks/bench_annotation_protocol.py``
        shows the trade-off and :func:`annotation_agreement` measures it on
        your texts with your model.
    mode : {"multi", "single"} or None, default=None
        Kept for older code: "single" is ``concepts_per_request=1``; "multi"
        uses ``concepts_per_request`` if above 1, else 10.
    probabilities : bool, default=False
        P(yes) from the first output token's logprobs instead of 0/1 (one
        concept per request).
    max_text_chars : int or None, default=500
        Texts longer than this are cut (and end with ``[...]``); None sends
        them whole. Use the same value as the describer, so that fidelity is
        scored on what the final annotation reads.
    prompt_template : str or None, default=None
        Replaces the packaged prompt (see :func:`annotate_texts`).
    random_state : int, RandomState instance or None, default=0
        Seeds the order of the concepts in each text's requests. Keep an int:
        the same prompts on every run reuse the answer cache.

    See Also
    --------
    annotate_texts : The function this calls.
    annotation_agreement : Several concepts per request against one.
    PhraseAnnotator : The offline annotator.

    Examples
    --------
    >>> from sklearn_hypothesaes import LLMClient
    >>> from sklearn_hypothesaes import LLMAnnotator
    >>> client = LLMClient(base_url="http://localhost:8000/v1")
    >>> annotator = LLMAnnotator(client, concepts_per_request=10)
    >>> annotator.annotate(["A dog barked."], ["mentions a dog"])  # doctest: +SKIP
    Annotations(values=array([[1.]]), usage=Usage(calls=1, ...))
    """

    expensive = True

    _parameter_constraints: dict = {
        "client": [HasMethods(["complete_parsed"])],
        "concepts_per_request": [Interval(Integral, 1, None, closed="left")],
        "mode": [StrOptions({"multi", "single"}), None],
        "probabilities": ["boolean"],
        "max_text_chars": [Interval(Integral, 1, None, closed="left"), None],
        "prompt_template": [str, None],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        client,
        *,
        concepts_per_request=1,
        mode=None,
        probabilities=False,
        max_text_chars=MAX_TEXT_CHARS,
        prompt_template=None,
        random_state=0,
    ):
        self.client = client
        self.concepts_per_request = concepts_per_request
        self.mode = mode
        self.probabilities = probabilities
        self.max_text_chars = max_text_chars
        self.prompt_template = prompt_template
        self.random_state = random_state

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

        Raises
        ------
        RuntimeError
            When no annotation at all got a usable answer.
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
            concepts_per_request=resolve_mode(self.mode, self.concepts_per_request),
            probabilities=self.probabilities,
            max_text_chars=self.max_text_chars,
            prompt_template=self.prompt_template,
            random_state=self.random_state,
            desc=desc,
        )
