"""What a toolkit command writes: its tables as CSV and JSON, ``latents.csv``
and ``report.html``, all at once, and the summary it prints."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ._cli_common import jsonable, llm_mode, write_folder

#: What each subcommand writes in --output (``summary.csv`` only with
#: ``--summarize``).
OUTPUT_FILES = {
    "diff": ["differences.csv", "summary.csv", "latents.csv", "differences.json"],
    "correlations": ["correlations.csv", "latents.csv", "correlations.json"],
    "cluster": ["clusters.csv", "assignments.csv", "latents.csv", "clusters.json"],
    "search": ["results.csv", "matched_latents.csv", "latents.csv", "results.json"],
}
REPORT_FILE = "report.html"


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


def run_settings(args, cache) -> dict:
    from ._report import redact_settings

    skip = {"debug", "quiet", "func"}
    options = {k: v for k, v in vars(args).items() if k not in skip}
    options["labels"] = "LLM" if llm_mode(args) else "offline"
    options["cache"] = "off" if cache is None else str(cache)
    if options.get("base_url") is None and llm_mode(args):
        options["base_url"] = os.environ.get("OPENAI_BASE_URL")
    return redact_settings(jsonable(options))


def output_files(args, result, settings, timings) -> dict:
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


def summary_lines(args, result) -> list[str]:
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
