"""Matplotlib figures of hypotheses and sparse autoencoders, for notebooks.

Every function draws on ``ax`` (a new figure when None) and returns the Axes,
like scikit-learn's ``*Display.plot``. The HTML report uses the same functions.
matplotlib is an optional dependency: ``pip install "sklearn-hypothesaes[report]"``.

Examples
--------
>>> import numpy as np, pandas as pd
>>> from sklearn_hypothesaes.plotting import plot_hypotheses
>>> table = pd.DataFrame({
...     "hypothesis": ["praises the acting", "mentions boredom"],
...     "coef": [1.2, -0.8], "coef_ci_low": [0.9, -1.1],
...     "coef_ci_high": [1.5, -0.5], "significant": [True, True]})
>>> ax = plot_hypotheses(table)
>>> [t.get_text() for t in ax.get_yticklabels()]
['praises the acting', 'mentions boredom']
"""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd

from ..utils._misc import import_optional

__all__ = [
    "plot_hypotheses",
    "plot_latent_frequency",
    "plot_separation",
    "plot_training_curve",
    "rank_hypotheses",
]

_SIGNIFICANT = "#1f6feb"
_NOT_SIGNIFICANT = "#8c959f"
_LABEL_WIDTH = 48


def _axes(ax, size):
    if ax is not None:
        return ax
    plt = import_optional("matplotlib.pyplot", "Plotting")
    _, ax = plt.subplots(figsize=size, layout="constrained")
    return ax


def _table(hypotheses) -> pd.DataFrame:
    """The hypotheses table of a MethodResult, EvaluationResult or DataFrame."""
    table = getattr(hypotheses, "hypotheses", None)
    if table is None:
        table = getattr(hypotheses, "table", hypotheses)
    if not isinstance(table, pd.DataFrame):
        raise TypeError(
            "hypotheses must be a DataFrame with 'hypothesis', 'coef', "
            "'coef_ci_low' and 'coef_ci_high' columns, an EvaluationResult or a "
            f"MethodResult; got {type(hypotheses).__name__}."
        )
    missing = {"hypothesis", "coef"} - set(table.columns)
    if missing:
        raise ValueError(
            f"The hypotheses table needs the columns {sorted(missing)}; it has "
            f"{list(table.columns)}."
        )
    return table


def rank_hypotheses(table: pd.DataFrame) -> pd.DataFrame:
    """Rows ordered by effect: largest absolute coefficient first, NaN last.

    Parameters
    ----------
    table : DataFrame
        Hypotheses with a ``coef`` column.

    Returns
    -------
    ranked : DataFrame
        The same rows, reordered; the original row number is kept as index.

    Examples
    --------
    >>> import pandas as pd
    >>> from sklearn_hypothesaes.plotting import rank_hypotheses
    >>> table = pd.DataFrame({"coef": [0.1, float("nan"), -2.0]})
    >>> rank_hypotheses(table).index.tolist()
    [2, 0, 1]
    """
    key = table["coef"].abs().fillna(-1.0)
    return table.iloc[np.argsort(-key.to_numpy(), kind="stable")]


def _hypothesis_rows(hypotheses, ax):
    """Ranked table, axes sized to it, and y positions (strongest at the top)."""
    table = rank_hypotheses(_table(hypotheses))
    n = len(table)
    ax = _axes(ax, (8, 1.2 + 0.45 * max(n, 1)))
    return table, ax, np.arange(n)[::-1]


# Wrapped lines per label: two fit the row height of _hypothesis_rows, so
# labels of neighbouring rows never overlap (the table has the full text).
_LABEL_LINES = 2


def _label(hypothesis, width) -> str:
    """At most ``_LABEL_LINES`` lines of ``width`` characters, cut with "…"."""
    lines = textwrap.wrap(str(hypothesis), width) or [""]
    if len(lines) > _LABEL_LINES:
        lines = lines[:_LABEL_LINES]
        lines[-1] = lines[-1][: width - 1].rstrip() + "…"
    return "\n".join(lines)


def _label_rows(ax, rows, hypotheses, width):
    """Hypotheses as y tick labels, wrapped and cut (see :func:`_label`).

    Drawn literally: a ``$`` in a hypothesis is a dollar, not mathtext (``$$``
    would crash the drawing and ``$20 ... $5`` be set in italics).
    """
    ax.set_yticks(rows, [_label(h, width) for h in hypotheses], parse_math=False)


def plot_hypotheses(hypotheses, *, ax=None, max_label_width=_LABEL_WIDTH):
    """Coefficients of the joint held-out model with their confidence intervals.

    One row per hypothesis, ranked by absolute coefficient (strongest at the
    top). Significant hypotheses (after the multiple-testing correction) are
    drawn in blue with a filled marker, the others in grey with a hollow one;
    hypotheses without a coefficient are listed with no marker.

    Parameters
    ----------
    hypotheses : DataFrame, EvaluationResult or MethodResult
        A table with ``hypothesis``, ``coef`` and optionally ``coef_ci_low``,
        ``coef_ci_high`` and ``significant`` columns.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.
    max_label_width : int, default=48
        Hypothesis labels are wrapped to lines of this many characters.

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> import pandas as pd
    >>> from sklearn_hypothesaes.plotting import plot_hypotheses
    >>> table = pd.DataFrame({"hypothesis": ["a", "b"], "coef": [0.5, -1.0]})
    >>> ax = plot_hypotheses(table)
    >>> ax.get_xlabel()
    'coefficient in the joint held-out model'
    """
    table, ax, rows = _hypothesis_rows(hypotheses, ax)
    n = len(table)
    coef = table["coef"].to_numpy(dtype=float)
    low = table.get("coef_ci_low", pd.Series(np.nan, index=table.index))
    high = table.get("coef_ci_high", pd.Series(np.nan, index=table.index))
    low, high = low.to_numpy(dtype=float), high.to_numpy(dtype=float)
    significant = (
        table["significant"].fillna(False).to_numpy(dtype=bool)
        if "significant" in table
        else np.zeros(n, dtype=bool)
    )
    plotted = False
    for sig, color, face in (
        (True, _SIGNIFICANT, _SIGNIFICANT),
        (False, _NOT_SIGNIFICANT, "white"),
    ):
        mask = (significant == sig) & np.isfinite(coef)
        if not mask.any():
            continue
        plotted = True
        xerr = np.vstack([coef[mask] - low[mask], high[mask] - coef[mask]])
        ax.errorbar(
            coef[mask],
            rows[mask],
            xerr=np.where(np.isfinite(xerr), xerr, 0.0),
            fmt="o",
            color=color,
            markerfacecolor=face,
            capsize=3,
            label="significant" if sig else "not significant",
        )
    ax.axvline(0.0, color="black", linewidth=0.8)
    _label_rows(ax, rows, table["hypothesis"], max_label_width)
    ax.set_ylim(-0.7, max(n, 1) - 0.3)
    ax.set_xlabel("coefficient in the joint held-out model")
    ax.grid(axis="x", alpha=0.3)
    if plotted:  # with no coefficient (a joint model that failed), no legend
        ax.legend(loc="best", fontsize="small")
    return ax


def plot_separation(hypotheses, *, ax=None, max_label_width=_LABEL_WIDTH):
    """Mean target among held-out texts with and without each hypothesis.

    Parameters
    ----------
    hypotheses : DataFrame, EvaluationResult or MethodResult
        A table with ``hypothesis``, ``coef``, ``mean_with`` and
        ``mean_without`` columns.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.
    max_label_width : int, default=48
        Hypothesis labels are wrapped to lines of this many characters.

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> import pandas as pd
    >>> from sklearn_hypothesaes.plotting import plot_separation
    >>> table = pd.DataFrame({"hypothesis": ["a"], "coef": [0.5],
    ...                       "mean_with": [0.8], "mean_without": [0.4]})
    >>> len(plot_separation(table).lines) > 0
    True
    """
    table, ax, rows = _hypothesis_rows(hypotheses, ax)
    with_ = table["mean_with"].to_numpy(dtype=float)
    without = table["mean_without"].to_numpy(dtype=float)
    ax.hlines(rows, without, with_, color=_NOT_SIGNIFICANT, linewidth=2)
    ax.plot(without, rows, "o", color="white", markeredgecolor="black", label="without")
    ax.plot(with_, rows, "o", color=_SIGNIFICANT, label="with")
    _label_rows(ax, rows, table["hypothesis"], max_label_width)
    ax.set_xlabel("mean target among texts with / without the hypothesis")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return ax


def _check_sae(sae, attribute):
    if not hasattr(sae, attribute):
        raise ValueError(
            f"sae must be a fitted SparseAutoencoder with a {attribute!r} "
            f"attribute; got {type(sae).__name__} without it."
        )


def plot_training_curve(sae, *, ax=None):
    """Training loss and validation FVU of a fitted SparseAutoencoder, per epoch.

    Parameters
    ----------
    sae : SparseAutoencoder
        Fitted; its ``loss_curve_`` (left axis) and ``validation_fvu_curve_``
        (right axis, empty without early stopping) are drawn.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.

    Returns
    -------
    ax : matplotlib Axes
        The loss axes; the validation axes is its twin.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_hypothesaes import SparseAutoencoder
    >>> from sklearn_hypothesaes.plotting import plot_training_curve
    >>> X = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
    >>> sae = SparseAutoencoder(n_latents=16, k=2, max_epochs=3, random_state=0)
    >>> ax = plot_training_curve(sae.fit(X))
    >>> len(ax.lines[0].get_xdata())
    3
    """
    _check_sae(sae, "loss_curve_")
    ax = _axes(ax, (6, 3.5))
    loss = np.asarray(sae.loss_curve_, dtype=float)
    epochs = np.arange(1, len(loss) + 1)
    (line,) = ax.plot(epochs, loss, color="black", label="training loss")
    handles = [line]
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    val = np.asarray(getattr(sae, "validation_fvu_curve_", []), dtype=float)
    if len(val):
        twin = ax.twinx()
        (vline,) = twin.plot(
            np.arange(1, len(val) + 1), val, color=_SIGNIFICANT, label="validation FVU"
        )
        twin.set_ylabel("validation FVU", color=_SIGNIFICANT)
        handles.append(vline)
    ax.legend(handles=handles, loc="upper right", fontsize="small")
    ax.grid(alpha=0.3)
    return ax


def plot_latent_frequency(sae, *, ax=None, bins=30):
    """Histogram of how often each latent fires, on a log scale.

    Dead latents (never firing) cannot sit on a log axis; their number is
    given in the title.

    Parameters
    ----------
    sae : SparseAutoencoder
        Fitted; its ``latent_frequency_`` is drawn.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.
    bins : int, default=30
        Number of logarithmic bins.

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_hypothesaes import SparseAutoencoder
    >>> from sklearn_hypothesaes.plotting import plot_latent_frequency
    >>> X = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
    >>> sae = SparseAutoencoder(n_latents=16, k=2, max_epochs=3, random_state=0)
    >>> plot_latent_frequency(sae.fit(X)).get_xscale()
    'log'
    """
    _check_sae(sae, "latent_frequency_")
    ax = _axes(ax, (6, 3.5))
    freq = np.asarray(sae.latent_frequency_, dtype=float)
    alive = freq[freq > 0]
    n_dead = int(np.sum(freq == 0))
    if len(alive):
        lo, hi = alive.min(), alive.max()
        edges = np.geomspace(lo, hi if hi > lo else lo * 10, bins + 1)
        ax.hist(alive, bins=edges, color=_SIGNIFICANT, edgecolor="white")
    ax.set_xscale("log")
    ax.set_xlabel("share of training texts on which the latent fires")
    ax.set_ylabel("latents")
    ax.set_title(f"{len(freq)} latents, {n_dead} dead", fontsize="medium")
    return ax
