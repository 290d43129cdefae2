"""The HTML report in a real headless browser (Debian's chromium via Playwright).

The Makefile's test target installs chromium (apt) and the playwright package
(test extra). Locally the test is skipped when either is missing; under CI
(``CI=true``) a missing browser is a failure, not a skip.
"""

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sklearn_hypothesaes.app._cli import main

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        path = None
    if path is None:
        message = "needs Debian's chromium and the playwright package (make test)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A report of a real (small, offline) run of the command line."""
    folder = tmp_path_factory.mktemp("browser")
    rng = np.random.default_rng(1)
    topics = {"dog": "my dog", "rain": "the rain", "coffee": "my coffee"}
    rows = []
    for i in range(450):
        topic = rng.choice(list(topics))
        text = f"{topics[topic].capitalize()} kept me busy on day {i} <b>!</b>"
        rows.append((text, int(rng.random() < (0.85 if topic == "dog" else 0.3))))
    data = folder / "diary.csv"
    pd.DataFrame(rows, columns=["text", "target"]).to_csv(data, index=False)
    out = folder / "out"
    argv = [str(data), "--n-latents", "16", "--k", "2", "--n-hypotheses", "4"]
    argv += ["--stability-seeds", "2"]
    assert main([*argv, "--quiet", "-o", str(out)]) == 0
    return out / "report.html", pd.read_csv(out / "hypotheses.csv")


def test_report_in_headless_chromium(report):
    executable = chromium()
    from playwright.sync_api import sync_playwright

    path, table = report
    problems, requests = [], []
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(path.parent / "profile"),  # a fresh, empty user-data-dir
            executable_path=executable,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 900},
        )
        page = context.new_page()
        page.on(
            "console",
            lambda m: problems.append(m.text) if m.type in ("error", "warning") else 0,
        )
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(path.as_uri(), wait_until="load")

        assert page.title() == "HypotheSAEs report: diary.csv"
        shown = page.locator("#hypotheses-table a").all_inner_texts()
        assert shown == table["hypothesis"].tolist()  # one order: by effect
        assert all(a.is_visible() for a in page.locator("#hypotheses-table a").all())
        # Every figure is drawn at a readable size.
        for figure in ["hypotheses", "separation", "training", "frequency"]:
            box = page.locator(f"#fig-{figure} svg").bounding_box()
            assert box["width"] > 300 and box["height"] > 150, figure
        # Every column of the table is shown, and the page needs no sideways
        # scrolling for them; the signal check sits among the summary cards.
        headers = page.locator("#hypotheses-table th").all_inner_texts()
        expected = ["joint coef (Logit)", "marginal coef", "test: p", "VIF"]
        assert set(expected) <= set(headers) and "stability" in headers
        assert page.locator("#stability-note").is_visible()
        assert page.evaluate(
            "document.documentElement.scrollWidth <= window.innerWidth"
        )
        table = page.locator("#hypotheses-table")
        assert table.evaluate("t => t.scrollWidth <= t.parentElement.clientWidth")
        assert page.locator("#card-embedding-score").is_visible()
        assert page.locator("#card-signal-share").is_visible()
        # User text is shown as text, not parsed as markup.
        assert page.locator("#examples b").count() == 0
        assert "<b>!</b>" in page.locator("#examples").inner_text()
        # The examples of a closed hypothesis open on a click.
        last = page.locator("details.hypothesis").last
        if last.get_attribute("open") is None:
            last.locator("summary").click()
            assert last.get_attribute("open") is not None
        page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
        context.close()
    assert problems == []
    assert requests == [path.as_uri()]  # nothing fetched but the page itself
