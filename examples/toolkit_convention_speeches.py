"""The four toolkit analyses on the 2012 US party convention speeches, offline.

Every latent of a sparse autoencoder gets a label, so its activations are an
embedding with named dimensions; each analysis then counts where they fire:

1. split the 189 speeches into passages of about 100 words (party kept),
2. fit an :class:`InterpretableEmbedder`: the packaged all-MiniLM-L6-v2 (no
   network), a sparse autoencoder, and offline labels (the words that
   distinguish the passages where each latent fires) with held-out fidelity,
3. diff democrat vs republican passages (:func:`diff_corpora`),
4. the latent pairs that fire together more than chance
   (:func:`concept_correlations`, synonym pairs filtered by label similarity),
5. cluster the passages along a named axis (:class:`ConceptClustering`),
6. find passages with a property described in words (:class:`PropertySearch`).

No LLM: the labels are word lists, so a label is as good as its words (see
``fidelity``). With an LLM, pass ``describer=LLMDescriber(client)``.

Run: ``python examples/toolkit_convention_speeches.py`` (about a minute on a
laptop CPU; the embeddings are cached on disk, so a rerun is faster).
"""

import numpy as np
import pandas as pd

from sklearn_hypothesaes import (
    ConceptClustering,
    InterpretableEmbedder,
    PropertySearch,
    SparseAutoencoder,
    concept_correlations,
    diff_corpora,
)
from sklearn_hypothesaes.datasets import load_convention_speeches

pd.set_option("display.width", 120)
pd.set_option("display.max_colwidth", 48)


def passages(texts, parties, words=100):
    """Consecutive ~100-word passages of each speech, with its party."""
    out, party = [], []
    for text, side in zip(texts, parties, strict=True):
        tokens = text.split()
        for start in range(0, len(tokens), words):
            chunk = tokens[start : start + words]
            if len(chunk) >= 20:  # the short tail of a speech says little
                out.append(" ".join(chunk))
                party.append(side)
    return out, np.array(party)


def short(text, n=50):
    return text if len(text) <= n else text[: n - 3] + "..."


data = load_convention_speeches()
texts, party = passages(data.texts, data.target_names[data.target])
dem = [t for t, p in zip(texts, party, strict=True) if p == "democrat"]
rep = [t for t, p in zip(texts, party, strict=True) if p == "republican"]
print(f"{len(texts)} passages: {len(dem)} democrat, {len(rep)} republican")

# 1. Every live latent labelled, fidelity scored on held-out passages.
emb = InterpretableEmbedder(
    sae=SparseAutoencoder(n_latents=128, k=8, random_state=0), random_state=0
).fit(texts)
labels = emb.labels_
print(
    f"\n{int(labels['live'].sum())} live latents, {int(labels['label'].notna().sum())}"
    f" labelled, median held-out fidelity {labels['fidelity'].median():.2f}"
)

# 2. Which concepts are more frequent in one party's passages.
diff = diff_corpora(dem, rep, embedder=emb, top=8)
print(
    f"\n== diff_corpora: democrat (a) vs republican (b); "
    f"{int(diff['significant'].sum())} of the top 8 significant "
    f"({diff.attrs['n_tested']} latents tested, Fisher + Benjamini-Hochberg)"
)
# fidelity: how well the label's words predict where the latent fires on
# held-out passages (F1); a low one means "read the examples, not the label".
diff["fidelity"] = diff["latent"].map(labels["fidelity"])
print(
    diff[["label", "fidelity", "freq_a", "freq_b", "ratio", "pvalue_corrected"]]
    .assign(label=diff["label"].map(short))
    .to_string(index=False, float_format="{:.3g}".format)
)

# 3. Concepts that co-occur more than chance; synonym pairs dropped.
pairs = concept_correlations(
    texts, embedder=emb, label_similarity=emb.embedder_, min_count=10, top=6
)
print(
    f"\n== concept_correlations: {pairs.attrs['n_significant']} significant pairs, "
    f"{pairs.attrs['n_redundant']} dropped as synonyms (label cosine > 0.8)"
)
print(
    pairs[["label_a", "label_b", "count_ab", "expected_ab", "npmi", "label_similarity"]]
    .assign(label_a=pairs["label_a"].map(short), label_b=pairs["label_b"].map(short))
    .rename(columns={"label_similarity": "label_sim"})
    .to_string(index=False, float_format="{:.2f}".format)
)

# 4. Clusters along an axis named in words, and how they split by party.
axis = ["the economy, jobs and taxes", "business and work"]
clusters = ConceptClustering(
    axis=axis, embedder=emb, n_clusters=3, n_latents=8, random_state=0
).fit(texts)
print(f"\n== ConceptClustering along {axis[0]!r}: kept latents")
print(
    clusters.latents_[["latent", "label", "similarity", "frequency"]]
    .assign(label=clusters.latents_["label"].map(short))
    .to_string(index=False, float_format="{:.2f}".format)
)
described = clusters.cluster_descriptions_
for row in described.itertuples():
    print(
        f"cluster {row.cluster:2d} ({row.size} passages): {short(row.description, 90)}"
    )
print(
    pd.crosstab(
        pd.Series(clusters.labels_, name="cluster"), pd.Series(party, name="party")
    ).to_string()
)

# 5. Passages that have a property, found by the latents its words match.
search = PropertySearch(embedder=emb, n_latents=3).fit(texts)
query = "military service and veterans"
found = search.search(query, k=4)
print(f"\n== PropertySearch {query!r}: matched latents")
print(
    search.match(query)[["latent", "label", "similarity"]]
    .assign(label=lambda t: t["label"].map(short))
    .to_string(index=False, float_format="{:.2f}".format)
)
for row in found.itertuples():
    print(f"{row.rank}. [{party[row.row]}] {short(row.text, 100)}")
print(f"{found.attrs['n_matches']} passages have a matched latent firing")
