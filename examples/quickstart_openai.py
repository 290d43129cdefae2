"""Quickstart with an LLM on an OpenAI-compatible endpoint (OpenAI or vLLM).

The LLM names the concept of each selected latent (the interpreter) and
annotates held-out texts for every hypothesis (the annotator). Not run in CI:
it needs an endpoint. Answers are cached, so a rerun costs nothing.

With OpenAI (a few cents at these sizes)::

    export OPENAI_API_KEY=sk-...
    python examples/quickstart_openai.py

With a local vLLM server (one GPU; the model name is what the server serves)::

    pip install vllm
    vllm serve Qwen/Qwen3-8B --port 8000 --max-model-len 8192
    export OPENAI_BASE_URL=http://localhost:8000/v1
    export HYPOTHESAES_MODEL=Qwen/Qwen3-8B
    python examples/quickstart_openai.py

The same run from the command line::

    sklearn-hypothesaes --demo  # offline; for an LLM give a file:
    sklearn-hypothesaes reviews.csv --text-column text --target-column target \\
        --base-url http://localhost:8000/v1 --interpreter-model Qwen/Qwen3-8B

``llama.cpp``'s ``llama-server`` and Ollama (``http://localhost:11434/v1``)
work the same way.
"""

import os
import tempfile
from pathlib import Path

from sklearn_hypothesaes import (
    HypothesisGenerator,
    LatentSelector,
    LLMClient,
    LLMDescriber,
    SparseAutoencoder,
    TextEmbedder,
    render_report,
    run_method,
)
from sklearn_hypothesaes.datasets import load_rotten_tomatoes

N_TRAIN = int(os.environ.get("HYPOTHESAES_N_TRAIN", 4000))
N_HOLDOUT = int(os.environ.get("HYPOTHESAES_N_HOLDOUT", 1000))
MODEL = os.environ.get("HYPOTHESAES_MODEL", "gpt-4o-mini")

train = load_rotten_tomatoes(split="train")
holdout = load_rotten_tomatoes(split="holdout")

# base_url=None reads $OPENAI_BASE_URL, else OpenAI's API; the key is read
# from the environment variable named by api_key_env, never stored.
llm = LLMClient(
    model=MODEL,
    api_key_env="OPENAI_API_KEY",
    n_concurrent=16,
    prices={"gpt-4o-mini": (0.15, 0.60)},  # USD per 1M prompt/completion tokens
    verbose=True,
)
result = run_method(
    train.texts[:N_TRAIN],
    train.target[:N_TRAIN],
    holdout_texts=holdout.texts[:N_HOLDOUT],
    holdout_y=holdout.target[:N_HOLDOUT],
    embedder=TextEmbedder(),
    sae=SparseAutoencoder(n_latents=256, k=8, random_state=0),
    selector=LatentSelector(n_latents=10),
    generator=HypothesisGenerator(LLMDescriber(llm, n_fidelity=20), random_state=0),
)

columns = ["hypothesis", "fidelity", "coef", "pvalue_corrected", "significant"]
table = result.hypotheses.sort_values("coef", key=abs, ascending=False)
print(table[columns].to_string(index=False, float_format="{:.3f}".format))
print(f"\nheld-out AUC {result.metrics['auc']:.3f}")
print("LLM usage:", result.usage)
report = render_report(result, Path(tempfile.mkdtemp()) / "report.html")
print(f"report: {report}")
