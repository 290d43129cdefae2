"""Findings that reproduce: stability across SAE seeds, and the signal check.

The stability tests plant a sparse dictionary: each embedding is the sum of two
of eight directions, and y follows the first. Every SAE seed recovers that
direction as a latent and selects it, so its hypothesis recurs in every other
seed; a noise column, which no latent of any seed follows, recurs in none.
"""

import warnings

import numpy as np
import pytest
import sklearn
from fake_openai import FakeOpenAIServer, concept_judge, last_user_message
from scipy import stats
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from sklearn_hypothesaes import (
    HypothesisGenerator,
    LatentSelector,
    LLMDescriber,
    SparseAutoencoder,
    TermDescriber,
    run_method,
)
from sklearn_hypothesaes.app._signal import (
    NoSignalWarning,
    embedding_signal,
    signal_share,
)
from sklearn_hypothesaes.app._stability import (
    RECURRENCE_THRESHOLD,
    other_seeds,
    recurrence,
    seed_stability,
)

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]


def planted(n=1200, seed=0):
    """Texts naming two of eight concepts, their embeddings, and y (the first)."""
    rng = np.random.default_rng(seed)
    atoms = np.linalg.qr(rng.normal(size=(16, 8)))[0].T  # 8 orthonormal rows
    picks = np.array([rng.choice(8, 2, replace=False) for _ in range(n)])
    E = np.zeros((n, 16))
    for i, (a, b) in enumerate(picks):
        E[i] = rng.uniform(1, 2) * atoms[a] + rng.uniform(1, 2) * atoms[b]
    E += rng.normal(scale=0.02, size=E.shape)
    has_first = (picks == 0).any(axis=1)
    y = np.where(rng.random(n) < 0.9, has_first, rng.random(n) < 0.5).astype(int)
    texts = [f"{WORDS[a]} and {WORDS[b]}, item {i}" for i, (a, b) in enumerate(picks)]
    return texts, E.astype(np.float32), y, has_first


class LookupEmbedder(TransformerMixin, BaseEstimator):
    """Texts -> the planted embedding of their row (the number at the end)."""

    def __init__(self, embeddings=None):
        self.embeddings = embeddings

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return self.embeddings[[int(t.rsplit(" ", 1)[1]) for t in X]]


def sae(seed=0):
    return SparseAutoencoder(8, 2, max_epochs=200, random_state=seed)


# ------------------------------------------------------------------ recurrence
def test_recurrence_counts_seeds_at_the_threshold():
    rng = np.random.default_rng(0)
    base = rng.random(200) * (rng.random(200) < 0.2)
    noise = rng.random(200) * (rng.random(200) < 0.2)
    reference = np.column_stack([base, noise])
    # Correlations of exactly 1 (a rescaled copy), about 0.5 and 0 (unrelated).
    partner = rng.random(200) * (rng.random(200) < 0.2)
    half = base / base.std() + np.sqrt(3) * partner / partner.std()
    others = [
        np.column_stack([3 * base, partner]),
        np.column_stack([half, partner]),
        np.column_stack([partner]),
    ]
    share, corr = recurrence(reference, others)
    assert corr[0, 0] == pytest.approx(1.0)
    assert corr[0, 1] == pytest.approx(np.corrcoef(base, half)[0, 1])
    expected = [
        np.mean([1.0 >= 0.5, corr[0, 1] >= 0.5, corr[0, 2] >= 0.5]),
        np.mean(corr[1] >= 0.5),
    ]
    np.testing.assert_allclose(share, expected)
    np.testing.assert_allclose(
        corr[1],
        [
            max(np.corrcoef(noise, o[:, j])[0, 1] for j in range(o.shape[1]))
            for o in others
        ],
    )
    # A latent that never fires matches nothing; no other seed: unknown.
    share, corr = recurrence(np.zeros((200, 1)), others)
    assert share.tolist() == [0.0] and corr.tolist() == [[0.0, 0.0, 0.0]]
    share, corr = recurrence(reference, [])
    assert np.isnan(share).all() and corr.shape == (2, 0)
    assert RECURRENCE_THRESHOLD == 0.5
    assert other_seeds(7, 3) == [8, 9] and other_seeds(2**32 - 1, 2) == [0]


def test_planted_latent_recurs_in_every_seed_and_noise_in_none():
    _, E, y, has_first = planted()
    pipe_sae = sae(0).fit(E)
    selector = LatentSelector(n_latents=3).fit(pipe_sae.transform(E), y)
    Z = pipe_sae.transform(E)[:, selector.get_support(indices=True)]
    # The selected latent that follows the planted concept.
    follows = np.array([np.corrcoef(z, has_first)[0, 1] for z in Z.T])
    assert follows.max() > 0.8
    column = int(follows.argmax())
    rng = np.random.default_rng(1)
    noise = rng.exponential(size=len(y)) * (rng.random(len(y)) < 0.25)
    found = seed_stability(
        E,
        y,
        np.column_stack([Z[:, column], noise]),
        sae=pipe_sae,
        selector=LatentSelector(n_latents=3),
        seeds=[1, 2, 3],
    )
    assert found.seeds == [1, 2, 3]
    assert found.stability.tolist() == [1.0, 0.0]
    assert found.correlation[0].min() > 0.9
    assert np.abs(found.correlation[1]).max() < 0.2


def test_planted_latent_recurs_across_seeds_on_pairs():
    _, E, _, has_first = planted()
    rng = np.random.default_rng(2)
    first, second = rng.integers(0, len(E), 800), rng.integers(0, len(E), 800)
    differ = has_first[first] != has_first[second]
    y = np.where(differ, has_first[first], rng.random(800) < 0.5).astype(int)
    pipe_sae = sae(0).fit(E)
    Z = pipe_sae.transform(E)
    D = Z[first] - Z[second]
    selector = LatentSelector(n_latents=3).fit(D, y)
    chosen = D[:, selector.get_support(indices=True)]
    follows = np.array([np.corrcoef(d, y)[0, 1] for d in chosen.T])
    column = int(np.abs(follows).argmax())
    noise = rng.normal(size=800) * (rng.random(800) < 0.25)
    found = seed_stability(
        E,
        y,
        np.column_stack([chosen[:, column], noise]),
        sae=pipe_sae,
        selector=LatentSelector(n_latents=3),
        seeds=[1, 2, 3],
        pairs=(first, second),
    )
    assert found.stability.tolist() == [1.0, 0.0]
    assert found.correlation[0].min() > 0.9


def test_run_method_reports_stability_per_hypothesis(tmp_path):
    texts, E, y, has_first = planted(n=900)
    kwargs = dict(
        holdout_texts=texts[600:],
        holdout_y=y[600:],
        embedder=LookupEmbedder(E),
        sae=sae(0),
        selector=LatentSelector(n_latents=3),
        generator=HypothesisGenerator(TermDescriber(min_score=2.0), random_state=0),
        memory=tmp_path / "cache",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        result = run_method(texts[:600], y[:600], n_seeds=3, **kwargs)
    table = result.hypotheses
    # The hypothesis of the latent that follows the planted concept recurs
    # with every other seed.
    Z = result.sae.transform(E[:600])
    follows = [np.corrcoef(Z[:, j], has_first[:600])[0, 1] for j in table["latent"]]
    assert max(follows) > 0.75
    assert table["stability"].iloc[int(np.argmax(follows))] == 1.0
    assert table["stability"].isin([0.0, 0.5, 1.0]).all()  # shares of 2 seeds
    assert result.settings["stability"] == {
        "n_seeds": 3,
        "seeds": [1, 2],
        "threshold": 0.5,
    }
    assert "stability" in result.timings
    # The other seeds' autoencoders are cached like the first (as arrays).
    assert len(list((tmp_path / "cache").glob("SparseAutoencoder-*.npz"))) == 3
    # Off by default: no column, nothing refitted.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        plain = run_method(texts[:600], y[:600], **kwargs)
    assert "stability" not in plain.hypotheses and "stability" not in plain.settings


def test_stability_needs_an_sae_with_a_seed():
    class Seedless(TransformerMixin, BaseEstimator):
        def fit(self, X, y=None):
            return self

        def transform(self, X):
            return np.abs(np.asarray(X))

    texts, E, y, _ = planted(n=60)
    with pytest.raises(ValueError, match=r"n_seeds=2 refits the SAE .* Seedless"):
        run_method(
            texts[:40],
            y[:40],
            holdout_texts=texts[40:],
            holdout_y=y[40:],
            embedder=LookupEmbedder(E),
            sae=Seedless(),
            n_seeds=2,
        )


# -------------------------------------------------------------- signal check
def test_signal_share_closed_forms():
    assert signal_share(0.63, 0.75, "binary") == pytest.approx(0.52)
    assert signal_share(0.75, 0.75, "multiclass") == 1.0
    assert signal_share(0.2, 0.48, "regression") == pytest.approx(0.2 / 0.48)
    assert signal_share(0.45, 0.75, "binary") == pytest.approx(-0.2)
    for probe, task in [
        (0.5, "binary"),
        (0.4, "binary"),
        (0.0, "regression"),
        (-0.1, "regression"),
        (np.nan, "binary"),
    ]:
        assert np.isnan(signal_share(0.7, probe, task))


def gaussian(n, d=5, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


def test_ridge_probe_recovers_the_population_r2():
    X = gaussian(3000)
    w = np.array([1.0, -0.5, 0.5, 0.0, 0.0])  # var(Xw) = 1.5
    noise = np.random.default_rng(1).normal(scale=np.sqrt(1.5 / 4), size=3000)
    y = X @ w + noise  # population R^2 = 1.5 / (1.5 + 0.375) = 0.8
    found = embedding_signal(X[:2000], y[:2000], X[2000:], y[2000:])
    assert found.task == "regression" and found.has_signal
    assert found.score == pytest.approx(0.8, abs=0.02)
    assert found.pvalue is None and found.probe.startswith("ridge probe (alpha=")
    # A target the embeddings do not predict: held-out R^2 at or below 0.
    y = np.random.default_rng(2).normal(size=3000)
    found = embedding_signal(X[:2000], y[:2000], X[2000:], y[2000:])
    assert found.score <= 0 and not found.has_signal


def test_logistic_probe_matches_the_oracle_auc():
    X = gaussian(4000, seed=3)
    y = (X[:, 0] + np.random.default_rng(4).normal(size=4000) > 0).astype(int)
    found = embedding_signal(X[:3000], y[:3000], X[3000:], y[3000:])
    oracle = roc_auc_score(y[3000:], X[3000:, 0])  # the true score, P(y=1|x)
    assert found.task == "binary" and found.has_signal
    assert found.score == pytest.approx(oracle, abs=0.01)
    assert found.pvalue < 1e-50


def test_no_signal_is_flagged_at_its_nominal_rate():
    """Under labels independent of the embeddings, has_signal is a 5% test."""
    X = gaussian(200, d=8, seed=5)
    flagged, pvalues = 0, []
    for seed in range(60):
        y = np.random.default_rng(100 + seed).integers(0, 2, 200)
        found = embedding_signal(X[:140], y[:140], X[140:], y[140:])
        flagged += found.has_signal
        pvalues.append(found.pvalue)
    # Binomial(60, 0.05): mean 3, P(X >= 9) < 0.003.
    assert flagged <= 8
    assert stats.kstest(pvalues, "uniform").pvalue > 0.001


def test_multiclass_probe_uses_the_generator_score():
    X = gaussian(1500, d=6, seed=6)
    y = np.array(["a", "b", "c"])[np.argmax(X[:, :3] + 0.5 * gaussian(1500, 3, 7), 1)]
    found = embedding_signal(X[:1000], y[:1000], X[1000:], y[1000:])
    assert found.task == "multiclass" and found.has_signal
    # Mean one-vs-rest ROC AUC over the held-out classes, as
    # HypothesisGenerator.score: scikit-learn's macro OvR AUC of the same probe.
    C = float(found.probe.split("C=")[1].split(",")[0])
    scaler = StandardScaler().fit(X[:1000])
    probe = LogisticRegression(C=C, max_iter=2000).fit(
        scaler.transform(X[:1000]), y[:1000]
    )
    proba = probe.predict_proba(scaler.transform(X[1000:]))
    expected = roc_auc_score(y[1000:], proba, multi_class="ovr", average="macro")
    assert found.score == pytest.approx(expected, rel=1e-3)
    assert found.score > 0.85


def describes_nothing(calls):
    class Describer(TermDescriber):
        def describe(self, *args, **kwargs):
            calls.append(1)
            return super().describe(*args, **kwargs)

    return Describer(min_score=2.0)


def test_signal_check_reported_next_to_the_score():
    texts, E, y, _ = planted(n=900)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NoSignalWarning)
        warnings.simplefilter("ignore", UserWarning)
        result = run_method(
            texts[:600],
            y[:600],
            holdout_texts=texts[600:],
            holdout_y=y[600:],
            embedder=LookupEmbedder(E),
            sae=sae(0),
            selector=LatentSelector(n_latents=3),
            generator=HypothesisGenerator(TermDescriber(min_score=2.0), random_state=0),
        )
    m = result.metrics
    probe = embedding_signal(E[:600], y[:600], E[600:], y[600:])
    assert m["embedding_score"] == probe.score > 0.85
    assert m["embedding_signal"] is True and m["embedding_pvalue"] < 1e-20
    assert m["signal_share"] == pytest.approx(
        (m["score"] - 0.5) / (m["embedding_score"] - 0.5)
    )
    assert m["embedding_probe"].startswith("logistic-regression probe (C=")
    assert list(result.timings).index("signal_check") < list(result.timings).index(
        "hypotheses"
    )


def test_no_signal_warns_before_any_latent_is_described():
    texts, E, _, _ = planted(n=400)
    y = np.random.default_rng(11).integers(0, 2, 400)  # unrelated to the texts
    calls = []
    kwargs = dict(
        holdout_texts=texts[250:],
        holdout_y=y[250:],
        embedder=LookupEmbedder(E),
        sae=sae(0),
        selector=LatentSelector(n_latents=3),
        generator=HypothesisGenerator(describes_nothing(calls), random_state=0),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("error", NoSignalWarning)
        with pytest.raises(NoSignalWarning) as caught:
            run_method(texts[:250], y[:250], **kwargs)
    assert calls == []  # stopped before the describer ran
    message = str(caught.value)
    assert message.startswith(
        "The embeddings carry no detectable signal about y: a logistic-regression "
        "probe (C="
    )
    assert "held-out ROC AUC of" in message and "on 150 texts" in message
    assert "(one-sided p = " in message
    # Left a warning, the run goes on and says it in the metrics.
    with pytest.warns(NoSignalWarning):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "HypothesisGenerator")
            result = run_method(texts[:250], y[:250], **kwargs)
    assert calls == [1]
    assert result.metrics["embedding_signal"] is False
    assert result.metrics["embedding_pvalue"] >= 0.05
    assert np.isnan(result.metrics["signal_share"]) or (
        result.metrics["embedding_score"] > 0.5
    )


def llm_words(body):
    prompt = last_user_message(body)
    if "Texts where it fires:" not in prompt:
        return concept_judge(body)
    fires = prompt.split("Texts where it fires:", 1)[1].lower()
    return f"Mentions {max(WORDS, key=fires.count)}."


def test_no_signal_stops_an_llm_run_before_any_call(make_client):
    texts, E, _, _ = planted(n=400)
    y = np.random.default_rng(11).integers(0, 2, 400)
    with FakeOpenAIServer(chat=llm_words) as server:
        generator = HypothesisGenerator(
            LLMDescriber(make_client(server), n_fidelity=10, n_examples=5),
            random_state=0,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("error", NoSignalWarning)
            with pytest.raises(NoSignalWarning):
                run_method(
                    texts[:250],
                    y[:250],
                    holdout_texts=texts[250:],
                    holdout_y=y[250:],
                    embedder=LookupEmbedder(E),
                    sae=sae(0),
                    selector=LatentSelector(n_latents=3),
                    generator=generator,
                )
        assert server.requests == []
    assert not sklearn.get_config()["enable_metadata_routing"]
