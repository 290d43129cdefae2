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
from fake_openai import concept_judge, last_user_message

from sklearn_hypothesaes import SparseAutoencoder
from sklearn_hypothesaes.app._cli import main, read_table

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
    assert "350 training and 150 held-out texts, task classification, offline" in err
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
    assert annotations[:, happiest].tolist() == [1.0, 0.0]
    report = (out / "report.html").read_text()
    for hypothesis in table["hypothesis"]:
        assert hypothesis.replace('"', "&#34;") in report
    assert not list(out.glob("*.partial"))

    # Rerun: embeddings come from the cache and the SAE fit from joblib.Memory.
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
        fake_server.base_url,
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
    table = pd.read_csv(out / "hypotheses.csv")
    assert len(table) == 0
    assert {"hypothesis", "coef", "pvalue_corrected", "fidelity"} <= set(table)
    payload = json.loads((out / "hypotheses.json").read_text())
    assert payload["hypotheses"] == [] and payload["metrics"]["n_hypotheses"] == 0
    assert payload["metrics"]["score"] == 0.5  # the constant model's ROC AUC
    report = (out / "report.html").read_text()
    assert 'id="no-hypotheses"' in report and "min_term_score" in report
    assert joblib.load(out / "pipeline.joblib")[-1].min_term_score == "auto"

    # The advice works: a lower bound lets the generator use weaker terms.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code, _, err = run_cli(
            capsys, path, *SMALL, "--min-term-score", "0.5", "-o", out
        )
    assert code == 0, err
    assert joblib.load(out / "pipeline.joblib")[-1].min_term_score == 0.5


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
