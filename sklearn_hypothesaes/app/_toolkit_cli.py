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

This module holds the parser and the dispatch; the analyses are in
``_toolkit_runs``, the embedding and labelling they share in ``_toolkit_fit``,
the files and the summary in ``_toolkit_outputs`` (the report in
``_toolkit_report``), and what the main command line shares in ``_cli_common``.
"""

from __future__ import annotations

import argparse
import sys
import time

from ._cli_common import (
    HelpFormatter,
    add_output_options,
    add_request_options,
    check_cache,
    check_output_folder,
    encoding,
    fraction,
    llm_mode,
    note,
    positive_int,
    run_reporting_errors,
)
from ._cli_run import OUTPUT_FILES as _MAIN_OUTPUT_FILES
from ._toolkit_fit import DryRunDone, llm_client
from ._toolkit_outputs import (
    OUTPUT_FILES,
    REPORT_FILE,
    output_files,
    run_settings,
    summary_lines,
    write_all,
)
from ._toolkit_runs import RUNS

__all__ = ["SUBCOMMANDS", "build_toolkit_parser", "toolkit_main"]

#: First arguments of ``sklearn-hypothesaes`` that run a toolkit analysis.
SUBCOMMANDS = ("diff", "correlations", "cluster", "search")
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
    add_request_options(llm)
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
    add_output_options(parser, f"{command}_output")


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

    diff, group = _command(
        commands,
        "diff",
        "diff",
        one_input=False,
        help="latents that fire more often in one corpus than in another",
        description="Which labelled concepts are more frequent in corpus A than "
        "in corpus B (and the reverse), with tests corrected for every latent.",
        epilog="Examples:\n"
        "  sklearn-hypothesaes diff speeches_dem.csv speeches_rep.csv "
        "--text-column text\n"
        "  sklearn-hypothesaes diff a.csv b.csv --names fresh rotten --summarize \\\n"
        "      --base-url http://localhost:8000/v1 --model Qwen/Qwen3-8B",
    )
    diff.add_argument("input_a", metavar="A", help="first corpus (CSV, Parquet, ...)")
    diff.add_argument("input_b", metavar="B", help="second corpus")
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

    _, group = _command(
        commands,
        "correlations",
        "correlations",
        help="latent pairs that fire together more often than chance",
        description="Pairs of labelled concepts that occur together, ranked by "
        "normalised pointwise mutual information; pairs whose labels say the same "
        "thing are left out.",
        epilog="Examples:\n"
        "  sklearn-hypothesaes correlations reviews.csv --text-column review\n"
        "  sklearn-hypothesaes correlations chats.csv --text-column prompt "
        "--other-column response",
    )
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

    _, group = _command(
        commands,
        "cluster",
        "clustering",
        help="clusters of rows along an axis named in words, or chosen latents",
        description="Cluster rows by the labelled concepts about one axis (tone, "
        "reasoning style, ...): rows are compared on the latents whose labels are "
        "closest to the axis, by spectral clustering of their Jaccard similarity.",
        epilog="Examples:\n"
        '  sklearn-hypothesaes cluster reviews.csv --axis "tone" --n-clusters 4\n'
        "  sklearn-hypothesaes cluster reviews.csv --latents 3,7,12",
    )
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

    search, group = _command(
        commands,
        "search",
        "search",
        help="rows that have a property described in words",
        description='Rank rows by a property described in words ("mentions a '
        'price", "sarcastic"): the query is matched to the latents whose labels '
        "say the same, and rows are scored by those latents' activations.",
        epilog="Examples:\n"
        '  sklearn-hypothesaes search reviews.csv "mentions a price" --top 20\n'
        '  sklearn-hypothesaes search reviews.csv "mentions a price" '
        "--method dense   # baseline",
    )
    search.add_argument("query", help="the property, in words")
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
    for name, command in commands.choices.items():
        _add_common(command, name)
    return parser, commands.choices


def _command(commands, name, title, *, one_input=True, **texts):
    """A subcommand's parser, with its ``input`` file unless ``one_input`` is
    False, and its group of options, titled ``title``."""
    command = commands.add_parser(name, formatter_class=HelpFormatter, **texts)
    if one_input:
        command.add_argument("input", help="CSV, TSV, Parquet, JSON or JSONL file")
    return command, command.add_argument_group(title)


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


# --------------------------------------------------------------------- main
def run_toolkit(args) -> int:
    """One toolkit command: check, run, write; returns the exit status."""
    start = time.perf_counter()
    output = check_output_folder(args.output, _OURS)
    cache = check_cache(args)
    client = llm_client(args, cache) if llm_mode(args) else None
    timings: dict[str, float] = {}
    try:
        result = RUNS[args.command](args, cache, client, timings)
    except DryRunDone:
        note("dry run: nothing was sent and nothing written.")
        return 0
    settings = run_settings(args, cache)
    paths = write_all(output, output_files(args, result, settings, timings))
    lines = summary_lines(args, result)
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
