"""The scripts in examples/ run; the LLM one against a loopback endpoint.

They share the session's temporary cache folder (conftest), so the texts the
examples have in common are embedded once.
"""

import collections
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fake_openai import FakeOpenAIServer, concept_judge, last_user_message

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name, **env):
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_quickstart_offline():
    out = run_example("quickstart_offline.py")
    auc, n_significant, n = re.search(
        r"held-out AUC (\S+); (\d+) of (\d+) hypotheses significant", out
    ).groups()
    assert 0.5 < float(auc) < 1 and int(n) >= 1
    assert Path(re.search(r"report: (\S+)", out).group(1)).is_file()


def test_downstream_features():
    out = run_example("downstream_features.py")
    aucs = dict(
        (name.split(" (")[0], float(auc))
        for auc, name in re.findall(r"held-out AUC (\S+)  (.+)", out)
    )
    assert set(aucs) == {"embedding", "SAE latents", "hypotheses"}
    # Known ordering: the dense embedding predicts best, a few words least.
    assert aucs["embedding"] > aucs["SAE latents"] > aucs["hypotheses"] > 0.5


def test_pipeline_memory():
    out = run_example("pipeline_memory.py")
    epochs = re.findall(r"SAE epochs (\d+)", out)
    # The second fit reuses the cached SAE: same fitted epochs, not refitted.
    assert len(epochs) == 2 and epochs[0] == epochs[1]


def test_pairwise_rotten_tomatoes():
    out = run_example(
        "pairwise_rotten_tomatoes.py",
        HYPOTHESAES_N_TRAIN="600",
        HYPOTHESAES_N_HOLDOUT="300",
    )
    assert "600 training and 300 held-out pairs" in out
    auc, n_significant, n = re.search(
        r"held-out AUC (\S+); (\d+) of (\d+) hypotheses significant", out
    ).groups()
    # Which of two snippets is the fresh one: the words carry some signal.
    assert 0.55 < float(auc) < 1 and int(n) >= 5


def interpreter(body):
    """Names each latent by the most frequent long word of its firing texts."""
    prompt = last_user_message(body)
    if "Texts where it fires:" not in prompt:
        return concept_judge(body)
    fires = prompt.split("Texts where it fires:", 1)[1]
    fires = re.split(r"\n\s*Texts where it does not fire", fires)[0].lower()
    words = collections.Counter(w for w in re.findall(r"[a-z]{5,}", fires))
    return f"mentions {words.most_common(1)[0][0]}"


@pytest.mark.timeout(600)
def test_quickstart_openai_against_a_local_endpoint():
    with FakeOpenAIServer(chat=interpreter) as server:
        out = run_example(
            "quickstart_openai.py",
            OPENAI_BASE_URL=server.base_url,
            HYPOTHESAES_MODEL="fake-model",
            HYPOTHESAES_N_TRAIN="600",
            HYPOTHESAES_N_HOLDOUT="300",
        )
        n_requests = len(server.requests_to("/chat/completions"))
    assert "held-out AUC" in out
    calls = int(re.search(r"'calls': (\d+)", out).group(1))
    assert calls == n_requests > 0


@pytest.mark.timeout(600)
def test_toolkit_convention_speeches():
    out = run_example("toolkit_convention_speeches.py")
    assert "1418 passages: 814 democrat, 604 republican" in out
    assert int(re.search(r"; (\d+) of the top 8 significant", out).group(1)) >= 1
    # Democrat passages name the president more often (a fact of the data).
    fidelity, freq_dem, freq_rep = map(
        float, re.search(r'"obama".*?\s([\d.]+)\s+([\d.]+)\s+([\d.]+)\s', out).groups()
    )
    assert 0 < fidelity <= 1 and freq_dem > freq_rep
    assert int(re.search(r"concept_correlations: (\d+) significant", out).group(1)) > 0
    # Every passage is in one cluster (-1 included).
    sizes = re.findall(r"cluster +-?\d+ \((\d+) passages\)", out)
    assert sum(map(int, sizes)) == 1418
    assert len(re.findall(r"^\d\. \[(?:democrat|republican)\] ", out, re.M)) == 4
