"""The toolkit's report pages in a real headless browser (chromium via Playwright).

One page per subcommand, from a real (small, offline) run of the command
line. As in tests/test_browser.py, the test is skipped locally when chromium
or playwright is missing and fails under CI (``CI=true``).
"""

import pandas as pd
import pytest
from test_browser import ARTIFACTS, CHROMIUM_FLAGS, chromium
from test_toolkit_cli import write_corpora

from sklearn_hypothesaes.__main__ import main

SMALL = ["--n-latents", "16", "--k", "2", "--quiet"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_corpora(tmp_path_factory.mktemp("toolkit_browser"))


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    executable = chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("profile")),  # a fresh user-data-dir
            executable_path=executable,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 900},
        )
        yield context
        context.close()


class Page:
    """A report opened in the browser, with its console problems and requests."""

    def __init__(self, browser, path):
        self.path = path
        self.problems, self.requests = [], []
        self.page = page = browser.new_page()
        page.on(
            "console",
            lambda m: (
                self.problems.append(m.text) if m.type in ("error", "warning") else 0
            ),
        )
        page.on("pageerror", lambda exc: self.problems.append(str(exc)))
        page.on("request", lambda r: self.requests.append(r.url))
        page.goto(path.as_uri(), wait_until="load")

    def texts(self, selector):
        return self.page.locator(selector).all_inner_texts()

    def visible(self, selector):
        items = self.page.locator(selector).all()
        return bool(items) and all(item.is_visible() for item in items)

    def finish(self, name):
        page = self.page
        # Wide tables scroll inside their box, never the page sideways.
        assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"toolkit_{name}.png"), full_page=True)
        page.close()
        assert self.problems == []
        assert self.requests == [self.path.as_uri()]  # nothing fetched but the page


def cli(*argv):
    assert main([str(a) for a in argv]) == 0


def test_diff_page(data, browser):
    out = data / "diff"
    cli("diff", data / "a.csv", data / "b.csv", "--names", "volcano", "calm",
        *SMALL, "-o", out)  # fmt: skip
    table = pd.read_csv(out / "differences.csv")
    page = Page(browser, out / "report.html")
    assert page.page.title() == "Dataset diff: volcano vs calm"
    assert page.texts("#differences-table a") == table["label"].tolist()
    assert page.visible("#differences-table a")
    assert page.visible("#differences-table tbody tr:first-child .bar.a")
    n_significant = str(int(table["significant"].sum()))
    assert page.texts("#card-significant .value") == [n_significant]
    # User text is shown as text, not parsed as markup.
    examples = page.page.locator("#examples")
    assert examples.locator("b").count() == 0
    assert "nearby <b>!</b>" in examples.inner_text()
    # The examples of a closed row open on a click.
    last = page.page.locator("#examples details").last
    assert last.get_attribute("open") is None
    last.locator("summary").click()
    assert last.get_attribute("open") is not None
    assert page.visible("#latents-details summary")
    page.finish("diff")


def test_correlations_page_cross_field(data, browser):
    out = data / "correlations"
    cli("correlations", data / "both.csv", "--other-column", "reply", *SMALL,
        "-o", out)  # fmt: skip
    table = pd.read_csv(out / "correlations.csv")
    page = Page(browser, out / "report.html")
    assert page.page.title() == "Concept correlations: both.csv"
    headers = page.texts("#pairs-table th")
    assert headers[1:3] == ["text", "reply"]  # one latent of each column
    assert len(page.texts("#pairs-table tr.pair-row")) == len(table) > 0
    assert page.visible("#pairs-table tr.pair-row")
    first = page.texts("#pairs-table tr.pair-row:first-child td")
    assert first[1].startswith(table.loc[0, "label_a"])
    assert first[2].startswith(table.loc[0, "label_b"])
    assert "→" in page.texts("#pairs-table tr.pair-examples")[0]
    # The planted pair: every volcano line, and no other, gets a worried reply.
    top = table.iloc[0]
    assert "eruption" in top["label_a"]
    assert "safe" in top["label_b"] or "scary" in top["label_b"]
    assert top["count_ab"] == top["count_b"] and top["npmi"] > 0.5
    page.finish("correlations")


def test_cluster_page(data, browser):
    out = data / "cluster"
    cli("cluster", data / "both.csv", "--axis", "volcano eruption",
        "--n-axis-latents", "3", "--n-clusters", "2", "--id-column", "doc_id",
        *SMALL, "-o", out)  # fmt: skip
    clusters = pd.read_csv(out / "clusters.csv")
    page = Page(browser, out / "report.html")
    assert page.page.title() == "Clusters along “volcano eruption”: both.csv"
    summaries = page.texts("details.cluster summary")
    assert summaries == [
        f"Cluster {row.cluster}: {row.size} rows ({row.share:.1%})"
        for row in clusters.itertuples()
    ]
    assert page.visible("details.cluster .description")
    assert len(page.texts("#axis-table tbody tr")) == 3
    assert page.texts("#assignments-table th")[:2] == ["row", "doc_id"]
    assert len(page.texts("#assignments-table tbody tr")) == 200
    assert "The first 200 of 401 rows" in page.texts("#assignments")[0]
    page.finish("cluster")


def test_search_page(data, browser):
    out = data / "search"
    cli("search", data / "both.csv", "volcano eruption", "--top", "5",
        "--id-column", "doc_id", *SMALL, "-o", out)  # fmt: skip
    results = pd.read_csv(out / "results.csv")
    page = Page(browser, out / "report.html")
    assert page.page.title() == "Search “volcano eruption”: both.csv"
    assert page.texts("#card-query .value") == ["volcano eruption"]
    rows = page.page.locator("#results-table tbody tr")
    assert rows.count() == 5
    cells = page.texts("#results-table tbody tr:first-child td")
    assert cells[:3] == ["1", str(results.loc[0, "row"]), results.loc[0, "doc_id"]]
    assert cells[3] == results.loc[0, "text"]
    assert page.visible("#matched-table tbody tr")
    page.finish("search")
