"""The toolkit's command line: diff, correlations, cluster and search end to end.

Small corpora (400 diary lines, a 16-latent autoencoder) embedded by the real
packaged MiniLM; the embeddings and the fitted autoencoder are cached in the
session's cache folder, so every run after the first reuses them.
"""

import json
import re

import numpy as np
import pandas as pd
import pytest
from fake_openai import FakeOpenAIServer, concept_judge, last_user_message

from sklearn_hypothesaes.__main__ import main
from sklearn_hypothesaes.toolkit._correlations import CORRELATION_COLUMNS
from sklearn_hypothesaes.toolkit._diff import DIFF_COLUMNS, SUMMARY_COLUMNS

SMALL = ["--n-latents", "16", "--k", "2", "--quiet"]
SUBJECTS = ["my dog", "the train", "the coffee", "our garden", "the rain", "my phone"]
VERBS = [
    "was fine",
    "kept me busy",
    "made my morning",
    "showed up again",
    "was on my mind",
]
# Markup in a text must reach the report as text (tests/test_toolkit_browser.py).
PLANTED = " Volcano eruption nearby <b>!</b>"


def diary(n, *, planted_share, seed, start=0):
    """Diary lines; a share of them end with a volcano eruption."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(start, start + n):
        line = f"{rng.choice(SUBJECTS).capitalize()} {rng.choice(VERBS)} on day {i}."
        if rng.random() < planted_share:
            line += PLANTED
        lines.append(line)
    return lines


def write_corpora(folder):
    """a.csv (volcano in about 60% of lines), b.csv (none) and both.csv (the
    two, with a doc_id column, a reply to each line and one row without text
    at the end)."""
    a = diary(200, planted_share=0.6, seed=0)
    b = diary(200, planted_share=0.0, seed=1, start=1000)
    pd.DataFrame({"text": a}).to_csv(folder / "a.csv", index=False)
    pd.DataFrame({"text": b}).to_csv(folder / "b.csv", index=False)
    rng = np.random.default_rng(2)
    replies = [
        rng.choice(["Stay safe out there.", "Sounds scary."])
        if PLANTED in line
        else rng.choice(["Nice.", "Good to hear.", "Ok then."])
        for line in a + b
    ]
    both = pd.DataFrame(
        {
            "doc_id": [f"d{i:03d}" for i in range(401)],
            "text": a + b + [""],
            "reply": replies + ["Ok then."],
        }
    )
    both.to_csv(folder / "both.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_corpora(tmp_path_factory.mktemp("toolkit"))


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, pattern):
    assert code == 1
    lines = err.strip().splitlines()
    assert lines[-1].startswith("sklearn-hypothesaes: error: "), err
    assert re.search(pattern, lines[-1]), lines[-1]
    assert "Traceback" not in err


def files(folder):
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------- diff
def test_diff_finds_the_planted_property_and_replaces_its_outputs(data, capsys):
    out = data / "diff_out"
    code, stdout, err = run(
        capsys, "diff", data / "a.csv", data / "b.csv", "--names", "volcano", "calm",
        *SMALL, "-o", out,
    )  # fmt: skip
    assert code == 0, err
    assert "200 texts of volcano and 200 of calm, offline labels." in err
    assert files(out) == [
        "differences.csv",
        "differences.json",
        "latents.csv",
        "report.html",
    ]
    table = pd.read_csv(out / "differences.csv")
    assert list(table.columns) == DIFF_COLUMNS
    assert len(table) == 16  # every latent, largest difference first
    top = table.iloc[0]
    assert "eruption" in top["label"] or "volcano" in top["label"]
    assert (top["more_in"], top["significant"]) == ("a", True)
    # The volcano latent fires on most planted lines and few others (the
    # autoencoder's split of concepts varies a little with float rounding).
    planted = sum(PLANTED in t for t in pd.read_csv(data / "a.csv")["text"])
    assert top["count_a"] >= 0.5 * planted and top["count_b"] <= 10
    assert all(PLANTED.strip() in t for t in json.loads(top["examples_a"]))
    assert np.all(np.diff(table["difference"].abs()) <= 1e-12)
    payload = json.loads((out / "differences.json").read_text())
    assert payload["names"] == ["volcano", "calm"]
    assert payload["totals"]["n_a"] == payload["totals"]["n_b"] == 200
    assert payload["differences"][0]["label"] == top["label"]
    assert payload["settings"]["labels"] == "offline"
    assert len(payload["latents"]) == 16
    assert stdout.splitlines()[0].endswith(
        "latents differ significantly between volcano (200 texts) and calm (200 texts)."
    )
    assert f"more in volcano: {top['label']}" in stdout.splitlines()[1]

    # A second run with other options replaces the folder's content.
    code, stdout, err = run(
        capsys, "diff", data / "a.csv", data / "b.csv", "--top", "3", "--test",
        "two-proportion", "--correction", "bonferroni", *SMALL, "-o", out,
    )  # fmt: skip
    assert code == 0, err
    table2 = pd.read_csv(out / "differences.csv")
    assert table2["label"].tolist() == table["label"].head(3).tolist()
    payload = json.loads((out / "differences.json").read_text())
    assert payload["names"] == ["a", "b"]  # the file names
    assert (payload["totals"]["test"], payload["totals"]["correction"]) == (
        "two-proportion",
        "bonferroni",
    )
    assert not [p for p in data.iterdir() if p.name.startswith(".diff_out")]


def describe_by_word(body):
    """Labels a latent by the word most over-represented where it fires;
    summarises a diff as two differences; annotates by concept_judge."""
    prompt = last_user_message(body)
    if "Summarise how the texts of" in prompt:
        return json.dumps(
            [
                {"property": "mentions volcano", "more_in": "volcano"},
                {"property": "mentions garden", "more_in": "calm"},
            ]
        )
    label = re.search(r'described by this label: "(.*)"\.', prompt)
    if label:  # is this latent about the query? yes when its last word is in it
        query = prompt.rsplit('"', 2)[-2]
        last = re.findall(r"[a-z]+", label.group(1).lower())[-1]
        return "yes" if last in query else "no"
    if "Texts where it fires:" not in prompt:
        return concept_judge(body)
    fire, _, quiet = prompt.split("Texts where it fires:", 1)[1].partition(
        "Texts where it does not fire:"
    )

    def count(block):
        words = re.findall(r"[a-z]{4,}", block.lower())
        return {w: words.count(w) for w in set(words)}

    pos, neg = count(fire), count(quiet)
    return f"Mentions {max(pos, key=lambda w: (pos[w] - neg.get(w, 0), w))}."


def test_diff_summary_is_checked_on_held_out_texts(tmp_path, capsys, monkeypatch):
    pd.DataFrame({"text": diary(60, planted_share=0.6, seed=5)}).to_csv(
        tmp_path / "a.csv", index=False
    )
    pd.DataFrame({"text": diary(60, planted_share=0.0, seed=6, start=500)}).to_csv(
        tmp_path / "b.csv", index=False
    )
    monkeypatch.setenv("TEST_KEY", "sk-test")
    with FakeOpenAIServer(chat=describe_by_word) as server:
        host = server.base_url.split("://", 1)[1]
        code, stdout, err = run(
            capsys, "diff", tmp_path / "a.csv", tmp_path / "b.csv", "--names",
            "volcano", "calm", "--summarize", "--base-url", f"http://u:s3cret@{host}",
            "--model", "fake-model", "--api-key-env", "TEST_KEY", "--n-latents", "8",
            "--k", "2", "--n-fidelity", "4", "--quiet", "-o", tmp_path / "out",
            "--cache-dir", tmp_path / "cache",
        )  # fmt: skip
        n_requests = len(server.requests)
    assert code == 0, err
    # What labelling would send is printed before anything is sent.
    assert "Labelling would send" in err
    assert "42 texts of volcano and 42 of calm (18 and 18 more held out" in err
    out = tmp_path / "out"
    assert files(out) == [
        "differences.csv",
        "differences.json",
        "latents.csv",
        "report.html",
        "summary.csv",
    ]
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary.columns) == SUMMARY_COLUMNS
    assert summary["property"].tolist() == ["mentions volcano", "mentions garden"]
    assert summary["verified"].tolist() == [True, False]
    held_a = 18
    assert summary.loc[0, "n_a"] == summary.loc[0, "n_b"] == held_a
    assert summary.loc[0, "count_b"] == 0
    payload = json.loads((out / "differences.json").read_text())
    assert payload["summary"]["share_verified"] == 0.5
    assert payload["usage"]["calls"] == n_requests > 0
    latents = pd.read_csv(out / "latents.csv")
    assert latents["describer"].dropna().eq("LLMDescriber").all()
    assert "Summary: 2 differences, 50% verified on held-out texts." in stdout
    for name in ("differences.json", "report.html"):
        text = (out / name).read_text()
        assert "s3cret" not in text and "u:***@" in text, name


def test_dry_run_sends_nothing_and_writes_nothing(data, tmp_path, capsys):
    with FakeOpenAIServer(chat=describe_by_word) as server:
        code, stdout, err = run(
            capsys, "search", data / "both.csv", "volcano", "--base-url",
            server.base_url, "--model", "fake-model", "--dry-run", *SMALL,
            "-o", tmp_path / "out",
        )  # fmt: skip
        assert server.requests == []
    assert code == 0, err
    assert "Labelling would send" in err and "dry run: nothing was sent" in err
    assert not (tmp_path / "out").exists()


def test_search_with_an_llm_keeps_the_latents_it_confirms(tmp_path, capsys):
    lines = diary(40, planted_share=0.5, seed=7) + diary(40, planted_share=0, seed=8)
    pd.DataFrame({"text": lines}).to_csv(tmp_path / "d.csv", index=False)
    with FakeOpenAIServer(chat=describe_by_word) as server:
        code, stdout, err = run(
            capsys, "search", tmp_path / "d.csv", "a volcano", "--base-url",
            server.base_url, "--model", "fake-model", "--n-latents", "8", "--k", "2",
            "--n-fidelity", "4", "--n-query-latents", "2", "--quiet",
            "-o", tmp_path / "out", "--cache-dir", tmp_path / "cache",
        )  # fmt: skip
        n_requests = len(server.requests)
    assert code == 0, err
    matched = pd.read_csv(tmp_path / "out" / "matched_latents.csv")
    # The LLM said yes to these latents' labels (their last word is "volcano").
    assert len(matched) >= 1 and (matched["llm_relevance"] == 1.0).all()
    assert matched["label"].str.lower().str.contains("volcano").all()
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    assert len(results) > 0 and results["text"].str.contains("Volcano").all()
    payload = json.loads((tmp_path / "out" / "results.json").read_text())
    assert payload["usage"]["calls"] == n_requests


# ------------------------------------------------------------- correlations
def test_correlations_end_to_end(data, capsys):
    out = data / "corr_out"
    code, stdout, err = run(
        capsys, "correlations", data / "both.csv", "--min-count", "5", *SMALL,
        "-o", out,
    )  # fmt: skip
    assert code == 0, err
    assert "both.csv': 1 of 401 rows have no text in 'text' and are left out." in err
    assert files(out) == [
        "correlations.csv",
        "correlations.json",
        "latents.csv",
        "report.html",
    ]
    table = pd.read_csv(out / "correlations.csv")
    # Labels are compared (label_similarity) to leave out synonyms.
    assert list(table.columns) == [*CORRELATION_COLUMNS, "examples"]
    assert len(table) > 0
    assert (table["count_ab"] >= 5).all() and table["significant"].all()
    assert not table["redundant"].any()
    assert (np.diff(table["npmi"]) <= 1e-12).all()  # highest NPMI first
    texts = set(pd.read_csv(data / "both.csv")["text"].dropna())
    examples = json.loads(table.loc[0, "examples"])
    assert 1 <= len(examples) <= 3 and set(examples) <= texts
    payload = json.loads((out / "correlations.json").read_text())
    assert payload["totals"]["n_documents"] == 400
    assert payload["totals"]["cross_field"] is False
    assert stdout.startswith(f"{len(table)} pairs of latents fire together")


# ------------------------------------------------------------------ cluster
def test_cluster_gives_every_row_a_cluster(data, capsys):
    out = data / "cluster_out"
    with pytest.warns(UserWarning, match=r"formed 1 cluster\(s\), not n_clusters=2"):
        code, stdout, err = run(
            capsys, "cluster", data / "both.csv", "--axis", "volcano eruption",
            "--n-axis-latents", "1", "--n-clusters", "2", "--id-column", "doc_id",
            *SMALL, "-o", out,
        )  # fmt: skip
    assert code == 0, err
    assert "(they are in cluster -1)" in err
    assert files(out) == [
        "assignments.csv",
        "clusters.csv",
        "clusters.json",
        "latents.csv",
        "report.html",
    ]
    rows = pd.read_csv(out / "assignments.csv", keep_default_na=False)
    source = pd.read_csv(data / "both.csv", keep_default_na=False)
    assert list(rows.columns) == ["row", "doc_id", "text", "cluster", "axis_latents"]
    assert rows["row"].tolist() == list(range(401))
    assert rows["doc_id"].tolist() == source["doc_id"].tolist()
    assert rows["text"].tolist() == source["text"].tolist()
    assert rows.loc[400, "cluster"] == -1  # the row without text
    # One axis latent: cluster 0 is where it fires, -1 the rest.
    assert sorted(rows["cluster"].unique()) == [-1, 0]
    volcano = rows["text"].str.contains("Volcano")
    in_zero = rows["cluster"] == 0
    assert volcano[in_zero].mean() >= 0.9 and in_zero[volcano].mean() >= 0.5
    clusters = pd.read_csv(out / "clusters.csv")
    assert list(clusters["cluster"]) == [0, -1]
    assert clusters["size"].tolist() == [in_zero.sum(), 401 - in_zero.sum()]
    assert clusters.loc[1, "description"].endswith("; 1 rows have no text")
    assert clusters["share"].sum() == pytest.approx(1.0)
    payload = json.loads((out / "clusters.json").read_text())
    assert len(payload["axis_latents"]) == 1
    assert "eruption" in payload["axis_latents"][0]["label"]


# ------------------------------------------------------------------- search
def test_search_by_latents_and_dense(data, capsys):
    out = data / "search_out"
    code, stdout, err = run(
        capsys, "search", data / "both.csv", "volcano eruption", "--top", "5",
        "--n-query-latents", "1", "--id-column", "doc_id", *SMALL, "-o", out,
    )  # fmt: skip
    assert code == 0, err
    assert (
        "--k 2 sets the autoencoder's active latents per text, as in every "
        "command; --top 5 sets how many rows are returned." in err
    )
    assert files(out) == [
        "latents.csv",
        "matched_latents.csv",
        "report.html",
        "results.csv",
        "results.json",
    ]
    results = pd.read_csv(out / "results.csv")
    assert list(results.columns) == [
        "rank", "row", "doc_id", "text", "score", "latents", "contributions",
    ]  # fmt: skip
    assert results["rank"].tolist() == [1, 2, 3, 4, 5]
    assert results["text"].str.contains("Volcano").all()
    source = pd.read_csv(data / "both.csv")
    # Rows and ids join back to the input.
    assert source.loc[results["row"], "text"].tolist() == results["text"].tolist()
    assert source.loc[results["row"], "doc_id"].tolist() == results["doc_id"].tolist()
    matched = pd.read_csv(out / "matched_latents.csv")
    assert len(matched) == 1 and "eruption" in matched.loc[0, "label"]
    assert all(
        json.loads(v) == [int(matched.loc[0, "latent"])] for v in results["latents"]
    )
    payload = json.loads((out / "results.json").read_text())
    assert payload["query"] == "volcano eruption"
    assert payload["totals"]["n_rows"] == 400

    code, stdout, err = run(
        capsys, "search", data / "both.csv", "volcano eruption", "--method", "dense",
        "--top", "5", *SMALL, "-o", out,
    )  # fmt: skip
    assert code == 0, err
    assert files(out) == ["report.html", "results.csv", "results.json"]
    dense = pd.read_csv(out / "results.csv")
    assert list(dense.columns) == [
        "rank", "row", "text", "score", "latents", "contributions",
    ]  # fmt: skip
    assert dense["text"].str.contains("Volcano").all()
    assert (np.diff(dense["score"]) <= 0).all()


# ------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "argv, pattern",
    [
        (
            ["diff", "{a}", "{missing}"],
            r"'.*missing\.csv' does not exist",
        ),
        (
            ["diff", "{a}", "{b}", "--text-column", "body"],
            r"--text-column 'body' is not a column of '.*a\.csv'; its columns are "
            r"\['text'\]\. Give --text-column with one of them\.",
        ),
        (
            ["search", "{both}", "volcano", "--id-column", "key"],
            r"--id-column 'key' is not a column of '.*both\.csv'; its columns are "
            r"\['doc_id', 'text', 'reply'\]",
        ),
        (
            [
                "correlations",
                "{both}",
                "--text-column",
                "doc_id",
                "--other-column",
                "nothing",
            ],
            r"--other-column 'nothing' is not a column of",
        ),
        (
            ["cluster", "{tiny}"],
            r"'.*tiny\.csv' has 3 rows with a text; at least 10 are needed",
        ),
    ],
)
def test_bad_input_is_one_clear_line(data, tmp_path, capsys, argv, pattern):
    pd.DataFrame({"text": ["a", "b", "c"]}).to_csv(tmp_path / "tiny.csv", index=False)
    names = {
        "a": data / "a.csv",
        "b": data / "b.csv",
        "both": data / "both.csv",
        "missing": tmp_path / "missing.csv",
        "tiny": tmp_path / "tiny.csv",
    }
    argv = [a.format(**names) for a in argv]
    code, stdout, err = run(capsys, *argv, *SMALL, "-o", tmp_path / "out")
    assert_one_line_error(code, err, pattern)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "argv, what",
    [
        (["cluster", "--axis", "tone"], "--axis 'tone'"),
        (["search", "a price"], "the query"),
    ],
)
def test_nothing_labelled_leaves_nothing_to_match(tmp_path, capsys, argv, what):
    """Texts that differ only by a number: no term labels any latent."""
    path = tmp_path / "bland.csv"
    pd.DataFrame({"text": [f"review number {i}" for i in range(60)]}).to_csv(
        path, index=False
    )
    command, *rest = argv
    code, _, err = run(
        capsys, command, path, *rest, "--n-latents", "8", "--k", "2", "--quiet",
        "-o", tmp_path / "out",
    )  # fmt: skip
    assert_one_line_error(
        code,
        err,
        rf"no latent got a label, so {re.escape(what)} has nothing to be matched "
        r"to: .* Give a lower --min-term-score \(e\.g\. 2\), more rows, or an LLM",
    )
    assert not (tmp_path / "out").exists()


def test_output_folder_with_other_files_is_refused(data, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, _, err = run(capsys, "correlations", data / "both.csv", *SMALL, "-o", out)
    assert_one_line_error(
        code, err, r"--output '.*out' holds files that are not outputs of "
        r"sklearn-hypothesaes \(notes\.txt\)"
    )  # fmt: skip
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["diff", "a", "b", "--n-latents", "4", "--k", "8"],
            "--k 8 is larger than --n-latents 4",
        ),
        (
            ["diff", "a", "b", "--summarize", "--offline"],
            "--summarize asks an LLM to write the differences in words; give --model "
            "or --base-url",
        ),
        (
            ["diff", "a", "b", "--names", "x", "x"],
            "--names 'x' 'x': give two different",
        ),
        (
            ["cluster", "d", "--latents", "3,99", "--n-latents", "16"],
            "--latents 99: latents are numbered 0 to 15 (--n-latents 16)",
        ),
        (["cluster", "d", "--latents", "3,x"], "expected latent numbers separated by"),
        (["search", "d", "q", "--method", "bm25"], "invalid choice: 'bm25'"),
        (["search", "d", " "], "the query is empty; give a property such as"),
        (["correlations", "d", "--dry-run", "--offline"], "--dry-run estimates what"),
    ],
)
def test_bad_options_exit_2(capsys, monkeypatch, argv, message):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(SystemExit) as exit:
        main(argv)
    assert exit.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert message in err, err


def test_interrupt_keeps_previous_outputs(data, tmp_path, capsys, monkeypatch):
    from sklearn_hypothesaes.app import _toolkit_runs

    out = tmp_path / "out"
    out.mkdir()
    (out / "report.html").write_text("old")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(_toolkit_runs, "fit_embedder", interrupted)
    code, _, err = run(capsys, "cluster", data / "both.csv", *SMALL, "-o", out)
    assert code == 130
    assert "interrupted; the previous outputs are as they were." in err
    assert files(out) == ["report.html"] and (out / "report.html").read_text() == "old"


def test_help_lists_the_subcommands_and_other_arguments_reach_the_main_cli(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["diff", "--help"])
    assert exit.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: sklearn-hypothesaes diff [-h]")
    assert "--summarize" in text and "--names NAME_A NAME_B" in text
    with pytest.raises(SystemExit) as exit:
        main(["--help"])
    assert exit.value.code == 0
    assert "--target-column" in capsys.readouterr().out


def test_max_tokens_none_sends_none(capsys):
    from sklearn_hypothesaes.app._toolkit_cli import parse_toolkit_args

    args = parse_toolkit_args(["search", "d.csv", "q", "--max-tokens", "none"])
    assert args.max_tokens is None
    assert parse_toolkit_args(["search", "d.csv", "q"]).max_tokens == 512
    with pytest.raises(SystemExit) as exit:
        parse_toolkit_args(["search", "d.csv", "q", "--max-tokens", "0"])
    assert exit.value.code == 2
    assert (
        "argument --max-tokens: must be a positive integer, or none to send no "
        "max_tokens; got '0'" in capsys.readouterr().err
    )
