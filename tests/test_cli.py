"""Command line: bad input, outputs, reruns from caches, interrupts, LLM mode."""

import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings

import joblib
import numpy as np
import pandas as pd
import pytest
import sklearn
from fake_openai import FakeOpenAIServer, concept_judge, last_user_message

from sklearn_hypothesaes import SparseAutoencoder
from sklearn_hypothesaes.app._cli import build_parser, main
from sklearn_hypothesaes.app._cli_common import read_table

SMALL = ["--n-latents", "16", "--k", "2", "--n-hypotheses", "4", "--quiet"]


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, pattern):
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("sklearn-hypothesaes: error: ")
    assert re.search(pattern, lines[0]), lines[0]
    assert "Traceback" not in err


TOPICS = {
    "dog": ["my dog", "the puppy", "our dog", "a dog"],
    "rain": ["the rain", "heavy rain", "a rainstorm", "the rain"],
    "coffee": ["my coffee", "the espresso", "coffee", "a latte"],
    "train": ["the train", "my train", "a late train", "the subway train"],
}
VERBS = [
    "made my morning",
    "was on my mind all day",
    "ruined the afternoon",
    "showed up again",
    "was the talk of the office",
    "kept me busy",
]


@pytest.fixture(scope="module")
def planted_csv(tmp_path_factory):
    """500 diary lines; the author is happy on 95% of dog days, 5% of rainy
    ones and 50% of the rest."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(500):
        topic = rng.choice(list(TOPICS))
        text = (
            f"{rng.choice(TOPICS[topic]).capitalize()} {rng.choice(VERBS)} on day {i}."
        )
        p = {"dog": 0.95, "rain": 0.05}.get(topic, 0.5)
        rows.append((text, int(rng.random() < p)))
    path = tmp_path_factory.mktemp("data") / "diary.csv"
    pd.DataFrame(rows, columns=["entry", "happy"]).to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    "content, argv, pattern",
    [
        (None, [], r"'.*missing\.csv' does not exist"),
        (b"", [], r"is empty"),
        (b"text,target\n", [], r"is empty|has no rows"),
        (b"text,target\na,1\nb,1\nc,1\n", [], r"'target' has 1 distinct value \(1\)"),
        (b"body,target\na,1\nb,0\n", [], r"--text-column 'text' is not a column.*body"),
        (b"text,y\na,1\nb,0\n", [], r"--target-column 'target' is not a column"),
        (b"PAR1\x00\x01garbage", ["parquet"], r"cannot read .* as PARQUET"),
        (b"\x00\xff\xfe\x00binary", ["jsonl"], r"cannot read .* as JSONL"),
        (b"text,target\na,x\nb,y\n", ["regression"], r"needs a numeric"),
        (b"text,target\na,1\nb,2\nc,1\n", [], r"class 2 has only 1 row"),
        (b"a;b", ["xlsx"], r"cannot tell the format"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, capsys, content, argv, pattern):
    suffix = argv[0] if argv and argv[0] not in ("regression",) else "csv"
    path = tmp_path / ("missing.csv" if content is None else f"data.{suffix}")
    if content is not None:
        path.write_bytes(content)
    extra = ["--task", "regression"] if "regression" in argv else []
    code, out, err = run_cli(capsys, path, *extra, "-o", tmp_path / "out")
    assert_one_line_error(code, err, pattern)
    assert out == ""
    assert not (tmp_path / "out").exists()


def test_no_input_and_bad_options(capsys):
    code, _, err = run_cli(capsys)
    assert_one_line_error(code, err, "give an input file, or --demo")
    with pytest.raises(SystemExit) as exc:
        main(["x.csv", "--holdout-fraction", "1.5"])
    assert exc.value.code == 2
    assert "strictly between 0 and 1; got '1.5'" in capsys.readouterr().err


def test_offline_run_writes_outputs_and_rerun_uses_caches(
    tmp_path, capsys, planted_csv, monkeypatch
):
    out = tmp_path / "out"
    argv = [planted_csv, "--text-column", "entry", "--target-column", "happy"]
    argv += [*SMALL, "-o", out, "--cache-dir", tmp_path / "cache", "--seed", "1"]
    code, stdout, err = run_cli(capsys, *argv)
    assert code == 0, err
    assert "350 training and 150 held-out texts, task binary, offline" in err
    assert re.search(r"\d+ hypotheses, \d+ significant on 150 held-out", stdout)

    table = pd.read_csv(out / "hypotheses.csv")
    payload = json.loads((out / "hypotheses.json").read_text())
    assert len(table) == len(payload["hypotheses"]) >= 1
    for column in ["latent", "hypothesis", "coef", "pvalue_corrected", "fidelity"]:
        assert column in table
    assert table["terms"].str.len().gt(0).all()  # offline: the matched terms
    # The planted effect, on held-out texts: dog days are happy days. Judged by
    # each hypothesis's own Welch test: near-duplicate hypotheses (two latents
    # for dogs) can make the joint Logit unidentifiable, which it then reports.
    happiest = table["separation"].idxmax()
    assert "dog" in table.loc[happiest, "hypothesis"]
    assert table.loc[happiest, "separation"] > 0.3
    assert table.loc[happiest, "separation_pvalue"] < 1e-6

    pipeline = joblib.load(out / "pipeline.joblib")
    new = ["My dog slept all day.", "Coffee again."]
    with sklearn.config_context(enable_metadata_routing=True):
        annotations = pipeline.transform(new, texts=new)
    assert annotations.shape == (2, len(table))
    # The CSV is ranked by effect; transform's columns are named.
    column = list(pipeline[-1].get_feature_names_out()).index(
        table.loc[happiest, "hypothesis"]
    )
    assert annotations[:, column].tolist() == [1.0, 0.0]
    report = (out / "report.html").read_text()
    for hypothesis in table["hypothesis"]:
        assert hypothesis.replace('"', "&#34;") in report
    assert sorted(p.name for p in out.iterdir()) == [
        "hypotheses.csv",
        "hypotheses.json",
        "pipeline.joblib",
        "report.html",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "out"]
    # Nothing in the cache is a pickle (anyone who can write there could
    # otherwise run code as the user).
    cached = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert any("fitted_sae" in p.parts for p in cached)
    for path in cached:
        assert not path.read_bytes().startswith(b"\x80"), path

    # Rerun: embeddings come from the cache and the SAE fit from the array cache.
    fits = []
    original = SparseAutoencoder.fit
    monkeypatch.setattr(
        SparseAutoencoder,
        "fit",
        lambda self, *a, **k: fits.append(1) or original(self, *a, **k),
    )
    code, stdout2, _ = run_cli(capsys, *argv)
    assert code == 0 and fits == []
    again = pd.read_csv(out / "hypotheses.csv")
    pd.testing.assert_frame_equal(again, table)

    def untimed(text):
        return [line for line in text.splitlines() if not line.startswith("Done in")]

    assert untimed(stdout2) == untimed(stdout)


def test_interrupt_is_clean(tmp_path, capsys, planted_csv, monkeypatch):
    import sklearn_hypothesaes.app._method as method

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(method, "run_method", interrupted)
    argv = [planted_csv, "--text-column", "entry", "--target-column", "happy"]
    code, _, err = run_cli(capsys, *argv, "-o", tmp_path / "out")
    assert code == 130
    assert err.strip().splitlines()[-1].startswith("sklearn-hypothesaes: interrupted")
    assert "Traceback" not in err


def test_sigint_in_a_real_process_then_resume(tmp_path, planted_csv):
    """Ctrl-C during the run: exit 130, one message; the rerun finishes."""
    env = {**os.environ, "SKLEARN_HYPOTHESAES_CACHE_DIR": str(tmp_path / "cache")}
    argv = [sys.executable, "-m", "sklearn_hypothesaes", str(planted_csv)]
    argv += ["--text-column", "entry", "--target-column", "happy", *SMALL]
    argv += ["-o", str(tmp_path / "out")]
    proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
    # The first note is printed once the data are read, before the slow steps.
    first = proc.stderr.readline()
    assert "training and" in first
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    err = proc.stderr.read()
    assert proc.wait(timeout=120) in (0, 130)
    if proc.returncode == 130:  # finished before the signal otherwise
        assert "interrupted" in err and "Traceback" not in err
        assert not (tmp_path / "out" / "report.html").exists()
    # No half-written output folder left behind, hidden or not.
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "report.html").exists()


def llm(body):
    """Interprets every latent as the keyword shared by most shown texts."""
    prompt = last_user_message(body)
    if "Texts where it fires:" not in prompt:
        return concept_judge(body)
    fires = prompt.split("Texts where it fires:", 1)[1].lower()
    counts = {w: fires.count(w) for w in ("funny", "boring", "actors", "music")}
    return f"Mentions {max(counts, key=counts.get)}."


def test_llm_mode_through_an_endpoint(tmp_path, capsys, fake_server, monkeypatch):
    fake_server.chat = llm
    host = fake_server.base_url.split("://", 1)[1]
    base_url = f"http://user:s3cret@{host}"
    rng = np.random.default_rng(0)
    words = np.array(["funny", "boring", "actors", "music"])
    picks = rng.integers(0, 4, size=300)
    texts = [f"The film is {w}, note {i}." for i, w in enumerate(words[picks])]
    y = (picks == 0) * 1.0 + (picks == 1) * -1.0 + rng.normal(0, 0.3, size=300)
    path = tmp_path / "data.jsonl"
    pd.DataFrame({"text": texts, "target": y}).to_json(
        path, orient="records", lines=True
    )
    monkeypatch.setenv("TEST_KEY", "sk-test")
    code, stdout, err = run_cli(
        capsys,
        path,
        "--base-url",
        base_url,
        "--interpreter-model",
        "fake-model",
        "--api-key-env",
        "TEST_KEY",
        "--n-latents",
        "16",
        "--k",
        "2",
        "--n-hypotheses",
        "4",
        "--quiet",
        "-o",
        tmp_path / "out",
        "--cache-dir",
        tmp_path / "cache",
    )
    assert code == 0, err
    assert "task regression, LLM hypotheses" in err
    payload = json.loads((tmp_path / "out" / "hypotheses.json").read_text())
    hypotheses = [h["hypothesis"] for h in payload["hypotheses"]]
    assert hypotheses and set(hypotheses) <= {
        f"mentions {w}" for w in ["funny", "boring", "actors", "music"]
    }
    usage = payload["usage"]
    assert usage["calls"] == len(fake_server.requests) > 0
    assert "r2" in payload["metrics"]
    for name in ("hypotheses.json", "report.html"):
        text = (tmp_path / "out" / name).read_text()
        assert "s3cret" not in text and "user:***@" in text, name


def test_no_hypothesis_found_still_writes_outputs(tmp_path, capsys):
    """Texts that differ only by a number: no term describes any latent."""
    rng = np.random.default_rng(0)
    path = tmp_path / "bland.csv"
    frame = pd.DataFrame({"text": [f"review number {i}" for i in range(80)]})
    frame.assign(target=rng.integers(0, 2, 80)).to_csv(path, index=False)
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match="found no hypothesis"):
        code, stdout, err = run_cli(capsys, path, *SMALL, "-o", out)
    assert code == 0, err
    assert stdout.startswith("0 hypotheses, 0 significant on 24 held-out texts; AUC")
    assert "No hypothesis was found" in stdout and "--min-term-score" in stdout
    # The target is random: the signal check says so, on the command line,
    # in the JSON and in the report.
    assert (
        "\nWarning: the embeddings carry no detectable signal about the target: a "
        "logistic-regression probe (C=" in stdout
    )
    table = pd.read_csv(out / "hypotheses.csv")
    assert len(table) == 0
    assert {"hypothesis", "coef", "pvalue_corrected", "fidelity"} <= set(table)
    payload = json.loads((out / "hypotheses.json").read_text())
    assert payload["hypotheses"] == [] and payload["metrics"]["n_hypotheses"] == 0
    assert payload["metrics"]["score"] == 0.5  # the constant model's ROC AUC
    assert payload["metrics"]["embedding_signal"] is False
    assert payload["metrics"]["embedding_pvalue"] >= 0.05
    report = (out / "report.html").read_text()
    assert 'id="no-hypotheses"' in report and "--min-term-score" in report
    assert 'id="no-signal"' in report
    assert joblib.load(out / "pipeline.joblib")[-1].describer.min_score == "auto"

    # The advice works: a lower bound lets the generator use weaker terms.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code, _, err = run_cli(
            capsys, path, *SMALL, "--min-term-score", "0.5", "-o", out
        )
    assert code == 0, err
    assert joblib.load(out / "pipeline.joblib")[-1].describer.min_score == 0.5


@pytest.mark.parametrize("suffix", ["parquet", "jsonl", "csv.gz", "tsv"])
def test_reads_each_format(tmp_path, suffix):
    frame = pd.DataFrame(
        {"text": ["a dog", "rain again", "café ☕"], "target": [1, 0, 1]}
    )
    path = tmp_path / f"data.{suffix}"
    if suffix == "parquet":
        frame.to_parquet(path)
    elif suffix == "jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        frame.to_csv(path, index=False, sep="\t" if suffix == "tsv" else ",")
    pd.testing.assert_frame_equal(read_table(path)[["text", "target"]], frame)


# ------------------------------------------------------------- options, checks
def test_help_shows_every_default(capsys):
    from sklearn_hypothesaes.app._cli import build_parser

    with pytest.raises(SystemExit):
        main(["--help"])
    page = " ".join(capsys.readouterr().out.split())
    parser = build_parser()
    formatter = parser._get_formatter()
    for action in parser._actions:
        if action.option_strings and action.nargs != 0:
            assert "default" in formatter._get_help_string(action), action.dest
    for shown in [
        "(default: text)",
        "(default: 0.3)",
        "(default: 256)",
        "(default: 8)",
        "(default: 20)",
        "(default: all-MiniLM-L6-v2)",
        "(default: utf-8)",
        "(default: auto)",
        "(default: hypothesaes_output)",
        "(default: all rows)",
    ]:
        assert shown in page, shown


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--n-latents", "16", "--k", "32"],
            "--k 32 is larger than --n-latents 16; --k must be at most "
            "--n-latents. Lower --k or raise --n-latents.",
        ),
        (
            ["--n-latents", "16", "--n-hypotheses", "20"],
            "--n-hypotheses 20 is larger than --n-latents 16; --n-hypotheses "
            "must be at most --n-latents. Lower --n-hypotheses or raise "
            "--n-latents.",
        ),
        (
            ["--no-cache", "--cache-dir", "c"],
            "--no-cache and --cache-dir c contradict each other",
        ),
        (["--task", "classification"], "invalid choice: 'classification'"),
        (["--encoding", "klingon"], "unknown encoding 'klingon'"),
        (
            ["--extra-body", "[1]"],
            "argument --extra-body: expected a JSON object ({...}); got '[1]', a list",
        ),
        (
            ["--extra-body", "{thinking: off}"],
            "argument --extra-body: expected a JSON object such as "
            "'{\"reasoning_effort\": \"low\"}'; got '{thinking: off}', which is "
            "not JSON (Expecting property name enclosed in double quotes)",
        ),
    ],
)
def test_contradictory_options_exit_2(capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        main(["data.csv", *argv])
    assert exc.value.code == 2
    assert message in " ".join(capsys.readouterr().err.split())


def test_demo_and_an_input_file_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["data.csv", "--demo"])
    assert exc.value.code == 2
    assert "got an input file too (data.csv)" in capsys.readouterr().err


@pytest.fixture
def no_run(monkeypatch):
    """The method must not start: the checks come first."""
    import sklearn_hypothesaes.app._method as method

    def fail(*args, **kwargs):
        raise AssertionError("run_method was called")

    monkeypatch.setattr(method, "run_method", fail)


def test_output_that_is_a_file_is_refused_first(tmp_path, capsys, no_run):
    (tmp_path / "out").write_text("mine")
    # The input does not exist either: the output is checked before reading it.
    code, _, err = run_cli(capsys, tmp_path / "none.csv", "-o", tmp_path / "out")
    assert_one_line_error(
        code,
        err,
        re.escape(
            f"--output '{tmp_path / 'out'}' is a file; give a folder (new, or "
            "written by an earlier run)."
        ),
    )
    (tmp_path / "file").write_text("x")
    code, _, err = run_cli(capsys, "x.csv", "-o", tmp_path / "file" / "out")
    assert_one_line_error(
        code,
        err,
        re.escape(f"--output '{tmp_path / 'file' / 'out'}' cannot be written: "),
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "out"]


def test_output_with_other_files_is_refused(tmp_path, capsys, no_run):
    out = tmp_path / "results"
    out.mkdir()
    (out / "report.html").write_text("old")
    (out / "notes.txt").write_text("mine")
    code, _, err = run_cli(capsys, "x.csv", "-o", out)
    assert_one_line_error(
        code,
        err,
        re.escape(
            f"--output '{out}' holds files that are not outputs of "
            "sklearn-hypothesaes (notes.txt); each run replaces the folder's "
            "content, so give a new folder or one written by an earlier run."
        ),
    )
    assert (out / "notes.txt").read_text() == "mine"


def test_current_folder_is_refused_as_output(tmp_path, capsys, monkeypatch, no_run):
    monkeypatch.chdir(tmp_path)
    for output in (".", ".."):
        code, _, err = run_cli(capsys, "x.csv", "-o", output)
        assert_one_line_error(
            code,
            err,
            re.escape(f"--output '{output}' is the current folder or holds it;"),
        )
    assert list(tmp_path.iterdir()) == []


def test_unusable_cache_is_refused_first(tmp_path, capsys, planted_csv, no_run):
    cache = tmp_path / "cache"
    cache.write_text("a file, not a folder")
    code, _, err = run_cli(
        capsys, planted_csv, "--cache-dir", cache, "-o", tmp_path / "out"
    )
    assert_one_line_error(
        code,
        err,
        re.escape(f"--cache-dir '{cache}' cannot be created or written (")
        + r".*\. Give a writable --cache-dir, or run with --no-cache\.$",
    )
    cache.unlink()
    cache.mkdir()
    (cache / "embeddings.sqlite").write_bytes(b"not a database " * 40)
    code, _, err = run_cli(
        capsys, planted_csv, "--cache-dir", cache, "-o", tmp_path / "out"
    )
    assert_one_line_error(
        code,
        err,
        re.escape(
            f"The cache file '{cache / 'embeddings.sqlite'}' is not a readable "
            "SQLite database (file is not a database). It only holds cached "
            "results: delete it, or point cache_dir (--cache-dir on the command "
            "line) at another folder, or turn caching off with cache_dir=False "
            "(--no-cache)."
        ),
    )
    assert not (tmp_path / "out").exists()


def test_not_utf8_suggests_encoding(tmp_path, capsys):
    path = tmp_path / "latin.csv"
    frame = pd.DataFrame({"text": ["café crème", "naïve plot"], "target": [1, 0]})
    frame.to_csv(path, index=False, encoding="latin-1")
    code, _, err = run_cli(capsys, path, "-o", tmp_path / "out")
    assert_one_line_error(
        code,
        err,
        re.escape(
            f"cannot read '{path}' as CSV: it is not utf-8 text (invalid "
            "continuation byte). Give its encoding with --encoding, "
            "e.g. --encoding latin-1 or --encoding cp1252."
        ),
    )
    pd.testing.assert_frame_equal(read_table(path, encoding="latin-1"), frame)


# ------------------------------------------------------------------------ task
@pytest.mark.parametrize(
    "target, task, expected",
    [
        ([0, 1] * 12, "auto", "binary"),
        ([True, False] * 12, "auto", "binary"),
        (["a", "b", "c"] * 8, "auto", "multiclass"),
        ([1, 2, 3, 4, 5] * 5, "auto", "multiclass"),
        (list(range(12)) * 2, "auto", "regression"),  # 12 > 10 integer values
        (list(range(12)) * 2, "multiclass", "multiclass"),
        ([0.5, 1.5, 2.25] * 8, "auto", "regression"),
        ([1, 2, 3] * 8, "regression", "regression"),
    ],
)
def test_task_is_decided_as_the_api_decides(target, task, expected):
    from sklearn_hypothesaes.app._cli_data import prepare_data
    from sklearn_hypothesaes.utils._validation import resolve_task

    frame = pd.DataFrame({"text": [f"t{i}" for i in range(len(target))]})
    frame["target"] = target
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, y, resolved = prepare_data(frame, "text", "target", task)
        assert resolved == expected == resolve_task(target, task, caller="api")
    if expected == "regression":
        assert y.dtype == np.float64
    else:
        assert y.tolist() == target


def test_many_integer_values_are_a_regression_said_on_stderr(capsys):
    from sklearn_hypothesaes.app._cli_data import prepare_data

    frame = pd.DataFrame({"text": list("abcdefghijkl"), "votes": range(12)})
    assert prepare_data(frame, "text", "votes", "auto")[2] == "regression"
    err = capsys.readouterr().err
    assert "12 distinct values, more than 10" in err
    assert "Pass --task multiclass to treat them as classes." in err


def test_multiclass_split_is_stratified():
    from sklearn_hypothesaes.app._cli_data import split_data

    y = np.array([0] * 60 + [1] * 30 + [2] * 10)
    texts = np.array([f"t{i}" for i in range(100)], dtype=object)
    _, _, y_train, y_test = split_data(
        texts, y, "multiclass", holdout_fraction=0.3, max_rows=None, seed=0
    )
    assert np.bincount(y_test).tolist() == [18, 9, 3]
    assert np.bincount(y_train).tolist() == [42, 21, 7]


# --------------------------------------------------------------------- outputs
def fake_result(hypotheses, coef, settings=None):
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from sklearn_hypothesaes.app._method import MethodResult

    n = len(hypotheses)
    table = pd.DataFrame(
        {
            "latent": range(n),
            "hypothesis": hypotheses,
            "coef": coef,
            "significant": [True] * n,
        }
    )
    return MethodResult(
        pipeline=Pipeline([("scale", StandardScaler())]),
        hypotheses=table,
        metrics={"auc": 0.7, "n": 10},
        examples=[{"present": [f"yes {h}"], "absent": []} for h in hypotheses],
        sae=None,
        usage={},
        settings=settings or {},
    )


def test_outputs_are_ranked_like_the_report(tmp_path):
    from sklearn_hypothesaes.app._cli_run import write_outputs

    result = fake_result(["small", "none", "large", "medium"], [0.1, np.nan, -2, 1])
    out = tmp_path / "out"
    write_outputs(result, out, title="t")
    ranked = ["large", "medium", "small", "none"]
    assert pd.read_csv(out / "hypotheses.csv")["hypothesis"].tolist() == ranked
    payload = json.loads((out / "hypotheses.json").read_text())
    assert [h["hypothesis"] for h in payload["hypotheses"]] == ranked
    assert [e["present"] for e in payload["examples"]] == [[f"yes {h}"] for h in ranked]
    report = (out / "report.html").read_text()
    assert [report.index(f">{h}</a>") for h in ranked] == sorted(
        report.index(f">{h}</a>") for h in ranked
    )


@pytest.mark.parametrize("failure", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_outputs_are_all_or_nothing(tmp_path, monkeypatch, failure):
    import sklearn_hypothesaes.app._report as report
    from sklearn_hypothesaes.app._cli_run import write_outputs

    out = tmp_path / "out"
    write_outputs(fake_result(["old"], [1.0]), out, title="t")
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken(*args, **kwargs):
        raise failure

    monkeypatch.setattr(report, "render_report", broken)
    with pytest.raises(type(failure)):
        write_outputs(fake_result(["new"], [2.0]), out, title="t")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # nothing left behind

    monkeypatch.undo()
    write_outputs(fake_result(["new"], [2.0]), out, title="t")
    assert pd.read_csv(out / "hypotheses.csv")["hypothesis"].tolist() == ["new"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_credentials_in_urls_are_not_written(tmp_path):
    from sklearn_hypothesaes.app._cli_run import write_outputs

    settings = {
        "hypotheses": {
            "describer": "LLMDescriber(client=LLMClient(base_url="
            "'http://user:s3cret@llm.example.com/v1', model='m'))"
        },
        "embed": {"base_url": "https://proxy.example.com/v1?api-key=s3cret"},
    }
    out = tmp_path / "out"
    write_outputs(fake_result(["a"], [1.0], settings), out, title="t")
    for name in ("hypotheses.json", "report.html"):
        text = (out / name).read_text()
        assert "s3cret" not in text, name
        assert "user:***@llm.example.com" in text, name
        assert "api-key=***" in text, name


def test_no_cache_and_encoding(tmp_path, capsys, monkeypatch):
    """A cp1252 table, run with nothing cached anywhere."""
    cache = tmp_path / "default-cache"
    monkeypatch.setenv("SKLEARN_HYPOTHESAES_CACHE_DIR", str(cache))
    rng = np.random.default_rng(0)
    rows = [
        (f"{w} café n°{i}", int(w == "superbe") if rng.random() < 0.9 else 1)
        for i, w in enumerate(rng.choice(["superbe", "ennuyeux", "long"], 150))
    ]
    path = tmp_path / "avis.csv"
    pd.DataFrame(rows, columns=["text", "target"]).to_csv(
        path, index=False, encoding="cp1252"
    )
    out = tmp_path / "out"
    code, _, err = run_cli(
        capsys, path, *SMALL, "--encoding", "cp1252", "--no-cache", "-o", out
    )
    assert code == 0, err
    assert not cache.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["avis.csv", "out"]
    payload = json.loads((out / "hypotheses.json").read_text())
    assert payload["settings"]["command line"]["cache"] == "off"
    assert any("café" in t for e in payload["examples"] for t in e["present"])


def test_same_seed_same_outputs_with_stability(tmp_path, capsys, planted_csv):
    """Two runs from scratch with one --seed write identical hypotheses.csv,
    stability included; the signal check is on the summary."""
    argv = [planted_csv, "--text-column", "entry", "--target-column", "happy"]
    argv += [*SMALL, "--no-cache", "--seed", "3", "--stability-seeds", "3"]
    outputs = []
    for name in ("a", "b"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            code, stdout, err = run_cli(capsys, *argv, "-o", tmp_path / name)
        assert code == 0, err
        outputs.append(stdout)
    first = (tmp_path / "a" / "hypotheses.csv").read_bytes()
    assert first == (tmp_path / "b" / "hypotheses.csv").read_bytes()
    table = pd.read_csv(tmp_path / "a" / "hypotheses.csv")
    assert len(table) >= 1
    # Shares of the 2 other seeds (4 and 5).
    assert table["stability"].isin([0.0, 0.5, 1.0]).all()
    payload = json.loads((tmp_path / "a" / "hypotheses.json").read_text())
    assert payload["settings"]["stability"] == {
        "n_seeds": 3,
        "seeds": [4, 5],
        "threshold": 0.5,
    }
    assert payload["settings"]["command line"]["stability_seeds"] == 3
    assert [h["stability"] for h in payload["hypotheses"]] == table[
        "stability"
    ].tolist()
    report = (tmp_path / "a" / "report.html").read_text()
    assert "<th>stability</th>" in report and 'id="stability-note"' in report
    # The dog concept is planted: the probe finds signal, and the summary says
    # how much of it the hypotheses recover.
    metrics = payload["metrics"]
    assert metrics["embedding_signal"] is True and metrics["embedding_score"] > 0.7
    share = (metrics["score"] - 0.5) / (metrics["embedding_score"] - 0.5)
    assert metrics["signal_share"] == pytest.approx(share)
    assert (
        f"Signal check: {metrics['embedding_probe'].join(['a ', ' on the full'])} "
        f"embeddings scores a held-out AUC of {metrics['embedding_score']:.3g}; the "
        f"hypotheses score {metrics['score']:.3g}, so they recover {share:.0%} of "
        "the signal the embeddings carry." in outputs[0]
    )
    assert "Warning:" not in outputs[0]
    assert re.search(
        r"^  [* ] [+-]\d\.\d{3}  stability (0\.00|0\.50|1\.00)  ", outputs[0], re.M
    )


def test_signal_and_stability_options_reach_run_method(
    tmp_path, capsys, planted_csv, monkeypatch
):
    import sklearn_hypothesaes.app._method as method

    seen = {}

    def record(*args, **kwargs):
        seen.update(kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(method, "run_method", record)
    argv = [planted_csv, "--text-column", "entry", "--target-column", "happy"]
    code, _, _ = run_cli(capsys, *argv, "-o", tmp_path / "out")
    assert code == 130 and seen["check_signal"] is True and seen["n_seeds"] == 1
    argv += ["--no-signal-check", "--stability-seeds", "4"]
    code, _, _ = run_cli(capsys, *argv, "-o", tmp_path / "out")
    assert code == 130 and seen["check_signal"] is False and seen["n_seeds"] == 4
    with pytest.raises(SystemExit) as exc:
        main(["x.csv", "--stability-seeds", "0"])
    assert exc.value.code == 2
    assert "must be a positive integer; got '0'" in capsys.readouterr().err


@pytest.fixture(scope="module")
def pairs_csv(tmp_path_factory):
    """500 pairs of news lines; when exactly one line of a pair mentions a
    zebra, that line wins 90% of the time; otherwise a coin flip."""
    rng = np.random.default_rng(0)
    topics = ["the weather", "a football match", "the stock market", "a new phone"]
    verbs = ["was discussed", "made news", "surprised people", "got attention"]

    def line(i, zebra):
        text = f"{rng.choice(topics).capitalize()} {rng.choice(verbs)}"
        return text + (" with a zebra" if zebra else "") + f" on day {i}."

    rows = []
    for i in range(500):
        za, zb = rng.random() < 0.5, rng.random() < 0.5
        p = 0.9 if za and not zb else 0.1 if zb and not za else 0.5
        rows.append((line(2 * i, za), line(2 * i + 1, zb), int(rng.random() < p)))
    path = tmp_path_factory.mktemp("pairs") / "headlines.csv"
    pd.DataFrame(rows, columns=["headline_a", "headline_b", "a_wins"]).to_csv(
        path, index=False
    )
    return path


def test_pairs_of_texts_from_two_columns(tmp_path, capsys, pairs_csv):
    out = tmp_path / "out"
    argv = [pairs_csv, "--text-column", "headline_a", "--pair-column", "headline_b"]
    argv += ["--target-column", "a_wins", *SMALL, "-o", out, "--no-cache"]
    code, stdout, err = run_cli(capsys, *argv)
    assert code == 0, err
    assert "350 training and 150 held-out pairs of texts, task binary" in err
    assert re.search(r"\d+ hypotheses, 1 significant on 150 held-out pairs", stdout)
    table = pd.read_csv(out / "hypotheses.csv")
    best = table.loc[table["coef"].idxmax()]
    # The planted word leads the latent's terms (a tiny autoencoder may add a
    # chance term or two after it).
    assert best["hypothesis"].startswith('mentions "zebra"')
    assert best["significant"] and best["pvalue_corrected"] < 1e-4
    assert set(table["separation_test"]) == {"lr"}
    assert table["significant"].sum() == 1
    settings = json.loads((out / "hypotheses.json").read_text())["settings"]
    assert settings["command line"]["pair_column"] == "headline_b"
    assert settings["pairwise"] is True
    report = (out / "report.html").read_text()
    assert "held-out pairs" in report and "held-out texts" not in report
    assert "share of held-out pairs whose two texts differ" in report
    pipeline = joblib.load(out / "pipeline.joblib")
    new = np.array([["A zebra made news.", "The weather made news."]], dtype=object)
    with sklearn.config_context(enable_metadata_routing=True):
        differences = pipeline.transform(new, texts=new)
    zebra = table.sort_values("column")["hypothesis"].str.startswith('mentions "zebra"')
    np.testing.assert_array_equal(differences[0], zebra.to_numpy(dtype=float))


def test_pair_column_help_and_errors(tmp_path, capsys, pairs_csv):
    assert "--pair-column COLUMN" in " ".join(build_parser().format_help().split())
    code, _, err = run_cli(
        capsys, pairs_csv, "--text-column", "headline_a", "--pair-column", "other",
        "--target-column", "a_wins", "-o", tmp_path / "out",
    )  # fmt: skip
    assert_one_line_error(code, err, r"--pair-column 'other' is not a column")
    with pytest.raises(SystemExit) as exc:
        main([str(pairs_csv), "--pair-column", "text"])
    assert exc.value.code == 2
    assert "--pair-column 'text' is also the --text-column" in capsys.readouterr().err


def _llm_data(tmp_path, n=300):
    rng = np.random.default_rng(0)
    words = np.array(["funny", "boring", "actors", "music"])
    picks = rng.integers(0, 4, size=n)
    texts = [f"The film is {w}, note {i}." for i, w in enumerate(words[picks])]
    path = tmp_path / "data.csv"
    pd.DataFrame({"text": texts, "target": (picks <= 1).astype(int)}).to_csv(
        path, index=False
    )
    return path


def test_every_interpretation_refused_ends_with_cause_and_fix(tmp_path, capsys):
    """A model that refuses everything: before, the refusals became hypotheses
    and the run ended with "ValueError: zero-size array to reduction operation
    maximum"; now one line names the cause and the fix."""
    path = _llm_data(tmp_path)
    with FakeOpenAIServer(
        chat=lambda body: "I'm sorry, but I can't help with that."
    ) as srv:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            code, out, err = run_cli(
                capsys,
                path,
                "--base-url",
                srv.base_url,
                "--interpreter-model",
                "m",
                *SMALL,
                "-o",
                tmp_path / "out",
                "--no-cache",
            )
        n_requests = len(srv.requests)
    assert code == 1 and "Traceback" not in err and "zero-size" not in err
    note, error = err.strip().splitlines()
    assert "LLM hypotheses" in note
    assert error.startswith(
        "sklearn-hypothesaes: error: RuntimeError: The LLM gave no usable "
        "description for any latent: all 4 interpretation prompts ended without "
        "one (unusable answers: 12 refusal; requests: 12, failed: 4). No "
        "hypothesis can be made from them. To fix: the model refused: write "
        "what the texts are in instructions=..., or use another model."
    )
    assert n_requests == 12  # each prompt asked 3 times, no annotation asked
    assert not (tmp_path / "out").exists()


def test_preambles_and_protocol_options(tmp_path, capsys):
    """--concepts-per-request and --max-text-chars reach every request; an
    answer with a lead-in gives the property, not the lead-in."""

    def chat(body):
        prompt = last_user_message(body)
        if "Texts where it fires:" not in prompt:
            return concept_judge(body)
        return "Here is the property:\n\n" + llm(body)

    path = _llm_data(tmp_path)
    with FakeOpenAIServer(chat=chat) as srv:
        code, out, err = run_cli(
            capsys,
            path,
            "--base-url",
            srv.base_url,
            "--interpreter-model",
            "m",
            *SMALL,
            "-o",
            tmp_path / "out",
            "--no-cache",
            "--concepts-per-request",
            "3",
            "--max-text-chars",
            "12",
            "--max-tokens",
            "64",
            "--extra-body",
            '{"chat_template_kwargs": {"enable_thinking": false}}',
        )
        prompts = [last_user_message(r["body"]) for r in srv.requests]
        bodies = [r["body"] for r in srv.requests]
    assert all(b["max_tokens"] == 64 for b in bodies)
    assert all(b["chat_template_kwargs"] == {"enable_thinking": False} for b in bodies)
    assert code == 0, err
    payload = json.loads((tmp_path / "out" / "hypotheses.json").read_text())
    hypotheses = {h["hypothesis"] for h in payload["hypotheses"]}
    assert hypotheses and hypotheses <= {
        f"mentions {w}" for w in ["funny", "boring", "actors", "music"]
    }
    settings = payload["settings"]["command line"]
    assert (settings["concepts_per_request"], settings["max_text_chars"]) == (3, 12)
    shown = [p for p in prompts if "Texts where it fires:" in p]
    annotated = [p for p in prompts if p.startswith("For each numbered")]
    assert shown and annotated
    assert len(shown) + len(annotated) == len(prompts)  # no single-concept prompt
    # Every text, in examples and annotations alike, is cut at 12 characters.
    quoted = [t for p in prompts for t in re.findall(r'"""(.*?)"""', p, re.S)]
    assert quoted and all(t.endswith("The film is [...]") for t in quoted)
    listed = [len(re.findall(r"^\d+\. mentions", p, re.M)) for p in annotated]
    assert max(listed) == 3


def test_protocol_options_refused_offline(tmp_path, capsys):
    path = _llm_data(tmp_path, n=40)
    code, _, err = run_cli(
        capsys, path, *SMALL, "--concepts-per-request", "5", "-o", tmp_path / "o"
    )
    assert_one_line_error(
        code,
        err,
        r"--concepts-per-request 5 applies to LLM hypotheses, but this run is "
        r"offline; give --base-url or --interpreter-model, or leave it out\.",
    )


def test_llm_fixes_are_named_by_their_options(capsys, monkeypatch):
    """The library names LLMClient's parameters; the command line says which
    of its options set them."""
    import sklearn_hypothesaes.app._cli as cli

    def thinking_ran_out(args):
        raise RuntimeError(
            "To fix: raise max_tokens or turn thinking off with LLMClient("
            "extra_body={'chat_template_kwargs': {'enable_thinking': False}})."
        )

    monkeypatch.setattr(cli, "run", thinking_ran_out)
    code, _, err = run_cli(capsys, "data.csv")
    assert_one_line_error(
        code,
        err,
        r"'enable_thinking': False}}\)\. On the command line, --max-tokens sets "
        r"max_tokens and --extra-body sets extra_body\. \(run with --debug",
    )


def test_toolkit_commands_reach_the_toolkit_from_this_main_too(capsys):
    """``app._cli.main`` and the installed entry point dispatch alike."""
    with pytest.raises(SystemExit) as exc:
        main(["diff", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: sklearn-hypothesaes diff [-h]")
    assert "--summarize" in text and "--names NAME_A NAME_B" in text
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "--target-column" in text
    assert (
        "Toolkit analyses (sklearn-hypothesaes COMMAND --help): diff A B | "
        "correlations FILE | cluster FILE --axis AXIS | search FILE QUERY" in text
    )


def test_a_rejected_request_parameter_is_one_line_with_the_options_fix(
    tmp_path, capsys, monkeypatch
):
    """An endpoint that rejects max_tokens (as OpenAI's reasoning models do):
    the run stops with the server's words and the options that fix it, which
    then do."""
    rng = np.random.default_rng(0)
    words = np.array(["funny", "boring", "actors", "music"])
    picks = rng.integers(0, 4, size=120)
    texts = [f"The film is {w}, note {i}." for i, w in enumerate(words[picks])]
    path = tmp_path / "data.csv"
    pd.DataFrame({"text": texts, "target": (picks == 0).astype(int)}).to_csv(
        path, index=False
    )
    monkeypatch.setenv("TEST_KEY", "sk-test")
    with FakeOpenAIServer(chat=llm, reject_params=("max_tokens",)) as server:
        argv = [path, "--base-url", server.base_url, "--interpreter-model", "m"]
        argv += ["--api-key-env", "TEST_KEY", *SMALL, "--no-cache"]
        code, out, err = run_cli(capsys, *argv, "-o", tmp_path / "out")
        # The note of the data read, then the error in one line.
        assert code == 1 and "Traceback" not in err and "--debug" not in err
        note, error = err.strip().splitlines()
        assert note.endswith(
            "task binary, LLM hypotheses: m describes the latents and annotates "
            "the texts."
        )
        assert re.fullmatch(
            r"sklearn-hypothesaes: error: the LLM endpoint rejected 3 requests in "
            r"a row with HTTP 400: \"Unsupported parameter: 'max_tokens' is not "
            r"supported with this model\. Use 'max_completion_tokens' instead\.\"\. "
            r"The run was stopped rather than left to end with every answer "
            r"missing\. The server rejects 'max_tokens' \(OpenAI's reasoning models "
            r"take 'max_completion_tokens'\): give --max-tokens none --extra-body "
            r"'\{\"max_completion_tokens\": 4096\}'\.",
            error,
        ), error
        assert out == "" and not (tmp_path / "out").exists()
        fixed = ["--max-tokens", "none"]
        fixed += ["--extra-body", '{"max_completion_tokens": 64}']
        code, out, err = run_cli(capsys, *argv, *fixed, "-o", tmp_path / "out")
        assert code == 0, err
        sent = server.requests[-1]["body"]
        assert "max_tokens" not in sent and sent["max_completion_tokens"] == 64
    assert "hypotheses" in out and (tmp_path / "out" / "report.html").exists()


def test_answers_unusable_the_same_way_stop_with_the_fix_as_options(tmp_path, capsys):
    """A thinking model with --max-tokens 8: every interpretation is cut off
    mid-thought. Before, each of the 24 prompts was asked 3 times (72 requests)
    before the run ended; now the 20th distinct prompt stops it, and the fix is
    written as options."""
    path = _llm_data(tmp_path)
    with FakeOpenAIServer(chat=concept_judge, thinking="tags") as srv:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            code, out, err = run_cli(
                capsys, path, "--base-url", srv.base_url, "--interpreter-model", "m",
                "--n-latents", "32", "--k", "2", "--n-hypotheses", "24", "--quiet",
                "-o", tmp_path / "out", "--no-cache", "--max-tokens", "8",
            )  # fmt: skip
        n_requests = len(srv.requests)
    assert code == 1 and "Traceback" not in err
    error = err.strip().splitlines()[-1]
    assert error.startswith(
        "sklearn-hypothesaes: error: the first 20 LLM requests got no usable "
        "answer: all "
    )
    assert "were unusable for one reason, unclosed thinking (" in error
    assert (
        "turn thinking off with --extra-body "
        '\'{"chat_template_kwargs": {"enable_thinking": false}}\'' in error
    )
    assert error.endswith(
        "raise --max-tokens (now 8). No answer was cached (--no-cache)."
    )
    assert n_requests < 24 * 3
    assert not (tmp_path / "out").exists()
