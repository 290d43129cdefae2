"""Offline hypotheses: contrastive terms per latent and phrase matching.

With no LLM endpoint, a latent is described by the words and phrases that most
distinguish the texts where it fires from those where it is silent, and a text
"has" the hypothesis when it contains one of them. Both sides use the same
tokenisation, so the offline hypotheses are annotated on held-out texts the
way an LLM annotator would be used.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import re
from collections.abc import Sequence

import ftfy
import numpy as np
from scipy import sparse
from scipy.special import ndtr
from scipy.stats import norm
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

from ..utils._validation import check_texts

# Words of two or more letters, as CountVectorizer's default, and contractions
# kept whole ("doesn't", "won't", "I'm"): the default drops one-letter tokens,
# which would leave fragments such as "doesn" and "wouldn".
TOKEN_PATTERN = r"(?u)\b\w+(?:'\w+)+\b|\b\w\w+\b"
# Typographic apostrophes are read as "'", so "doesn’t" and "doesn't" are one term.
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})
# Clitics that make a stop word's contraction ("it's", "you're") a stop word too.
_CLITICS = frozenset({"s", "re", "ve", "ll", "d", "m"})
# Stop words that change a phrase's meaning ("not funny", "too long"): they may
# open a phrase but never end one or stand alone.
_OPENERS = frozenset(
    {"no", "not", "nor", "never", "nothing", "cannot", "without", "none"}
    | {"nobody", "neither", "too", "very", "less", "more", "most", "least"}
)
# Spans that are not words: URLs, e-mail addresses and phone-like digit runs
# ("(555) 123-4567", "+1 202 555 0100"). They are blanked before tokenising so
# that neither "http", "www", "com" nor a phone number's digits become terms,
# and counted as markers instead (below).
_URL = r"(?:https?://|www\.)\S+"
_EMAIL = r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
_PHONE = r"(?<!\w)\+?\(?\d[\d ().-]{5,}\d(?!\w)"
_NOT_WORDS = re.compile(f"{_URL}|{_EMAIL}|{_PHONE}")
# What every match of _NOT_WORDS contains: "://" or "www.", "@", or a digit.
_MAY_HOLD_NOT_WORDS = re.compile(r"://|www\.|@|\d")
# Properties of a text that are not words but may be what a latent detects,
# each a term of its own written in brackets. On the Trump tweets a latent
# for replies (texts that open with "@name", which few share) carries a
# quarter of the selected latents' R^2, and no word describes it: the
# handles differ from reply to reply.
MARKERS = {
    "[starts with @name]": re.compile(r"^\s*@\w"),
    "[@name]": re.compile(r"(?<![\w@])@\w"),
    "[#hashtag]": re.compile(r"(?<![\w&#])#[^\W\d_]"),
    "[link]": re.compile(_URL),
    "[e-mail address]": re.compile(_EMAIL),
    "[phone number]": re.compile(_PHONE),
}
# A reply always holds an @name: once "[@name]" is a term, the reply marker
# would match nothing more (as a phrase containing a term).
_IMPLIES = {"[starts with @name]": "[@name]"}
# What every text with a marker contains: what a span that is not words
# does, or "#".
_MAY_HOLD_MARKERS = re.compile(f"{_MAY_HOLD_NOT_WORDS.pattern}|#")
# The "auto" threshold's false discovery rate, and the "bonferroni" one's
# family-wise error rate, over the vocabulary.
_FDR = 0.1
_FWER = 0.05
# The "auto" threshold's floor (one-sided p = 0.0013): in a small vocabulary
# Benjamini-Hochberg lets a chance term ride on a few strong ones.
_MIN_AUTO_SCORE = 3.0
# Latents scored per sparse product: bounds the (latents x vocabulary) arrays.
_LATENT_BLOCK = 64


def contrastive_terms(
    texts: Sequence[str],
    activations,
    *,
    y=None,
    n_terms: int = 8,
    ngram_range: tuple[int, int] = (1, 2),
    min_df: int = 3,
    quantile: float = 0.0,
    stop_words="english",
    prior_scale: float = 1.0,
    min_score="auto",
    exclusive: bool = False,
    documents: DocumentTerms | None = None,
) -> list[list[tuple[str, float]]]:
    """Words and phrases that distinguish the texts where each latent fires.

    The score is the log-odds ratio with an informative Dirichlet prior of
    Monroe, Colaresi and Quinn (2008, "Fightin' words"), as a z-score: for a
    term w, with y_w^F (y_w^S) the number of firing (silent) texts containing
    it, n^F (n^S) their totals, and a prior alpha_w proportional to w's
    document frequency in the whole corpus,

        delta_w = log((y_w^F + a_w) / (n^F + a_0 - y_w^F - a_w))
                - log((y_w^S + a_w) / (n^S + a_0 - y_w^S - a_w)),
        z_w = delta_w / sqrt(1 / (y_w^F + a_w) + 1 / (y_w^S + a_w)).

    Why this rather than c-TF-IDF: the contrast is two groups of very
    different sizes (a latent fires on a few percent of texts), and the
    z-score accounts for the evidence behind each difference. Frequent words
    are not favoured merely for being frequent (c-TF-IDF's failure), nor are
    words seen in two texts (the raw log-odds ratio's failure): the prior
    shrinks rare terms toward the corpus rate. Counts are documents
    containing the term (``binary=True``), because the hypothesis is then
    annotated by presence.

    Texts are repaired first (mojibake such as "cafÃ©" becomes "café", HTML
    entities are unescaped; by ``ftfy``), and URLs, e-mail addresses and
    phone numbers are blanked; terms made of numbers alone are never
    returned. :class:`PhraseMatcher` reads texts the same way.

    Besides words, properties that are not words are terms too, written in
    brackets (``MARKERS``): ``[starts with @name]`` (a reply),
    ``[@name]``, ``[#hashtag]``, ``[link]``, ``[e-mail address]`` and
    ``[phone number]``, each present in a text when its pattern is. A latent
    for replies fires on texts whose handles all differ, which no word
    describes; on the Trump tweets this marker raised the offline
    hypotheses' held-out R^2 from 0.38 to 0.57 on one seed.

    Parameters
    ----------
    texts : sequence of str of length n_texts
        The texts the activations were computed on.
    activations : {array-like, sparse matrix} of shape (n_texts, n_latents)
        Latent activations; a latent "fires" where it is non-zero.
    y : array-like of shape (n_texts,) or (n_texts, n_targets), default=None
        A numeric target (values, 0/1 for two classes, or one 0/1 column per
        class). When given, a latent's terms are only those whose presence
        correlates with y with the sign of the latent's own correlation (with
        several columns, in the column the latent correlates with most), so
        that an antonym which co-occurs with the latent but goes with the
        other outcome ("interesting" beside "dull", "boring") is left out. A
        latent uncorrelated with y keeps all its terms.
    n_terms : int, default=8
        Most terms returned per latent.
    ngram_range : tuple (min_n, max_n), default=(1, 2)
        Lengths of the phrases considered, in words.
    min_df : int, default=3
        Terms in fewer texts of the whole corpus are ignored.
    quantile : float in [0, 1), default=0.0
        The firing group is the texts whose activation is at or above this
        quantile of the latent's non-zero activations: 0 takes every firing
        text, 0.9 its top 10%. The contrast group is always the silent texts.
    stop_words : "english", list of str or None, default="english"
        Stop words may not start (except negations and degree words such as
        "not", "too", "very"), end or form a term, so phrases stay literal
        ("waste of time" needs ``ngram_range=(1, 3)``; no "waste time" is made
        up). "english" is scikit-learn's list.
    prior_scale : float, default=1.0
        Weight of the prior, as a multiple of the firing group's own counts
        (the prior spreads it in proportion to corpus document frequencies).
        At 1 the z-scores of unrelated terms are close to standard normal;
        larger values shrink rare terms more.
    min_score : {"auto", "bonferroni"} or float, default="auto"
        Terms with a smaller z-score are not returned, so a latent without
        distinguishing words gets fewer (or no) terms. "auto" is, per latent,
        the Benjamini-Hochberg threshold at a false discovery rate of 10% over
        the whole vocabulary (one-sided p-values of the z-scores; a term ruled
        out by ``y`` counts as a test that failed), and at least 3 (one-sided
        p of 0.0013, so that in a small vocabulary a chance term does not
        ride on a few strong ones): a latent with many distinguishing terms
        gets a lower bar than one with few, and an unrelated latent gets no
        terms in at least 90% of cases.
        "bonferroni" is ``norm.isf(0.05 / n_terms_in_vocabulary)`` (about 4.3
        for 15,000 terms): no terms for an unrelated latent in 95% of cases,
        and fewer terms for the others.
    exclusive : bool, default=False
        Give each term only to the latent where its z-score is highest, so
        that latents sharing words ("bad" for two negative latents) are
        described by different ones and their annotations overlap less. A
        latent always keeps its own best term (two latents on one topic both
        keep its strongest word), and one all of whose terms go elsewhere (a
        copy of another) keeps all its own.

    Returns
    -------
    terms : list of list of (str, float)
        For each latent, up to ``n_terms`` (term, z-score) pairs, best first.
        A term containing a better-ranked term is skipped: it would add
        nothing to the phrase match.

    See Also
    --------
    format_hypothesis : A hypothesis sentence from these terms.
    match_terms : Annotate texts with these terms.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_hypothesaes.hypotheses import contrastive_terms
    >>> texts = ["a brilliant film", "brilliant acting", "brilliant and moving",
    ...          "a dull film", "dull plot", "the plot is dull", "it is a film"]
    >>> fires = np.array([[1.0], [2.0], [1.5], [0], [0], [0], [0]])
    >>> [[(term, round(z, 2)) for term, z in latent]
    ...  for latent in contrastive_terms(texts, fires, min_df=2, min_score=1.0)]
    [[('brilliant', 2.09)]]
    """
    texts = check_texts(texts, caller="contrastive_terms")
    if isinstance(min_score, str) and min_score not in ("auto", "bonferroni"):
        raise ValueError(
            "The 'min_score' parameter of contrastive_terms must be 'auto', "
            f"'bonferroni' or a float; got {min_score!r}."
        )
    acts = _check_activations(activations, len(texts))
    targets = _check_targets(y, len(texts))
    if documents is None:
        documents = document_terms(
            texts, ngram_range=ngram_range, min_df=min_df, stop_words=stop_words
        )
    else:
        documents.check(texts, ngram_range, min_df, stop_words, "contrastive_terms")
    if documents.docs is None:  # no term reaches min_df
        return [[] for _ in range(acts.shape[1])]
    docs, vocab, background = documents.docs, documents.vocab, documents.background
    rate = background / max(background.sum(), 1.0)
    if min_score == "bonferroni":
        min_score = float(norm.isf(_FWER / max(len(vocab), 1)))

    if targets is not None:
        column, sign, term_sign = _directions(acts, docs, targets)
    fires = _strong_rows(acts, quantile)
    n_fires = np.diff(fires.indptr)
    nonzero = acts.copy()
    nonzero.data = np.ones_like(nonzero.data)
    n_silent = len(texts) - np.diff(acts.indptr)
    # Exclusive terms are picked from a longer list, as some go elsewhere.
    wanted = 3 * n_terms if exclusive else n_terms
    results = []
    for start in range(0, acts.shape[1], _LATENT_BLOCK):
        block = slice(start, start + _LATENT_BLOCK)
        y_fire = np.asarray((fires[:, block].T @ docs).todense())
        # Silent texts are most of the corpus: count them as all minus firing.
        y_silent = background - np.asarray((nonzero[:, block].T @ docs).todense())
        # The prior is worth prior_scale times the firing group's own counts,
        # which keeps z close to a standard normal under no association.
        prior = prior_scale * y_fire.sum(axis=1, keepdims=True) * rate
        usable = y_fire > 0
        if targets is not None:
            # A latent unrelated to y (sign 0) keeps all its terms.
            same = term_sign[:, column[block]].T == sign[block, None]
            usable &= same | (sign[block, None] == 0)
        # Terms a latent never fires with cannot be picked (-inf, p = 1): only
        # the few it does get a score.
        scores = np.full(y_fire.shape, -np.inf)
        scores[usable] = _log_odds_z(y_fire, y_silent, prior, where=usable)
        if min_score == "auto":
            cuts = _fdr_cuts(scores)
        else:
            cuts = np.full(len(scores), min_score)
        for k, j in enumerate(range(start, start + len(scores))):
            if n_fires[j] == 0 or n_silent[j] == 0:
                results.append([])
                continue
            counts = (y_fire[k], y_silent[k])
            results.append(_pick(vocab, scores[k], counts, wanted, cuts[k]))
    if exclusive:
        results = _exclusive(results, n_terms)
    return results


@dataclasses.dataclass(frozen=True, eq=False)
class DocumentTerms:
    """The texts' terms as :func:`contrastive_terms` counts them.

    Made by :func:`document_terms`; pass it as ``documents=`` to score many
    batches of latents on the same texts without reading them again.

    Attributes
    ----------
    docs : scipy.sparse.csr_matrix of shape (n_texts, n_terms) or None
        1.0 where a text contains a term (float64); None when no term of the
        texts reaches ``min_df``.
    vocab : ndarray of str of shape (n_terms,)
        The terms: literal phrases (no stop word at either end, bar openers
        such as "not"), not numbers alone.
    background : ndarray of shape (n_terms,)
        Texts containing each term.
    fingerprint : str
        A hash of the texts, checked on each use.
    settings : tuple
        ``(ngram_range, min_df, stop_words)`` it was built with.
    """

    docs: sparse.csr_matrix | None
    vocab: np.ndarray
    background: np.ndarray
    fingerprint: str
    settings: tuple

    @functools.cached_property
    def columns(self) -> dict:
        """``{term: column}``."""
        return {term: i for i, term in enumerate(self.vocab)}

    def check(self, texts, ngram_range, min_df, stop_words, caller):
        """Refuse other texts or settings than it was built from."""
        settings = _settings(ngram_range, min_df, stop_words)
        if settings != self.settings:
            raise ValueError(
                f"The 'documents' parameter of {caller} was built with "
                f"(ngram_range, min_df, stop_words) = {self.settings}; got "
                f"{settings} in this call. Build it with document_terms(texts, "
                "...) and the same settings."
            )
        if text_fingerprint(texts) != self.fingerprint:
            raise ValueError(
                f"The 'documents' parameter of {caller} was built from other "
                f"texts than the {len(texts)} given. Build it with "
                "document_terms(texts, ...) on these texts."
            )


def document_terms(
    texts: Sequence[str],
    *,
    ngram_range: tuple[int, int] = (1, 2),
    min_df: int = 3,
    stop_words="english",
) -> DocumentTerms:
    """Read texts once into the terms that :func:`contrastive_terms` scores.

    Reading (repairing, tokenising and counting phrases) is most of the cost
    of :func:`contrastive_terms` when it describes a few latents at a time;
    its result depends only on the texts and these settings, so callers that
    describe many batches of latents on the same texts build it once.

    Parameters
    ----------
    texts : sequence of str
        The texts.
    ngram_range, min_df, stop_words
        As in :func:`contrastive_terms`.

    Returns
    -------
    documents : DocumentTerms

    Examples
    --------
    >>> from sklearn_hypothesaes.hypotheses._terms import document_terms
    >>> found = document_terms(["a dull film", "dull plot", "the film"], min_df=2)
    >>> list(found.vocab), found.docs.toarray().tolist()
    (['dull', 'film'], [[1.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    """
    texts = check_texts(texts, caller="document_terms")
    settings = _settings(ngram_range, min_df, stop_words)
    fingerprint = text_fingerprint(texts)
    vectorizer = CountVectorizer(
        token_pattern=TOKEN_PATTERN,
        preprocessor=_normalize,
        ngram_range=ngram_range,
        min_df=min_df,
        binary=True,
    )
    try:
        docs = vectorizer.fit_transform(texts).tocsr()
    except ValueError:  # no term reaches min_df
        empty = np.empty(0)
        return DocumentTerms(None, empty.astype(str), empty, fingerprint, settings)
    vocab = vectorizer.get_feature_names_out()
    keep = _literal_terms(vocab, _stop_set(stop_words))
    docs, vocab = docs[:, keep], vocab[keep]
    markers = marker_matrix(texts)
    frequent = np.asarray(markers.sum(axis=0)).ravel() >= min_df
    if frequent.any():
        docs = sparse.hstack([docs, markers[:, frequent]], format="csr")
        vocab = np.concatenate([vocab, np.asarray(list(MARKERS))[frequent]])
    docs.data = np.ones_like(docs.data, dtype=np.float64)
    background = np.asarray(docs.sum(axis=0), dtype=np.float64).ravel()
    return DocumentTerms(docs, vocab, background, fingerprint, settings)


def marker_matrix(texts: Sequence[str], markers=None) -> sparse.csr_matrix:
    """Which texts have each marker (a property that is not a word).

    Parameters
    ----------
    texts : sequence of str
        The texts, read as repaired text (as the words are).
    markers : list of str, default=None
        Names from :data:`MARKERS`; None takes them all, in their order.

    Returns
    -------
    found : scipy.sparse.csr_matrix of shape (n_texts, n_markers)
        1.0 where a text has the marker.

    Examples
    --------
    >>> from sklearn_hypothesaes.hypotheses._terms import marker_matrix
    >>> marker_matrix(["@ann Thanks!", "See https://x.org #news", "e-mail a@b.org"],
    ...               ["[starts with @name]", "[@name]", "[#hashtag]", "[link]",
    ...                "[e-mail address]"]).toarray().astype(int).tolist()
    [[1, 1, 0, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 0, 1]]
    """
    names = list(MARKERS) if markers is None else list(markers)
    patterns = [MARKERS[name] for name in names]
    rows, cols = [], []
    for i, text in enumerate(texts):
        if not _MAY_HOLD_MARKERS.search(text):
            continue
        # Markers are ASCII, which mojibake leaves alone; an HTML entity
        # ("&#64;") may hide one, so only then is the text repaired.
        if "&" in text:
            text = ftfy.fix_text(text)
        for j, pattern in enumerate(patterns):
            if pattern.search(text):
                rows.append(i)
                cols.append(j)
    return sparse.csr_matrix(
        (np.ones(len(rows)), (rows, cols)), shape=(len(texts), len(names))
    )


def text_fingerprint(texts: Sequence[str]) -> str:
    """A hash of a sequence of texts, their order and boundaries included."""
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    digest = hashlib.blake2b(lengths.tobytes(), digest_size=16)
    digest.update("".join(texts).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def _settings(ngram_range, min_df, stop_words):
    if stop_words is not None and not isinstance(stop_words, str):
        stop_words = frozenset(stop_words)
    return (tuple(ngram_range), min_df, stop_words)


def _exclusive(results, n_terms):
    """Each term kept only by the latent where it scores highest (the first on
    ties), except that a latent always keeps its own best term.

    Why keep the best term: two latents on one topic share its strongest word,
    and giving it to one alone leaves the other described by its weaker words
    only (on the Trump tweets this cost 0.04 of held-out R^2 on one seed). A
    latent that owns no term at all (a copy of another) keeps all its own, so
    that it is described as its original is rather than by one word.
    """
    owner = {}
    for j, terms in enumerate(results):
        for term, z in terms:
            if term not in owner or z > owner[term][1]:
                owner[term] = (j, z)
    out = []
    for j, terms in enumerate(results):
        mine = [(term, z) for term, z in terms if owner[term][0] == j]
        if mine and terms[0] not in mine:
            mine.insert(0, terms[0])
        out.append((mine or terms)[:n_terms])
    return out


def format_hypothesis(terms) -> str:
    """A hypothesis sentence from a latent's terms.

    Parameters
    ----------
    terms : list of str or of (str, float)
        Terms, best first, as :func:`contrastive_terms` returns them.

    Returns
    -------
    hypothesis : str
        ``mentions "a", "b" or "c"``, naming every term the phrase match uses.

    Examples
    --------
    >>> format_hypothesis([("brilliant", 5.1), ("masterpiece", 4.0),
    ...                    ("best film", 3.2)])
    'mentions "brilliant", "masterpiece" or "best film"'
    >>> format_hypothesis([])
    'mentions none of the distinguishing terms (none found)'
    """
    words = [t[0] if isinstance(t, tuple | list) else str(t) for t in terms]
    if not words:
        return "mentions none of the distinguishing terms (none found)"
    quoted = [f'"{w}"' for w in words]
    if len(quoted) == 1:
        return f"mentions {quoted[0]}"
    return "mentions " + ", ".join(quoted[:-1]) + " or " + quoted[-1]


class PhraseMatcher:
    """Annotate texts by whole-phrase matching, the offline stand-in for an LLM.

    A text has hypothesis j when it contains one of ``term_lists[j]`` as a
    whole phrase: case-insensitive, on word boundaries, with the tokenisation
    of :func:`contrastive_terms` (so "best film" matches "Best film!" but not
    "best films", words of one letter are ignored and contractions such as
    "doesn't" are one word). A bracketed marker such as ``"[link]"`` (see
    :func:`contrastive_terms`) is matched by its pattern instead.

    Parameters
    ----------
    term_lists : list of list of str or of (str, float)
        One list of terms per hypothesis.

    Examples
    --------
    >>> annotator = PhraseMatcher([["brilliant", "best film"], ["dull"]])
    >>> annotator.annotate(["The best film.", "Dull, dull.", "best films"])
    array([[1., 0.],
           [0., 1.],
           [0., 0.]])
    """

    def __init__(self, term_lists):
        tokenize = CountVectorizer(
            token_pattern=TOKEN_PATTERN, preprocessor=_normalize
        ).build_analyzer()

        def read(term):
            term = term[0] if isinstance(term, tuple | list) else str(term)
            return term if term in MARKERS else " ".join(tokenize(term))

        self.term_lists = [[read(t) for t in terms] for terms in term_lists]
        used = {t for terms in self.term_lists for t in terms if t}
        # Markers (found by their patterns) after the words (by the vectorizer).
        markers = [name for name in MARKERS if name in used]
        vocab = sorted(used - set(markers))
        self._terms = vocab + markers
        self._markers = markers
        index = {t: i for i, t in enumerate(self._terms)}
        rows = [index[t] for terms in self.term_lists for t in terms if t]
        cols = [j for j, terms in enumerate(self.term_lists) for t in terms if t]
        self._membership = sparse.csr_matrix(
            (np.ones(len(rows)), (rows, cols)),
            shape=(len(self._terms), len(self.term_lists)),
        )
        self._vectorizer = None
        if vocab:
            longest = max(len(t.split()) for t in vocab)
            self._vectorizer = CountVectorizer(
                token_pattern=TOKEN_PATTERN,
                preprocessor=_normalize,
                ngram_range=(1, longest),
                vocabulary=vocab,
                binary=True,
            )

    def annotate(self, texts) -> np.ndarray:
        """0/1 matrix of shape (n_texts, n_hypotheses), as float like an LLM's."""
        texts = check_texts(texts, caller="PhraseMatcher.annotate")
        if not self._terms:
            return np.zeros((len(texts), len(self.term_lists)))
        found = []
        if self._vectorizer is not None:
            found.append(self._vectorizer.transform(texts))
        if self._markers:
            found.append(marker_matrix(texts, self._markers))
        hits = sparse.hstack(found, format="csr") @ self._membership
        return (hits.toarray() > 0).astype(np.float64)

    def annotate_documents(self, documents) -> np.ndarray | None:
        """:meth:`annotate` of the texts ``documents`` was built from, read
        off its document-term matrix instead of the texts.

        Both read texts the same way, so a term that is a column of
        ``documents`` is in a text exactly when that column says so. Returns
        None when a term is not a column (too rare for ``min_df``, or longer
        than its ``ngram_range``): then annotate the texts.

        Parameters
        ----------
        documents : DocumentTerms
            From :func:`document_terms`.

        Returns
        -------
        annotations : ndarray of shape (n_texts, n_hypotheses) or None
        """
        if documents.docs is None:
            return None
        columns = [documents.columns.get(t) for t in self._terms]
        if None in columns:
            return None
        hits = documents.docs[:, columns] @ self._membership
        return (hits.toarray() > 0).astype(np.float64)


def match_terms(texts, term_lists) -> np.ndarray:
    """Annotate texts with term lists; see :class:`PhraseMatcher`.

    Examples
    --------
    >>> match_terms(["Not funny at all.", "So funny"], [["not funny"], ["funny"]])
    array([[1., 1.],
           [0., 1.]])
    """
    return PhraseMatcher(term_lists).annotate(texts)


def _normalize(text):
    """The preprocessor of both vectorizers: repaired text, lowercase, one
    apostrophe, with URLs, e-mail addresses and phone numbers blanked."""
    # ASCII text without "&" (an HTML entity) has nothing ftfy would change,
    # and skipping it keeps annotation fast.
    if not text.isascii() or "&" in text:
        text = ftfy.fix_text(text)
    # The blanking regex is slow (tried at every character); most texts have
    # nothing it could match.
    if _MAY_HOLD_NOT_WORDS.search(text):
        text = _NOT_WORDS.sub(" ", text)
    return text.lower().translate(_APOSTROPHES)


def _check_activations(activations, n_texts):
    if sparse.issparse(activations):
        acts = sparse.csc_matrix(activations, dtype=np.float64)
    else:
        acts = np.asarray(activations, dtype=np.float64)
        if acts.ndim == 1:
            acts = acts[:, None]
        acts = sparse.csc_matrix(acts)
    if acts.shape[0] != n_texts:
        raise ValueError(
            f"activations must have one row per text ({n_texts}); got "
            f"{acts.shape[0]} rows."
        )
    acts.eliminate_zeros()
    return acts


def _check_targets(y, n_texts):
    """y as a float (n_texts, n_targets) array, or None."""
    if y is None:
        return None
    try:
        targets = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            "The 'y' parameter of contrastive_terms must be numeric: a target, "
            "0/1 for two classes, or one 0/1 column per class. Got an array of "
            f"dtype {np.asarray(y).dtype} instead; encode class labels first "
            "(e.g. with sklearn.preprocessing.LabelBinarizer)."
        ) from exc
    if targets.ndim == 1:
        targets = targets[:, None]
    if targets.ndim != 2 or targets.shape[0] != n_texts:
        raise ValueError(
            f"The 'y' parameter of contrastive_terms must have one row per text "
            f"({n_texts}). Got shape {np.shape(y)} instead."
        )
    if not np.isfinite(targets).all():
        raise ValueError(
            "The 'y' parameter of contrastive_terms must be finite; got NaN or "
            "infinite values. Drop those texts first."
        )
    return targets


def _directions(acts, docs, targets):
    """How each latent and each term go with y.

    A latent's direction is the sign of its Pearson correlation with the
    target column it correlates with most (a one-vs-rest class, for several
    columns); a term's, in each column, the sign of its presence's
    correlation, i.e. whether the texts containing it have a target above the
    mean. Returns the latents' columns (n_latents,), their signs (n_latents,)
    and the terms' signs (n_terms, n_columns).
    """
    n = acts.shape[0]
    centered = targets - targets.mean(axis=0)
    latent_cov = np.asarray(acts.T @ centered) / n
    act_sd = np.sqrt(
        np.asarray(acts.multiply(acts).mean(axis=0)).ravel()
        - np.asarray(acts.mean(axis=0)).ravel() ** 2
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = np.nan_to_num(latent_cov / np.outer(act_sd, centered.std(axis=0)))
    column = np.abs(corr).argmax(axis=1)
    sign = np.sign(corr[np.arange(len(column)), column])
    return column, sign, np.sign(np.asarray(docs.T @ centered))


def _stop_set(stop_words):
    if stop_words is None:
        return _StopWords()
    if isinstance(stop_words, str):
        if stop_words != "english":
            raise ValueError(
                "The 'stop_words' parameter must be 'english', a list of str or "
                f"None; got {stop_words!r}."
            )
        stop = ENGLISH_STOP_WORDS
    else:
        stop = frozenset(_normalize(w) for w in stop_words)
    return _StopWords(stop)


class _StopWords(frozenset):
    """Stop words, and their contractions with a clitic ("it's", "we'll")."""

    def __contains__(self, word):
        if frozenset.__contains__(self, word):
            return True
        head, _, tail = word.partition("'")
        return tail in _CLITICS and frozenset.__contains__(self, head)


def _literal_terms(vocab, stop):
    """Mask of terms neither starting (bar openers) nor ending on a stop word,
    and not made of numbers alone ("1999", "20 30" say nothing in words)."""
    keep = np.empty(len(vocab), dtype=bool)
    for i, term in enumerate(vocab):
        words = term.split()
        keep[i] = (
            words[-1] not in stop
            and (words[0] not in stop or (len(words) > 1 and words[0] in _OPENERS))
            and not all(_is_number(w) for w in words)
        )
    return keep


def _is_number(word):
    return word.replace("_", "").isdecimal()


def _strong_rows(acts, quantile):
    """Sparse 0/1 (n_texts, n_latents): activation >= the latent's quantile."""
    strong = acts.copy()
    if quantile == 0 and np.isfinite(acts.data).all():
        # The 0-quantile is the smallest value: every firing text is strong.
        strong.data = np.ones_like(strong.data)
        return strong
    for j in range(acts.shape[1]):
        values = acts.data[acts.indptr[j] : acts.indptr[j + 1]]
        if len(values):
            cut = np.quantile(values, quantile)
            strong.data[acts.indptr[j] : acts.indptr[j + 1]] = values >= cut
    strong.eliminate_zeros()
    return strong


def _log_odds_z(y_i, y_j, prior, where=None):
    """Monroe et al. (2008) z-scores, rows = latents, columns = terms; with
    ``where`` (a boolean mask of that shape), those entries only, flattened."""
    prior_total = prior.sum(axis=1, keepdims=True)
    n_i = y_i.sum(axis=1, keepdims=True)
    n_j = y_j.sum(axis=1, keepdims=True)
    if where is not None:
        n_i, n_j, prior_total = (
            np.broadcast_to(a, where.shape)[where] for a in (n_i, n_j, prior_total)
        )
        y_i, y_j, prior = y_i[where], y_j[where], prior[where]
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = np.log((y_i + prior) / (n_i + prior_total - y_i - prior)) - np.log(
            (y_j + prior) / (n_j + prior_total - y_j - prior)
        )
        variance = 1.0 / (y_i + prior) + 1.0 / (y_j + prior)
        return delta / np.sqrt(variance)


def _fdr_cut(scores, alpha=_FDR, floor=_MIN_AUTO_SCORE):
    """Smallest z-score Benjamini-Hochberg calls a discovery, over all terms,
    and at least ``floor``.

    One-sided p-values of every term of the vocabulary (a term ruled out
    scores -inf, p = 1, and still counts as a test).
    """
    return float(_fdr_cuts(np.asarray(scores, dtype=float)[None, :], alpha, floor)[0])


def _fdr_cuts(scores, alpha=_FDR, floor=_MIN_AUTO_SCORE):
    """:func:`_fdr_cut` of each row of ``scores`` (latents x terms)."""
    cuts = np.full(len(scores), np.inf)
    n = scores.shape[1]
    p = ndtr(-scores)  # norm.sf, without its argument checks
    bounds = alpha * np.arange(1, n + 1) / n
    # Only p <= alpha can pass (every bound is <= alpha), and those are the
    # smallest p-values: sorting them alone gives their ranks in the vocabulary.
    small = p <= alpha
    rows, last = [], []
    for row in np.flatnonzero(small.any(axis=1)):
        ranked = np.sort(p[row, small[row]])
        passed = np.flatnonzero(ranked <= bounds[: len(ranked)])
        if len(passed):
            rows.append(row)
            last.append(passed[-1])
    if rows:
        cut = norm.isf(alpha * (np.asarray(last) + 1) / n)
        cuts[rows] = np.maximum(cut, floor)
    return cuts


def _pick(vocab, scores, counts, n_terms, min_score):
    """Best terms, skipping those a picked term makes redundant for matching.

    ``counts`` is (texts with the term where the latent fires, where it is
    silent), each of shape (n_terms_in_vocabulary,).
    """
    if np.isnan(scores).any():
        # NaN has no place in the order below (tiny vocabularies, prior_scale=0).
        return _pick_in(
            vocab, scores, counts, _top(scores, n_terms), n_terms, min_score
        )
    above = np.flatnonzero(scores >= min_score)
    # Only terms reaching min_score are picked; when the best few hundred hold
    # them all, they are all the candidates.
    if len(above) > _n_candidates(len(scores), n_terms):
        above = _top(scores, n_terms)
        above = above[scores[above] >= min_score]
    return _pick_in(vocab, scores, counts, above, n_terms, min_score)


def _n_candidates(n_scores, n_terms):
    return min(n_scores, 20 * n_terms + 100)


def _top(scores, n_terms):
    """The best few hundred terms: sorting the whole vocabulary per latent
    would dominate for wide SAEs."""
    top = _n_candidates(len(scores), n_terms)
    return np.argpartition(-scores, top - 1)[:top] if top else np.empty(0, int)


def _pick_in(vocab, scores, counts, candidates, n_terms, min_score):
    fire, silent = counts
    picked = []
    # Ties go to the longer phrase: "not funny" says more than "funny".
    order = sorted(
        candidates, key=lambda i: (-scores[i], -vocab[i].count(" "), vocab[i])
    )
    for i in order:
        if len(picked) == n_terms or not scores[i] >= min_score:
            break
        term = f" {vocab[i]} "
        if any(
            f" {vocab[k]} " in term  # matched whenever a picked term is
            or _IMPLIES.get(vocab[i]) == vocab[k]
            or (
                term in f" {vocab[k]} "
                and fire[i] == fire[k]
                and silent[i] == silent[k]
            )
            for k in picked
        ):
            continue
        picked.append(i)
    return [(str(vocab[i]), float(scores[i])) for i in picked]
