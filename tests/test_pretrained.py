"""SAELens-format folders in and out (load_pretrained, save_pretrained).

Folders are written by hand from the documented format (cfg.json and
sae_weights.safetensors), and compared with a numpy reference of SAELens's own
forward pass, written from its source (sae_lens/saes/*.py, v5 and v6).
"""

import json

import huggingface_hub
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file
from safetensors.torch import save_file as save_torch_file
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_hypothesaes.sae import SparseAutoencoder, _pretrained
from sklearn_hypothesaes.sae._pretrained import (
    load_pretrained,
    resolve_hub_id,
    save_pretrained,
)

D_IN, D_SAE = 6, 10


def supports(activation):
    try:
        SparseAutoencoder(activation=activation)._validate_params()
    except InvalidParameterError:
        return False
    return True


needs_relu = pytest.mark.skipif(
    not supports("relu"), reason="SparseAutoencoder has no activation='relu' yet"
)
needs_jumprelu = pytest.mark.skipif(
    not supports("jumprelu"), reason="SparseAutoencoder has no activation='jumprelu'"
)


def saelens_forward(cfg, weights, X, norm_scaling_factor=None):
    """SAELens's encode and decode in float64 numpy: (codes, reconstruction)."""
    w = {name: np.asarray(v, dtype=np.float64) for name, v in weights.items()}
    W_enc, b_enc, W_dec, b_dec = w["W_enc"], w["b_enc"], w["W_dec"], w["b_dec"]
    if norm_scaling_factor is not None:  # SAE.fold_activation_norm_scaling_factor
        s = norm_scaling_factor
        W_enc, W_dec, b_dec = W_enc * s, W_dec / s, b_dec / s
    architecture = cfg.get("architecture", "standard")
    if cfg.get("activation_fn_str", cfg.get("activation_fn")) == "topk":
        architecture = "topk"
    x = np.asarray(X, dtype=np.float64)
    if cfg.get("apply_b_dec_to_input", True):
        x = x - b_dec
    pre = x @ W_enc + b_enc
    if architecture == "topk":
        k = cfg.get("k") or cfg["activation_fn_kwargs"]["k"]
        norms = np.linalg.norm(W_dec, axis=1)
        rescale = cfg.get("rescale_acts_by_decoder_norm", False)
        if rescale:
            pre = pre * norms
        top = np.argsort(-pre, axis=1)[:, :k]
        Z = np.zeros_like(pre)
        np.put_along_axis(Z, top, np.maximum(np.take_along_axis(pre, top, 1), 0), 1)
        recon = (Z / norms if rescale else Z) @ W_dec + b_dec
        return Z, recon
    if architecture == "jumprelu":
        Z = np.maximum(pre, 0) * (pre > w["threshold"])
    else:
        Z = np.maximum(pre, 0)
    return Z, Z @ W_dec + b_dec


def write_folder(path, cfg, weights, dtype=np.float32):
    path.mkdir(parents=True)
    save_file(
        {n: np.ascontiguousarray(v, dtype=dtype) for n, v in weights.items()},
        str(path / "sae_weights.safetensors"),
    )
    (path / "cfg.json").write_text(json.dumps(cfg))
    return path


def random_weights(seed=0, threshold=False):
    rng = np.random.default_rng(seed)
    weights = {
        "W_enc": rng.normal(size=(D_IN, D_SAE)),
        "b_enc": rng.normal(scale=0.3, size=D_SAE),
        "W_dec": rng.normal(size=(D_SAE, D_IN)),
        "b_dec": rng.normal(scale=0.5, size=D_IN),
    }
    if threshold:
        # One negative threshold: SAELens's relu makes it act as 0.
        weights["threshold"] = np.abs(rng.normal(size=D_SAE))
        weights["threshold"][0] = -0.5
    # Round to float32 here, so that the reference sees the stored values.
    return {n: v.astype(np.float32) for n, v in weights.items()}


@pytest.fixture(scope="module")
def X():
    return np.random.default_rng(1).normal(size=(40, D_IN)).astype(np.float32)


def assert_matches_saelens(sae, cfg, weights, X, **kwargs):
    Z_ref, recon_ref = saelens_forward(cfg, weights, X, **kwargs)
    Z = sae.transform(X)
    np.testing.assert_allclose(Z, Z_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(Z > 0, Z_ref > 0)
    np.testing.assert_allclose(
        sae.inverse_transform(Z), recon_ref, rtol=1e-5, atol=1e-5
    )


# ------------------------------------------------------------------ loading
@pytest.mark.parametrize("apply_b_dec", [True, False])
def test_topk_folder_matches_numpy_reference(tmp_path, X, apply_b_dec):
    weights = random_weights()
    cfg = {
        "architecture": "topk",
        "d_in": D_IN,
        "d_sae": D_SAE,
        "k": 3,
        "dtype": "float32",
        "apply_b_dec_to_input": apply_b_dec,
        "normalize_activations": "none",
        "metadata": {"sae_lens_version": "6.5.0", "hook_name": "blocks.0.hook_resid"},
    }
    sae = load_pretrained(write_folder(tmp_path / "sae", cfg, weights))
    assert (sae.activation, sae.k, sae.n_latents, sae.n_features_in_) == (
        "topk",
        3,
        D_SAE,
        D_IN,
    )
    assert sae.input_scale_ == 1.0 and sae.fvu_ is None
    assert (sae.transform(X) > 0).sum(axis=1).max() == 3
    assert_matches_saelens(sae, cfg, weights, X)
    # The hand computation, written out once without the reference helper.
    x = X.astype(np.float64) - (weights["b_dec"] if apply_b_dec else 0)
    pre = x @ weights["W_enc"].astype(np.float64) + weights["b_enc"]
    kth = np.sort(pre, axis=1)[:, -3][:, None]
    np.testing.assert_allclose(
        sae.transform(X), np.where(pre >= kth, np.maximum(pre, 0), 0), atol=1e-5
    )


def test_old_config_with_topk_activation_fn(tmp_path, X):
    # SAELens 3-5 wrote the activation and its k this way (no "k", and an
    # "architecture" of "standard" or none at all for a TopK SAE).
    weights = random_weights(2)
    cfg = {
        "d_in": D_IN,
        "d_sae": D_SAE,
        "activation_fn_str": "topk",
        "activation_fn_kwargs": {"k": 4},
        "hook_point": "blocks.3.hook_resid_pre",
        "normalize_activations": False,
    }
    sae = load_pretrained(write_folder(tmp_path / "sae", cfg, weights))
    assert (sae.activation, sae.k) == ("topk", 4)
    assert_matches_saelens(sae, cfg, weights, X)


def test_old_topk_config_without_k_is_refused(tmp_path):
    # SAELens 5 refuses it too ("TopK activation function requires a k value").
    cfg = {"d_in": D_IN, "d_sae": D_SAE, "activation_fn_str": "topk"}
    folder = write_folder(tmp_path / "sae", cfg, random_weights())
    with pytest.raises(ValueError, match="'topk' needs activation_fn_kwargs.k"):
        load_pretrained(folder)


def test_topk_rescaled_by_decoder_norm(tmp_path, X):
    weights = random_weights(3)
    weights["W_dec"] *= np.linspace(0.2, 3.0, D_SAE, dtype=np.float32)[:, None]
    cfg = {
        "architecture": "topk",
        "d_in": D_IN,
        "d_sae": D_SAE,
        "k": 3,
        "rescale_acts_by_decoder_norm": True,
    }
    sae = load_pretrained(write_folder(tmp_path / "sae", cfg, weights))
    assert_matches_saelens(sae, cfg, weights, X)
    # Without the rescaling the selection differs: the setting is not ignored.
    Z_plain, _ = saelens_forward(
        {**cfg, "rescale_acts_by_decoder_norm": False}, weights, X
    )
    assert not np.array_equal(sae.transform(X) > 0, Z_plain > 0)


def test_bfloat16_weights(tmp_path, X):
    weights = random_weights(4)
    folder = tmp_path / "sae"
    folder.mkdir()
    tensors = {n: torch.from_numpy(v).to(torch.bfloat16) for n, v in weights.items()}
    save_torch_file(tensors, str(folder / "sae_weights.safetensors"))
    cfg = {"architecture": "topk", "d_in": D_IN, "d_sae": D_SAE, "k": 2}
    (folder / "cfg.json").write_text(json.dumps({**cfg, "dtype": "bfloat16"}))
    sae = load_pretrained(folder)
    assert sae.encoder_weight_.dtype == np.float32
    exact = {n: t.float().numpy() for n, t in tensors.items()}
    assert_matches_saelens(sae, cfg, exact, X)


def test_expected_average_norm_needs_and_folds_the_factor(tmp_path, X):
    weights = random_weights(5)
    cfg = {
        "architecture": "topk",
        "d_in": D_IN,
        "d_sae": D_SAE,
        "k": 3,
        "normalize_activations": "expected_average_only_in",
    }
    folder = write_folder(tmp_path / "sae", cfg, weights)
    with pytest.raises(ValueError, match="norm_scaling_factor=<factor>"):
        load_pretrained(folder)
    sae = load_pretrained(folder, norm_scaling_factor=2.5)
    assert sae.input_scale_ == 2.5
    assert_matches_saelens(sae, cfg, weights, X, norm_scaling_factor=2.5)
    # The inputs really are scaled: the same as the unscaled SAE on 2.5 * X.
    plain = load_pretrained(folder, norm_scaling_factor=1.0)
    np.testing.assert_allclose(
        sae.transform(X), plain.transform(2.5 * X), rtol=1e-5, atol=1e-5
    )
    with pytest.raises(ValueError, match="positive finite number. Got -1"):
        load_pretrained(folder, norm_scaling_factor=-1)


def test_norm_factor_on_an_unnormalised_folder_is_refused(tmp_path):
    cfg = {"architecture": "topk", "d_in": D_IN, "d_sae": D_SAE, "k": 3}
    folder = write_folder(tmp_path / "sae", cfg, random_weights())
    with pytest.raises(ValueError, match="normalize_activations='none'"):
        load_pretrained(folder, norm_scaling_factor=2.0)


@pytest.mark.parametrize("mode", ["constant_norm_rescale", "layer_norm"])
def test_run_time_normalisation_is_refused(tmp_path, mode):
    cfg = {"architecture": "topk", "d_in": D_IN, "d_sae": D_SAE, "k": 3}
    cfg["normalize_activations"] = mode
    folder = write_folder(tmp_path / "sae", cfg, random_weights())
    with pytest.raises(NotImplementedError, match=f"normalize_activations='{mode}'"):
        load_pretrained(folder)


@pytest.mark.parametrize("architecture", ["gated", "transcoder", "batchtopk"])
def test_unsupported_architectures_are_named(tmp_path, architecture):
    cfg = {"architecture": architecture, "d_in": D_IN, "d_sae": D_SAE}
    folder = write_folder(tmp_path / "sae", cfg, random_weights())
    with pytest.raises(
        NotImplementedError,
        match=f"architecture '{architecture}' is not supported; load_pretrained "
        "reads 'standard', 'topk', 'jumprelu'",
    ):
        load_pretrained(folder)


def test_pickles_are_refused(tmp_path):
    checkpoint = tmp_path / "sae.pt"
    checkpoint.write_bytes(b"not opened")
    with pytest.raises(ValueError, match="'sae.pt' is a pickle-based checkpoint"):
        load_pretrained(checkpoint)
    with pytest.raises(ValueError, match="pickle-based checkpoints are never read"):
        load_pretrained(tmp_path / "missing.pkl")
    (tmp_path / "cfg.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"pickle-based weights \(sae.pt\)"):
        load_pretrained(tmp_path)


def test_missing_folder_and_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no folder '/no/such/sae'"):
        load_pretrained("/no/such/sae")
    (tmp_path / "cfg.json").write_text("{}")
    with pytest.raises(
        FileNotFoundError, match="sae_weights.safetensors not found; a SAELens"
    ):
        load_pretrained(tmp_path)


def test_weights_that_do_not_match_the_config(tmp_path):
    cfg = {"architecture": "topk", "d_in": D_IN, "d_sae": D_SAE, "k": 3}
    weights = random_weights()
    weights["W_enc"] = weights["W_enc"].T
    with pytest.raises(
        ValueError,
        match=r"'W_enc' in sae_weights.safetensors has shape \(10, 6\); "
        r"d_in=6 and d_sae=10 in cfg.json need \(6, 10\)",
    ):
        load_pretrained(write_folder(tmp_path / "a", cfg, weights))
    weights = {**random_weights(), "b_gate": np.zeros(D_SAE)}
    with pytest.raises(ValueError, match=r"holds \['b_gate'\], which a 'topk' SAE"):
        load_pretrained(write_folder(tmp_path / "b", cfg, weights))
    with pytest.raises(ValueError, match=r"'k' in cfg.json must be an int \[1, 10\]"):
        load_pretrained(
            write_folder(tmp_path / "c", {**cfg, "k": 11}, random_weights())
        )
    (tmp_path / "c" / "sae_weights.safetensors").write_bytes(b"\x00" * 20)
    (tmp_path / "c" / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_pretrained(tmp_path / "c")


def test_old_scaling_factor_is_folded_into_the_decoder(tmp_path, X):
    weights = random_weights(6)
    factor = np.linspace(0.5, 1.5, D_SAE).astype(np.float32)
    cfg = {"architecture": "topk", "d_in": D_IN, "d_sae": D_SAE, "k": 3}
    folder = write_folder(
        tmp_path / "sae",
        {**cfg, "finetuning_scaling_factor": True},
        {**weights, "scaling_factor": factor},
    )
    sae = load_pretrained(folder)
    Z_ref, _ = saelens_forward(cfg, weights, X)
    np.testing.assert_allclose(sae.transform(X), Z_ref, rtol=1e-5, atol=1e-5)
    recon_ref = (Z_ref * factor) @ weights["W_dec"].astype(np.float64)
    np.testing.assert_allclose(
        sae.inverse_transform(sae.transform(X)),
        recon_ref + weights["b_dec"],
        rtol=1e-5,
        atol=1e-5,
    )


@needs_relu
def test_standard_folder_matches_numpy_reference(tmp_path, X):
    weights = random_weights(7)
    # A SAELens 2-era config: no architecture, no apply_b_dec_to_input.
    cfg = {"d_in": D_IN, "d_sae": D_SAE, "hook_point": "blocks.0.hook_resid_pre"}
    sae = load_pretrained(write_folder(tmp_path / "sae", cfg, weights))
    assert sae.activation == "relu"
    assert_matches_saelens(sae, cfg, weights, X)


@needs_jumprelu
def test_jumprelu_folder_matches_numpy_reference(tmp_path, X):
    weights = random_weights(8, threshold=True)
    cfg = {"architecture": "jumprelu", "d_in": D_IN, "d_sae": D_SAE}
    sae = load_pretrained(write_folder(tmp_path / "sae", cfg, weights))
    assert sae.activation == "jumprelu" and sae.threshold_.shape == (D_SAE,)
    assert_matches_saelens(sae, cfg, weights, X)


# ------------------------------------------------------------------- saving
@pytest.fixture(scope="module")
def train_X():
    rng = np.random.default_rng(2)
    atoms = rng.normal(size=(12, 8))
    codes = rng.exponential(size=(300, 12)) * (rng.random((300, 12)) < 0.25)
    return (codes @ atoms + 3.0).astype(np.float32)


def fitted(X, **params):
    params = {"n_latents": 16, "k": 3, "max_epochs": 3, "random_state": 0, **params}
    return SparseAutoencoder(**params).fit(X)


def assert_same_model(loaded, sae, X):
    np.testing.assert_array_equal(loaded.transform(X), sae.transform(X))
    np.testing.assert_array_equal(
        loaded.inverse_transform(loaded.transform(X)),
        sae.inverse_transform(sae.transform(X)),
    )


@pytest.mark.parametrize("prefixes", [None, [4]])
def test_topk_round_trip_and_saelens_semantics(tmp_path, train_X, prefixes):
    sae = fitted(train_X, matryoshka_prefixes=prefixes)
    assert sae.input_scale_ != 1.0  # the scale must be folded into what is saved
    folder = save_pretrained(
        sae, tmp_path / "sae", model_name="all-MiniLM-L6-v2", hook_name="embedding"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sae"]  # no temp left
    cfg = json.loads((folder / "cfg.json").read_text())
    assert {k: cfg[k] for k in ("architecture", "d_in", "d_sae", "k")} == {
        "architecture": "topk",
        "d_in": 8,
        "d_sae": 16,
        "k": 3,
    }
    assert cfg["apply_b_dec_to_input"] is False
    assert cfg["normalize_activations"] == "none"
    assert cfg["metadata"]["sae_lens_version"] == "6.0.0"
    assert cfg["metadata"]["hook_name"] == "embedding"
    weights = load_file(str(folder / "sae_weights.safetensors"))
    assert {n: w.shape for n, w in weights.items()} == {
        "W_enc": (8, 16),
        "b_enc": (16,),
        "W_dec": (16, 8),
        "b_dec": (8,),
    }
    # What SAELens computes from the folder is what our transform gives.
    assert_matches_saelens(sae, cfg, weights, train_X)
    loaded = load_pretrained(folder)
    assert_same_model(loaded, sae, train_X)
    assert (loaded.activation, loaded.k, loaded.matryoshka_prefixes) == (
        "topk",
        3,
        prefixes,
    )
    assert loaded.input_scale_ == sae.input_scale_


def test_batchtopk_is_saved_as_jumprelu_with_its_threshold(tmp_path, train_X):
    sae = fitted(train_X, activation="batchtopk")
    folder = save_pretrained(sae, tmp_path / "sae")
    cfg = json.loads((folder / "cfg.json").read_text())
    weights = load_file(str(folder / "sae_weights.safetensors"))
    assert cfg["architecture"] == "jumprelu" and "k" not in cfg
    np.testing.assert_array_equal(
        weights["threshold"], np.full(16, sae.threshold_, dtype=np.float32)
    )
    assert_matches_saelens(sae, cfg, weights, train_X)
    loaded = load_pretrained(folder)
    assert (loaded.activation, loaded.k) == ("batchtopk", 3)
    assert loaded.threshold_ == float(np.float32(sae.threshold_))
    assert_same_model(loaded, sae, train_X)


@needs_relu
def test_relu_round_trip(tmp_path, train_X):
    sae = fitted(train_X, activation="relu")
    folder = save_pretrained(sae, tmp_path / "sae")
    cfg = json.loads((folder / "cfg.json").read_text())
    assert cfg["architecture"] == "standard"
    weights = load_file(str(folder / "sae_weights.safetensors"))
    assert_matches_saelens(sae, cfg, weights, train_X)
    assert_same_model(load_pretrained(folder), sae, train_X)


@needs_jumprelu
def test_jumprelu_round_trip(tmp_path, train_X):
    sae = fitted(train_X, activation="jumprelu")
    folder = save_pretrained(sae, tmp_path / "sae")
    cfg = json.loads((folder / "cfg.json").read_text())
    assert cfg["architecture"] == "jumprelu"
    weights = load_file(str(folder / "sae_weights.safetensors"))
    np.testing.assert_array_equal(weights["threshold"], sae.threshold_)
    assert_matches_saelens(sae, cfg, weights, train_X)
    loaded = load_pretrained(folder)
    assert loaded.activation == "jumprelu"
    assert_same_model(loaded, sae, train_X)


def test_save_is_atomic_and_overwrites_only_when_asked(tmp_path, train_X):
    a, b = fitted(train_X), fitted(train_X, random_state=1)
    target = tmp_path / "sae"
    target.mkdir()  # an empty folder is used as is
    save_pretrained(a, target)
    with pytest.raises(FileExistsError, match="Pass overwrite=True"):
        save_pretrained(b, target)
    assert_same_model(load_pretrained(target), a, train_X)
    (target / "sparsity.safetensors").write_bytes(b"stale")
    save_pretrained(b, target, overwrite=True)
    assert sorted(p.name for p in target.iterdir()) == [
        "cfg.json",
        "sae_weights.safetensors",
    ]
    assert_same_model(load_pretrained(target), b, train_X)
    (target / "notes.txt").write_text("mine")
    with pytest.raises(
        FileExistsError, match=r"other than a SAELens SAE \(notes.txt\)"
    ):
        save_pretrained(a, target, overwrite=True)
    assert (target / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sae"]


def test_save_needs_a_fitted_autoencoder(tmp_path):
    with pytest.raises(NotFittedError):
        save_pretrained(SparseAutoencoder(), tmp_path / "sae")
    with pytest.raises(TypeError, match="must be a SparseAutoencoder. Got dict"):
        save_pretrained({}, tmp_path / "sae")


# ---------------------------------------------------------------- hub ids
@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """huggingface_hub.hf_hub_download served from a local folder (no network)."""
    root, calls = tmp_path / "hub", []

    def download(repo_id, filename, force_download=False):
        calls.append((repo_id, filename))
        path = root / repo_id / filename
        if not path.exists():
            raise OSError(f"offline: {repo_id}/{filename}")
        return str(path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setattr(_pretrained, "saelens_registry", lambda: None)
    return root, calls


def test_hub_repo_with_folder(fake_hub, X):
    root, calls = fake_hub
    weights = random_weights(9)
    cfg = {"architecture": "topk", "d_in": D_IN, "d_sae": D_SAE, "k": 2}
    write_folder(root / "owner/repo/layer_3/width_16", cfg, weights)
    sae = load_pretrained("owner/repo/layer_3/width_16")
    assert calls == [
        ("owner/repo", "layer_3/width_16/cfg.json"),
        ("owner/repo", "layer_3/width_16/sae_weights.safetensors"),
    ]
    assert_matches_saelens(sae, cfg, weights, X)


def test_hub_failure_says_what_to_do(fake_hub):
    with pytest.raises(
        OSError,
        match=r"could not fetch 'cfg.json' from the Hugging "
        r"Face repository 'some-release/blocks.8' .*pip install sae-lens",
    ):
        load_pretrained("some-release/blocks.8")


def test_saelens_release_names(fake_hub, monkeypatch, X):
    root, calls = fake_hub
    registry = {
        "my-release": {
            "repo_id": "owner/repo",
            "conversion_func": None,
            "saes": [{"id": "blocks.1", "path": "l1", "norm_scaling_factor": 2.0}],
        },
        "npz-release": {"repo_id": "g/s", "conversion_func": "gemma_2", "saes": []},
    }
    monkeypatch.setattr(_pretrained, "saelens_registry", lambda: registry)
    weights = random_weights(10)
    cfg = {
        "architecture": "topk",
        "d_in": D_IN,
        "d_sae": D_SAE,
        "k": 3,
        "normalize_activations": "expected_average_only_in",
    }
    write_folder(root / "owner/repo/l1", cfg, weights)
    sae = load_pretrained("my-release/blocks.1")
    assert calls[0] == ("owner/repo", "l1/cfg.json")
    assert sae.input_scale_ == 2.0
    assert_matches_saelens(sae, cfg, weights, X, norm_scaling_factor=2.0)
    with pytest.raises(ValueError, match="has no SAE 'blocks.2'. Its ids: blocks.1"):
        load_pretrained("my-release/blocks.2")
    with pytest.raises(NotImplementedError, match="stored in the 'gemma_2' format"):
        load_pretrained("npz-release/layer_0")
    assert resolve_hub_id("owner/repo", registry) == ("owner/repo", "", {}, None)


# ------------------------------------------------ SAELens itself, if installed
@pytest.fixture(scope="module")
def sae_lens():
    # Not a dependency (it brings TransformerLens): these run where it is
    # installed, e.g. pip install sae-lens torch==2.13.0 in a side venv.
    return pytest.importorskip("sae_lens")


@pytest.mark.parametrize(
    "activation",
    [
        "topk",
        "batchtopk",
        pytest.param("relu", marks=needs_relu),
        pytest.param("jumprelu", marks=needs_jumprelu),
    ],
)
def test_saelens_opens_what_we_save(sae_lens, tmp_path, train_X, activation):
    sae = fitted(train_X, activation=activation)
    theirs = sae_lens.SAE.load_from_disk(save_pretrained(sae, tmp_path / "sae"))
    with torch.no_grad():
        Z = theirs.encode(torch.from_numpy(train_X))
        recon = theirs.decode(Z)
    np.testing.assert_allclose(Z.numpy(), sae.transform(train_X), atol=1e-5)
    np.testing.assert_allclose(
        recon.numpy(), sae.inverse_transform(sae.transform(train_X)), atol=1e-5
    )


@pytest.mark.parametrize(
    "architecture",
    [
        "topk",
        pytest.param("standard", marks=needs_relu),
        pytest.param("jumprelu", marks=needs_jumprelu),
    ],
)
def test_we_open_what_saelens_saves(sae_lens, tmp_path, X, architecture):
    from sae_lens.saes import (
        JumpReLUSAE,
        JumpReLUSAEConfig,
        StandardSAE,
        StandardSAEConfig,
        TopKSAE,
        TopKSAEConfig,
    )

    classes = {
        "topk": (
            TopKSAE,
            TopKSAEConfig,
            {"k": 3, "rescale_acts_by_decoder_norm": True},
        ),
        "standard": (StandardSAE, StandardSAEConfig, {}),
        "jumprelu": (JumpReLUSAE, JumpReLUSAEConfig, {}),
    }
    cls, config, extra = classes[architecture]
    theirs = cls(config(d_in=D_IN, d_sae=D_SAE, apply_b_dec_to_input=True, **extra))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in theirs.named_parameters():
            param.copy_(0.3 * torch.randn(param.shape, generator=generator))
            if name == "threshold":
                param.abs_()
    theirs.save_model(tmp_path / "sae")
    sae = load_pretrained(tmp_path / "sae")
    with torch.no_grad():
        Z = theirs.encode(torch.from_numpy(X))
        recon = theirs.decode(Z)
    np.testing.assert_allclose(sae.transform(X), Z.numpy(), atol=1e-5)
    np.testing.assert_allclose(
        sae.inverse_transform(sae.transform(X)), recon.numpy(), atol=1e-5
    )


def test_a_loaded_sae_survives_save_sae(tmp_path, train_X):
    from sklearn_hypothesaes.sae import load_sae, save_sae

    sae = fitted(train_X)
    loaded = load_pretrained(save_pretrained(sae, tmp_path / "sae"))
    back = load_sae(save_sae(loaded, tmp_path / "sae.npz"))
    assert back.latent_frequency_ is None
    assert_same_model(back, sae, train_X)
