"""SAE features and hypothesis annotations as inputs to a downstream model.

Three feature sets for the same logistic regression, compared by held-out
ROC AUC on Rotten Tomatoes review snippets (fresh vs rotten):

- the raw 384-d sentence embedding (a black box),
- the sparse autoencoder's latent activations (sparse, one concept each),
- the annotations of a handful of hypotheses (a few readable 0/1 columns).

The hypotheses give up some accuracy for features a person can read; the SAE
latents sit in between. Offline (no LLM), on a subset so it runs in about a
minute.

Run: ``python examples/downstream_features.py``
"""

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_hypothesaes import (
    HypothesisGenerator,
    LatentSelector,
    SparseAutoencoder,
    TextEmbedder,
)
from sklearn_hypothesaes.datasets import load_rotten_tomatoes

N_TRAIN, N_TEST = 4000, 1500  # the split is shuffled: first rows = a sample
train = load_rotten_tomatoes(split="train")
test = load_rotten_tomatoes(split="holdout")
X_train, y_train = list(train.texts[:N_TRAIN]), train.target[:N_TRAIN]
X_test, y_test = list(test.texts[:N_TEST]), test.target[:N_TEST]

embedder = TextEmbedder()  # cached on disk
E_train, E_test = embedder.fit_transform(X_train), embedder.transform(X_test)

sae = SparseAutoencoder(n_latents=128, k=8, random_state=0).fit(E_train)
Z_train, Z_test = sae.transform(E_train), sae.transform(E_test)

selector = LatentSelector(n_latents=12).fit(Z_train, y_train)
generator = HypothesisGenerator(random_state=0).fit(
    selector.transform(Z_train), y_train, texts=X_train
)
# Annotations need only the texts: the hypotheses are words, not latents.
A_train = generator.transform(texts=X_train)
A_test = generator.transform(texts=X_test)


def held_out_auc(F_train, F_test):
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    model.fit(F_train, y_train)
    return roc_auc_score(y_test, model.predict_proba(F_test)[:, 1])


results = {
    f"embedding ({E_train.shape[1]} dense columns)": held_out_auc(E_train, E_test),
    f"SAE latents ({Z_train.shape[1]} sparse columns)": held_out_auc(Z_train, Z_test),
    f"hypotheses ({A_train.shape[1]} readable 0/1 columns)": held_out_auc(
        np.nan_to_num(A_train), np.nan_to_num(A_test)
    ),
}
for name, auc in results.items():
    print(f"held-out AUC {auc:.3f}  {name}")
print("\nhypotheses used as features:")
for hypothesis in generator.hypotheses_["hypothesis"]:
    print("  -", hypothesis)
