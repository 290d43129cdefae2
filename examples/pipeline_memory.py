"""Cache fitted steps with ``Pipeline(memory=...)`` while tuning later steps.

Changing the number of selected latents or the hypothesis settings should not
retrain the sparse autoencoder. With ``memory=``, scikit-learn stores each
fitted transformer (keyed by its parameters and input) with joblib, so a
second fit with the same embedder and SAE loads them instead of refitting.
Embeddings are also cached by ``TextEmbedder`` itself, across processes.

Run: ``python examples/pipeline_memory.py``
"""

import tempfile
import time

import sklearn
from joblib import Memory
from sklearn.pipeline import Pipeline

from sklearn_hypothesaes import (
    HypothesisGenerator,
    LatentSelector,
    SparseAutoencoder,
    TextEmbedder,
)
from sklearn_hypothesaes.datasets import load_rotten_tomatoes

sklearn.set_config(enable_metadata_routing=True)
texts, y = load_rotten_tomatoes(split="train", return_X_y=True)
texts, y = list(texts[:2000]), y[:2000]

memory = Memory(tempfile.mkdtemp(prefix="hypothesaes-pipeline-"), verbose=0)
pipe = Pipeline(
    [
        ("embed", TextEmbedder()),
        ("sae", SparseAutoencoder(n_latents=64, k=8, random_state=0)),
        ("select", LatentSelector(n_latents=6)),
        ("hypotheses", HypothesisGenerator(random_state=0)),
    ],
    memory=memory,
)

for n_latents in [6, 10]:
    pipe.set_params(select__n_latents=n_latents)
    start = time.perf_counter()
    pipe.fit(texts, y, texts=texts)
    seconds = time.perf_counter() - start
    sae = pipe.named_steps["sae"]
    print(
        f"select {n_latents:2d} latents: fit in {seconds:5.1f} s, "
        f"SAE epochs {sae.n_iter_}, {len(pipe[-1].hypotheses_)} hypotheses"
    )
# The second fit loads the embedder and the SAE from the memory: only the
# selector and the hypothesis step were fitted again.
