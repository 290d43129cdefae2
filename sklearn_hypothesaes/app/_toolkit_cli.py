"""Command line of the toolkit: ``diff``, ``correlations``, ``cluster``, ``search``.

``sklearn-hypothesaes diff a.csv b.csv --text-column text`` (and the other
three) embeds the texts (the packaged MiniLM by default, cached), fits a
sparse autoencoder on them (cached as arrays), labels every live latent with
:class:`InterpretableEmbedder` (offline contrastive terms by default, an LLM
with ``--model`` or ``--base-url``) and runs one analysis of the toolkit:

- ``diff``: :func:`diff_corpora`, latents that fire more often in one corpus
  (the autoencoder is fitted on both corpora together); with
  ``--summarize`` and an LLM, :func:`summarize_differences` writes the top
  differences in words and checks each on held-out texts of both corpora;
- ``correlations``: :func:`concept_correlations`, latent pairs that fire
  together more than chance, synonyms filtered out; ``--other-column``
  correlates one text column's latents with another's;
- ``cluster``: :class:`ConceptClustering` along an ``--axis`` named in words
  or chosen ``--latents``; every input row gets a cluster;
- ``search``: :class:`PropertySearch`, the rows that have a property
  described in words (``--method dense``: the cosine baseline).

Each writes its tables as CSV and JSON, ``latents.csv`` (every latent's
label, fidelity and frequency) and ``report.html`` (self-contained) into
``--output``, all at once: a failed or interrupted run leaves the previous
outputs as they were. Tables of rows keep each row's position in the input
(``row``, counted from 0 over the data rows), its text and its
``--id-column``, so they join back to the data.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from ._cli import OUTPUT_FILES as _MAIN_OUTPUT_FILES
from ._cli_common import (
    HelpFormatter,
    InputError,
    check_cache,
    check_output_folder,
    encoding,
    fraction,
    json_object,
    jsonable,
    llm_mode,
    note,
    positive_int,
    read_table,
    run_reporting_errors,
    write_folder,
)

__all__ = ["SUBCOMMANDS", "build_toolkit_parser", "toolkit_main"]

#: First arguments of ``sklearn-hypothesaes`` that run a toolkit analysis.
SUBCOMMANDS = ("diff", "correlations", "cluster", "search")
#: What each subcommand writes in --output (``summary.csv`` only with
#: ``--summarize``).
OUTPUT_FILES = {
    "diff": ["differences.csv", "summary.csv", "latents.csv", "differences.json"],
    "correlations": ["correlations.csv", "latents.csv", "correlations.json"],
    "cluster": ["clusters.csv", "assignments.csv", "latents.csv", "clusters.json"],
    "search": ["results.csv", "matched_latents.csv", "latents.csv", "results.json"],
}
REPORT_FILE = "report.html"
# A folder holding only files that some run of sklearn-hypothesaes writes may be
# replaced by another run (of any subcommand); anything else is refused.
_OURS = {REPORT_FILE, *_MAIN_OUTPUT_FILES.values()} | {
    name for names in OUTPUT_FILES.values() for name in names
}


# ---------------------------------------------------------------- the parser
def _similarity(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not -1 <= number <= 1:
        raise argparse.ArgumentTypeError(
            f"must be a cosine similarity between -1 and 1; got {value!r}"
        )
    return number


def _latent_list(value: str) -> list[int]:
    try:
        latents = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        latents = []
    if not latents or min(latents) < 0:
        raise argparse.ArgumentTypeError(
            f"expected latent numbers separated by commas, such as 3,7; got {value!r}"
        )
    return list(dict.fromkeys(latents))


def _add_common(parser, command: str):
    data = parser.add_argument_group("data")
    data.add_argument("--text-column", default="text", help="column of texts")
    data.add_argument(
        "--encoding",
        type=encoding,
        default="utf-8",
        help="text encoding of a CSV, TSV or JSON input, e.g. latin-1",
    )
    if command in ("cluster", "search"):
        data.add_argument(
            "--id-column",
            default=None,
            metavar="COLUMN",
            help="column that identifies each row, copied into the result tables "
            "next to 'row' (the row's position in the input, from 0; default: none)",
        )
    method = parser.add_argument_group("embedding and sparse autoencoder")
    method.add_argument(
        "--embedding-model",
        default="all-MiniLM-L6-v2",
        help="sentence-transformers model or folder, or an OpenAI embedding model "
        "name such as text-embedding-3-small",
    )
    method.add_argument(
        "--n-latents", type=positive_int, default=256, help="latents (M)"
    )
    method.add_argument(
        "--k", type=positive_int, default=8, help="active latents per text"
    )
    method.add_argument(
        "--min-term-score",
        type=float,
        default=None,
        help="offline labels: smallest z-score of a distinguishing word (default: "
        "a Benjamini-Hochberg bound; lower it, e.g. to 2, on small data)",
    )
    method.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the autoencoder, the held-out texts and the examples",
    )
    llm = parser.add_argument_group(
        "LLM (offline by default: latents are labelled by the words that "
        "distinguish the texts where they fire)"
    )
    llm.add_argument(
        "--model",
        "--interpreter-model",
        dest="model",
        default=None,
        help="LLM that labels the latents"
        + {
            "diff": " and writes and checks the summary",
            "correlations": "",
            "cluster": " and confirms which latents are about the axis",
            "search": " and confirms which latents match the query",
        }[command]
        + " (default: gpt-4o-mini when an endpoint is set)",
    )
    llm.add_argument(
        "--base-url",
        default=None,
        help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 "
        "(default: $OPENAI_BASE_URL, else OpenAI's API when --model is given)",
    )
    llm.add_argument(
        "--api-key-env",
        default="OPENAI_API_KEY",
        help="name of the environment variable holding the API key",
    )
    llm.add_argument(
        "--max-tokens",
        type=positive_int,
        default=512,
        metavar="N",
        help="most tokens per LLM answer",
    )
    llm.add_argument(
        "--extra-body",
        type=json_object,
        default=None,
        metavar="JSON",
        help="extra request parameters merged into every LLM request, e.g. "
        '\'{"chat_template_kwargs": {"enable_thinking": false}}\' (default: none)',
    )
    llm.add_argument(
        "--n-fidelity",
        type=positive_int,
        default=40,
        metavar="N",
        help="held-out texts per latent on which the LLM checks its label (its "
        "fidelity): N requests per latent",
    )
    llm.add_argument(
        "--dry-run",
        action="store_true",
        help="with an LLM: embed and fit, print what labelling would send (requests, "
        "tokens) and stop before any request, writing nothing",
    )
    llm.add_argument(
        "--offline", action="store_true", help="never call an LLM, even if configured"
    )
    out = parser.add_argument_group("output")
    out.add_argument(
        "--output",
        "-o",
        default=f"{command}_output",
        help="output folder: new, or written by an earlier run (each run replaces "
        "its content)",
    )
    out.add_argument(
        "--cache-dir",
        default=None,
        help="cache folder for embeddings, LLM answers and fitted autoencoders "
        "(default: $SKLEARN_HYPOTHESAES_CACHE_DIR or the user cache folder)",
    )
    out.add_argument("--no-cache", action="store_true", help="cache nothing on disk")
    out.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    out.add_argument(
        "--debug", action="store_true", help="show full tracebacks on errors"
    )


def _add_tests(group):
    group.add_argument(
        "--correction",
        choices=["fdr_bh", "bonferroni", "holm", "none"],
        default="fdr_bh",
        help="multiple-testing correction",
    )
    group.add_argument(
        "--alpha", type=fraction, default=0.05, help="level of the corrected tests"
    )


def build_toolkit_parser() -> argparse.ArgumentParser:
    """The parser of ``sklearn-hypothesaes diff|correlations|cluster|search``."""
    return _build()[0]


def _build():
    parser = argparse.ArgumentParser(
        prog="sklearn-hypothesaes",
        description="Analyses of texts through labelled sparse-autoencoder latents.",
        formatter_class=HelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    diff = commands.add_parser(
        "diff",
        help="latents that fire more often in one corpus than in another",
        description="Which labelled concepts are more frequent in corpus A than "
        "in corpus B (and the reverse), with tests corrected for every latent.",
        epilog="Examples:\n"
        "  sklearn-hypothesaes diff speeches_dem.csv speeches_rep.csv "
        "--text-column text\n"
        "  sklearn-hypothesaes diff a.csv b.csv --names fresh rotten --summarize \\\n"
        "      --base-url http://localhost:8000/v1 --model Qwen/Qwen3-8B",
        formatter_class=HelpFormatter,
    )
    diff.add_argument("input_a", metavar="A", help="first corpus (CSV, Parquet, ...)")
    diff.add_argument("input_b", metavar="B", help="second corpus")
    group = diff.add_argument_group("diff")
    group.add_argument(
        "--names",
        nargs=2,
        metavar=("NAME_A", "NAME_B"),
        default=None,
        help="names of the two corpora (default: the file names)",
    )
    group.add_argument(
        "--test",
        choices=["fisher", "two-proportion"],
        default="fisher",
        help="Fisher's exact test or the two-proportion z-test",
    )
    _add_tests(group)
    group.add_argument(
        "--top",
        type=positive_int,
        default=None,
        help="rows kept, largest difference first (default: every latent)",
    )
    group.add_argument(
        "--summarize",
        action="store_true",
        help="with an LLM: the top differences in plain words, each checked by "
        "annotating held-out texts of both corpora",
    )
    group.add_argument(
        "--holdout-fraction",
        type=fraction,
        default=0.3,
        help="with --summarize: share of each corpus held out to check the summary",
    )
    group.add_argument(
        "--n-differences",
        type=positive_int,
        default=5,
        help="with --summarize: most differences asked for",
    )
    _add_common(diff, "diff")

    corr = commands.add_parser(
        "correlations",
        help="latent pairs that fire together more often than chance",
        description="Pairs of labelled concepts that occur together, ranked by "
        "normalised pointwise mutual information; pairs whose labels say the same "
        "thing are left out.",
        epilog="Examples:\n"
        "  sklearn-hypothesaes correlations reviews.csv --text-column review\n"
        "  sklearn-hypothesaes correlations chats.csv --text-column prompt "
        "--other-column response",
        formatter_class=HelpFormatter,
    )
    corr.add_argument("input", help="CSV, TSV, Parquet, JSON or JSONL file")
    group = corr.add_argument_group("correlations")
    group.add_argument(
        "--other-column",
        default=None,
        metavar="COLUMN",
        help="cross-field mode: pair latents of --text-column with latents of this "
        "column of the same rows (prompt vs response, title vs body)",
    )
    group.add_argument(
        "--min-count",
        type=positive_int,
        default=5,
        help="fewest rows on which a pair must fire together",
    )
    group.add_argument(
        "--max-label-similarity",
        type=_similarity,
        default=0.8,
        help="pairs whose labels are more similar than this (cosine of their "
        "embeddings) say the same thing and are left out",
    )
    group.add_argument("--top", type=positive_int, default=100, help="pairs kept")
    _add_tests(group)
    _add_common(corr, "correlations")

    cluster = commands.add_parser(
        "cluster",
        help="clusters of rows along an axis named in words, or chosen latents",
        description="Cluster rows by the labelled concepts about one axis (tone, "
        "reasoning style, ...): rows are compared on the latents whose labels are "
        "closest to the axis, by spectral clustering of their Jaccard similarity.",
        epilog="Examples:\n"
        '  sklearn-hypothesaes cluster reviews.csv --axis "tone" --n-clusters 4\n'
        "  sklearn-hypothesaes cluster reviews.csv --latents 3,7,12",
        formatter_class=HelpFormatter,
    )
    cluster.add_argument("input", help="CSV, TSV, Parquet, JSON or JSONL file")
    group = cluster.add_argument_group("clustering")
    group.add_argument(
        "--axis",
        default=None,
        help="what to cluster along, in words (default: every latent that fires, "
        "unless --latents)",
    )
    group.add_argument(
        "--latents",
        type=_latent_list,
        default=None,
        metavar="J,J,...",
        help="cluster along these latents (numbers, as in latents.csv of an "
        "earlier run with the same settings; default: --axis decides)",
    )
    group.add_argument(
        "--n-clusters", type=positive_int, default=8, help="clusters formed"
    )
    group.add_argument(
        "--n-axis-latents",
        type=positive_int,
        default=20,
        help="most latents kept for --axis",
    )
    _add_common(cluster, "cluster")

    search = commands.add_parser(
        "search",
        help="rows that have a property described in words",
        description='Rank rows by a property described in words ("mentions a '
        'price", "sarcastic"): the query is matched to the latents whose labels '
        "say the same, and rows are scored by those latents' activations.",
        epilog="Examples:\n"
        '  sklearn-hypothesaes search reviews.csv "mentions a price" --top 20\n'
        '  sklearn-hypothesaes search reviews.csv "mentions a price" '
        "--method dense   # baseline",
        formatter_class=HelpFormatter,
    )
    search.add_argument("input", help="CSV, TSV, Parquet, JSON or JSONL file")
    search.add_argument("query", help="the property, in words")
    group = search.add_argument_group("search")
    group.add_argument(
        "--top", type=positive_int, default=10, help="most rows returned"
    )
    group.add_argument(
        "--method",
        choices=["sae", "dense"],
        default="sae",
        help="sae: the latents whose labels match the query; dense: cosine "
        "similarity of the query and row embeddings (a baseline)",
    )
    group.add_argument(
        "--n-query-latents",
        type=positive_int,
        default=10,
        help="most latents matched to the query",
    )
    _add_common(search, "search")
    return parser, commands.choices


def parse_toolkit_args(argv) -> argparse.Namespace:
    """Parse and cross-check the options; exit with status 2 on a bad one."""
    parser, commands = _build()
    args = parser.parse_args(argv)
    sub = commands[args.command]
    if args.k > args.n_latents:
        sub.error(
            f"--k {args.k} is larger than --n-latents {args.n_latents}; --k must be "
            "at most --n-latents. Lower --k or raise --n-latents."
        )
    if args.no_cache and args.cache_dir is not None:
        sub.error(
            f"--no-cache and --cache-dir {args.cache_dir} contradict each other; "
            "give one of them."
        )
    if args.command == "cluster" and args.latents is not None:
        bad = [j for j in args.latents if j >= args.n_latents]
        if bad:
            sub.error(
                f"--latents {','.join(map(str, bad))}: latents are numbered 0 to "
                f"{args.n_latents - 1} (--n-latents {args.n_latents}). Give numbers "
                "from latents.csv of a run with the same settings."
            )
    if args.command == "diff" and args.names is not None:
        if args.names[0] == args.names[1] or not all(n.strip() for n in args.names):
            sub.error(
                f"--names {args.names[0]!r} {args.names[1]!r}: give two different, "
                "non-empty names."
            )
    if args.command == "diff" and args.summarize and not llm_mode(args):
        sub.error(
            "--summarize asks an LLM to write the differences in words; give "
            "--model or --base-url (an OpenAI-compatible endpoint), or leave out "
            "--summarize" + (" and --offline." if args.offline else ".")
        )
    if args.command == "correlations" and args.other_column == args.text_column:
        sub.error(
            f"--other-column {args.other_column!r} is also the --text-column; give "
            "another text column of the same rows."
        )
    if args.command == "search" and any(
        a == "--k" or a.startswith("--k=") for a in argv or sys.argv[1:]
    ):
        # PropertySearch.search(query, k) calls the number of results k.
        note(
            f"--k {args.k} sets the autoencoder's active latents per text, as in "
            f"every command; --top {args.top} sets how many rows are returned."
        )
    if args.command == "search" and not args.query.strip():
        sub.error('the query is empty; give a property such as "mentions a price".')
    if args.dry_run and not llm_mode(args):
        sub.error(
            "--dry-run estimates what an LLM would be sent; this run is offline "
            "(give --model or --base-url, or leave out --dry-run)."
        )
    return args


# ------------------------------------------------------------------ the data
def _texts(frame, column, option, path, *, required=True):
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


def _read_corpus(path, args, option="--text-column"):
    """Texts of one input with their input row numbers; empty rows noted."""
    frame = read_table(path, encoding=args.encoding)
    texts = _texts(frame, args.text_column, option, path)
    keep = texts.notna()
    if not keep.all():
        note(
            f"'{path}': {int((~keep).sum())} of {len(frame)} rows have no text in "
            f"{args.text_column!r} and are left out"
            + (" (they are in cluster -1)." if args.command == "cluster" else ".")
        )
    return frame, texts


def _check_size(texts, path, least=10):
    if len(texts) < least:
        raise InputError(
            f"'{path}' has {len(texts)} rows with a text; at least {least} are "
            "needed to fit a sparse autoencoder and label its latents."
        )


# ----------------------------------------------------------- the embedder
class _KnownEmbeddings(TransformerMixin, BaseEstimator):
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


def _llm_client(args, cache):
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
        memory=ArrayMemory(cache / "fitted_sae"),
    )
    return pipe.fit(E).named_steps["sae"]


class _DryRunDone(Exception):
    """--dry-run stops here, after the estimate."""


def fit_embedder(texts, args, cache, client, timings):
    """Embed ``texts``, fit (or load) the autoencoder and label every live
    latent; with an LLM, print what labelling will send before sending it."""
    from ..hypotheses import LLMDescriber, TermDescriber
    from ..text import TextEmbedder
    from ..toolkit._embedder import InterpretableEmbedder

    start = time.perf_counter()
    known = _KnownEmbeddings(
        TextEmbedder(
            model=args.embedding_model,
            cache_dir=False if cache is None else cache,
            verbose=not args.quiet,
        )
    )
    E = known.fit_transform(texts)
    timings["embedding"] = time.perf_counter() - start
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
            raise _DryRunDone
        embedder.relabel("all")
    timings["labelling"] = time.perf_counter() - start
    labels = embedder.labels_
    note(
        f"{int(labels['label'].notna().sum())} of {int(labels['live'].sum())} live "
        f"latents labelled ({len(labels)} in all)."
    )
    return embedder, known


def _with_usage(total: dict, more: dict | None) -> dict:
    from ..llm import Usage

    fields = set(Usage.__dataclass_fields__)
    a = Usage(**{k: v for k, v in total.items() if k in fields})
    b = Usage(**{k: v for k, v in (more or {}).items() if k in fields})
    return (a + b).as_dict()


# ---------------------------------------------------------------- the runs
def run_diff(args, cache, client, timings) -> dict:
    from sklearn.model_selection import train_test_split

    from ..toolkit._diff import diff_corpora, summarize_differences

    _, texts_a = _read_corpus(args.input_a, args)
    _, texts_b = _read_corpus(args.input_b, args)
    texts_a, texts_b = texts_a.dropna(), texts_b.dropna()
    for path, texts in ((args.input_a, texts_a), (args.input_b, texts_b)):
        _check_size(texts, path)
    names = list(args.names or _corpus_names(args.input_a, args.input_b))
    held_a = held_b = None
    if args.summarize:
        texts_a, held_a = train_test_split(
            texts_a, test_size=args.holdout_fraction, random_state=args.seed
        )
        texts_b, held_b = train_test_split(
            texts_b, test_size=args.holdout_fraction, random_state=args.seed
        )
        texts_a, texts_b = texts_a.sort_index(), texts_b.sort_index()
    a, b = texts_a.tolist(), texts_b.tolist()
    note(
        f"{len(a)} texts of {names[0]} and {len(b)} of {names[1]}"
        + (
            f" ({len(held_a)} and {len(held_b)} more held out to check the summary)"
            if args.summarize
            else ""
        )
        + f", {'LLM' if client else 'offline'} labels."
    )
    embedder, _ = fit_embedder(a + b, args, cache, client, timings)
    start = time.perf_counter()
    table = diff_corpora(
        a,
        b,
        embedder=embedder,
        test=args.test,
        correction=args.correction,
        alpha=args.alpha,
        top=args.top,
    )
    timings["diff"] = time.perf_counter() - start
    usage = dict(embedder.usage_)
    summary = None
    if args.summarize:
        start = time.perf_counter()
        summary = summarize_differences(
            table,
            client,
            held_a.tolist(),
            held_b.tolist(),
            n_differences=args.n_differences,
            names=tuple(names),
            test=args.test,
            correction=args.correction,
            alpha=args.alpha,
            random_state=args.seed,
        )
        usage = _with_usage(usage, summary.usage.as_dict())
        timings["summary"] = time.perf_counter() - start
    return {
        "table": table,
        "summary": summary,
        "names": names,
        "embedder": embedder,
        "usage": usage,
    }


def _corpus_names(path_a, path_b):
    a, b = Path(path_a).name, Path(path_b).name
    for suffix in (".gz", ".bz2", ".xz", ".zst", ".zip"):
        a, b = a.removesuffix(suffix), b.removesuffix(suffix)
    a, b = Path(a).stem, Path(b).stem
    return (a, b) if a != b else ("A", "B")


def run_correlations(args, cache, client, timings) -> dict:
    from ..toolkit._correlations import concept_correlations

    frame, texts = _read_corpus(args.input, args)
    other = None
    if args.other_column is not None:
        other = _texts(frame, args.other_column, "--other-column", args.input)
        missing = texts.notna() & other.isna()
        if missing.any():
            note(
                f"'{args.input}': {int(missing.sum())} rows have no text in "
                f"{args.other_column!r} and are left out."
            )
        keep = texts.notna() & other.notna()
        texts, other = texts[keep], other[keep]
    else:
        texts = texts.dropna()
    _check_size(texts, args.input)
    x = texts.tolist()
    y = None if other is None else other.tolist()
    note(
        f"{len(x)} rows"
        + ("" if y is None else f" of {args.text_column!r} and {args.other_column!r}")
        + f", {'LLM' if client else 'offline'} labels."
    )
    # One autoencoder for both columns, so a latent means the same in each.
    embedder, known = fit_embedder(
        x + ([] if y is None else y), args, cache, client, timings
    )
    start = time.perf_counter()
    labelled = embedder.labels_["label"].notna().any()
    if not labelled:
        note(
            "no latent got a label, so labels cannot be compared: pairs that say "
            "the same thing are not filtered (a lower --min-term-score labels more)."
        )
    table = concept_correlations(
        x,
        embedder=embedder,
        Y=y,
        min_count=args.min_count,
        alpha=args.alpha,
        correction=args.correction,
        label_similarity=known if labelled else None,
        max_label_similarity=args.max_label_similarity,
        top=args.top,
    )
    # Rows where both latents of a pair fire, strongest first.
    fx = embedder.binarize(x)
    fy = fx if y is None else embedder.binarize(y)
    zx = embedder.transform(x)
    zy = zx if y is None else embedder.transform(y)
    examples = []
    for a, b in zip(table["latent_a"], table["latent_b"], strict=True):
        both = np.flatnonzero(
            fx[:, [a]].toarray().ravel() & fy[:, [b]].toarray().ravel()
        )
        strength = (
            zx[both][:, [a]].toarray().ravel() + zy[both][:, [b]].toarray().ravel()
        )
        rows = both[np.lexsort((both, -strength))][:3]
        examples.append([x[i] if y is None else f"{x[i]} → {y[i]}" for i in rows])
    table["examples"] = examples
    timings["correlations"] = time.perf_counter() - start
    return {"table": table, "embedder": embedder, "usage": dict(embedder.usage_)}


def _check_labelled(embedder, what: str):
    if embedder.labels_["label"].notna().any():
        return
    raise InputError(
        f"no latent got a label, so {what} has nothing to be matched to: no word "
        "distinguishes the texts where any latent fires. Give a lower "
        "--min-term-score (e.g. 2), more rows, or an LLM to label the latents "
        "(--model, --base-url)"
        + ("; or choose latents by number with --latents." if "axis" in what else ".")
    )


def _row_frame(frame, args):
    """Each input row's number and id, for the result tables."""
    rows = pd.DataFrame({"row": np.arange(len(frame))})
    if args.id_column is not None:
        if args.id_column not in frame.columns:
            columns = [str(c) for c in frame.columns]
            raise InputError(
                f"--id-column {args.id_column!r} is not a column of "
                f"'{args.input}'; its columns are {columns[:20]}"
                f"{' ...' if len(columns) > 20 else ''}."
            )
        rows[args.id_column] = frame[args.id_column].to_numpy()
    return rows


def run_cluster(args, cache, client, timings) -> dict:
    from ..toolkit._clustering import NO_AXIS_CLUSTER, ConceptClustering

    frame, texts = _read_corpus(args.input, args)
    rows = _row_frame(frame, args)
    present = texts.dropna()
    _check_size(present, args.input)
    along = (
        f"axis {args.axis!r}"
        if args.axis
        else f"latents {args.latents}"
        if args.latents
        else "every latent"
    )
    note(
        f"{len(present)} rows, clustered along {along}, "
        f"{'LLM' if client else 'offline'} labels."
    )
    embedder, _ = fit_embedder(present.tolist(), args, cache, client, timings)
    if args.axis and args.latents is None:
        _check_labelled(embedder, f"--axis {args.axis!r}")
    start = time.perf_counter()
    model = ConceptClustering(
        args.axis,
        latents=args.latents,
        n_clusters=args.n_clusters,
        embedder=embedder,
        n_latents=args.n_axis_latents,
        llm=client,
        random_state=args.seed,
    )
    try:
        model.fit(pd.Series(present.tolist(), index=present.index.to_numpy()))
    except ValueError as exc:
        # No latent for the axis, or none labelled: the user's choice to change.
        raise InputError(
            " ".join(str(exc).split())
            + (
                f" (--axis {args.axis!r}: name the axis differently, or choose "
                "latents with --latents.)"
                if args.axis
                else ""
            )
        ) from None
    timings["clustering"] = time.perf_counter() - start
    found = model.assignments_
    assignments = rows.copy()
    assignments["text"] = texts.to_numpy(dtype=object)
    assignments["cluster"] = NO_AXIS_CLUSTER
    assignments["axis_latents"] = ""
    assignments.loc[found.index, "cluster"] = found["cluster"].to_numpy()
    assignments.loc[found.index, "axis_latents"] = found["axis_latents"].to_numpy()
    clusters = model.cluster_descriptions_.copy()
    n_empty = int(texts.isna().sum())
    if n_empty:
        # Rows without a text have nothing to compare on: cluster -1 too.
        where = clusters["cluster"] == NO_AXIS_CLUSTER
        if not where.any():
            extra = {c: [] for c in ("latents", "labels", "rate_in", "rate_out")}
            clusters.loc[len(clusters)] = {
                "cluster": NO_AXIS_CLUSTER,
                "size": 0,
                "share": 0.0,
                "description": f"none of the {len(model.latents_)} axis latents fires",
                "lift": [],
                "examples": [],
                **extra,
            }
            where = clusters["cluster"] == NO_AXIS_CLUSTER
        i = clusters.index[where][0]
        clusters.at[i, "size"] = int(clusters.at[i, "size"]) + n_empty
        clusters.at[i, "description"] += f"; {n_empty} rows have no text"
    clusters["share"] = clusters["size"] / len(assignments)
    usage = _with_usage(dict(embedder.usage_), model.usage_)
    return {
        "clusters": clusters,
        "assignments": assignments,
        "axis_latents": model.latents_,
        "embedder": embedder,
        "usage": usage,
    }


def run_search(args, cache, client, timings) -> dict:
    from ..text import TextEmbedder
    from ..toolkit._search import PropertySearch

    frame, texts = _read_corpus(args.input, args)
    rows = _row_frame(frame, args)
    present = texts.dropna()
    _check_size(present, args.input, least=1 if args.method == "dense" else 10)
    note(
        f"{len(present)} rows, searched for {args.query!r} by "
        + (
            f"latents, {'LLM' if client else 'offline'} labels."
            if args.method == "sae"
            else "cosine similarity of embeddings (dense)."
        )
    )
    series = pd.Series(present.tolist(), index=present.index.to_numpy())
    embedder = None
    if args.method == "sae":
        embedder, _ = fit_embedder(present.tolist(), args, cache, client, timings)
        _check_labelled(embedder, "the query")
        search = PropertySearch(embedder, n_latents=args.n_query_latents, llm=client)
    else:
        start = time.perf_counter()
        known = _KnownEmbeddings(
            TextEmbedder(
                model=args.embedding_model,
                cache_dir=False if cache is None else cache,
                verbose=not args.quiet,
            )
        )
        known.fit(present.tolist())
        timings["embedding"] = time.perf_counter() - start
        search = PropertySearch(text_embedder=known, method="dense")
    start = time.perf_counter()
    found = search.fit(series).search(args.query, k=args.top)
    timings["search"] = time.perf_counter() - start
    results = found.drop(columns=["row", "id"])
    results.insert(1, "row", found["id"].to_numpy(dtype=np.int64))
    if args.id_column is not None:
        ids = rows.set_index("row")[args.id_column]
        results.insert(2, args.id_column, ids.loc[results["row"]].to_numpy())
    matched = pd.DataFrame(found.attrs["matched"])
    usage = dict(embedder.usage_) if embedder is not None else {}
    usage = _with_usage(usage, found.attrs.get("usage"))
    return {
        "results": results,
        "matched": matched,
        "n_matches": found.attrs["n_matches"],
        "n_rows": len(present),
        "embedder": embedder,
        "usage": usage,
    }


_RUNS = {
    "diff": run_diff,
    "correlations": run_correlations,
    "cluster": run_cluster,
    "search": run_search,
}


# ------------------------------------------------------------------- output
def _csv_ready(table: pd.DataFrame) -> pd.DataFrame:
    """Lists (examples, latents) as JSON text, so each stays one CSV cell."""
    out = table.copy()
    for column in out.columns:
        if out[column].map(lambda v: isinstance(v, list | tuple | np.ndarray)).any():
            out[column] = out[column].map(
                lambda v: json.dumps(jsonable(v), ensure_ascii=False)
            )
    return out


def write_all(output: Path, files: dict) -> dict:
    """Write ``{name: writer(path)}`` into a new hidden sibling of ``output``,
    which then replaces it; a failure or Ctrl-C leaves ``output`` as it was."""

    def fill(folder):
        for name, write in files.items():
            write(folder / name)

    write_folder(output, fill)
    return {name: Path(output) / name for name in files}


def _settings(args, cache) -> dict:
    from ._report import redact_settings

    skip = {"debug", "quiet", "func"}
    options = {k: v for k, v in vars(args).items() if k not in skip}
    options["labels"] = "LLM" if llm_mode(args) else "offline"
    options["cache"] = "off" if cache is None else str(cache)
    if options.get("base_url") is None and llm_mode(args):
        options["base_url"] = os.environ.get("OPENAI_BASE_URL")
    return redact_settings(jsonable(options))


def _outputs(args, result, settings, timings) -> dict:
    """The files of a run: {name: writer}."""
    from ._toolkit_report import render_toolkit_report

    command = args.command
    payload = {"command": command, "settings": settings}
    files = {}

    def table_writer(table):
        return lambda path: _csv_ready(table).to_csv(path, index=False)

    embedder = result.get("embedder")
    if command == "diff":
        table = result["table"]
        files["differences.csv"] = table_writer(table)
        payload["differences"] = table.to_dict(orient="records")
        payload["totals"] = dict(table.attrs)
        payload["names"] = result["names"]
        summary = result["summary"]
        if summary is not None:
            files["summary.csv"] = table_writer(summary.differences)
            payload["summary"] = {
                "differences": summary.differences.to_dict(orient="records"),
                "share_verified": summary.share_verified,
                "prompt": summary.prompt,
                "usage_summary": summary.usage_summary.as_dict(),
                "usage_verification": summary.usage_verification.as_dict(),
            }
        json_name = "differences.json"
    elif command == "correlations":
        table = result["table"]
        files["correlations.csv"] = table_writer(table)
        payload["correlations"] = table.to_dict(orient="records")
        payload["totals"] = dict(table.attrs)
        json_name = "correlations.json"
    elif command == "cluster":
        files["clusters.csv"] = table_writer(result["clusters"])
        files["assignments.csv"] = table_writer(result["assignments"])
        payload["clusters"] = result["clusters"].to_dict(orient="records")
        payload["axis_latents"] = result["axis_latents"].to_dict(orient="records")
        payload["assignments"] = result["assignments"].to_dict(orient="records")
        json_name = "clusters.json"
    else:
        files["results.csv"] = table_writer(result["results"])
        if args.method == "sae":
            files["matched_latents.csv"] = table_writer(result["matched"])
        payload["query"] = args.query
        payload["results"] = result["results"].to_dict(orient="records")
        payload["matched_latents"] = result["matched"].to_dict(orient="records")
        payload["totals"] = {
            "n_rows": result["n_rows"],
            "n_matches": result["n_matches"],
        }
        json_name = "results.json"
    if embedder is not None:
        files["latents.csv"] = table_writer(embedder.labels_)
        payload["latents"] = embedder.labels_.to_dict(orient="records")
    payload["usage"] = result["usage"]
    payload["timings"] = dict(timings)
    files[json_name] = lambda path: path.write_text(
        json.dumps(jsonable(payload), indent=2, ensure_ascii=False), encoding="utf-8"
    )
    files[REPORT_FILE] = lambda path: render_toolkit_report(
        command, result, path, settings=settings, timings=timings, args=args
    )
    return files


def _summary_lines(args, result) -> list[str]:
    command = args.command
    if command == "diff":
        table, (a, b) = result["table"], result["names"]
        shown = table[table["significant"]].head(5)
        lines = [
            f"{int(table['significant'].sum())} of {table.attrs['n_tested']} latents "
            f"differ significantly between {a} ({table.attrs['n_a']} texts) and "
            f"{b} ({table.attrs['n_b']} texts)."
        ]
        for row in shown.itertuples():
            side = a if row.more_in == "a" else b
            lines.append(
                f"  {row.freq_a:6.1%} vs {row.freq_b:6.1%}  more in {side}: {row.label}"
            )
        if result["summary"] is not None:
            summary = result["summary"]
            lines.append(
                f"Summary: {len(summary.differences)} differences, "
                f"{summary.share_verified:.0%} verified on held-out texts."
            )
    elif command == "correlations":
        table = result["table"]
        lines = [
            f"{len(table)} pairs of latents fire together more than chance "
            f"({table.attrs['n_redundant']} pairs of synonyms left out)."
        ]
        for row in table.head(5).itertuples():
            lines.append(f"  NPMI {row.npmi:.2f}  {row.label_a}  +  {row.label_b}")
    elif command == "cluster":
        clusters = result["clusters"]
        lines = [f"{len(clusters)} clusters of {len(result['assignments'])} rows."]
        for row in clusters.itertuples():
            lines.append(f"  {row.cluster:3d}  {row.size:6d} rows  {row.description}")
    else:
        results = result["results"]
        lines = [
            f"{len(results)} rows shown of {result['n_matches']} that match "
            f"{args.query!r}."
        ]
        for row in results.head(5).itertuples():
            lines.append(f"  {row.rank:3d}. {row.score:.3f}  {str(row.text)[:70]}")
    return lines


# --------------------------------------------------------------------- main
def run_toolkit(args) -> int:
    start = time.perf_counter()
    output = check_output_folder(args.output, _OURS)
    cache = check_cache(args)
    client = _llm_client(args, cache) if llm_mode(args) else None
    timings: dict[str, float] = {}
    try:
        result = _RUNS[args.command](args, cache, client, timings)
    except _DryRunDone:
        note("dry run: nothing was sent and nothing written.")
        return 0
    settings = _settings(args, cache)
    paths = write_all(output, _outputs(args, result, settings, timings))
    lines = _summary_lines(args, result)
    lines.append(f"Wrote {', '.join(str(p) for p in paths.values())}")
    lines.append(f"Done in {time.perf_counter() - start:.1f} s.")
    print("\n".join(lines))
    return 0


def toolkit_main(argv=None) -> int:
    """Entry point of ``sklearn-hypothesaes diff|correlations|cluster|search``.

    Returns the exit status: 0 on success, 1 on bad input or a failure, 2 on
    bad options (argparse exits), 130 when interrupted.
    """
    args = parse_toolkit_args(argv)
    return run_reporting_errors(run_toolkit, args)
