"""HTML report and plotting functions, on a hand-made MethodResult."""

import html
import re
from types import SimpleNamespace

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")

from sklearn_hypothesaes import SparseAutoencoder  # noqa: E402
from sklearn_hypothesaes.app._report import fmt, fmt_pvalue, render_report  # noqa: E402
from sklearn_hypothesaes.plotting import (  # noqa: E402
    plot_hypotheses,
    plot_latent_frequency,
    plot_separation,
    plot_training_curve,
    rank_hypotheses,
)

HYPOTHESES = [
    "praises the <b>acting</b> & the cast",
    "mentions boredom",
    "is constant",
    "talks about the plot",
    "calls the film a masterpiece",
]
COEF = [1.0, -1.5, np.nan, 0.2, 2.0]
# Ranked by |coef|, NaN last: rows 4, 1, 0, 3, 2.
RANKED = [4, 1, 0, 3, 2]


@pytest.fixture(scope="module")
def sae():
    X = np.random.default_rng(0).normal(size=(400, 8)).astype(np.float32)
    return SparseAutoencoder(n_latents=16, k=2, max_epochs=4, random_state=0).fit(X)


def make_result(sae):
    n = len(HYPOTHESES)
    table = pd.DataFrame(
        {
            "latent": [3, 7, 11, 1, 0],
            "feature": [f"sparseautoencoder{i}" for i in [3, 7, 11, 1, 0]],
            "association": [0.3, -0.2, 0.1, 0.05, 0.4],
            "hypothesis": HYPOTHESES,
            "fidelity": [0.8, 0.6, 0.1, 0.5, 0.9],
            "precision": 0.7,
            "recall": 0.6,
            "terms": [None] * n,
            "prevalence": [0.25, 0.1, 1.0, 0.3, 0.05],
            "n_missing": 0,
            "mean_with": [0.8, 0.2, 0.6, 0.6, 0.9],
            "mean_without": [0.5, 0.65, np.nan, 0.58, 0.57],
            "separation": [0.3, -0.45, np.nan, 0.02, 0.33],
            "separation_pvalue": [1e-6, 1e-4, np.nan, 0.6, 1e-3],
            "coef": COEF,
            "coef_se": [0.1, 0.2, np.nan, 0.3, 0.4],
            "coef_ci_low": [0.8, -1.9, np.nan, -0.4, 1.2],
            "coef_ci_high": [1.2, -1.1, np.nan, 0.8, 2.8],
            "pvalue": [1e-9, 2e-6, np.nan, 0.5, 4e-7],
            "pvalue_corrected": [5e-9, 1e-5, np.nan, 1.0, 0.0123],
            "significant": [True, True, False, False, True],
            "note": ["", "", "constant: present in every text", "", ""],
        }
    )
    examples = [
        {"present": [f"yes {i} <script>alert(1)</script>"], "absent": [f"no {i}"]}
        for i in range(n)
    ]
    return SimpleNamespace(
        hypotheses=table,
        metrics={
            "task": "binary",
            "n": 300,
            "n_used": 300,
            "auc": 0.7123,
            "pseudo_r2": 0.12,
            "n_significant": 3,
            "n_hypotheses": n,
            "alpha": 0.05,
            "correction": "bonferroni",
            "warnings": ["'is constant' is constant and left out of the model."],
        },
        examples=examples,
        sae=sae,
        usage={
            "calls": 42,
            "cache_hits": 7,
            "prompt_tokens": 12345,
            "completion_tokens": 678,
            "cost": 0.0123,
        },
        timings={"embed": 1.5, "sae": 2.25},
        settings={"sae": {"n_latents": 16, "k": 2}, "seed": 0},
    )


@pytest.fixture(scope="module")
def page(sae, tmp_path_factory):
    path = render_report(make_result(sae), tmp_path_factory.mktemp("r") / "r.html")
    return path.read_text(encoding="utf-8")


def test_rank_by_absolute_coefficient():
    table = pd.DataFrame({"coef": COEF})
    assert rank_hypotheses(table).index.tolist() == RANKED


def test_report_is_self_contained(page):
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page.replace("&lt;script", "")
    assert "<link" not in page
    # No resource loaded from anywhere: SVG namespaces are not fetched.
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert page.count("<svg") == 4


def test_report_lists_hypotheses_ranked_with_statistics(page):
    table = page[page.index('id="hypotheses-table"') :]
    table = table[: table.index("</table>")]
    rows = re.findall(r'<a href="#h(\d+)">(.*?)</a>', table)
    assert [int(i) for i, _ in rows] == RANKED
    assert [html.unescape(text) for _, text in rows] == [HYPOTHESES[i] for i in RANKED]
    # User text is escaped, never markup.
    assert "<b>acting</b>" not in page
    assert "&lt;b&gt;acting&lt;/b&gt; &amp; the cast" in page
    first = table[table.index('href="#h4"') :]
    assert "[1.2, 2.8]" in first and "0.0123" in first
    assert "&lt; 0.0001" in table  # the corrected p-value 5e-9
    assert table.count('class="hypothesis-row significant"') == 3
    assert "constant: present in every text" in table
    # Each hypothesis names its latent under it, rank order: rows 4, 1, 0, 3, 2.
    assert re.findall(r'<div class="terms latent">latent (\d+)', table) == [
        "0",
        "7",
        "3",
        "1",
        "11",
    ]


def test_report_sections(page):
    assert "0.712" in page  # AUC
    assert "left out of the model" in page  # the statistics' warning
    usage = page[page.index('id="usage-table"') :]
    usage = usage[: usage.index("</table>")]
    for value in ["42", "7", "12,345", "678", "0.0123"]:
        assert f"<td>{value}</td>" in usage
    assert "yes 4 &lt;script&gt;" in page and "no 4" in page
    assert "<td>sae.n_latents</td><td>16</td>" in page
    assert "<td>embed</td><td>1.5 s</td>" in page
    assert "epochs run" in page and "FVU, training rows" in page


def test_report_without_sae_or_usage(tmp_path, sae):
    result = make_result(sae)
    result.sae, result.usage, result.timings = None, {}, {}
    page = render_report(result, tmp_path / "sub" / "r.html").read_text()
    assert "No fitted sparse autoencoder" in page
    assert page.count("<svg") == 2
    assert not list(tmp_path.glob("sub/*.partial"))


def test_report_rejects_other_objects(tmp_path):
    with pytest.raises(TypeError, match="MethodResult"):
        render_report(object(), tmp_path / "r.html")


def test_formatting():
    assert fmt(np.nan) == "—" and fmt(None) == "—"
    assert fmt(12345) == "12,345" and fmt(np.int64(3)) == "3"
    assert fmt(0.71234) == "0.712" and fmt(1234.5) == "1.23e+03"
    assert fmt(True) == "yes" and fmt([1, 2]) == "1, 2"
    assert fmt_pvalue(3e-7) == "< 0.0001" and fmt_pvalue(0.01234) == "0.0123"


def test_plot_hypotheses_marks_significance(sae):
    table = make_result(sae).hypotheses
    ax = plot_hypotheses(table)
    labels = [t.get_text().replace("\n", " ") for t in ax.get_yticklabels()]
    assert labels == [HYPOTHESES[i] for i in RANKED]
    # The strongest hypothesis sits at the top.
    assert ax.get_yticks().tolist() == [4, 3, 2, 1, 0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["significant", "not significant"]
    # The significant series holds exactly the significant coefficients.
    significant = ax.containers[0].lines[0].get_xdata()
    assert sorted(significant) == [-1.5, 1.0, 2.0]


def test_plot_separation_and_errors(sae):
    table = make_result(sae).hypotheses
    ax = plot_separation(table)
    assert ax.lines[1].get_xdata().tolist() == [0.9, 0.2, 0.8, 0.6, 0.6]
    with pytest.raises(TypeError, match="hypotheses must be a DataFrame"):
        plot_hypotheses([1, 2])
    with pytest.raises(ValueError, match="coef"):
        plot_hypotheses(pd.DataFrame({"hypothesis": ["a"]}))


def test_plot_training_curve(sae):
    ax = plot_training_curve(sae)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), sae.loss_curve_)
    assert ax.lines[0].get_xdata().tolist() == list(range(1, sae.n_iter_ + 1))
    with pytest.raises(ValueError, match="fitted SparseAutoencoder"):
        plot_training_curve(SparseAutoencoder())


def test_plot_latent_frequency_counts_dead_latents():
    fake = SimpleNamespace(latent_frequency_=np.array([0, 0, 0.01, 0.1, 0.5, 0.02]))
    ax = plot_latent_frequency(fake, bins=4)
    assert ax.get_title() == "6 latents, 2 dead"
    assert sum(p.get_height() for p in ax.patches) == 4


def test_multiclass_headline(tmp_path, sae):
    result = make_result(sae)
    result.metrics = {
        "task": "multiclass",
        "score": 0.625,
        "per_class": {
            "a": {"n": 300, "warnings": ["w1"]},
            "b": {"n": 300, "warnings": []},
        },
    }
    page = render_report(result, tmp_path / "r.html").read_text()
    assert "3 significant on held-out texts" in " ".join(page.split())
    # The generator's multiclass score, named as HypothesisGenerator.score
    # documents it (it was called accuracy here).
    assert "held-out mean one-vs-rest AUC 0.625" in page
    assert "class a: w1" in page


def test_render_report_is_public():
    import sklearn_hypothesaes

    assert "render_report" in sklearn_hypothesaes.__all__
    assert sklearn_hypothesaes.render_report is render_report


@pytest.mark.parametrize("text", ["costs $$ a lot", "went from $20 to $5 a ticket"])
def test_dollar_signs_are_drawn_literally(tmp_path, sae, text):
    """Not mathtext: '$$' crashed the report, '$20 ... $5' was set in italics."""
    result = make_result(sae)
    result.hypotheses.loc[4, "hypothesis"] = text  # the strongest, drawn first
    page = render_report(result, tmp_path / "r.html").read_text()
    figure = page[page.index("<svg") : page.index("</svg>")]
    assert f">{text}</text>" in figure
    for plot in (plot_hypotheses, plot_separation):
        ax = plot(result.hypotheses)
        assert ax.get_yticklabels()[0].get_text() == text


def test_credentials_in_settings_are_redacted(tmp_path, sae):
    result = make_result(sae)
    result.settings = {
        "hypotheses": {
            "describer": "LLMDescriber(client=LLMClient("
            "base_url='http://me:hunter2@llm.example.com/v1', model='m'))"
        },
        "embed": {"base_url": "https://me@proxy.example.com/v1?access_token=abc"},
    }
    page = render_report(result, tmp_path / "r.html").read_text()
    assert "hunter2" not in page and "access_token=abc" not in page
    settings = page[page.index('id="settings-table"') :]
    assert "base_url=&#39;http://me:***@llm.example.com/v1&#39;" in settings
    assert "https://***@proxy.example.com/v1?access_token=***" in settings


def test_plot_without_any_coefficient_has_no_legend(recwarn):
    table = pd.DataFrame({"hypothesis": ["a", "b"], "coef": [np.nan, np.nan]})
    ax = plot_hypotheses(table)
    assert ax.get_legend() is None
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    assert not [w for w in recwarn if "legend" in str(w.message)]


def signal_metrics(**changes):
    metrics = {
        "task": "binary",
        "n": 300,
        "auc": 0.7123,
        "score": 0.63,
        "embedding_score": 0.75,
        "embedding_pvalue": 1e-12,
        "embedding_signal": True,
        "embedding_probe": "logistic-regression probe (C=0.1, by 3-fold CV)",
        "signal_share": 0.52,
    }
    return {**metrics, **changes}


def section(page, marker, end="</div>"):
    """The page from ``marker`` to ``end``, whitespace runs made one space."""
    part = " ".join(page[page.index(marker) :].split())
    return part[: part.index(end)]


def test_report_signal_check_next_to_the_score(tmp_path, sae):
    result = make_result(sae)
    result.metrics = signal_metrics()
    page = render_report(result, tmp_path / "r.html").read_text()
    assert section(page, 'id="card-embedding-score"', end="</div></div>") == (
        'id="card-embedding-score"><div class="value">0.75</div> <div '
        'class="label">held-out AUC of a probe on the embeddings'
    )
    assert '<div class="value">52%</div>' in section(
        page, 'id="card-signal-share"', end="</div></div>"
    )
    text = section(page, 'id="signal"', end="</p>")
    assert (
        "Signal check: a logistic-regression probe (C=0.1, by 3-fold CV) on the full "
        "embeddings scores a held-out AUC of 0.75; the hypotheses score 0.63, so "
        "they recover 52% of the signal the embeddings carry." in text
    )
    assert "above chance, (hypotheses' AUC − 0.5) / (probe's AUC − 0.5), both" in (
        html.unescape(text)
    )
    assert 'id="no-signal"' not in page
    metrics = section(page, 'id="metrics"', end="</table>")
    assert "<td>held-out score of a probe on the full embeddings</td><td>0.75</td>" in (
        metrics
    )


def test_report_regression_share_is_a_ratio_of_r2(tmp_path, sae):
    result = make_result(sae)
    result.metrics = signal_metrics(
        task="regression", score=0.2, embedding_score=0.48, signal_share=0.2 / 0.48
    )
    page = render_report(result, tmp_path / "r.html").read_text()
    text = section(page, 'id="signal"', end="</p>")
    assert "held-out R² of 0.48; the hypotheses score 0.2, so they recover 42%" in text
    assert "above chance, hypotheses' R² / probe's R², both" in html.unescape(text)


def test_report_warns_when_the_embeddings_carry_no_signal(tmp_path, sae):
    result = make_result(sae)
    result.metrics = signal_metrics(
        embedding_score=0.52,
        embedding_pvalue=0.31,
        embedding_signal=False,
        signal_share=0.26 / 0.02,
    )
    page = render_report(result, tmp_path / "r.html").read_text()
    callout = section(page, 'id="no-signal"')
    assert callout.startswith(
        'id="no-signal"> <strong>The embeddings carry no detectable signal.</strong> '
        "The embeddings carry no detectable signal about the target: a "
        "logistic-regression probe (C=0.1, by 3-fold CV) on the full embeddings "
        "scores a held-out AUC of 0.52 (one-sided p = 0.31 against 0.5)."
    )
    assert "NoSignalWarning" in callout
    # A share of no signal is not a number to read.
    assert '<div class="value">—</div>' in section(
        page, 'id="card-signal-share"', end="</div></div>"
    )
    assert 'id="signal"' not in page


def test_report_shows_stability_and_what_it_means(tmp_path, sae):
    result = make_result(sae)
    result.hypotheses["stability"] = [1.0, 0.5, np.nan, 0.0, 2 / 3]
    result.settings = {"stability": {"n_seeds": 3, "seeds": [1, 2], "threshold": 0.5}}
    page = render_report(result, tmp_path / "r.html").read_text()
    table = section(page, 'id="hypotheses-table"', end="</table>")
    assert "<th>stability</th>" in table
    shown = re.findall(r'<td class="num stability">(.*?)</td>', table)
    assert shown == ["0.67", "0.5", "1", "0", "—"]  # rows 4, 1, 0, 3, 2
    note = section(page, 'id="stability-note"', end="</p>")
    assert "fit again with 2 other seed(s) (1, 2)" in note
    assert "at r ≥ 0.5" in note


def test_report_without_stability_has_no_such_column(page):
    assert "stability" not in page


def test_report_shows_tests_marginal_and_joint_sign_flips_vif_and_model(tmp_path, sae):
    result = make_result(sae)
    table = result.hypotheses
    table["separation_test"] = ["fisher", "fisher", None, "lr", "fisher"]
    table["separation_pvalue"] = [1e-6, 0.0012, np.nan, 0.6, 1e-3]
    table["marginal_coef"] = [0.9, 0.4, np.nan, 0.1, 2.5]
    table["sign_flip"] = [False, True, False, False, False]
    table["vif"] = [1.2, 6.5, np.nan, 1.0, 1.7]
    table["model"] = "firth"
    table.loc[1, "note"] = "sign flip: alone its association with y is positive"
    result.metrics["model"] = "firth"
    page = render_report(result, tmp_path / "r.html").read_text()
    body = section(page, 'id="hypotheses-table"', end="</table>")
    head = body[: body.index("</thead>")]
    assert re.findall(r"<th>(.*?)</th>", head) == [
        "#",
        "hypothesis",
        'joint coef <span class="model">(Firth)</span>',
        "CI",
        "p (corrected)",
        "marginal coef",
        "test: p",
        "VIF",
        "prevalence",
        "mean with / without",
        "fidelity",
    ]
    # In rank order: rows 4, 1, 0, 3, 2.
    assert re.findall(r'<td class="num marginal">(.*?)</td>', body) == [
        "2.5",
        "0.4",
        "0.9",
        "0.1",
        "—",
    ]
    tests = re.findall(r'<td class="num test">(.*?)</td>', body)
    assert [re.sub("<.*?>", "", test) for test in tests] == [
        "Fisher: 0.0010",
        "Fisher: 0.0012",
        "Fisher: &lt; 0.0001",
        "LR: 0.6000",
        "—",
    ]
    assert re.findall(r'<td class="num vif">(.*?)</td>', body) == [
        "1.7",
        "6.5",
        "1.2",
        "1",
        "—",
    ]
    # Firth is named on each row it gave.
    assert re.findall(r'<div class="model">(.*?)</div>', body) == ["Firth"] * 5
    # Mixed models (classes fit apart): each row names its own.
    table["model"] = ["logit", "firth", None, "logit", "logit"]
    page = render_report(result, tmp_path / "r.html").read_text()
    body = section(page, 'id="hypotheses-table"', end="</table>")
    assert "<th>joint coef</th>" in body
    models = re.findall(r'<div class="model">(.*?)</div>', body)
    assert models == ["Logit", "Firth", "Logit", "Logit", "—"]
    # The one flipped row (rank 2) is marked, and its note says why.
    rows = body.split('<tr class="hypothesis-row')[1:]
    assert ["⇄ sign flip" in row for row in rows] == [False, True, False, False, False]
    assert "sign flip: alone its association with y is positive" in rows[1]
    note = section(page, 'id="statistics-note"', end="</p>")
    assert "Firth&#39;s bias-reduced" in note or "Firth's bias-reduced" in note
    metrics = section(page, 'id="metrics"', end="</table>")
    assert "<td>joint model</td><td>firth</td>" in metrics


def test_long_hypotheses_get_two_label_lines_so_rows_never_overlap():
    from sklearn_hypothesaes.plotting import plot_hypotheses

    long = "mentions " + ", ".join(f'"word{i}"' for i in range(20))
    table = pd.DataFrame(
        {
            "hypothesis": [long, "short"],
            "coef": [1.0, -0.5],
            "significant": [True, False],
        }
    )
    ax = plot_hypotheses(table, max_label_width=30)
    labels = sorted((t.get_text() for t in ax.get_yticklabels()), key=len)
    assert labels[0] == "short"
    assert labels[1].count("\n") == 1 and labels[1].endswith("…")
    assert all(len(line) <= 30 for line in labels[1].split("\n"))
