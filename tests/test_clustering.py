"""ConceptClustering on planted corpora: the axis keeps its latents and drops the
topic ones, clusters recover the planted tone and ignore the planted topic,
every document gets a cluster, the computation on distinct firing sets agrees
with scikit-learn's SpectralClustering on the full documents x documents
affinity, and the scikit-learn check suite runs on activations."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from fake_openai import FakeOpenAIServer, last_user_message
from sklearn.cluster import SpectralClustering
from sklearn.metrics import adjusted_rand_score
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_hypothesaes import LLMClient
from sklearn_hypothesaes.toolkit._clustering import (
    ASSIGNMENT_COLUMNS,
    CLUSTER_COLUMNS,
    LATENT_COLUMNS,
    NO_AXIS_CLUSTER,
    ConceptClustering,
    jaccard_spectral,
    unique_rows,
)

# A tiny semantic embedder: words count towards a theme, plus themselves.
THEMES = {
    "tone": {"tone", "cheerful", "upbeat", "angry", "hostile", "sarcastic", "mocking"},
    "topic": {"topic", "about", "cars", "food", "sports", "subject"},
    "form": {"numbers", "long", "sentences", "format"},
}
VOCAB = sorted(set().union(*THEMES.values()))


def embed(texts):
    """Theme counts (weight 1) and word one-hots (weight 0.5)."""
    out = np.zeros((len(texts), len(THEMES) + len(VOCAB)))
    for i, text in enumerate(texts):
        for word in text.lower().split():
            for t, (_, words) in enumerate(THEMES.items()):
                out[i, t] += word in words
            if word in VOCAB:
                out[i, len(THEMES) + VOCAB.index(word)] += 0.5
    return out


LABELS = [
    "cheerful tone",  # 0  tone A
    "upbeat",  # 1  tone A
    "angry tone",  # 2  tone B
    "hostile",  # 3  tone B
    "sarcastic tone",  # 4  tone C
    "mocking",  # 5  tone C
    "about cars",  # 6  topic 0
    "about food",  # 7  topic 1
    "about sports",  # 8  topic 2
    "numbers",  # 9  noise
    "long sentences",  # 10 noise
]
TONE_LATENTS = [[0, 1], [2, 3], [4, 5]]
TOPIC_LATENTS = [6, 7, 8]


def planted(n_per_cell=40, n_neutral=30, seed=0):
    """Tone (3) crossed with topic (3), ``n_per_cell`` documents per cell.

    A document of tone t fires a random non-empty subset of tone t's two
    latents and its topic's latent, plus each noise latent with probability
    0.3; ``n_neutral`` more documents (tone -1) fire a topic latent only.
    Activations are uniform in [0.5, 2].
    """
    rng = np.random.default_rng(seed)
    rows, tone, topic = [], [], []
    for t in range(3):
        for s in range(3):
            for _ in range(n_per_cell):
                z = np.zeros(len(LABELS))
                subset = [[0], [1], [0, 1]][rng.integers(3)]
                z[[TONE_LATENTS[t][i] for i in subset]] = rng.uniform(
                    0.5, 2, len(subset)
                )
                z[TOPIC_LATENTS[s]] = rng.uniform(0.5, 2)
                z[9:] = (rng.random(2) < 0.3) * rng.uniform(0.5, 2, 2)
                rows.append(z)
                tone.append(t)
                topic.append(s)
    for i in range(n_neutral):
        z = np.zeros(len(LABELS))
        z[TOPIC_LATENTS[i % 3]] = rng.uniform(0.5, 2)
        rows.append(z)
        tone.append(-1)
        topic.append(i % 3)
    texts = [
        f"document {i} tone {t} topic {s}"
        for i, (t, s) in enumerate(zip(tone, topic, strict=True))
    ]
    return np.array(rows), np.array(tone), np.array(topic), texts


def tone_model(**params):
    params = {
        "axis": "tone",
        "n_clusters": 3,
        "n_latents": 20,
        "min_similarity": 0.5,
        "text_embedder": embed,
        "thresholds": "positive",
        "random_state": 0,
        **params,
    }
    return ConceptClustering(**params)


def cosine(a, b):
    va, vb = embed([a])[0], embed([b])[0]
    return va @ vb / np.linalg.norm(va) / np.linalg.norm(vb)


def test_axis_keeps_the_tone_latents_and_drops_the_topic_ones():
    Z, *_ = planted()
    model = tone_model().fit(Z, labels=LABELS)
    assert list(model.latents_.columns) == LATENT_COLUMNS
    # cheerful/angry/sarcastic tone: theme 2 of 2 words; upbeat/hostile/mocking: 1 of 1.
    assert model.latents_["latent"].tolist() == [0, 2, 4, 1, 3, 5]
    expected = {j: cosine("tone", LABELS[j]) for j in range(6)}
    assert model.latents_["similarity"].tolist() == pytest.approx(
        [expected[j] for j in [0, 2, 4, 1, 3, 5]]
    )
    assert expected[0] == pytest.approx(2.25 / np.sqrt(1.25 * 4.5))
    assert expected[1] == pytest.approx(1 / np.sqrt(1.25 * 1.25))
    assert model.latents_["llm_relevance"].isna().all()
    # Each tone latent fires on its subset of 120 tone documents.
    assert model.latents_["n_fires"].sum() == sum((Z[:, j] > 0).sum() for j in range(6))


def test_clusters_recover_the_tone_and_ignore_the_topic():
    Z, tone, topic, _ = planted()
    labels = tone_model().fit_predict(Z, labels=LABELS)
    assert adjusted_rand_score(tone, labels) == 1.0
    assert (labels[tone == -1] == NO_AXIS_CLUSTER).all()
    # Topic is crossed with tone (40 of each topic per tone): the clusters carry
    # no information about it; only the neutral documents (10 per topic) do.
    assert adjusted_rand_score(topic, labels) == pytest.approx(-0.005692, abs=1e-6)
    # Clustering along topic instead recovers topic.
    by_topic = tone_model(axis="topic", min_similarity=0.7).fit_predict(
        Z, labels=LABELS
    )
    assert adjusted_rand_score(topic, by_topic) == 1.0


def test_every_document_gets_a_cluster_and_descriptions_say_why():
    Z, tone, _, texts = planted()
    model = tone_model(n_examples=2).fit(Z, labels=LABELS, texts=texts)
    table = model.cluster_descriptions_
    assert list(table.columns) == CLUSTER_COLUMNS
    assert table["cluster"].tolist() == [0, 1, 2, -1]
    assert table["size"].sum() == len(Z) == len(model.labels_)
    assert table["size"].tolist() == [120, 120, 120, 30]
    assert table["share"].tolist() == pytest.approx([120 / 390] * 3 + [30 / 390])
    for _, row in table.iloc[:3].iterrows():
        t = tone[model.labels_ == row["cluster"]][0]
        assert sorted(row["latents"]) == sorted(TONE_LATENTS[t])
        for j, r_in, r_out, lift in zip(
            row["latents"], row["rate_in"], row["rate_out"], row["lift"], strict=True
        ):
            inside = model.labels_ == row["cluster"]
            assert r_in == pytest.approx((Z[inside, j] > 0).mean())
            assert r_out == 0.0 and lift == np.inf
        # The examples fire both of the cluster's tone latents.
        for text in row["examples"]:
            i = texts.index(text)
            assert (Z[i, TONE_LATENTS[t]] > 0).all()
        assert len(row["examples"]) == 2
        first = row["labels"][0]
        assert row["description"].startswith(f"{first} (")
        assert "vs 0%, lift inf)" in row["description"]
    last = table.iloc[-1]
    assert last["description"] == "none of the 6 axis latents fires"
    assert last["latents"] == [] and last["examples"] == texts[360:362]


def test_assignments_keep_the_input_index_and_texts():
    Z, tone, _, texts = planted(n_per_cell=5, n_neutral=3)
    index = pd.Index([f"doc-{i}" for i in range(len(Z))], name="doc_id")
    model = tone_model().fit(
        sp.csr_matrix(Z), labels=LABELS, texts=pd.Series(texts, index=index)
    )
    table = model.assignments_
    assert list(table.columns) == ASSIGNMENT_COLUMNS
    assert table.index.equals(index)
    assert table["text"].tolist() == texts
    assert table["cluster"].tolist() == model.labels_.tolist()
    assert table["row"].tolist() == list(range(len(Z)))
    i = int(np.flatnonzero((Z[:, 0] > 0) & (Z[:, 1] > 0))[0])
    assert table["axis_latents"].iloc[i] == "cheerful tone; upbeat"
    assert table["axis_latents"].iloc[-1] == ""


def test_sparse_and_dense_input_and_random_state_give_the_same_clusters():
    Z, *_ = planted()
    dense = tone_model().fit_predict(Z, labels=LABELS)
    sparse = tone_model().fit_predict(sp.csr_matrix(Z), labels=LABELS)
    again = tone_model().fit_predict(sp.csc_matrix(Z), labels=LABELS)
    assert dense.tolist() == sparse.tolist() == again.tolist()


def overlapping(n=300, seed=1):
    """Three groups of three latents each; each document fires 1-3 latents of
    its group and, one time in five, one latent of another group."""
    rng = np.random.default_rng(seed)
    F = np.zeros((n, 9), dtype=bool)
    group = np.arange(n) % 3
    for i in range(n):
        own = 3 * group[i] + rng.choice(3, rng.integers(1, 4), replace=False)
        F[i, own] = True
        if rng.random() < 0.2:
            F[i, rng.choice([j for j in range(9) if j // 3 != group[i]])] = True
    return F, group


def test_distinct_sets_give_sklearn_spectral_clustering_of_the_full_affinity():
    F, group = overlapping()
    inter = F.astype(float) @ F.T.astype(float)
    sizes = F.sum(axis=1)
    affinity = inter / (sizes[:, None] + sizes[None, :] - inter)
    reference = SpectralClustering(
        3, affinity="precomputed", random_state=0
    ).fit_predict(affinity)
    patterns, inverse, counts = unique_rows(sp.csr_matrix(F))
    assert patterns.shape[0] < len(F) and counts.sum() == len(F)
    ours = jaccard_spectral(patterns, counts, 3, random_state=0)[inverse]
    assert adjusted_rand_score(reference, ours) == 1.0
    assert adjusted_rand_score(group, ours) == pytest.approx(0.9311, abs=1e-4)
    # Through the estimator, with every latent kept (no axis).
    model = ConceptClustering(n_clusters=3, random_state=0)
    assert adjusted_rand_score(reference, model.fit_predict(F.astype(float))) == 1.0


def test_unique_rows_in_order_of_first_occurrence():
    F = sp.csr_matrix(np.array([[0, 1, 1], [1, 0, 0], [0, 1, 1], [0, 0, 1]]))
    patterns, inverse, counts = unique_rows(F)
    assert patterns.toarray().astype(int).tolist() == [[0, 1, 1], [1, 0, 0], [0, 0, 1]]
    assert inverse.tolist() == [0, 1, 0, 2]
    assert counts.tolist() == [2, 1, 1]


def test_chosen_latents_are_used_and_the_axis_similarity_reported():
    Z, _, topic, _ = planted()
    model = tone_model(latents=[8, 6, 7]).fit(Z, labels=LABELS)
    assert model.latents_["latent"].tolist() == [8, 6, 7]
    assert model.latents_["similarity"].tolist() == pytest.approx([0.0, 0.0, 0.0])
    assert adjusted_rand_score(topic, model.labels_) == 1.0
    assert (model.labels_ >= 0).all()


def test_fewer_distinct_sets_than_clusters_warns_and_forms_fewer():
    Z, tone, *_ = planted()
    with pytest.warns(UserWarning, match=r"formed 3 cluster\(s\), not n_clusters=5"):
        model = tone_model(latents=[6, 7, 8], n_clusters=5).fit(Z, labels=LABELS)
    assert model.n_clusters_ == 3


def test_llm_confirms_the_axis_latents(tmp_path):
    def chat(body):
        # "mocking" is about tone; the judge says no to it and to "hostile".
        text = last_user_message(body)
        return "no" if '"mocking"' in text or '"hostile"' in text else "yes"

    Z, tone, *_ = planted()
    with FakeOpenAIServer(chat=chat) as server:
        llm = LLMClient(base_url=server.base_url, cache_dir=tmp_path, api_key_env="X")
        model = tone_model(llm=llm, n_latents=4, n_candidates=6).fit(Z, labels=LABELS)
        asked = sorted(
            last_user_message(r["body"]) for r in server.requests_to("completions")
        )
    assert len(asked) == 6
    assert asked[0].startswith('A feature of texts is described by this label: "angry')
    assert all("about the tone of a text" in text for text in asked)
    assert model.latents_["latent"].tolist() == [0, 2, 4, 1]
    assert model.latents_["llm_relevance"].tolist() == [1.0, 1.0, 1.0, 1.0]
    assert model.usage_["calls"] == 6


def test_texts_with_an_embedder():
    Z, tone, _, texts = planted(n_per_cell=10, n_neutral=6)
    rows = dict(zip(texts, Z, strict=True))

    class Embedder:
        """Stands in for a fitted InterpretableEmbedder."""

        labels_ = pd.DataFrame({"label": LABELS[:-1] + [None]})
        thresholds_ = np.zeros(len(LABELS), dtype=np.float32)

        def transform(self, X):
            return sp.csr_matrix(np.array([rows[t] for t in X]))

        @property
        def embedder_(self):
            from sklearn.preprocessing import FunctionTransformer

            return FunctionTransformer(embed)

    model = ConceptClustering(
        "tone", n_clusters=3, min_similarity=0.5, embedder=Embedder(), random_state=0
    )
    labels = model.fit_predict(pd.Series(texts))
    assert adjusted_rand_score(tone, labels) == 1.0
    assert model.assignments_["text"].tolist() == texts
    # The unlabelled latent 10 is never matched; the six tone latents are kept.
    assert 10 not in model.latents_["latent"].tolist()
    assert sorted(model.latents_["latent"]) == list(range(6))


@pytest.mark.parametrize(
    "params, fit_kwargs, message",
    [
        ({"axis": "tone"}, {}, r"'axis' parameter of ConceptClustering needs labelled"),
        (
            {"latents": [0, 99]},
            {},
            r"'latents' parameter .* \[0, 11\) \(columns of X\)\. Got \[99\]",
        ),
        ({"latents": ["a"]}, {}, r"'latents' parameter .* list of latent indices"),
        ({"axis": ""}, {"labels": LABELS}, r"'axis' parameter .* non-empty str"),
        (
            {"axis": "tone", "min_similarity": 0.99},
            {"labels": LABELS},
            r"kept no latent for axis='tone'.*best similarity is 0\.949",
        ),
    ],
)
def test_errors_name_the_parameter(params, fit_kwargs, message):
    Z, *_ = planted(n_per_cell=2, n_neutral=1)
    model = ConceptClustering(text_embedder=embed, **params)
    with pytest.raises(ValueError, match=message):
        model.fit(Z, **fit_kwargs)


def test_texts_without_an_embedder_and_negative_activations_are_refused():
    with pytest.raises(ValueError, match="got texts but no embedder: pass embedder="):
        ConceptClustering().fit(["a", "b"])
    with pytest.raises(
        ValueError,
        match=r"Negative values .* ConceptClustering.fit: the 'X' .* minimum of -1\.",
    ):
        ConceptClustering().fit(np.array([[1.0, -1.0], [0.0, 1.0]]))


EXPECTED_FAILURES = {
    "check_clustering": (
        "blobs are not concepts: with two features the binarised activations "
        "have at most three distinct non-empty firing sets, so the check's "
        "ARI > 0.4 on three blobs is out of reach by design"
    ),
}


@parametrize_with_checks(
    [ConceptClustering(n_clusters=2, random_state=0)],
    expected_failed_checks=lambda est: EXPECTED_FAILURES,
)
def test_sklearn_check_suite(estimator, check):
    check(estimator)


def test_chosen_latents_need_no_labels_and_texts_must_match_the_rows():
    Z, _, topic, texts = planted()
    model = ConceptClustering("tone", latents=[6, 7, 8], n_clusters=3, random_state=0)
    model.set_params(text_embedder=embed, thresholds="positive").fit(Z)
    assert model.latents_["label"].tolist() == ["latent_6", "latent_7", "latent_8"]
    assert model.latents_["similarity"].isna().all()
    assert adjusted_rand_score(topic, model.labels_) == 1.0
    with pytest.raises(ValueError, match=r"'texts' .* one text per row of X \(390\)"):
        model.fit(Z, texts=texts[:5])


def test_the_sparse_eigensolver_path_gives_the_dense_one(monkeypatch):
    import sklearn_hypothesaes.toolkit._clustering as module

    F, _ = overlapping()
    patterns, inverse, counts = unique_rows(sp.csr_matrix(F))
    dense = jaccard_spectral(patterns, counts, 3, random_state=0)
    monkeypatch.setattr(module, "_DENSE_LIMIT", 10)  # ARPACK from 11 sets on
    sparse = jaccard_spectral(patterns, counts, 3, random_state=0)
    assert patterns.shape[0] > 10
    assert adjusted_rand_score(dense[inverse], sparse[inverse]) == 1.0


def test_nearest_neighbour_affinity_keeps_the_most_similar_sets(monkeypatch):
    import sklearn_hypothesaes.toolkit._clustering as module

    F, group = overlapping()
    patterns, inverse, counts = unique_rows(sp.csr_matrix(F))
    exact = module.jaccard_affinity(patterns, counts).toarray()
    # With as many neighbours as sets, nothing is dropped.
    every = module.jaccard_affinity(patterns, counts, n_neighbors=len(counts))
    np.testing.assert_allclose(every.toarray(), exact, rtol=1e-6)
    # With 3, each set keeps itself and its 2 most similar sets (or more, by
    # symmetry), and the graph is symmetric.
    few = module.jaccard_affinity(patterns, counts, n_neighbors=3)
    assert (few != few.T).nnz == 0
    assert (np.diff(few.indptr) >= 3).all()
    np.testing.assert_allclose(few.diagonal(), counts.astype(float) ** 2)
    # The estimator switches to it above EXACT_LIMIT sets, and says so.
    Z, tone, *_ = planted()
    model = tone_model().fit(Z, labels=LABELS)
    assert (model.affinity_, model.n_sets_) == ("exact", 9)
    monkeypatch.setattr(module, "EXACT_LIMIT", 5)
    model = tone_model(n_neighbors=3).fit(Z, labels=LABELS)
    assert model.affinity_ == "nearest_neighbors"
    assert adjusted_rand_score(tone, model.labels_) == 1.0


def test_jaccard_affinity_refuses_empty_sets():
    from sklearn_hypothesaes.toolkit._clustering import jaccard_affinity

    P = sp.csr_matrix(np.array([[1, 0], [0, 0]]))
    with pytest.raises(ValueError, match=r"'patterns' .* non-empty sets; rows \[1\]"):
        jaccard_affinity(P, [1, 1])
