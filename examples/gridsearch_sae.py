"""Tune the sparse autoencoder and the number of hypotheses with GridSearchCV.

Every grid point refits the SAE, reselects latents and regenerates the
hypotheses on each training fold, and scores the hypotheses on the held-out
fold (ROC AUC of a logistic regression on their annotations). Embeddings are
cached durably by TextEmbedder, so refits do not re-embed.
"""

import sklearn
from sklearn.model_selection import GridSearchCV
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
        ("sae", SparseAutoencoder(max_epochs=10, random_state=0)),
        ("select", LatentSelector()),
        (
            "hypotheses",
            HypothesisGenerator(TermDescriber(min_score=2.0), random_state=0),
        ),
    ]
)
grid = {"sae__n_latents": [16, 32], "sae__k": [2, 4], "select__n_latents": [4, 8]}
search = GridSearchCV(pipe, grid, cv=2).fit(texts, y, texts=texts)
print("best:", search.best_params_, "AUC", round(search.best_score_, 3))
print(pipeline_hypotheses(search.best_estimator_)[["latent", "hypothesis"]])
