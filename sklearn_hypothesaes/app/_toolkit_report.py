"""Self-contained HTML pages of the toolkit's command line (diff, correlations,
cluster, search).

Like the main report, a page has no external resources and no scripts (inline
CSS; frequencies drawn as CSS bars), so it opens offline and can be mailed or
archived. User texts are escaped by Jinja's autoescape.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

from ._report import (
    flatten_settings,
    fmt,
    fmt_pvalue,
    is_missing,
    shorten_example,
    write_html,
)

__all__ = ["render_toolkit_report"]

_TEMPLATES = {
    "diff": "toolkit_diff.html.j2",
    "correlations": "toolkit_correlations.html.j2",
    "cluster": "toolkit_cluster.html.j2",
    "search": "toolkit_search.html.j2",
}
_MAX_EXAMPLE_CHARS = 400
# Rows of the assignments table shown on the page (all are in the CSV).
_MAX_ASSIGNMENTS = 200
_USAGE = [
    ("calls", "LLM calls"),
    ("cache_hits", "cache hits"),
    ("prompt_tokens", "prompt tokens"),
    ("completion_tokens", "completion tokens"),
    ("failures", "failures"),
    ("cost", "cost (USD)"),
]


def _short(text) -> str:
    return shorten_example(text, _MAX_EXAMPLE_CHARS)


def _percent(value) -> str:
    return "—" if is_missing(value) else f"{float(value):.1%}"


def _width(value) -> str:
    """A share in [0, 1] as a CSS width."""
    if is_missing(value):
        return "0%"
    return f"{100 * min(max(float(value), 0.0), 1.0):.1f}%"


def _interval(low, high) -> str:
    if is_missing(low) or is_missing(high):
        return "—"
    return f"[{fmt(low)}, {fmt(high)}]"


def _latent_rows(embedder) -> list[dict]:
    if embedder is None:
        return []
    table = embedder.labels_
    live = table[table["live"]]
    return [
        {
            "latent": int(row.latent),
            "label": "—" if is_missing(row.label) else str(row.label),
            "labelled": not is_missing(row.label),
            "fidelity": fmt(row.fidelity),
            "frequency": _percent(row.frequency),
            "reason": "" if is_missing(row.reason) else str(row.reason),
        }
        for row in live.itertuples()
    ]


# ------------------------------------------------------------------- diff
def _diff(result, args) -> dict:
    table = result["table"]
    name_a, name_b = result["names"]
    side = {"a": name_a, "b": name_b, "neither": "neither"}
    rows = []
    for rank, row in enumerate(table.itertuples(), start=1):
        rows.append(
            {
                "rank": rank,
                "id": f"d{rank}",
                "latent": int(row.latent),
                "label": str(row.label),
                "labelled": bool(row.labelled),
                "freq_a": _percent(row.freq_a),
                "freq_b": _percent(row.freq_b),
                "width_a": _width(row.freq_a),
                "width_b": _width(row.freq_b),
                "count_a": int(row.count_a),
                "count_b": int(row.count_b),
                "difference": fmt(row.difference),
                "difference_ci": _interval(row.difference_low, row.difference_high),
                "ratio": fmt(row.ratio),
                "ratio_ci": _interval(row.ratio_low, row.ratio_high),
                "pvalue_corrected": fmt_pvalue(row.pvalue_corrected),
                "significant": bool(row.significant),
                "more_in": side[row.more_in],
                "examples_a": [_short(t) for t in row.examples_a],
                "examples_b": [_short(t) for t in row.examples_b],
            }
        )
    summary = result.get("summary")
    summary_rows = None
    if summary is not None:
        summary_rows = [
            {
                "property": str(row.property),
                "more_in": side[row.more_in],
                "freq_a": _percent(row.freq_a),
                "freq_b": _percent(row.freq_b),
                "counts": f"{row.count_a}/{row.n_a} vs {row.count_b}/{row.n_b}",
                "pvalue_corrected": fmt_pvalue(row.pvalue_corrected),
                "verified": bool(row.verified),
            }
            for row in summary.differences.itertuples()
        ]
    attrs = table.attrs
    return {
        "title": f"Dataset diff: {name_a} vs {name_b}",
        "name_a": name_a,
        "name_b": name_b,
        "n_a": attrs.get("n_a"),
        "n_b": attrs.get("n_b"),
        "n_tested": attrs.get("n_tested"),
        "n_significant": int(table["significant"].sum()),
        "test": {
            "fisher": "Fisher's exact test",
            "two-proportion": "two-proportion z-test",
        }.get(attrs.get("test"), attrs.get("test")),
        "correction": attrs.get("correction"),
        "alpha": fmt(attrs.get("alpha")),
        "rows": rows,
        "summary": summary_rows,
        "share_verified": None
        if summary is None or is_missing(summary.share_verified)
        else f"{summary.share_verified:.0%}",
    }


# ----------------------------------------------------------- correlations
def _correlations(result, args) -> dict:
    table = result["table"]
    attrs = table.attrs
    has_similarity = "label_similarity" in table
    rows = []
    for rank, row in enumerate(table.itertuples(), start=1):
        rows.append(
            {
                "rank": rank,
                "latent_a": int(row.latent_a),
                "latent_b": int(row.latent_b),
                "label_a": str(row.label_a),
                "label_b": str(row.label_b),
                "count_a": int(row.count_a),
                "count_b": int(row.count_b),
                "count_ab": int(row.count_ab),
                "expected_ab": fmt(row.expected_ab),
                "npmi": f"{row.npmi:.3f}",
                "width": _width(row.npmi),
                "pvalue_corrected": fmt_pvalue(row.pvalue_corrected),
                "similarity": fmt(row.label_similarity) if has_similarity else "—",
                "examples": [_short(t) for t in row.examples],
            }
        )
    cross = bool(attrs.get("cross_field"))
    name = Path(str(args.input)).name
    return {
        "title": f"Concept correlations: {name}",
        "rows": rows,
        "cross_field": cross,
        "column_a": args.text_column,
        "column_b": args.other_column if cross else args.text_column,
        "n_documents": attrs.get("n_documents"),
        "n_tests": attrs.get("n_tests"),
        "n_candidates": attrs.get("n_candidates"),
        "n_significant": attrs.get("n_significant"),
        "n_redundant": attrs.get("n_redundant"),
        "min_count": attrs.get("min_count"),
        "correction": attrs.get("correction"),
        "alpha": fmt(attrs.get("alpha")),
        "has_similarity": has_similarity,
        "max_label_similarity": fmt(args.max_label_similarity),
    }


# ---------------------------------------------------------------- cluster
def _cluster(result, args) -> dict:
    clusters = result["clusters"]
    cards = []
    for row in clusters.itertuples():
        features = [
            {
                "label": str(label),
                "rate_in": _percent(r_in),
                "rate_out": _percent(r_out),
                "width_in": _width(r_in),
                "width_out": _width(r_out),
                "lift": fmt(lift, 2),
            }
            for label, r_in, r_out, lift in zip(
                row.labels, row.rate_in, row.rate_out, row.lift, strict=True
            )
        ]
        cards.append(
            {
                "cluster": int(row.cluster),
                "size": int(row.size),
                "share": _percent(row.share),
                "description": str(row.description),
                "features": features,
                "examples": [_short(t) for t in row.examples],
            }
        )
    axis = result["axis_latents"]
    axis_rows = [
        {
            "latent": int(row.latent),
            "label": str(row.label),
            "similarity": fmt(row.similarity),
            "llm_relevance": fmt(row.llm_relevance),
            "frequency": _percent(row.frequency),
        }
        for row in axis.itertuples()
    ]
    assignments = result["assignments"]
    id_column = getattr(args, "id_column", None)
    shown = assignments.head(_MAX_ASSIGNMENTS)
    assignment_rows = [
        {
            "row": int(r["row"]),
            "id": "" if id_column is None else fmt(r[id_column]),
            "text": "" if is_missing(r["text"]) else _short(r["text"]),
            "cluster": int(r["cluster"]),
            "axis_latents": str(r["axis_latents"]),
        }
        for _, r in shown.iterrows()
    ]
    name = Path(str(args.input)).name
    along = (
        f"along “{args.axis}”"
        if args.axis
        else "along chosen latents"
        if args.latents
        else "along every latent"
    )
    return {
        "title": f"Clusters {along}: {name}",
        "axis": args.axis,
        "clusters": cards,
        "axis_rows": axis_rows,
        "assignments": assignment_rows,
        "id_column": id_column,
        "n_rows": len(assignments),
        "n_shown": len(shown),
    }


# ----------------------------------------------------------------- search
def _search(result, args) -> dict:
    results = result["results"]
    id_column = getattr(args, "id_column", None)
    rows = [
        {
            "rank": int(r["rank"]),
            "row": int(r["row"]),
            "id": "" if id_column is None else fmt(r[id_column]),
            "text": "" if is_missing(r["text"]) else _short(r["text"]),
            "score": f"{float(r['score']):.3f}",
            "contributions": str(r["contributions"] or ""),
        }
        for _, r in results.iterrows()
    ]
    matched = result["matched"]
    matched_rows = [
        {
            "latent": int(r["latent"]),
            "label": str(r["label"]),
            "similarity": fmt(r["similarity"]),
            "llm_relevance": fmt(r["llm_relevance"]),
            "weight": fmt(r["weight"]),
        }
        for _, r in matched.iterrows()
    ]
    name = Path(str(args.input)).name
    return {
        "title": f"Search “{args.query}”: {name}",
        "query": args.query,
        "method": args.method,
        "rows": rows,
        "matched": matched_rows,
        "id_column": id_column,
        "n_rows": result["n_rows"],
        "n_matches": result["n_matches"],
    }


_CONTEXTS = {
    "diff": _diff,
    "correlations": _correlations,
    "cluster": _cluster,
    "search": _search,
}


def render_toolkit_report(command, result, path, *, settings, timings, args) -> Path:
    """Write the HTML page of one toolkit command's result.

    Parameters
    ----------
    command : {"diff", "correlations", "cluster", "search"}
        Which page.
    result : dict
        What the command computed (see :mod:`._toolkit_runs`): its tables, the
        fitted ``embedder`` (None for a dense search) and ``usage``.
    path : str or path-like
        The HTML file to write.
    settings : dict
        The command's options (already redacted).
    timings : dict
        Seconds per step.
    args : argparse.Namespace
        The parsed options (names of columns, the query, the axis).

    Returns
    -------
    path : pathlib.Path
    """
    from .. import __version__

    usage = result.get("usage") or {}
    context = {
        **_CONTEXTS[command](result, args),
        "command": command,
        "version": __version__,
        "generated": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "latents": _latent_rows(result.get("embedder")),
        "n_latents": None
        if result.get("embedder") is None
        else len(result["embedder"].labels_),
        "settings": flatten_settings(settings),
        "usage": [
            (label, fmt(usage.get(key), 4))
            for key, label in _USAGE
            if usage.get(key) is not None
        ]
        if usage.get("calls") or usage.get("cache_hits")
        else [],
        "timings": [(step, f"{float(s):.1f} s") for step, s in timings.items()],
        "total_time": f"{sum(float(s) for s in timings.values()):.1f} s"
        if timings
        else None,
    }
    return write_html(_TEMPLATES[command], context, path)
