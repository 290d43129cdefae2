"""Command line: which options turn LLM hypotheses on, and which model does what."""

import json

import numpy as np
import pandas as pd
import pytest
from fake_openai import FakeOpenAIServer, last_user_message
from test_cli import SMALL, llm

from sklearn_hypothesaes.app._cli import main, parse_args

ALONE = (
    "--annotator-model gpt-4o sets the model that annotates texts with an LLM's "
    "hypotheses, but no LLM describes the latents (no --interpreter-model, no "
    "--base-url or $OPENAI_BASE_URL), so the hypotheses would be offline ones, "
    "annotated by their words. Give --interpreter-model too (e.g. "
    "--interpreter-model gpt-4o for one model doing both), or leave "
    "--annotator-model out for offline hypotheses."
)


def test_annotator_model_alone_is_refused(tmp_path, capsys, monkeypatch):
    """Before, it turned LLM mode on with gpt-4o-mini describing the latents
    on OpenAI's API, which no option named."""
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        main(["data.csv", "--annotator-model", "gpt-4o", "-o", str(out)])
    assert exc.value.code == 2
    assert ALONE in " ".join(capsys.readouterr().err.split())
    assert not out.exists()


@pytest.mark.parametrize(
    "extra",
    [
        ["--interpreter-model", "gpt-4o-mini"],
        ["--base-url", "http://127.0.0.1:9/v1"],
        ["--offline"],
    ],
)
def test_annotator_model_with_an_llm_or_offline_is_taken(extra, monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    args = parse_args(["data.csv", "--annotator-model", "gpt-4o", *extra])
    assert args.annotator_model == "gpt-4o"


def test_annotator_model_with_the_endpoint_variable_is_taken(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    args = parse_args(["data.csv", "--annotator-model", "gpt-4o"])
    assert args.annotator_model == "gpt-4o"


def test_help_says_what_the_annotator_model_needs(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    page = " ".join(capsys.readouterr().out.split())
    assert (
        "--annotator-model ANNOTATOR_MODEL model that annotates texts with the "
        "LLM's hypotheses; it does not turn LLM hypotheses on: alone (no "
        "--interpreter-model, no endpoint) it is refused, since offline "
        "hypotheses are annotated by their words (default: the interpreter "
        "model)"
    ) in page


@pytest.mark.filterwarnings("ignore:HypothesisGenerator dropped")
def test_interpreter_describes_and_annotator_annotates(tmp_path, capsys):
    rng = np.random.default_rng(0)
    words = np.array(["funny", "boring", "actors", "music"])
    picks = rng.integers(0, 4, size=150)
    path = tmp_path / "data.csv"
    pd.DataFrame(
        {
            "text": [f"The film is {w}, note {i}." for i, w in enumerate(words[picks])],
            "target": (picks <= 1).astype(int),
        }
    ).to_csv(path, index=False)
    with FakeOpenAIServer(chat=llm) as srv:
        argv = [path, "--base-url", srv.base_url, *SMALL, "--no-cache"]
        argv += ["--concepts-per-request", "4", "--no-signal-check"]
        argv += ["--interpreter-model", "big", "--annotator-model", "small"]
        code = main([str(a) for a in [*argv, "-o", tmp_path / "out"]])
        requests = [r["body"] for r in srv.requests]
    _, err = capsys.readouterr()
    assert code == 0, err
    assert (
        "105 training and 45 held-out texts, task binary, LLM hypotheses: big "
        "describes the latents, small annotates the texts.\n"
    ) in err
    describe = [b for b in requests if "Texts where it fires:" in last_user_message(b)]
    annotate = [b for b in requests if b not in describe]
    assert describe and annotate
    assert {b["model"] for b in describe} == {"big"}
    assert {b["model"] for b in annotate} == {"small"}  # fidelity and holdout
    payload = json.loads((tmp_path / "out" / "hypotheses.json").read_text())
    assert payload["usage"]["calls"] == len(requests)
    hypotheses = {h["hypothesis"] for h in payload["hypotheses"]}
    assert hypotheses and hypotheses <= {f"mentions {w}" for w in words}


def test_demo_with_llm_options_is_refused(capsys):
    """Before, --demo ran offline and ignored them without a word."""
    with pytest.raises(SystemExit) as exc:
        parse_args(["--demo", "--interpreter-model", "gpt-4o", "--base-url", "x"])
    assert exc.value.code == 2
    assert (
        "--demo runs offline, so --interpreter-model gpt-4o and --base-url x "
        "would be ignored. Leave them out for the demo, or run the LLM method "
        "on a file of your own (see --help)."
    ) in " ".join(capsys.readouterr().err.split())
    with pytest.raises(SystemExit):
        parse_args(["--demo", "--annotator-model", "gpt-4o"])
    assert "--demo runs offline, so --annotator-model gpt-4o would be ignored" in (
        " ".join(capsys.readouterr().err.split())
    )
    assert parse_args(["--demo"]).demo
