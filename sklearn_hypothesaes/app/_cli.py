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
they were.

Embeddings, LLM answers and the fitted autoencoder (as arrays, never a pickle)
are cached durably, so a second run on the same inputs reuses them, and an
interrupted run loses nothing that was already computed; ``--no-cache`` keeps
nothing on disk.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

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

__all__ = ["build_parser", "main"]

#: What a run writes in --output; a folder holding anything else is refused,
#: since each run replaces the whole folder.
OUTPUT_FILES = {
    "csv": "hypotheses.csv",
    "json": "hypotheses.json",
    "pipeline": "pipeline.joblib",
    "report": "report.html",
}


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
            "--interpreter-model Qwen/Qwen3-8B"
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
        help="model that describes latents (default: gpt-4o-mini when an "
        "endpoint is set)",
    )
    llm.add_argument(
        "--annotator-model",
        default=None,
        help="model that annotates texts (default: the interpreter model)",
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
        help="most tokens per LLM answer; a thinking model needs room for its "
        "thinking, or thinking turned off with --extra-body",
    )
    llm.add_argument(
        "--extra-body",
        type=json_object,
        default=None,
        metavar="JSON",
        help="extra request parameters merged into every LLM request, e.g. "
        '\'{"chat_template_kwargs": {"enable_thinking": false}}\' to turn '
        "thinking off on vLLM or llama.cpp server (default: none)",
    )
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
    out = parser.add_argument_group("output")
    out.add_argument(
        "--output",
        "-o",
        default="hypothesaes_output",
        help="output folder: new, or written by an earlier run (each run "
        "replaces its content)",
    )
    out.add_argument(
        "--cache-dir",
        default=None,
        help="cache folder for embeddings, LLM answers and fitted autoencoders "
        "(default: $SKLEARN_HYPOTHESAES_CACHE_DIR or the user cache folder)",
    )
    out.add_argument(
        "--no-cache",
        action="store_true",
        help="cache nothing on disk: embeddings, LLM answers and the "
        "autoencoder are computed anew",
    )
    out.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    out.add_argument(
        "--debug", action="store_true", help="show full tracebacks on errors"
    )
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


# --------------------------------------------------------------------- input
def prepare_data(frame, text_column, target_column, task, pair_column=None):
    """Texts, target and the resolved task; rows with gaps dropped (said on
    stderr); InputError for a missing column or an unusable target.

    With ``pair_column``, the texts are an (n_rows, 2) array of pairs
    (``text_column``, ``pair_column``), and the task binary or regression.

    The task is decided by :func:`~sklearn_hypothesaes.utils._validation.
    resolve_task`, as the estimators decide it: ``"binary"``,
    ``"multiclass"`` or ``"regression"``.
    """
    columns = [str(c) for c in frame.columns]
    options = [("--text-column", text_column), ("--target-column", target_column)]
    if pair_column is not None:
        options.insert(1, ("--pair-column", pair_column))
    for option, column in options:
        if column not in frame.columns:
            raise InputError(
                f"{option} {column!r} is not a column of the input; its columns "
                f"are {columns[:20]}{' ...' if len(columns) > 20 else ''}."
            )
    texts = frame[text_column]
    target = frame[target_column]
    empty = texts.isna() | (texts.astype(str).str.strip() == "")
    if pair_column is not None:
        second = frame[pair_column]
        empty |= second.isna() | (second.astype(str).str.strip() == "")
    keep = ~empty & target.notna()
    dropped = int((~keep).sum())
    if dropped:
        note(
            f"dropped {dropped} of {len(frame)} rows with an empty text or a "
            "missing target."
        )
    texts, target = texts[keep].astype(str), target[keep]
    if pair_column is not None:
        texts = pd.concat([texts, second[keep].astype(str)], axis=1)
    if len(texts) == 0:
        raise InputError("no rows left with both a text and a target value.")
    n_values = target.nunique()
    if n_values < 2:
        raise InputError(
            f"--target-column {target_column!r} has {n_values} distinct value"
            f"{'' if n_values == 1 else 's'} "
            f"({_show(target.iloc[0])}); at least 2 are needed."
            if n_values
            else f"--target-column {target_column!r} has no values."
        )
    numeric = pd.api.types.is_numeric_dtype(target) and not pd.api.types.is_bool_dtype(
        target
    )
    if task == "regression" and not numeric:
        raise InputError(
            f"--task regression needs a numeric --target-column; "
            f"{target_column!r} holds values such as {_show(target.iloc[0])}."
        )
    if numeric:
        values = target.to_numpy(dtype=np.float64)
        # Whole numbers read as floats (a column with gaps) are labels 1, 2.
        if np.all(np.mod(values, 1) == 0):
            values = values.astype(np.int64)
    else:
        values = target.to_numpy()
    task = _resolve_task(values, task, target_column)
    if pair_column is not None and task == "multiclass":
        raise InputError(
            f"--target-column {target_column!r} has {target.nunique()} classes; "
            "with --pair-column the target says whether the first text wins (two "
            "classes) or by how much (a number). Recode it, or give --task "
            "regression for a numeric margin."
        )
    if task == "regression":
        values = values.astype(np.float64)
    else:
        counts = target.value_counts()
        if counts.min() < 2:
            raise InputError(
                f"--target-column {target_column!r}: class "
                f"{_show(counts.idxmin())} has only 1 row; every class needs at "
                "least 2 for a held-out split."
            )
    return texts.to_numpy(dtype=object), values, task


def _resolve_task(y, task, target_column):
    from ..utils._validation import resolve_task

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            task = resolve_task(
                y,
                task,
                caller="sklearn-hypothesaes",
                param=f"--target-column {target_column!r}",
            )
        except ValueError as exc:
            raise InputError(_as_options(str(exc))) from None
    for warning in caught:
        note(_as_options(str(warning.message)))
    return task


def _as_options(message: str) -> str:
    """The library's "task='multiclass'" as the command line's option."""
    return re.sub(r"task='(\w+)'", r"--task \1", message)


def _show(value) -> str:
    """A value as the user wrote it: 1, not np.int64(1)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def split_data(texts, y, task, *, holdout_fraction, max_rows, seed):
    from sklearn.model_selection import train_test_split

    classes = task in ("binary", "multiclass")
    stratify = y if classes else None
    if max_rows is not None and max_rows < len(texts):
        texts, _, y, _ = train_test_split(
            texts, y, train_size=max_rows, stratify=stratify, random_state=seed
        )
        stratify = y if classes else None
    try:
        return train_test_split(
            texts,
            y,
            test_size=holdout_fraction,
            stratify=stratify,
            random_state=seed,
        )
    except ValueError as exc:
        raise InputError(
            f"cannot hold out {holdout_fraction:.0%} of {len(texts)} rows: {exc}"
        ) from None


def load_demo(max_rows, seed):
    from ..datasets import load_rotten_tomatoes

    try:
        train = load_rotten_tomatoes(split="train")
        holdout = load_rotten_tomatoes(split="holdout")
    except ModuleNotFoundError as exc:
        raise InputError(str(exc)) from None
    X_train, y_train = train.texts, train.target
    X_test, y_test = holdout.texts, holdout.target
    if max_rows is not None and max_rows < len(X_train) + len(X_test):
        from sklearn.model_selection import train_test_split

        n_test = max(2, round(max_rows * len(X_test) / (len(X_train) + len(X_test))))
        X_train, _, y_train, _ = train_test_split(
            X_train,
            y_train,
            train_size=max_rows - n_test,
            stratify=y_train,
            random_state=seed,
        )
        X_test, _, y_test, _ = train_test_split(
            X_test, y_test, train_size=n_test, stratify=y_test, random_state=seed
        )
    return X_train, X_test, y_train, y_test


# ----------------------------------------------------------------- estimators
def build_steps(args, task):
    """The four estimators of the method, from the command-line options."""
    from .. import (
        HypothesisGenerator,
        LatentSelector,
        LLMAnnotator,
        LLMClient,
        LLMDescriber,
        SparseAutoencoder,
        TermDescriber,
        TextEmbedder,
    )

    verbose = not args.quiet
    cache = False if args.no_cache else args.cache_dir
    annotator = None  # the describer's default_annotator()
    protocol = {
        name: value
        for name, value in (
            ("concepts_per_request", args.concepts_per_request),
            ("max_text_chars", args.max_text_chars),
        )
        if value is not None
    }
    if protocol and not llm_mode(args):
        given = ", ".join(f"--{n.replace('_', '-')} {v}" for n, v in protocol.items())
        raise InputError(
            f"{given} applies to LLM hypotheses, but this run is offline; give "
            "--base-url or --interpreter-model, or leave it out."
        )
    if llm_mode(args):
        interpreter_model = args.interpreter_model or "gpt-4o-mini"
        common = dict(
            base_url=args.base_url,
            api_key_env=args.api_key_env,
            max_tokens=args.max_tokens,
            extra_body=args.extra_body,
            cache_dir=cache,
            verbose=verbose,
        )
        describer = LLMDescriber(
            client=LLMClient(model=interpreter_model, **common), **protocol
        )
        if args.annotator_model and args.annotator_model != interpreter_model:
            annotator = LLMAnnotator(
                client=LLMClient(model=args.annotator_model, **common), **protocol
            )
    else:
        describer = TermDescriber(
            min_score="auto" if args.min_term_score is None else args.min_term_score
        )
    generator = HypothesisGenerator(
        describer=describer,
        annotator=annotator,
        task=task,
        random_state=args.seed,
        pairwise=args.pair_column is not None,
        verbose=int(verbose),
    )
    return dict(
        embedder=TextEmbedder(
            model=args.embedding_model, cache_dir=cache, verbose=verbose
        ),
        sae=SparseAutoencoder(
            n_latents=args.n_latents,
            k=args.k,
            random_state=args.seed,
            verbose=int(verbose),
        ),
        selector=LatentSelector(n_latents=args.n_hypotheses),
        generator=generator,
    )


# ------------------------------------------------------------------ preflight
# --------------------------------------------------------------------- output
def ranked(result):
    """The result with its hypotheses (and their examples) in the report's
    order, ``rank_hypotheses``: largest absolute coefficient first."""
    from ._plotting import rank_hypotheses

    table = result.hypotheses.reset_index(drop=True)
    order = rank_hypotheses(table).index.to_numpy()
    examples = list(result.examples or [])
    if len(examples) == len(table):
        examples = [examples[i] for i in order]
    return dataclasses.replace(
        result,
        hypotheses=table.iloc[order].reset_index(drop=True),
        examples=examples,
    )


def write_outputs(result, output: Path, *, title: str) -> dict:
    """Write the tables, the pipeline and the report; return their paths.

    All or nothing: the files are written into a new hidden sibling of
    ``output``, which then replaces it. A failure or Ctrl-C on the way
    leaves ``output`` as it was and no sibling behind.
    """
    output = write_folder(
        output, lambda folder: _write_files(ranked(result), folder, title=title)
    )
    return {key: output / name for key, name in OUTPUT_FILES.items()}


def _write_files(result, folder: Path, *, title: str):
    import joblib

    from ._report import redact_settings, render_report

    paths = {key: folder / name for key, name in OUTPUT_FILES.items()}
    table = result.hypotheses
    csv_table = table.copy()
    if "terms" in csv_table:
        csv_table["terms"] = csv_table["terms"].map(
            lambda t: "; ".join(t) if isinstance(t, list | tuple | np.ndarray) else ""
        )
    csv_table.to_csv(paths["csv"], index=False)
    payload = {
        "hypotheses": jsonable(table.to_dict(orient="records")),
        "metrics": jsonable(result.metrics),
        "examples": jsonable(result.examples),
        "usage": jsonable(result.usage),
        "timings": jsonable(result.timings),
        "settings": redact_settings(jsonable(result.settings)),
    }
    paths["json"].write_text(
        json.dumps(payload, indent=2, ensure_ascii=False), encoding="utf-8"
    )
    joblib.dump(result.pipeline, paths["pipeline"])
    render_report(result, paths["report"], title=title)


def _summary(result, paths, seconds) -> str:
    from ._plotting import rank_hypotheses
    from ._report import headline, signal_summary

    metrics = result.metrics or {}
    table = result.hypotheses
    head = headline(metrics, table)
    rows = "pairs" if (result.settings or {}).get("pairwise") else "texts"
    lines = [
        f"{len(table)} hypotheses, {head['n_significant']} significant on "
        f"{head['n_holdout']} held-out {rows}; {head['score_name']} "
        f"{head['score']}.".replace("R²", "R^2"),
    ]
    signal = signal_summary(metrics)
    if signal is not None:
        said = (
            signal["text"] if signal["has_signal"] else f"Warning: {signal['warning']}"
        )
        lines.append(said.replace("R²", "R^2"))
    if len(table) == 0:
        command_line = (result.settings or {}).get("command line", {})
        lines.append(
            "No hypothesis was found: no selected latent got one"
            + (
                " (no word or phrase distinguishes the texts where it fires); "
                "a lower --min-term-score (e.g. 2), more rows (--max-rows) or "
                "latents (--n-hypotheses) may find some."
                if command_line.get("hypotheses") == "offline"
                else " (see the LLM failures in the report)."
            )
        )
    for _, row in rank_hypotheses(table).head(5).iterrows():
        significant = row.get("significant")
        star = "*" if pd.notna(significant) and bool(significant) else " "
        coef = f"{row['coef']:+.3f}" if pd.notna(row["coef"]) else "   n/a"
        stable = ""
        if "stability" in row and pd.notna(row["stability"]):
            stable = f"stability {row['stability']:.2f}  "
        lines.append(f"  {star} {coef}  {stable}{row['hypothesis']}")
    lines.append(f"Wrote {', '.join(str(p) for p in paths.values())}")
    lines.append(f"Done in {seconds:.1f} s.")
    return "\n".join(lines)


# ----------------------------------------------------------------------- main
def run(args) -> int:
    start = time.perf_counter()
    output = check_output_folder(
        args.output, OUTPUT_FILES.values(), example="hypothesaes_output"
    )
    cache = check_cache(args)
    if args.demo:
        X_train, X_test, y_train, y_test = load_demo(args.max_rows, args.seed)
        task, title = "binary", "HypotheSAEs report: Rotten Tomatoes demo"
    else:
        if not args.input:
            raise InputError("give an input file, or --demo (see --help).")
        frame = read_table(args.input, encoding=args.encoding)
        texts, y, task = prepare_data(
            frame, args.text_column, args.target_column, args.task, args.pair_column
        )
        X_train, X_test, y_train, y_test = split_data(
            texts,
            y,
            task,
            holdout_fraction=args.holdout_fraction,
            max_rows=args.max_rows,
            seed=args.seed,
        )
        title = f"HypotheSAEs report: {Path(args.input).name}"
    steps = build_steps(args, task)
    mode = "LLM" if llm_mode(args) else "offline"
    pairwise = args.pair_column is not None
    rows = "pairs of texts" if pairwise else "texts"
    note(
        f"{len(X_train)} training and {len(X_test)} held-out {rows}, task {task}, "
        f"{mode} hypotheses."
    )
    from . import _method

    # The fitted autoencoder is cached as arrays and JSON, never a pickle.
    result = _method.run_method(
        X_train,
        y_train,
        holdout_texts=X_test,
        holdout_y=y_test,
        memory=None if cache is None else cache / "fitted_sae",
        check_signal=not args.no_signal_check,
        n_seeds=args.stability_seeds,
        pairwise=pairwise,
        random_state=args.seed,
        **steps,
    )
    describer = steps["generator"].describer
    settings = {
        **dict(result.settings or {}),
        "command line": {
            "input": "demo: Rotten Tomatoes" if args.demo else str(args.input),
            "text_column": args.text_column,
            "pair_column": args.pair_column,
            "target_column": args.target_column,
            "task": task,
            "hypotheses": mode,
            "holdout_fraction": args.holdout_fraction,
            "max_rows": args.max_rows,
            "seed": args.seed,
            "stability_seeds": args.stability_seeds,
            # What the LLM steps used (None offline).
            "concepts_per_request": getattr(describer, "concepts_per_request", None),
            "max_text_chars": getattr(describer, "max_text_chars", None),
            "signal_check": not args.no_signal_check,
            "cache": "off" if cache is None else str(cache),
            "n_train": len(X_train),
            "n_holdout": len(X_test),
        },
    }
    result = dataclasses.replace(result, settings=settings)
    paths = write_outputs(result, output, title=title)
    print(_summary(ranked(result), paths, time.perf_counter() - start))
    return 0


def main(argv=None) -> int:
    """Entry point of ``sklearn-hypothesaes`` and ``python -m sklearn_hypothesaes``.

    Returns the exit status: 0 on success, 1 on bad input or a failure, 2 on
    bad options (argparse), 130 when interrupted.
    """
    args = parse_args(argv)
    return run_reporting_errors(run, args)
