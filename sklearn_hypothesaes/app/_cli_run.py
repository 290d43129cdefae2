"""A run of the main command line: the estimators built from the options, the
method run on the data, and the outputs written all at once with a summary on
stdout (see ``_cli`` for what is written)."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ._cli_common import (
    SAE_CACHE,
    InputError,
    check_cache,
    check_output_folder,
    jsonable,
    llm_mode,
    note,
    read_table,
    write_folder,
)
from ._cli_data import load_demo, prepare_data, split_data

__all__ = ["OUTPUT_FILES", "build_steps", "ranked", "run", "write_outputs"]

#: What a run writes in --output; a folder holding anything else is refused,
#: since each run replaces the whole folder.
OUTPUT_FILES = {
    "csv": "hypotheses.csv",
    "json": "hypotheses.json",
    "pipeline": "pipeline.joblib",
    "report": "report.html",
}


#: The model that describes latents when only an endpoint is given.
DEFAULT_INTERPRETER = "gpt-4o-mini"


def llm_roles(args) -> str:
    """Which model describes the latents and which annotates the texts, in
    words, for an LLM run."""
    model = args.interpreter_model or DEFAULT_INTERPRETER
    named = model + (
        "" if args.interpreter_model else " (the default with an endpoint)"
    )
    if args.annotator_model in (None, model):
        return f"{named} describes the latents and annotates the texts"
    return f"{named} describes the latents, {args.annotator_model} annotates the texts"


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
        interpreter_model = args.interpreter_model or DEFAULT_INTERPRETER
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


def run(args) -> int:
    """The job of ``sklearn-hypothesaes data.csv``: check, read, fit, test and
    write; returns the exit status (errors are raised, and said by ``main``)."""
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
    roles = f": {llm_roles(args)}" if mode == "LLM" else ""
    note(
        f"{len(X_train)} training and {len(X_test)} held-out {rows}, task {task}, "
        f"{mode} hypotheses{roles}."
    )
    from . import _method

    # The fitted autoencoder is cached as arrays and JSON, never a pickle.
    result = _method.run_method(
        X_train,
        y_train,
        holdout_texts=X_test,
        holdout_y=y_test,
        memory=None if cache is None else cache / SAE_CACHE,
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
