"""Cache fitted steps with ``Pipeline(memory=...)`` while tuning later steps.

Changing the number of selected latents or the hypothesis settings should not
retrain the sparse autoencoder. ``ArrayMemory`` is a ``Pipeline(memory=...)``
that stores each fitted SparseAutoencoder (keyed by its parameters and input)
as numeric arrays and JSON, never as a pickle, so a second fit with the same
SAE loads it instead of refitting, and a cache folder others can write to
cannot run code. Embeddings are cached by ``TextEmbedder`` itself, across
processes; other steps are cheap and are refitted.

Run: ``python examples/pipeline_memory.py``
"""

import tempfile
import time

import sklearn
from sklearn.pipeline import Pipeline

from sklearn_hypothesaes import (
    ArrayMemory,
    HypothesisGenerator,
    LatentSelector,
    SparseAutoencoder,
    TextEmbedder,
)
from sklearn_hypothesaes.datasets import load_rotten_tomatoes

sklearn.set_config(enable_metadata_routing=True)
texts, y = load_rotten_tomatoes(split="train", return_X_y=True)
texts, y = list(texts[:2000]), y[:2000]

memory = ArrayMemory(tempfile.mkdtemp(prefix="hypothesaes-pipeline-"))
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
# The second fit loads the SAE from the memory (and the embeddings from the
# embedder's cache): only the selector and the hypothesis step were fitted again.
