"""A self-contained HTML report of one run of the method (a MethodResult)."""

from __future__ import annotations

import datetime as _dt
import io
import os
import re
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import pandas as pd

from ..utils._misc import import_optional, redact_url
from ._plotting import (
    plot_hypotheses,
    plot_latent_frequency,
    plot_separation,
    plot_training_curve,
    rank_hypotheses,
)

__all__ = ["redact_settings", "render_report", "signal_summary"]

_TEMPLATE = "report.html.j2"
# Fitted SparseAutoencoder attributes shown as "reconstruction" figures.
_SAE_FIGURES = [
    ("n_latents", "latents (M)"),
    ("k", "active latents per text (k)"),
    ("activation", "activation"),
    ("n_iter_", "epochs run"),
    ("fvu_", "FVU, training rows"),
    ("validation_fvu_", "FVU, validation rows"),
    ("best_validation_fvu_", "best validation FVU"),
    ("l0_", "mean active latents (L0), as trained"),
    ("l0_threshold_", "mean active latents, transform"),
    ("dead_fraction_", "dead latents (share)"),
]
_METRICS = [
    ("task", "task"),
    ("positive_class", "positive class"),
    ("model", "joint model"),
    ("n", "held-out {unit}"),
    ("n_used", "{unit} in the joint model"),
    ("auc", "AUC of the joint model"),
    ("pseudo_r2", "pseudo R²"),
    ("r2", "R² of the joint model"),
    ("adj_r2", "adjusted R²"),
    ("n_hypotheses", "hypotheses"),
    ("n_significant", "significant hypotheses"),
    ("n_tests", "tests in the multiple-testing family"),
    ("correction", "multiple-testing correction"),
    ("alpha", "alpha"),
    ("cov_type", "standard errors"),
    ("pvalue_method", "p-values of the joint model"),
    ("score", "held-out score of the hypotheses' model (fit on training texts)"),
    ("embedding_score", "held-out score of a probe on the full embeddings"),
    ("signal_share", "share of the embeddings' signal recovered"),
]
_USAGE = [
    ("calls", "LLM calls"),
    ("cache_hits", "cache hits"),
    ("prompt_tokens", "prompt tokens"),
    ("completion_tokens", "completion tokens"),
    ("retries", "retries"),
    ("failures", "failures"),
    ("cost", "cost (USD)"),
]
# How the tests and models of evaluate_hypotheses are named for a reader.
_TESTS = {"fisher": "Fisher", "lr": "LR", "welch": "Welch"}
_MODELS = {"ols": "OLS", "logit": "Logit", "firth": "Firth"}
_MAX_EXAMPLE_CHARS = 600
# A URL inside a setting, also within a repr such as LLMClient(base_url='...').
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"]+")


def redact_settings(settings):
    """``settings`` with credentials in every URL replaced by ``***``.

    Walks dicts and lists and applies
    :func:`~sklearn_hypothesaes.utils._misc.redact_url` to each URL found in a
    string (a ``base_url`` of ``http://user:secret@host/v1`` is written as
    ``http://user:***@host/v1``), so reports and JSON never hold a password.

    Parameters
    ----------
    settings : dict, list or value
        Settings as plain values (strings, numbers, reprs).

    Returns
    -------
    redacted : same type as ``settings``

    Examples
    --------
    >>> redact_settings({"hypotheses": {"interpreter":
    ...     "LLMClient(base_url='http://me:hunter2@host/v1')"}})
    {'hypotheses': {'interpreter': "LLMClient(base_url='http://me:***@host/v1')"}}
    """
    if isinstance(settings, dict):
        return {key: redact_settings(value) for key, value in settings.items()}
    if isinstance(settings, list | tuple):
        return type(settings)(redact_settings(value) for value in settings)
    if isinstance(settings, str):
        return _URL.sub(lambda match: redact_url(match.group(0)), settings)
    return settings


def is_missing(value) -> bool:
    """None, NaN or NA (pandas' missing values), as a report leaves blank."""
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def fmt(value, digits: int = 3) -> str:
    """A short human reading of a number (or any value); '—' when missing."""
    if isinstance(value, list | tuple | np.ndarray):
        return ", ".join(fmt(v, digits) for v in value)
    if is_missing(value):
        return "—"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, Integral):
        return f"{int(value):,}"
    if isinstance(value, Real):
        value = float(value)
        if value == 0:
            return "0"
        if abs(value) >= 1e5 or abs(value) < 1e-3:
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}g}" if abs(value) < 1 else f"{value:,.{digits}g}"
    return str(value)


def fmt_pvalue(value) -> str:
    if is_missing(value):
        return "—"
    value = float(value)
    return "< 0.0001" if value < 1e-4 else f"{value:.4f}"


def _svg(draw, *args, name: str, size, **kwargs) -> str:
    """An inline <svg> of one plotting function, text kept as text."""
    matplotlib = import_optional("matplotlib", "The HTML report")
    from matplotlib.figure import Figure

    # A distinct salt per figure keeps the clip-path ids of the several SVGs
    # on one page from colliding, and makes the output reproducible.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": name}):
        fig = Figure(figsize=size, layout="constrained")
        draw(*args, ax=fig.subplots(), **kwargs)
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]
    # Let the figure shrink with the page.
    return re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"', r"<svg\1", svg, count=1)


def flatten_settings(settings, prefix="") -> list[tuple[str, str]]:
    """Nested settings as (dotted name, formatted value) rows."""
    rows = []
    for key, value in (settings or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows.extend(flatten_settings(value, prefix=f"{name}."))
        else:
            rows.append((name, fmt(value)))
    return rows


def shorten_example(text, max_chars: int = _MAX_EXAMPLE_CHARS) -> str:
    """An example text cut at a word boundary to at most ``max_chars``."""
    text = str(text)
    if len(text) <= max_chars:
        return text
    return text[:max_chars].rsplit(" ", 1)[0] + " …"


def _rows(table: pd.DataFrame, examples) -> list[dict]:
    rows = []
    ranked = rank_hypotheses(table.reset_index(drop=True))
    for rank, (position, row) in enumerate(ranked.iterrows(), start=1):
        row = row.to_dict()
        example = examples[position] if examples and position < len(examples) else {}
        terms = row.get("terms")
        rows.append(
            {
                "rank": rank,
                "id": f"h{position}",
                "hypothesis": str(row.get("hypothesis", "")),
                "terms": list(terms)
                if isinstance(terms, list | tuple | np.ndarray)
                else [],
                "latent": fmt(row.get("latent")),
                "association": fmt(row.get("association")),
                "coef": row.get("coef"),
                "coef_text": fmt(row.get("coef")),
                "ci": (
                    f"[{fmt(row.get('coef_ci_low'))}, {fmt(row.get('coef_ci_high'))}]"
                    if not is_missing(row.get("coef_ci_low"))
                    else "—"
                ),
                "pvalue": fmt_pvalue(row.get("pvalue")),
                "marginal_coef": fmt(row.get("marginal_coef")),
                "test": _TESTS.get(row.get("separation_test"), ""),
                "test_pvalue": fmt_pvalue(row.get("separation_pvalue")),
                "sign_flip": not is_missing(row.get("sign_flip"))
                and bool(row.get("sign_flip")),
                "vif": fmt(row.get("vif")),
                "model": _MODELS.get(row.get("model"), fmt(row.get("model"))),
                "pvalue_corrected": fmt_pvalue(row.get("pvalue_corrected")),
                "significant": not is_missing(row.get("significant"))
                and bool(row.get("significant")),
                "prevalence": fmt(row.get("prevalence")),
                "mean_with": fmt(row.get("mean_with")),
                "mean_without": fmt(row.get("mean_without")),
                "separation": fmt(row.get("separation")),
                "fidelity": fmt(row.get("fidelity")),
                "precision": fmt(row.get("precision")),
                "recall": fmt(row.get("recall")),
                "stability": fmt(row.get("stability"), 2),
                "note": "" if is_missing(row.get("note")) else str(row.get("note")),
                "present": [shorten_example(t) for t in example.get("present", [])],
                "absent": [shorten_example(t) for t in example.get("absent", [])],
            }
        )
    return rows


def _pairs(source, spec, *, getter) -> list[tuple[str, str]]:
    pairs = []
    for key, label in spec:
        value = getter(source, key)
        if value is not None:
            pairs.append((label, fmt(value, 4) if key != "cost" else fmt(value, 3)))
    return pairs


def headline(metrics: dict, table: pd.DataFrame) -> dict:
    """Score, its name, held-out size, significant count and warnings, for a
    binary, regression or multiclass (``per_class``) result."""
    per_class = metrics.get("per_class")
    if not per_class:
        name = "AUC" if "auc" in metrics else "R²" if "r2" in metrics else "score"
        return {
            "score_name": name,
            "score": fmt(metrics.get("auc", metrics.get("r2", metrics.get("score")))),
            "n_holdout": metrics.get("n"),
            "n_significant": metrics.get("n_significant"),
            "warnings": [str(w) for w in metrics.get("warnings") or []],
        }
    significant = table["significant"] if "significant" in table else []
    return {
        "score_name": _SCORE_NAMES["multiclass"],
        "score": fmt(metrics.get("score")),
        "n_holdout": next(iter(per_class.values())).get("n"),
        "n_significant": int(np.nansum(np.asarray(significant, dtype=float))),
        "warnings": [
            f"class {label}: {w}"
            for label, m in per_class.items()
            for w in m.get("warnings") or []
        ],
    }


_SCORE_NAMES = {
    "binary": "AUC",
    "multiclass": "mean one-vs-rest AUC",
    "regression": "R²",
}


def signal_summary(metrics: dict) -> dict | None:
    """The signal check of a result in words, or None when it was not run.

    Parameters
    ----------
    metrics : dict
        ``MethodResult.metrics``, with ``embedding_score``, ``score``,
        ``signal_share``, ``embedding_signal``, ``embedding_pvalue`` and
        ``embedding_probe``.

    Returns
    -------
    summary : dict or None
        ``score_name``, ``embedding_score``, ``score`` and ``share`` (formatted),
        ``has_signal``, ``probe``, ``formula`` (of the share), ``text`` (one
        sentence) and ``warning`` (a sentence, or "" when the embeddings carry
        signal).

    Examples
    --------
    >>> found = signal_summary({"task": "binary", "score": 0.63,
    ...     "embedding_score": 0.75, "signal_share": 0.52,
    ...     "embedding_signal": True, "embedding_pvalue": 1e-9,
    ...     "embedding_probe": "logistic-regression probe"})
    >>> found["share"], found["formula"]
    ('52%', "(hypotheses' AUC − 0.5) / (probe's AUC − 0.5)")
    """
    if is_missing(metrics.get("embedding_score")):
        return None
    name = _SCORE_NAMES.get(metrics.get("task"), "score")
    probe = metrics.get("embedding_probe") or "linear probe"
    has_signal = bool(metrics.get("embedding_signal"))
    share = metrics.get("signal_share")
    out = {
        "score_name": name,
        "embedding_score": fmt(metrics["embedding_score"]),
        "score": fmt(metrics.get("score")),
        "share": "—" if is_missing(share) or not has_signal else f"{share:.0%}",
        "has_signal": has_signal,
        "probe": probe,
        "formula": (
            f"hypotheses' {name} / probe's {name}"
            if name == "R²"
            else f"(hypotheses' {name} − 0.5) / (probe's {name} − 0.5)"
        ),
    }
    where = (
        f"a {probe} on the full embeddings scores a held-out {name} of "
        f"{out['embedding_score']}"
    )
    pvalue = metrics.get("embedding_pvalue")
    if not has_signal:
        test = (
            f" (one-sided p = {float(pvalue):.2g} against 0.5)"
            if not is_missing(pvalue)
            else ""
        )
        out["text"] = (
            f"Signal check: {where}{test}; the embeddings carry no detectable "
            "signal, so there is none for the hypotheses to recover."
        )
        out["warning"] = (
            "the embeddings carry no detectable signal about the target: "
            f"{where}{test}. Hypotheses found from them are unlikely to hold "
            "on new texts; check the target and the texts, or try another "
            "embedding model."
        )
        return out
    out["text"] = (
        f"Signal check: {where}; the hypotheses score {out['score']}, so they "
        f"recover {out['share']} of the signal the embeddings carry."
    )
    out["warning"] = ""
    return out


def _stability(table, settings) -> dict | None:
    """How stability was measured, when it was."""
    if "stability" not in table:
        return None
    info = dict((settings or {}).get("stability") or {})
    n_seeds = info.get("n_seeds")
    return {
        "n_other": n_seeds - 1 if isinstance(n_seeds, Integral) else None,
        "seeds": fmt(info.get("seeds")),
        "threshold": fmt(info.get("threshold", 0.5)),
    }


def _common_model(table) -> str | None:
    """The joint model's name when every row has the same one, else None."""
    if "model" not in table or len(table) == 0:
        return None
    models = set(table["model"].dropna())
    if len(models) != 1:
        return None
    model = models.pop()
    return _MODELS.get(model, str(model))


def _offline(table, settings) -> bool:
    """Whether the hypotheses are offline terms (also when there are none)."""
    if "terms" in table and table["terms"].notna().any():
        return True
    generator = (settings or {}).get("hypotheses") or {}
    describer = generator.get("describer", "")
    # None is the default describer, TermDescriber().
    offline = describer is None or str(describer).startswith("TermDescriber(")
    return len(table) == 0 and offline


def _context(result, title) -> dict:
    table = getattr(result, "hypotheses", None)
    if not isinstance(table, pd.DataFrame):
        raise TypeError(
            "render_report expects a MethodResult (from run_method) whose "
            "'hypotheses' is a DataFrame; got "
            f"{type(result).__name__} with hypotheses of type "
            f"{type(table).__name__}."
        )
    metrics = dict(getattr(result, "metrics", None) or {})
    examples = getattr(result, "examples", None) or []
    sae = getattr(result, "sae", None)
    figures = dict.fromkeys(["hypotheses", "separation", "training", "frequency"], "")
    if len(table):
        height = 1.2 + 0.45 * len(table)
        figures["hypotheses"] = _svg(
            plot_hypotheses, table, name="hypotheses", size=(9, height)
        )
        if {"mean_with", "mean_without"} <= set(table.columns):
            figures["separation"] = _svg(
                plot_separation, table, name="separation", size=(9, height)
            )
    sae_rows = []
    if sae is not None and hasattr(sae, "loss_curve_"):
        figures["training"] = _svg(
            plot_training_curve, sae, name="training", size=(6, 3.5)
        )
        figures["frequency"] = _svg(
            plot_latent_frequency, sae, name="frequency", size=(6, 3.5)
        )
        sae_rows = _pairs(sae, _SAE_FIGURES, getter=lambda s, k: getattr(s, k, None))
    get = lambda d, k: d.get(k)  # noqa: E731
    usage = dict(getattr(result, "usage", None) or {})
    timings = dict(getattr(result, "timings", None) or {})
    from .. import __version__

    # A pairwise run tests pairs of texts, and its report says so.
    unit = (
        "pairs"
        if (getattr(result, "settings", None) or {}).get("pairwise")
        else "texts"
    )
    labels = [(key, label.format(unit=unit)) for key, label in _METRICS]
    return {
        "title": title,
        "unit": unit,
        "version": __version__,
        "generated": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "metrics": _pairs(metrics, labels, getter=get),
        **headline(metrics, table),
        "n_hypotheses": len(table),
        "rows": _rows(table, examples),
        "offline": _offline(table, getattr(result, "settings", None)),
        "show": {
            column: column in table
            for column in ("marginal_coef", "separation_test", "vif", "model")
        },
        "any_firth": "model" in table and bool(table["model"].eq("firth").any()),
        # One joint model for every row goes in the header, else on each row.
        "common_model": _common_model(table),
        "signal": signal_summary(metrics),
        "stability": _stability(table, getattr(result, "settings", None)),
        "figures": figures,
        "sae_rows": sae_rows,
        "settings": flatten_settings(
            redact_settings(getattr(result, "settings", None))
        ),
        "usage": _pairs(usage, _USAGE, getter=get),
        "timings": [(step, f"{float(s):.1f} s") for step, s in timings.items()],
        "total_time": (
            f"{sum(float(s) for s in timings.values()):.1f} s" if timings else None
        ),
    }


def render_report(result, path, *, title="HypotheSAEs report") -> Path:
    """Write a self-contained HTML report of one run of the method.

    The page has no external resources (inline CSS, plots as inline SVG) and
    no scripts, so it opens offline and can be mailed or archived. Sections:
    summary metrics and statistical warnings; hypotheses ranked by absolute
    coefficient (a plot of coefficients with confidence intervals, a plot of
    the mean target with and without each hypothesis, and a table with
    corrected p-values, prevalence and fidelity); held-out texts where each
    hypothesis holds and where it does not; the sparse autoencoder's training
    curve, latent-frequency histogram and reconstruction figures; the
    settings, timings and LLM cost.

    Parameters
    ----------
    result : MethodResult
        The output of :func:`run_method` (or any object with the same
        ``hypotheses``, ``metrics``, ``examples``, ``sae``, ``usage``,
        ``timings`` and ``settings`` attributes; missing ones are skipped).
    path : str or path-like
        The HTML file to write (folders are created).
    title : str, default="HypotheSAEs report"
        Title of the page.

    Returns
    -------
    path : pathlib.Path
        The written file.

    Examples
    --------
    >>> import pandas as pd, tempfile, os
    >>> from types import SimpleNamespace
    >>> from sklearn_hypothesaes import render_report
    >>> table = pd.DataFrame({"hypothesis": ["praises the acting"], "coef": [1.1],
    ...                       "coef_ci_low": [0.8], "coef_ci_high": [1.4],
    ...                       "pvalue_corrected": [0.001], "significant": [True]})
    >>> result = SimpleNamespace(hypotheses=table, metrics={"auc": 0.7})
    >>> out = render_report(result, os.path.join(tempfile.mkdtemp(), "r.html"))
    >>> "praises the acting" in out.read_text()
    True
    """
    return write_html(_TEMPLATE, _context(result, title), path)


def write_html(template: str, context: dict, path) -> Path:
    """Render one of the package's report templates with ``context`` into
    ``path`` (its folder created), written then renamed so that an
    interrupted run never leaves half a page; return the path."""
    jinja2 = import_optional("jinja2", "The HTML report")
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("sklearn_hypothesaes.app", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    html = env.get_template(template).render(**context)
    path = Path(os.fspath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(html, encoding="utf-8")
    partial.replace(path)
    return path
