"""Quickstart, offline: hypotheses about what makes a film review "fresh".

Runs the whole method on real data with no LLM and no network:

1. embed review snippets with all-MiniLM-L6-v2 (shipped in a PyPI package),
2. train a sparse autoencoder on the embeddings,
3. keep the latents that best predict fresh vs rotten,
4. describe each latent by the words that distinguish the texts where it
   fires (the offline stand-in for an LLM's description),
5. test every hypothesis on held-out reviews: coefficient, confidence
   interval and Bonferroni-corrected p-value.

A subset keeps it to a minute or two on a laptop CPU; drop ``N_TRAIN`` and
``N_HOLDOUT`` (or run ``sklearn-hypothesaes --demo``) for all 12,808 reviews.

Run: ``python examples/quickstart_offline.py``
"""

import tempfile
from pathlib import Path

from sklearn_hypothesaes import (
    HypothesisGenerator,
    LatentSelector,
    SparseAutoencoder,
    TextEmbedder,
    render_report,
    run_method,
)
from sklearn_hypothesaes.datasets import load_rotten_tomatoes

# The documented 70/30 split is already shuffled: the first rows are a sample.
N_TRAIN, N_HOLDOUT = 4000, 1500
train = load_rotten_tomatoes(split="train")
holdout = load_rotten_tomatoes(split="holdout")

result = run_method(
    train.texts[:N_TRAIN],
    train.target[:N_TRAIN],
    holdout_texts=holdout.texts[:N_HOLDOUT],
    holdout_y=holdout.target[:N_HOLDOUT],
    embedder=TextEmbedder(),  # cached on disk: a rerun does no model work
    sae=SparseAutoencoder(n_latents=64, k=4, random_state=0),
    selector=LatentSelector(n_latents=10),
    generator=HypothesisGenerator(random_state=0),  # offline: TermDescriber
)

columns = ["hypothesis", "coef", "coef_ci_low", "coef_ci_high", "pvalue_corrected"]
table = result.hypotheses.sort_values("coef", key=abs, ascending=False)
print(table[columns].to_string(index=False, float_format="{:.3f}".format))
print(
    f"\nheld-out AUC {result.metrics['auc']:.3f}; "
    f"{result.metrics['n_significant']} of {len(table)} hypotheses significant"
)
report = render_report(result, Path(tempfile.mkdtemp()) / "report.html")
print(f"report: {report}")
