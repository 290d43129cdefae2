"""Command line: run the whole method on a table of texts and write a report.

``sklearn-hypothesaes data.csv --text-column text --target-column y`` (or
``python -m sklearn_hypothesaes``) reads the table, holds out a share of it,
fits embed -> sparse autoencoder -> select -> hypotheses on the rest, tests
the hypotheses on the held-out texts and writes to ``--output``:

- ``hypotheses.csv`` and ``hypotheses.json``: one row per hypothesis with its
  held-out statistics (the JSON also has the metrics, usage, timings and
  settings);
- ``pipeline.joblib``: the fitted pipeline, reloadable with ``joblib.load``;
- ``report.html``: a self-contained report.

Embeddings and LLM answers are cached durably by the library, so a second
run on the same inputs reuses them, and an interrupted run loses nothing that
was already computed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["build_parser", "main"]

_READERS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
}
_COMPRESSION = {".gz", ".bz2", ".xz", ".zst", ".zip"}


class InputError(Exception):
    """A problem with the user's input, reported as one line, no traceback."""


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
            "  sklearn-hypothesaes reviews.parquet --target-column stars \\\n"
            "      --base-url http://localhost:8000/v1 "
            "--interpreter-model Qwen/Qwen3-8B"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "input",
        nargs="?",
        help="CSV, TSV, Parquet, JSON or JSONL file (CSV may be compressed).",
    )
    data.add_argument("--text-column", default="text", help="default: %(default)s")
    data.add_argument("--target-column", default="target", help="default: %(default)s")
    data.add_argument(
        "--task",
        choices=["auto", "regression", "classification"],
        default="auto",
        help="auto: classification for integer or string targets with few "
        "values, regression otherwise (default: %(default)s).",
    )
    data.add_argument(
        "--holdout-fraction",
        type=_fraction,
        default=0.3,
        help="share of rows held out to test the hypotheses (default: %(default)s)",
    )
    data.add_argument(
        "--max-rows",
        type=_positive_int,
        default=None,
        help="use a random subset of this many rows (stratified for classes)",
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
        "model name such as text-embedding-3-small (default: %(default)s)",
    )
    model.add_argument(
        "--n-latents", type=_positive_int, default=256, help="SAE size M"
    )
    model.add_argument(
        "--k", type=_positive_int, default=8, help="active latents per text"
    )
    model.add_argument(
        "--n-hypotheses",
        type=_positive_int,
        default=20,
        help="latents selected and described (default: %(default)s)",
    )
    model.add_argument(
        "--min-term-score",
        type=float,
        default=None,
        help="offline hypotheses: smallest z-score of a distinguishing word "
        "(default: a Bonferroni bound over the vocabulary, about 4; lower it, "
        "e.g. to 2, on small data)",
    )
    model.add_argument("--seed", type=int, default=0, help="default: %(default)s")
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
        help="name of the environment variable holding the API key "
        "(default: %(default)s)",
    )
    llm.add_argument(
        "--offline", action="store_true", help="never call an LLM, even if configured"
    )
    out = parser.add_argument_group("output")
    out.add_argument(
        "--output",
        "-o",
        default="hypothesaes_output",
        help="output folder (default: %(default)s)",
    )
    out.add_argument(
        "--cache-dir",
        default=None,
        help="cache folder for embeddings and LLM answers (default: "
        "$SKLEARN_HYPOTHESAES_CACHE_DIR or the user cache folder)",
    )
    out.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    out.add_argument(
        "--debug", action="store_true", help="show full tracebacks on errors"
    )
    return parser


def _fraction(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not 0 < number < 1:
        raise argparse.ArgumentTypeError(
            f"must be a number strictly between 0 and 1; got {value!r}"
        )
    return number


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {value!r}")
    return number


# --------------------------------------------------------------------- input
def read_table(path) -> pd.DataFrame:
    """Read a CSV, TSV, Parquet, JSON or JSONL file, or raise InputError."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"input file '{path}' does not exist.")
    if path.is_dir():
        raise InputError(f"input '{path}' is a folder, not a file.")
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSION:
        suffixes = suffixes[:-1]
    kind = _READERS.get(suffixes[-1] if suffixes else "")
    if kind is None:
        raise InputError(
            f"cannot tell the format of '{path}' from its extension; expected "
            f"one of {', '.join(sorted(_READERS))} (CSV optionally compressed)."
        )
    if path.stat().st_size == 0:
        raise InputError(f"input file '{path}' is empty.")
    try:
        if kind in ("csv", "tsv"):
            frame = pd.read_csv(path, sep="\t" if kind == "tsv" else ",")
        elif kind == "parquet":
            from ..utils._misc import import_optional

            import_optional("pyarrow", "Reading Parquet files")
            frame = pd.read_parquet(path)
        elif kind == "jsonl":
            frame = pd.read_json(path, lines=True)
        else:
            try:
                frame = pd.read_json(path)
            except ValueError:
                frame = pd.read_json(path, lines=True)
    except pd.errors.EmptyDataError:
        raise InputError(f"input file '{path}' is empty.") from None
    except ImportError as exc:
        raise InputError(str(exc)) from None
    except UnicodeDecodeError as exc:
        raise InputError(
            f"cannot read '{path}' as {kind.upper()}: it is not UTF-8 text "
            f"({exc.reason} at byte {exc.start})."
        ) from None
    except PermissionError as exc:
        raise InputError(f"cannot read '{path}': {exc.strerror}.") from None
    except Exception as exc:  # pandas and pyarrow raise many parser errors
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise InputError(
            f"cannot read '{path}' as {kind.upper()}: {type(exc).__name__}"
            + (f": {reason}" if reason else "")
        ) from None
    if len(frame) == 0:
        raise InputError(f"input file '{path}' has no rows.")
    return frame


def prepare_data(frame, text_column, target_column, task):
    """Texts, target and the resolved task; rows with gaps dropped (said on
    stderr); InputError for a missing column or an unusable target."""
    columns = [str(c) for c in frame.columns]
    for option, column in (
        ("--text-column", text_column),
        ("--target-column", target_column),
    ):
        if column not in frame.columns:
            raise InputError(
                f"{option} {column!r} is not a column of the input; its columns "
                f"are {columns[:20]}{' ...' if len(columns) > 20 else ''}."
            )
    texts = frame[text_column]
    target = frame[target_column]
    empty = texts.isna() | (texts.astype(str).str.strip() == "")
    keep = ~empty & target.notna()
    dropped = int((~keep).sum())
    if dropped:
        _note(
            f"dropped {dropped} of {len(frame)} rows with an empty text or a "
            "missing target."
        )
    texts, target = texts[keep].astype(str), target[keep]
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
    if task == "auto":
        is_integer = numeric and np.all(np.mod(target.to_numpy(float), 1) == 0)
        task = (
            "classification"
            if not numeric or (is_integer and n_values <= 10) or n_values == 2
            else "regression"
        )
    if task == "regression":
        if not numeric:
            raise InputError(
                f"--task regression needs a numeric --target-column; "
                f"{target_column!r} holds values such as {_show(target.iloc[0])}."
            )
        target = target.astype(np.float64)
    if task == "classification":
        counts = target.value_counts()
        if counts.min() < 2:
            raise InputError(
                f"--target-column {target_column!r}: class "
                f"{_show(counts.idxmin())} has only 1 row; every class needs at "
                "least 2 for a held-out split."
            )
    return texts.to_numpy(dtype=object), target.to_numpy(), task


def _show(value) -> str:
    """A value as the user wrote it: 1, not np.int64(1)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def split_data(texts, y, task, *, holdout_fraction, max_rows, seed):
    from sklearn.model_selection import train_test_split

    stratify = y if task == "classification" else None
    if max_rows is not None and max_rows < len(texts):
        texts, _, y, _ = train_test_split(
            texts, y, train_size=max_rows, stratify=stratify, random_state=seed
        )
        stratify = y if task == "classification" else None
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
def _llm_mode(args) -> bool:
    if args.offline or args.demo:
        return False
    return bool(
        args.base_url
        or os.environ.get("OPENAI_BASE_URL")
        or args.interpreter_model
        or args.annotator_model
    )


def build_steps(args, task):
    """The four estimators of the method, from the command-line options."""
    from sklearn import config_context

    from .. import (
        HypothesisGenerator,
        LatentSelector,
        LLMClient,
        SparseAutoencoder,
        TextEmbedder,
    )

    verbose = not args.quiet
    cache = args.cache_dir
    interpreter = annotator = None
    if _llm_mode(args):
        interpreter_model = args.interpreter_model or "gpt-4o-mini"
        common = dict(
            base_url=args.base_url,
            api_key_env=args.api_key_env,
            cache_dir=cache,
            verbose=verbose,
        )
        interpreter = LLMClient(model=interpreter_model, **common)
        if args.annotator_model and args.annotator_model != interpreter_model:
            annotator = LLMClient(model=args.annotator_model, **common)
    generator = HypothesisGenerator(
        interpreter=interpreter,
        annotator=annotator,
        min_term_score="auto" if args.min_term_score is None else args.min_term_score,
        task=task,
        random_state=args.seed,
        verbose=int(verbose),
    )
    # The saved pipeline needs the raw texts routed to its last step:
    # ``pipe.transform(texts, texts=texts)`` under enable_metadata_routing.
    with config_context(enable_metadata_routing=True):
        for method in ("fit", "transform", "predict", "predict_proba", "score"):
            getattr(generator, f"set_{method}_request")(texts=True)
    return dict(
        embedder=TextEmbedder(
            model=args.embedding_model, cache_dir=cache, verbose=verbose
        ),
        sae=SparseAutoencoder(
            n_latents=args.n_latents,
            k=min(args.k, args.n_latents),
            random_state=args.seed,
            verbose=int(verbose),
        ),
        selector=LatentSelector(n_latents=min(args.n_hypotheses, args.n_latents)),
        generator=generator,
    )


def _fit_sae(params, X, verbose):
    from .. import SparseAutoencoder

    return SparseAutoencoder(**params, verbose=verbose).fit(X)


def _memoize_fit(sae, cache_dir):
    """Make ``sae.fit`` reuse a fit of the same parameters on the same data.

    Embeddings and LLM answers are cached by the library; the SAE's training
    is the one slow step left on a rerun. run_method fits every step it is
    given, so the fit of this one instance goes through joblib.Memory, as
    ``Pipeline(memory=...)`` would do. The caller removes the override.
    """
    import joblib

    from ..utils._misc import resolve_cache_dir

    folder = resolve_cache_dir(cache_dir)
    if folder is None:
        return
    memory = joblib.Memory(folder / "fitted_sae", verbose=0)
    cached = memory.cache(_fit_sae, ignore=["verbose"])

    def fit(X, y=None):
        params = sae.get_params()
        verbose = params.pop("verbose")
        fitted = cached(params, X, verbose)
        state = {k: v for k, v in vars(fitted).items() if k != "verbose"}
        sae.__dict__.update(state)
        return sae

    sae.fit = fit


# --------------------------------------------------------------------- output
def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)


def write_outputs(result, output: Path, *, title: str) -> dict:
    """Write the tables, the pipeline and the report; return their paths."""
    import joblib

    from ._report import render_report

    output.mkdir(parents=True, exist_ok=True)
    table = result.hypotheses.copy()
    paths = {
        "csv": output / "hypotheses.csv",
        "json": output / "hypotheses.json",
        "pipeline": output / "pipeline.joblib",
        "report": output / "report.html",
    }
    csv_table = table.copy()
    if "terms" in csv_table:
        csv_table["terms"] = csv_table["terms"].map(
            lambda t: "; ".join(t) if isinstance(t, list | tuple | np.ndarray) else ""
        )
    _atomic(paths["csv"], lambda p: csv_table.to_csv(p, index=False))
    payload = {
        "hypotheses": _jsonable(table.to_dict(orient="records")),
        "metrics": _jsonable(result.metrics),
        "examples": _jsonable(result.examples),
        "usage": _jsonable(result.usage),
        "timings": _jsonable(result.timings),
        "settings": _jsonable(result.settings),
    }
    _atomic(
        paths["json"],
        lambda p: p.write_text(json.dumps(payload, indent=2, ensure_ascii=False)),
    )
    _atomic(paths["pipeline"], lambda p: joblib.dump(result.pipeline, p))
    render_report(result, paths["report"], title=title)
    return paths


def _atomic(path: Path, write):
    # Write then rename: an interrupted run never leaves a truncated file.
    partial = path.with_name(path.name + ".partial")
    write(partial)
    partial.replace(path)


def _note(message: str):
    print(f"sklearn-hypothesaes: {message}", file=sys.stderr)


def _summary(result, paths, seconds) -> str:
    from ._report import headline

    metrics = result.metrics or {}
    table = result.hypotheses
    head = headline(metrics, table)
    lines = [
        f"{len(table)} hypotheses, {head['n_significant']} significant on "
        f"{head['n_holdout']} held-out texts; {head['score_name']} "
        f"{head['score']}.".replace("R²", "R^2"),
    ]
    if len(table) == 0:
        offline = (result.settings or {}).get("hypotheses", {}).get("interpreter")
        lines.append(
            "No hypothesis was found: no selected latent got one"
            + (
                " (no word or phrase distinguishes the texts where it fires); "
                "a lower --min-term-score (e.g. 2), more rows (--max-rows) or "
                "latents (--n-hypotheses) may find some."
                if offline is None
                else " (see the LLM failures in the report)."
            )
        )
    top = table.reindex(table["coef"].abs().sort_values(ascending=False).index)
    for _, row in top.head(5).iterrows():
        significant = row.get("significant")
        star = "*" if pd.notna(significant) and bool(significant) else " "
        coef = f"{row['coef']:+.3f}" if pd.notna(row["coef"]) else "   n/a"
        lines.append(f"  {star} {coef}  {row['hypothesis']}")
    lines.append(f"Wrote {', '.join(str(p) for p in paths.values())}")
    lines.append(f"Done in {seconds:.1f} s.")
    return "\n".join(lines)


# ----------------------------------------------------------------------- main
def run(args) -> int:
    start = time.perf_counter()
    if args.demo:
        X_train, X_test, y_train, y_test = load_demo(args.max_rows, args.seed)
        task, title = "classification", "HypotheSAEs report: Rotten Tomatoes demo"
    else:
        if not args.input:
            raise InputError("give an input file, or --demo (see --help).")
        frame = read_table(args.input)
        texts, y, task = prepare_data(
            frame, args.text_column, args.target_column, args.task
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
    if args.cache_dir:
        from ..utils._misc import resolve_cache_dir

        resolve_cache_dir(args.cache_dir)
    steps = build_steps(args, task)
    mode = "LLM" if steps["generator"].interpreter is not None else "offline"
    _note(
        f"{len(X_train)} training and {len(X_test)} held-out texts, task {task}, "
        f"{mode} hypotheses."
    )
    from ._method import run_method

    sae = steps["sae"]
    _memoize_fit(sae, args.cache_dir)
    try:
        result = run_method(
            X_train, y_train, holdout_texts=X_test, holdout_y=y_test, **steps
        )
    finally:
        sae.__dict__.pop("fit", None)
    settings = {
        **dict(result.settings or {}),
        "command line": {
            "input": "demo: Rotten Tomatoes" if args.demo else str(args.input),
            "text_column": args.text_column,
            "target_column": args.target_column,
            "holdout_fraction": args.holdout_fraction,
            "max_rows": args.max_rows,
            "seed": args.seed,
            "n_train": len(X_train),
            "n_holdout": len(X_test),
        },
    }
    result = dataclasses.replace(result, settings=settings)
    paths = write_outputs(result, Path(args.output), title=title)
    print(_summary(result, paths, time.perf_counter() - start))
    return 0


def main(argv=None) -> int:
    """Entry point of ``sklearn-hypothesaes`` and ``python -m sklearn_hypothesaes``.

    Returns the exit status: 0 on success, 1 on bad input or a failure, 2 on
    bad options (argparse), 130 when interrupted.
    """
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except InputError as exc:
        _note(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        _note(
            "interrupted. Embeddings and LLM answers computed so far are cached; "
            "run the same command again to resume."
        )
        return 130
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        message = " ".join(str(exc).split())
        _note(
            f"error: {type(exc).__name__}: {message}"
            + ("" if args.debug else " (run with --debug for the traceback)")
        )
        return 1
