"""Cross-validate the whole HypotheSAEs method as one scikit-learn Pipeline.

Texts go in as X; the raw texts also reach the last step through metadata
routing (``texts=...``), and ``cross_val_score`` slices them per fold. The
cross-validated score is the held-out ROC AUC of a logistic regression on
the hypotheses' annotations: how predictive the hypotheses themselves are.
Offline (no LLM): each hypothesis is a set of distinguishing phrases.
"""

import sklearn
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import Pipeline

from sklearn_hypothesaes import (
    HypothesisGenerator,
    LatentSelector,
    SparseAutoencoder,
    TermDescriber,
    TextEmbedder,
    pipeline_hypotheses,
)
from sklearn_hypothesaes.datasets import load_rotten_tomatoes

sklearn.set_config(enable_metadata_routing=True)

texts, y = load_rotten_tomatoes(split="train", return_X_y=True)
texts, y = list(texts[:300]), y[:300]  # small, so it runs in seconds

pipe = Pipeline(
    [
        ("embed", TextEmbedder()),
        ("sae", SparseAutoencoder(n_latents=32, k=4, max_epochs=20, random_state=0)),
        ("select", LatentSelector(n_latents=8)),
        (
            "hypotheses",
            HypothesisGenerator(TermDescriber(min_score=2.0), random_state=0),
        ),
    ]
)
scores = cross_val_score(pipe, texts, y, cv=3, params={"texts": texts})
print("held-out AUC of the hypotheses per fold:", scores.round(3))

pipe.fit(texts, y, texts=texts)
print(pipeline_hypotheses(pipe)[["latent", "association", "hypothesis", "fidelity"]])
