"""InterpretableEmbedder: planted concepts get their labels, fidelity is held
out, names follow labels, relabelling and cost estimates are exact, and the
whole scikit-learn check suite passes through numbers made into texts.

The embedder in most tests is TF-IDF + SVD (texts in, dense vectors out, like
TextEmbedder but instant); the autoencoder is fitted once per module and then
passed fitted, which also tests that a fitted autoencoder is used as it is.
"""

import copy
import re
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from fake_openai import FakeOpenAIServer, concept_judge, last_user_message
from scipy import sparse
from sklearn.feature_extraction.text import (
    ENGLISH_STOP_WORDS,
    CountVectorizer,
    TfidfVectorizer,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import parametrize_with_checks
from sklearn.utils.validation import _check_feature_names_in, validate_data
from text_harness import rows_to_texts

from sklearn_hypothesaes import (
    LLMAnnotator,
    LLMDescriber,
    SparseAutoencoder,
    TermDescriber,
)
from sklearn_hypothesaes.hypotheses import Descriptions
from sklearn_hypothesaes.toolkit import binarize_activations, latent_thresholds
from sklearn_hypothesaes.toolkit._embedder import InterpretableEmbedder

WEATHER = ["rain", "sun", "snow", "wind", "fog", "hail", "storm", "cloud"]


def planted_corpus(n, start=0):
    """A weather word at random and a place: every fourth is by a volcano, the
    others by a lake (two concepts per text, as an autoencoder with k=2 fits)."""
    rng = np.random.default_rng(start)
    texts, planted = [], []
    for i in range(start, start + n):
        has = i % 4 == 0
        place = "the volcano" if has else "the lake"
        texts.append(f"{WEATHER[rng.integers(8)]} on day {i} by {place}")
        planted.append(has)
    return texts, np.array(planted)


def to_dense(X):
    return X.toarray()


def word_counts():
    """Texts -> counts of the weather words and "volcano": a fitted-in-fit
    transformer, like an embedder, whose directions are the planted concepts."""
    vocabulary = [*WEATHER, "volcano", "lake"]
    return make_pipeline(
        CountVectorizer(vocabulary=vocabulary, binary=True),
        FunctionTransformer(to_dense),
    )


@pytest.fixture(scope="module")
def corpus():
    return planted_corpus(200)


@pytest.fixture(scope="module")
def fitted_parts(corpus):
    """The embedder and autoencoder, fitted once for the module."""
    texts, _ = corpus
    embedder = word_counts()
    E = embedder.fit_transform(texts).astype(np.float32)
    # Seed 4 gives one latent per concept (the weather words and the volcano;
    # the lake, in most texts, is the decoder's bias); seeds 0-3 and 5 merge
    # or split some of them on these 200 texts.
    sae = SparseAutoencoder(
        9,
        2,
        matryoshka_prefixes=None,
        max_epochs=100,
        batch_size=32,
        sparse_output=True,
        random_state=4,
    )
    return embedder, sae.fit(E)


@pytest.fixture(scope="module")
def fitted(corpus, fitted_parts):
    embedder, sae = fitted_parts
    return InterpretableEmbedder(embedder, sae, random_state=0).fit(corpus[0])


def volcano_latent(emb):
    label = emb.labels_["label"].fillna("")
    rows = emb.labels_[label.str.match(r'mentions "?volcano\b')]
    assert len(rows) == 1, emb.labels_[["latent", "label"]]
    return int(rows["latent"].iloc[0])


# ------------------------------------------------------------------- labels
def test_planted_word_gets_its_label_with_high_heldout_fidelity(corpus, fitted):
    texts, planted = corpus
    j = volcano_latent(fitted)
    row = fitted.labels_.loc[j]
    assert row["label"].startswith('mentions "volcano"')
    assert row["describer"] == "TermDescriber"
    assert row["fidelity"] == pytest.approx(1.0)
    # 200 texts, a quarter held out; the planted word is in every fourth.
    assert row["n_fidelity_texts"] == 50
    assert row["n_fidelity_fires"] >= 10
    assert row["frequency"] == pytest.approx(planted.mean(), abs=0.02)
    # On new texts the latent fires where the word is.
    new, new_planted = planted_corpus(80, start=1000)
    fires = fitted.binarize(new)[:, j].toarray().ravel()
    assert (fires == new_planted).mean() >= 0.95


def test_every_live_latent_is_labelled_or_says_why(fitted):
    table = fitted.labels_
    assert list(table["latent"]) == list(range(9))
    assert table["live"].all()
    labelled = table["label"].notna()
    assert labelled.sum() >= 6
    assert table.loc[labelled, "reason"].isna().all()
    assert table.loc[~labelled, "reason"].str.startswith("no label:").all()
    assert table.loc[labelled, "fidelity"].between(0, 1).all()
    assert table.dtypes["fidelity"] == table.dtypes["recall"] == np.float64


def test_dead_latent_is_reported_dead_with_no_label(corpus, fitted_parts):
    embedder, sae = fitted_parts
    dead_sae = copy.deepcopy(sae)
    dead_sae.encoder_bias_[5] = -1e6  # latent 5 can never be among the top k
    emb = InterpretableEmbedder(embedder, dead_sae, random_state=0).fit(corpus[0])
    row = emb.labels_.loc[5]
    assert not row["live"]
    assert row["label"] is None and np.isnan(row["fidelity"])
    assert row["frequency"] == 0.0
    assert row["reason"] == "never fires on the fit texts (dead)"
    assert row["name"] == "dead_5"
    assert np.isinf(emb.thresholds_[5])
    assert emb.labels_.drop(index=5)["live"].all()


def test_fidelity_is_scored_on_texts_the_describer_never_saw(corpus, fitted_parts):
    seen = {}

    class Spy(TermDescriber):
        def describe(self, texts, activations, *, annotator, random_state=None):
            seen.setdefault("describe", set()).update(texts)
            return super().describe(
                texts, activations, annotator=annotator, random_state=random_state
            )

    class SpyAnnotator(type(TermDescriber().default_annotator())):
        def annotate(self, texts, concepts):
            seen.setdefault("annotate", []).append(list(texts))
            return super().annotate(texts, concepts)

    embedder, sae = fitted_parts
    InterpretableEmbedder(
        embedder, sae, Spy(min_score="auto"), SpyAnnotator(), random_state=1
    ).fit(corpus[0])
    # The describer's own in-sample scoring is one call; ours is the last.
    held = set(seen["annotate"][-1])
    assert len(seen["describe"]) == 150 and len(held) == 50
    assert not held & seen["describe"]


def test_thresholds_and_binarize_follow_the_shared_rule(corpus, fitted):
    texts, _ = corpus
    Z = fitted.transform(texts)
    np.testing.assert_array_equal(fitted.thresholds_, latent_thresholds(Z))
    expected = binarize_activations(Z, fitted.thresholds_).toarray()
    np.testing.assert_array_equal(fitted.binarize(texts).toarray(), expected)
    np.testing.assert_array_equal(fitted.binarize(Z).toarray(), expected)
    np.testing.assert_array_equal(fitted.binarize(Z.toarray()).toarray(), expected)
    with pytest.raises(ValueError, match=r"activations with 9 columns .* \(3, 2\)"):
        fitted.binarize(np.zeros((3, 2)))


# ------------------------------------------------------------------- output
def test_pandas_output_columns_are_the_labels(corpus, fitted):
    texts, _ = corpus
    Z = fitted.transform(texts[:20])
    assert sparse.isspmatrix_csr(Z) and Z.dtype == np.float32
    emb = copy.deepcopy(fitted).set_output(transform="pandas")
    table = emb.transform(texts[:20])
    assert isinstance(table, pd.DataFrame)
    assert list(table.columns) == list(fitted.labels_["name"])
    j = volcano_latent(fitted)
    assert table.columns[j].startswith('mentions "volcano"')
    np.testing.assert_allclose(table.to_numpy(), Z.toarray())
    assert len(set(table.columns)) == table.shape[1]
    # Sparse output cannot be a DataFrame: scikit-learn refuses, it says so.
    emb.set_params(sparse_output=True)
    with pytest.raises(ValueError, match="outputs a scipy sparse matrix"):
        emb.transform(texts[:5])
    assert isinstance(
        emb.set_params(sparse_output=False).transform(texts[:5]), pd.DataFrame
    )


def test_feature_names_are_unique_and_sanitized(corpus, fitted):
    emb = copy.deepcopy(fitted)
    emb.labels_.loc[1, "label"] = emb.labels_.loc[0, "label"] = "says\n  the   same"
    emb.labels_.loc[2, "label"] = "x" * 200
    emb._rename()
    names = emb.get_feature_names_out()
    assert names[0] == "says the same"
    assert names[1] == "says the same (latent 1)"
    assert names[2] == "x" * 77 + "..."
    assert len(set(names)) == len(names)


# --------------------------------------------------------- a loopback LLM
def word_llm(body):
    """Names a latent by the word most over-represented in its firing examples
    against the silent ones; answers annotation prompts by whether the
    concept's last word is in the text."""
    prompt = last_user_message(body)
    if "Texts where it fires:" not in prompt:
        return concept_judge(body)
    fire = prompt.split("Texts where it fires:", 1)[1]
    fire, _, quiet = fire.partition("Texts where it does not fire:")

    def counts(block):
        words = re.findall(r"[a-z]{3,}", block.lower())
        return Counter(w for w in words if w not in ENGLISH_STOP_WORDS)

    pos, neg = counts(fire), counts(quiet)
    return f"Mentions {max(pos, key=lambda w: (pos[w] - neg[w], w))}."


@pytest.fixture
def llm_server():
    with FakeOpenAIServer(chat=word_llm) as server:
        yield server


# ------------------------------------------------------------------ relabel
def test_relabel_changes_only_the_chosen_latents(
    corpus, fitted, llm_server, make_client
):
    emb = copy.deepcopy(fitted)
    before = emb.labels_.copy()
    j = volcano_latent(emb)
    other = (j + 1) % 9
    describer = LLMDescriber(make_client(llm_server), n_fidelity=0)
    emb.relabel([j, other], describer=describer)
    after = emb.labels_
    unchanged = after.index.difference([j, other])
    pd.testing.assert_frame_equal(after.loc[unchanged], before.loc[unchanged])
    assert before.loc[j, "label"] == 'mentions "volcano"'
    assert after.loc[j, "label"] == "mentions volcano"
    assert after.loc[j, "fidelity"] == pytest.approx(1.0)
    assert list(after.loc[[j, other], "describer"]) == ["LLMDescriber"] * 2
    assert emb.get_feature_names_out()[j] == "mentions volcano"
    # The fit describer stays the one relabel(latents) uses by default.
    assert type(emb.describer_) is TermDescriber
    with pytest.raises(ValueError, match=r"ints in \[0, 9\). Got \[9\]"):
        emb.relabel([9])


class FixedDescriber(TermDescriber):
    """Labels every latent with one fixed label (a describer in the protocol)."""

    def __init__(self, label="mentions nothing"):
        self.label = label

    def describe(self, texts, activations, *, annotator, random_state=None):
        n = activations.shape[1]
        table = pd.DataFrame(
            {
                "column": range(n),
                "description": [self.label] * n,
                "fidelity": np.nan,
                "precision": np.nan,
                "recall": np.nan,
            }
        )
        return Descriptions(table)


def test_relabel_to_a_taken_name_renames_only_the_relabelled(fitted):
    emb = copy.deepcopy(fitted)
    names = list(emb.get_feature_names_out())
    taken = emb.labels_.loc[5, "label"]
    emb.relabel([0], describer=FixedDescriber(taken))
    assert emb.labels_.loc[0, "label"] == taken
    assert list(emb.get_feature_names_out()[1:]) == names[1:]
    assert emb.get_feature_names_out()[0] == f"{taken} (latent 0)"


def test_dead_latents_cannot_be_relabelled(corpus, fitted_parts):
    embedder, sae = fitted_parts
    dead_sae = copy.deepcopy(sae)
    dead_sae.encoder_bias_[3] = -1e6
    emb = InterpretableEmbedder(embedder, dead_sae, random_state=0).fit(corpus[0])
    with pytest.raises(ValueError, match=r"latent\(s\) \[3\] never fire"):
        emb.relabel([2, 3])


def test_fit_needs_two_texts():
    with pytest.raises(ValueError, match="got 1 sample"):
        InterpretableEmbedder().fit(["only one"])


def test_llm_describer_labels_through_the_loopback_server(
    corpus, fitted_parts, llm_server, make_client
):
    embedder, sae = fitted_parts
    client = make_client(llm_server)
    emb = InterpretableEmbedder(
        embedder, sae, LLMDescriber(client, n_fidelity=0), n_fidelity=20, random_state=0
    ).fit(corpus[0])
    j = volcano_latent(emb)
    row = emb.labels_.loc[j]
    assert row["label"] == "mentions volcano"
    assert row["describer"] == "LLMDescriber"
    assert row["fidelity"] == pytest.approx(1.0)
    # An expensive annotator sees a balanced sample of at most n_fidelity.
    assert row["n_fidelity_texts"] == 20
    assert row["n_fidelity_fires"] == 10
    assert emb.labels_["label"].notna().all()
    sent = llm_server.requests_to("/chat/completions")
    assert emb.usage_["calls"] == len(sent) > 0


def test_dry_run_sends_nothing_and_counts_what_the_run_sends(
    corpus, fitted_parts, llm_server, make_client, capsys
):
    embedder, sae = fitted_parts
    client = make_client(llm_server, prices={"fake-model": (1.0, 4.0)})
    emb = InterpretableEmbedder(
        embedder,
        sae,
        LLMDescriber(client, n_fidelity=0),
        n_fidelity=20,
        dry_run=True,
        batch_size=None,
        random_state=0,
    ).fit(corpus[0])
    assert llm_server.requests == []
    estimate = emb.cost_estimate_
    printed = capsys.readouterr().out
    assert f"Labelling would send {estimate.requests:,} LLM request(s)" in printed
    assert emb.labels_["label"].isna().all()
    assert list(emb.get_feature_names_out()) == [f"latent_{j}" for j in range(9)]
    steps = estimate.steps.set_index("step")
    # One interpretation prompt per live latent, no cache yet.
    assert steps.loc["Interpreting latents", "requests"] == 9
    assert estimate.cache_hits == 0

    emb.relabel("all")
    sent = llm_server.requests_to("/chat/completions")
    assert len(sent) == estimate.requests == emb.usage_["calls"]
    interpret = [
        b["body"]["messages"][-1]["content"]
        for b in sent
        if "Texts where it fires:" in b["body"]["messages"][-1]["content"]
    ]
    assert steps.loc["Interpreting latents", "prompt_chars"] == sum(map(len, interpret))
    assert estimate.prompt_tokens == int(steps["prompt_tokens"].sum())
    assert estimate.prompt_cost == pytest.approx(estimate.prompt_tokens / 1e6)
    bound = estimate.prompt_tokens + 4 * 512 * estimate.requests
    assert estimate.max_cost == pytest.approx(bound / 1e6)

    # Everything is cached now: a second estimate sends nothing, all hits.
    again = emb.estimate_cost()
    assert again.requests == 0 and again.cache_hits == estimate.requests
    assert len(llm_server.requests_to("/chat/completions")) == len(sent)


def test_estimate_counts_only_what_the_cache_lacks(
    corpus, fitted_parts, llm_server, make_client
):
    embedder, sae = fitted_parts
    describer = LLMDescriber(make_client(llm_server), n_fidelity=0)
    emb = InterpretableEmbedder(
        embedder,
        sae,
        describer,
        n_fidelity=20,
        dry_run=True,
        batch_size=3,
        random_state=0,
    ).fit(corpus[0])
    # Labelling 0, 1 and 2 is the first batch of "all": its answers are reused.
    emb.relabel([0, 1, 2])
    sent = len(llm_server.requests_to("/chat/completions"))
    assert emb.usage_["calls"] == sent > 0
    rest = emb.estimate_cost("all").steps.set_index("step")
    assert rest.loc["Interpreting latents", "requests"] == 6
    assert rest.loc["Interpreting latents", "cache_hits"] == 3
    assert len(llm_server.requests_to("/chat/completions")) == sent
    # Repeated labels make later batches ask questions the cache answers: the
    # estimate of a batched run is then an upper bound.
    emb.relabel("all")
    later = len(llm_server.requests_to("/chat/completions")) - sent
    assert later <= rest["requests"].sum()


def test_dry_run_reaches_a_given_annotator_client(
    corpus, fitted_parts, llm_server, make_client, capsys
):
    embedder, sae = fitted_parts
    describer = LLMDescriber(make_client(llm_server), n_fidelity=0)
    # Another client, asking one yes/no question per text and concept, with
    # P(yes) from logprobs: swapped for a stand-in as well.
    annotator = LLMAnnotator(
        make_client(llm_server, n_concurrent=2), probabilities=True
    )
    emb = InterpretableEmbedder(
        embedder,
        sae,
        describer,
        annotator,
        n_fidelity=20,
        dry_run=True,
        verbose=1,
        random_state=0,
    ).fit(corpus[0])
    assert llm_server.requests == []
    assert "Estimating (dry run)" in capsys.readouterr().err
    estimate = emb.cost_estimate_
    emb.relabel("all")
    assert len(llm_server.requests_to("/chat/completions")) == estimate.requests
    steps = estimate.steps.set_index("step")["requests"]
    assert steps["Held-out fidelity"] == 9 * 20  # one question per text sampled
    assert "Labelling latents" in capsys.readouterr().err
    assert emb.labels_.loc[volcano_latent(emb), "fidelity"] == pytest.approx(1.0)


def test_estimate_of_an_offline_describer_is_zero(fitted):
    estimate = fitted.estimate_cost([0, 1])
    assert estimate.requests == 0 and estimate.prompt_cost == 0.0
    assert "would send 0 LLM request(s)" in str(estimate)


# ---------------------------------------------- the scikit-learn check suite
class NumericInterpretableEmbedder(InterpretableEmbedder):
    """InterpretableEmbedder behind numeric input, for scikit-learn's checks.

    Validates X as the checks expect, makes each row a text with
    :func:`rows_to_texts` and hands the texts to the real estimator.
    """

    def fit(self, X, y=None):
        X = validate_data(self, X, reset=True)
        return super().fit(rows_to_texts(X), y)

    def fit_transform(self, X, y=None):
        X = validate_data(self, X, reset=True)
        return super().fit_transform(rows_to_texts(X), y)

    def transform(self, X):
        X = validate_data(self, X, reset=False)
        return super().transform(rows_to_texts(X))

    def get_feature_names_out(self, input_features=None):
        _check_feature_names_in(self, input_features, generate_names=False)
        return super().get_feature_names_out()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = True
        tags.input_tags.one_d_array = False
        tags.input_tags.string = False
        return tags


def harness_embedder():
    # Needs a fit, so the estimator fits a clone and never touches this one
    # (a fitted embedder would be used as it is).
    return make_pipeline(
        TfidfVectorizer(token_pattern=r"\S+"), FunctionTransformer(to_dense)
    )


@parametrize_with_checks(
    [
        NumericInterpretableEmbedder(
            harness_embedder(),
            SparseAutoencoder(16, 2, max_epochs=3, random_state=0),
            random_state=0,
        )
    ]
)
def test_sklearn_check_suite(estimator, check):
    check(estimator)
