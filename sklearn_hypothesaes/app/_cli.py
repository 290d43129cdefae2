"""Command line: run the whole method on a table of texts and write a report.

``sklearn-hypothesaes data.csv --text-column text --target-column y`` (or
``python -m sklearn_hypothesaes``) reads the table, holds out a share of it,
fits embed -> sparse autoencoder -> select -> hypotheses on the rest, tests
the hypotheses on the held-out texts and writes to ``--output``:

- ``hypotheses.csv`` and ``hypotheses.json``: one row per hypothesis with its
  held-out statistics and, with ``--stability-seeds``, its stability across
  autoencoder seeds (the JSON also has the metrics, the signal check among
  them, usage, timings and settings);
- ``pipeline.joblib``: the fitted pipeline, reloadable with ``joblib.load``
  (a pickle: load it only from places you trust);
- ``report.html``: a self-contained report.

Pairwise tasks: with ``--pair-column``, each row holds two texts (the
``--text-column`` and the ``--pair-column``) and the target says whether the
first wins (two classes) or by how much (a number). The features are then
differences of the two texts' autoencoder latents, and the hypotheses are
concepts present in one text and not the other, tested on the differences of
their annotations.

Before any latent is described (any LLM call), a linear probe on the full
embeddings measures the signal they carry about the target; the summary says
how much of it the hypotheses recover, or warns that there is none.

Rows are in the report's order: largest absolute coefficient first. The
output and cache folders are checked before any work, and the outputs are
written all at once: into a new hidden sibling folder that then replaces
``--output``, so a failed or interrupted run leaves the previous outputs as
they were. A run killed outright (SIGKILL) cannot remove its hidden folder;
the next run into the same output does, and says so (the lock file a writer
holds tells a live run's folder apart).

Embeddings, LLM answers and the fitted autoencoder (as arrays, never a pickle)
are cached durably, so a second run on the same inputs reuses them, and an
interrupted run loses nothing that was already computed; ``--no-cache`` keeps
nothing on disk. Autoencoder fits that earlier versions pickled in the cache
are deleted, once, with a line saying how much.

LLM hypotheses are on when an endpoint (``--base-url``, ``$OPENAI_BASE_URL``)
or ``--interpreter-model`` is given; ``--annotator-model`` only picks another
model for the annotations, and alone it is refused.

This module holds the parser; the run and its outputs are in ``_cli_run``,
reading the data in ``_cli_data``, and what the toolkit's command line shares
in ``_cli_common``.
"""

from __future__ import annotations

import argparse
import os
import sys

from ._cli_common import (
    HelpFormatter,
    add_output_options,
    add_request_options,
    encoding,
    fraction,
    positive_int,
    run_reporting_errors,
)
from ._cli_run import run

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``sklearn-hypothesaes``."""
    parser = argparse.ArgumentParser(
        prog="sklearn-hypothesaes",
        description=(
            "Find hypotheses about which properties of a text go with an "
            "outcome: embed texts, train a sparse autoencoder, describe the "
            "latents that predict the target and test them on held-out texts."
        ),
        epilog=(
            "Examples:\n"
            "  sklearn-hypothesaes --demo\n"
            "  sklearn-hypothesaes reviews.csv --text-column review "
            "--target-column stars\n"
            "  sklearn-hypothesaes headlines.csv --text-column headline_a "
            "--pair-column headline_b \\\n"
            "      --target-column a_clicked_more   # pairs: which text wins\n"
            "  sklearn-hypothesaes reviews.parquet --target-column stars \\\n"
            "      --base-url http://localhost:8000/v1 "
            "--interpreter-model Qwen/Qwen3-8B\n\n"
            "Toolkit analyses (sklearn-hypothesaes COMMAND --help): diff A B | "
            "correlations FILE | cluster FILE --axis AXIS | search FILE QUERY"
        ),
        formatter_class=HelpFormatter,
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "input",
        nargs="?",
        help="CSV, TSV, Parquet, JSON or JSONL file (CSV may be compressed).",
    )
    data.add_argument("--text-column", default="text", help="column of texts")
    data.add_argument(
        "--pair-column",
        default=None,
        metavar="COLUMN",
        help="second text of each row, for pairwise tasks: each row is then a "
        "pair (--text-column, --pair-column) and the target says whether the "
        "first text wins (two classes) or by how much (a number); hypotheses "
        "are concepts present in one text and not the other",
    )
    data.add_argument("--target-column", default="target", help="column of the outcome")
    data.add_argument(
        "--encoding",
        type=encoding,
        default="utf-8",
        help="text encoding of a CSV, TSV or JSON input, e.g. latin-1 or cp1252",
    )
    data.add_argument(
        "--task",
        choices=["auto", "binary", "multiclass", "regression"],
        default="auto",
        help="auto: strings, booleans, two values and integers with at most 10 "
        "distinct values are classes; other numbers a regression",
    )
    data.add_argument(
        "--holdout-fraction",
        type=fraction,
        default=0.3,
        help="share of rows held out to test the hypotheses",
    )
    data.add_argument(
        "--max-rows",
        type=positive_int,
        default=None,
        help="use a random subset of this many rows, stratified for classes "
        "(default: all rows)",
    )
    data.add_argument(
        "--demo",
        action="store_true",
        help="run offline on the built-in Rotten Tomatoes reviews (12,808 "
        "snippets, fresh vs rotten) with their documented 70/30 split",
    )
    model = parser.add_argument_group("method")
    model.add_argument(
        "--embedding-model",
        default="all-MiniLM-L6-v2",
        help="sentence-transformers model or folder, or an OpenAI embedding "
        "model name such as text-embedding-3-small",
    )
    model.add_argument(
        "--n-latents",
        type=positive_int,
        default=256,
        help="latents of the sparse autoencoder (M)",
    )
    model.add_argument(
        "--k",
        type=positive_int,
        default=8,
        help="active latents per text; at most --n-latents",
    )
    model.add_argument(
        "--n-hypotheses",
        type=positive_int,
        default=20,
        help="latents selected and described; at most --n-latents",
    )
    model.add_argument(
        "--min-term-score",
        type=float,
        default=None,
        help="offline hypotheses: smallest z-score of a distinguishing word "
        "(default: a Bonferroni bound over the vocabulary, about 4; lower it, "
        "e.g. to 2, on small data)",
    )
    model.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the split, the autoencoder and the example texts",
    )
    model.add_argument(
        "--stability-seeds",
        type=positive_int,
        default=1,
        metavar="N",
        help="fit the autoencoder and the selection with N seeds in all (--seed, "
        "then --seed+1, ...) and give each hypothesis a stability: the share of "
        "the other N-1 fits that select a latent whose activations correlate "
        "with its latent's at r >= 0.5 (no LLM call); 1 is off",
    )
    model.add_argument(
        "--no-signal-check",
        action="store_true",
        help="skip the check, before any LLM call, of how well a linear probe "
        "on the full embeddings predicts the target on held-out texts",
    )
    llm = parser.add_argument_group(
        "LLM (offline by default: hypotheses are the words that distinguish "
        "each latent's texts)"
    )
    llm.add_argument(
        "--base-url",
        default=None,
        help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 "
        "(default: $OPENAI_BASE_URL, else OpenAI's API when a model is given)",
    )
    llm.add_argument(
        "--interpreter-model",
        default=None,
        help="model that describes latents; it, or an endpoint, turns LLM "
        "hypotheses on (default: gpt-4o-mini when an endpoint is set)",
    )
    llm.add_argument(
        "--annotator-model",
        default=None,
        help="model that annotates texts with the LLM's hypotheses; it does not "
        "turn LLM hypotheses on: alone (no --interpreter-model, no endpoint) it "
        "is refused, since offline hypotheses are annotated by their words "
        "(default: the interpreter model)",
    )
    add_request_options(llm)
    llm.add_argument(
        "--concepts-per-request",
        type=positive_int,
        default=None,
        metavar="N",
        help="hypotheses asked about in one annotation request (default: 1, one "
        "yes/no question per text and hypothesis, as the HypotheSAEs paper; "
        "10 costs about a quarter of the tokens, and may be less accurate: "
        "measure it with annotation_agreement)",
    )
    llm.add_argument(
        "--max-text-chars",
        type=positive_int,
        default=None,
        metavar="N",
        help="texts are cut to N characters wherever the LLM reads them: "
        "examples, fidelity and annotation (default: 500)",
    )
    llm.add_argument(
        "--offline", action="store_true", help="never call an LLM, even if configured"
    )
    add_output_options(parser, "hypothesaes_output")
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    """Parse and cross-check the options; exit with status 2 on a bad one."""
    parser = build_parser()
    args = parser.parse_args(argv)
    for option, value in (("--k", args.k), ("--n-hypotheses", args.n_hypotheses)):
        if value > args.n_latents:
            parser.error(
                f"{option} {value} is larger than --n-latents {args.n_latents}; "
                f"{option} must be at most --n-latents. Lower {option} or raise "
                "--n-latents."
            )
    if args.no_cache and args.cache_dir is not None:
        parser.error(
            f"--no-cache and --cache-dir {args.cache_dir} contradict each other; "
            "give one of them."
        )
    if args.pair_column is not None and args.pair_column == args.text_column:
        parser.error(
            f"--pair-column {args.pair_column!r} is also the --text-column; give "
            "the column of the second text of each pair."
        )
    if (
        args.annotator_model
        and not (args.interpreter_model or args.base_url or args.offline)
        and not (args.demo or os.environ.get("OPENAI_BASE_URL"))
    ):
        parser.error(
            f"--annotator-model {args.annotator_model} sets the model that "
            "annotates texts with an LLM's hypotheses, but no LLM describes the "
            "latents (no --interpreter-model, no --base-url or $OPENAI_BASE_URL), "
            "so the hypotheses would be offline ones, annotated by their words. "
            "Give --interpreter-model too (e.g. --interpreter-model "
            f"{args.annotator_model} for one model doing both), or leave "
            "--annotator-model out for offline hypotheses."
        )
    if args.demo:
        given = [
            f"{option} {value}"
            for option, value in (
                ("--interpreter-model", args.interpreter_model),
                ("--annotator-model", args.annotator_model),
                ("--base-url", args.base_url),
            )
            if value
        ]
        if given:
            parser.error(
                f"--demo runs offline, so {' and '.join(given)} would be ignored. "
                "Leave them out for the demo, or run the LLM method on a file "
                "of your own (see --help)."
            )
    if args.demo and args.pair_column is not None:
        parser.error(
            "--demo runs on single reviews; --pair-column needs an input file "
            "with two text columns."
        )
    if args.demo and args.input:
        parser.error(
            f"--demo runs on the built-in reviews; got an input file too "
            f"({args.input}). Give one of them."
        )
    return args


def main(argv=None) -> int:
    """Entry point of ``sklearn-hypothesaes`` and ``python -m sklearn_hypothesaes``.

    Returns the exit status: 0 on success, 1 on bad input or a failure, 2 on
    bad options (argparse), 130 when interrupted. A first argument ``diff``,
    ``correlations``, ``cluster`` or ``search`` runs that toolkit analysis
    instead (:func:`toolkit_main`), as the installed command does.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    from ._toolkit_cli import SUBCOMMANDS, toolkit_main

    if argv and argv[0] in SUBCOMMANDS:
        return toolkit_main(argv)
    args = parse_args(argv)
    return run_reporting_errors(run, args)
