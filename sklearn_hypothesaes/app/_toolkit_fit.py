"""What the toolkit's four commands share: their texts read from the input
tables, and the labelled autoencoder fitted on them (``fit_embedder``), with
the embeddings computed once per run."""

from __future__ import annotations

import contextlib
import sys
import time

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from ._cli_common import SAE_CACHE, InputError, note, read_table


# ------------------------------------------------------------------ the data
def column_texts(frame, column, option, path, *, required=True):
    """A column as a Series of str (missing and blank texts as None)."""
    if column not in frame.columns:
        columns = [str(c) for c in frame.columns]
        raise InputError(
            f"{option} {column!r} is not a column of '{path}'; its columns are "
            f"{columns[:20]}{' ...' if len(columns) > 20 else ''}. Give "
            f"{option} with one of them."
        )
    values = frame[column]
    blank = values.isna() | (values.astype(str).str.strip() == "")
    texts = values.astype(str).where(~blank, None)
    if required and blank.all():
        raise InputError(
            f"{option} {column!r} of '{path}' holds no text (every value is empty "
            "or missing); give the column of the texts."
        )
    return texts


def read_corpus(path, args, option="--text-column"):
    """Texts of one input with their input row numbers; empty rows noted."""
    frame = read_table(path, encoding=args.encoding)
    texts = column_texts(frame, args.text_column, option, path)
    keep = texts.notna()
    if not keep.all():
        note(
            f"'{path}': {int((~keep).sum())} of {len(frame)} rows have no text in "
            f"{args.text_column!r} and are left out"
            + (" (they are in cluster -1)." if args.command == "cluster" else ".")
        )
    return frame, texts


def check_size(texts, path, least=10):
    if len(texts) < least:
        raise InputError(
            f"'{path}' has {len(texts)} rows with a text; at least {least} are "
            "needed to fit a sparse autoencoder and label its latents."
        )


# ----------------------------------------------------------- the embedder
class KnownEmbeddings(TransformerMixin, BaseEstimator):
    """A text embedder that keeps the vectors of the texts it was fitted on.

    The texts are embedded once per run (from the durable cache when there is
    one) and every later step (labelling, the analyses) reuses the vectors
    instead of embedding, or with ``--no-cache`` computing, them again. Other
    texts (labels, queries) go to the wrapped embedder, whose model stays
    loaded.
    """

    def __init__(self, embedder):
        self.embedder = embedder

    def fit(self, X, y=None):
        self.fit_transform(X)
        return self

    def fit_transform(self, X, y=None):
        texts = list(X)
        vectors = np.asarray(self.embedder.fit_transform(texts), dtype=np.float32)
        self.index_ = {t: i for i, t in enumerate(texts)}
        self.vectors_ = vectors
        return vectors

    def transform(self, X):
        texts = list(X)
        rows = np.array([self.index_.get(t, -1) for t in texts], dtype=np.int64)
        out = np.empty((len(texts), self.vectors_.shape[1]), dtype=np.float32)
        known = rows >= 0
        out[known] = self.vectors_[rows[known]]
        if not known.all():
            new = [t for t, ok in zip(texts, known, strict=True) if not ok]
            out[~known] = np.asarray(self.embedder.transform(new), dtype=np.float32)
        return out


def llm_client(args, cache):
    from ..llm import LLMClient

    return LLMClient(
        model=args.model or "gpt-4o-mini",
        base_url=args.base_url,
        api_key_env=args.api_key_env,
        max_tokens=args.max_tokens,
        extra_body=args.extra_body,
        cache_dir=False if cache is None else cache,
        verbose=not args.quiet,
    )


def _fit_sae(E, args, cache):
    """The autoencoder fitted on ``E``, or loaded from the cache: the same
    files (arrays and JSON, never a pickle) as the main command's."""
    from sklearn.pipeline import Pipeline

    from ..sae import SparseAutoencoder
    from ._memory import ArrayMemory

    sae = SparseAutoencoder(
        n_latents=args.n_latents,
        k=args.k,
        sparse_output=True,
        random_state=args.seed,
        verbose=int(not args.quiet),
    )
    if cache is None:
        return sae.fit(E)
    # A passthrough step lets Pipeline's memory cache the autoencoder's fit.
    pipe = Pipeline(
        [("sae", sae), ("output", "passthrough")],
        memory=ArrayMemory(cache / SAE_CACHE),
    )
    return pipe.fit(E).named_steps["sae"]


class DryRunDone(Exception):
    """--dry-run stops here, after the estimate."""


def embed_texts(texts, args, cache, timings):
    """``texts`` embedded by ``--embedding-model`` (through the cache), timed
    as ``embedding``: the fitted :class:`KnownEmbeddings` and the vectors."""
    from ..text import TextEmbedder

    start = time.perf_counter()
    known = KnownEmbeddings(
        TextEmbedder(
            model=args.embedding_model,
            cache_dir=False if cache is None else cache,
            verbose=not args.quiet,
        )
    )
    E = known.fit_transform(texts)
    timings["embedding"] = time.perf_counter() - start
    return known, E


def fit_embedder(texts, args, cache, client, timings):
    """Embed ``texts``, fit (or load) the autoencoder and label every live
    latent; with an LLM, print what labelling will send before sending it."""
    from ..hypotheses import LLMDescriber, TermDescriber
    from ..toolkit._embedder import InterpretableEmbedder

    known, E = embed_texts(texts, args, cache, timings)
    start = time.perf_counter()
    sae = _fit_sae(E, args, cache)
    timings["sparse autoencoder"] = time.perf_counter() - start
    start = time.perf_counter()
    if client is not None:
        # One candidate label per latent: the embedder scores its fidelity on
        # held-out texts, so the describer need not score it again.
        describer = LLMDescriber(client, n_fidelity=0)
    else:
        describer = TermDescriber(
            n_terms=8,
            exclusive=False,
            min_score="auto" if args.min_term_score is None else args.min_term_score,
        )
    embedder = InterpretableEmbedder(
        known,
        sae,
        describer,
        n_fidelity=args.n_fidelity,
        dry_run=client is not None,
        random_state=args.seed,
        verbose=int(not args.quiet),
    )
    # The estimate is printed by fit; stdout is kept for the summary.
    with contextlib.redirect_stdout(sys.stderr):
        embedder.fit(texts)
    if client is not None:
        if args.dry_run:
            raise DryRunDone
        embedder.relabel("all")
    timings["labelling"] = time.perf_counter() - start
    labels = embedder.labels_
    note(
        f"{int(labels['label'].notna().sum())} of {int(labels['live'].sum())} live "
        f"latents labelled ({len(labels)} in all)."
    )
    return embedder, known


def with_usage(total: dict, more: dict | None) -> dict:
    from ..llm import Usage

    fields = set(Usage.__dataclass_fields__)
    a = Usage(**{k: v for k, v in total.items() if k in fields})
    b = Usage(**{k: v for k, v in (more or {}).items() if k in fields})
    return (a + b).as_dict()
