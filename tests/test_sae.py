import pickle

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from planted import planted_dictionary
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_hypothesaes import SparseAutoencoder
from sklearn_hypothesaes.sae import load_sae, save_sae
from sklearn_hypothesaes.sae._kernels import TrainState, select_topk


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(0)
    return rng.normal(size=(400, 12)).astype(np.float32)


def small(**kw):
    params = dict(n_latents=16, k=3, max_epochs=5, batch_size=64, random_state=0)
    params.update(kw)
    return SparseAutoencoder(**params)


@parametrize_with_checks(
    [small(), small(activation="batchtopk"), small(matryoshka_prefixes=[4])]
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


@pytest.mark.parametrize("activation", ["topk", "batchtopk"])
def test_recovers_planted_dictionary(activation):
    X, atoms = planted_dictionary()
    sae = SparseAutoencoder(
        n_latents=48,
        k=3,
        activation=activation,
        batch_size=128,
        max_epochs=40,
        random_state=0,
    ).fit(X)
    D = sae.decoder_weight_ / np.linalg.norm(sae.decoder_weight_, axis=1)[:, None]
    best_cos = (atoms @ D.T).max(axis=1)
    # Stated target: at least 85% of the planted atoms found at cosine >= 0.9.
    assert (best_cos >= 0.9).mean() >= 0.85
    assert sae.validation_fvu_ < 0.2
    assert sae.dead_fraction_ <= 0.1


def _dense_reference(x, w_enc, b_enc, w_dec, b_dec, rows, cols):
    pre = (x - b_dec) @ w_enc.T + b_enc
    mask = torch.zeros_like(pre, dtype=torch.bool)
    mask[rows, cols] = True
    z = F.relu(pre) * mask
    return z @ w_dec + b_dec


def _state(params, activation="topk", prefixes=None, **kw):
    options = dict(
        row_var=2.0,
        lr=1e-2,
        k=5,
        activation=activation,
        prefixes=prefixes,
        aux_k=6,
        aux_coef=0.0,
        dead_rows=10**9,
        clip_grad=None,
        compute_dtype=params["w_enc"].dtype,
    )
    options.update(kw)
    return TrainState(params, **options)


@pytest.mark.parametrize("activation", ["topk", "batchtopk"])
@pytest.mark.parametrize("prefixes", [None, [8, 80], [3, 30, 80]])
@pytest.mark.parametrize("dead", [False, True])
def test_hand_written_gradients_match_dense_autograd(activation, prefixes, dead):
    """Loss and every gradient of a step, Matryoshka and AuxK included, equal
    autograd on the dense formulas (float64)."""
    gen = torch.Generator().manual_seed(0)
    B, d, M = 32, 24, 80
    x = torch.randn(B, d, dtype=torch.float64, generator=gen)
    init = {
        name: torch.randn(*shape, dtype=torch.float64, generator=gen)
        for name, shape in (("w_enc", (M, d)), ("b_enc", (M,)), ("w_dec", (M, d)))
    }
    init["b_dec"] = 0.1 * torch.randn(d, dtype=torch.float64, generator=gen)
    state = _state(init, activation, prefixes, aux_coef=0.5 if dead else 0.0)
    if dead:
        state.rows_since_fired[::3] = 10**9
    grads, loss, code, _ = state.loss_and_grads(x)
    ref = {n: p.clone().requires_grad_() for n, p in init.items()}
    dense_z = F.relu((x - ref["b_dec"]) @ ref["w_enc"].T + ref["b_enc"])
    mask = torch.zeros(B, M, dtype=torch.bool)
    mask[code.rows, code.cols] = True
    z = dense_z * mask
    ends = prefixes or [M]
    recon_loss = torch.stack(
        [
            (z[:, :end] @ ref["w_dec"][:end] + ref["b_dec"] - x).pow(2).sum()
            for end in ends
        ]
    ).mean() / (B * 2.0)
    total = recon_loss
    if dead:
        resid = (x - z @ ref["w_dec"] - ref["b_dec"]).detach()
        dead_mask = state.dead_mask()
        with torch.no_grad():
            pre = (x - init["b_dec"]) @ init["w_enc"].T + init["b_enc"]
            masked = pre.masked_fill(~dead_mask, float("-inf"))
            picked = masked.topk(6, dim=1).indices
        aux_mask = torch.zeros(B, M, dtype=torch.bool).scatter_(1, picked, True)
        resid_hat = (dense_z * aux_mask) @ ref["w_dec"]
        var = (resid - resid.mean(0)).pow(2).sum()
        total = total + 0.5 * (resid_hat - resid).pow(2).sum() / var
    total.backward()
    torch.testing.assert_close(loss, recon_loss.detach(), rtol=1e-12, atol=1e-12)
    for name, param in ref.items():
        torch.testing.assert_close(grads[name], param.grad, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("clip", [None, 1e-3])
def test_train_step_matches_dense_step(clip):
    """A whole optimisation step (loss, projection, clipping, Adam) equals
    dense autograd and torch.optim.Adam."""
    gen = torch.Generator().manual_seed(1)
    B, d, M, k = 16, 8, 24, 3
    x = torch.randn(B, d, generator=gen)
    w = torch.randn(M, d, generator=gen)
    w /= w.norm(dim=1, keepdim=True)
    init = {"w_enc": w.clone(), "b_enc": torch.zeros(M), "w_dec": w, "b_dec": x.mean(0)}
    state = _state(
        {n: p.clone() for n, p in init.items()}, row_var=1.0, k=k, clip_grad=clip
    )
    state.step(x)
    ref = {n: p.clone().requires_grad_() for n, p in init.items()}
    with torch.no_grad():
        pre = torch.addmm(ref["b_enc"], x - ref["b_dec"], ref["w_enc"].T)
        rows, cols, _ = select_topk(pre, k)
    recon = _dense_reference(
        x, ref["w_enc"], ref["b_enc"], ref["w_dec"], ref["b_dec"], rows, cols
    )
    loss = (recon - x).pow(2).sum() / B
    loss.backward()
    with torch.no_grad():
        g = ref["w_dec"].grad
        g -= (g * ref["w_dec"]).sum(1, keepdim=True) * ref["w_dec"]
    if clip:
        assert torch.nn.utils.clip_grad_norm_(ref.values(), clip) > clip
    opt = torch.optim.Adam(ref.values(), lr=1e-2)
    opt.step()
    with torch.no_grad():
        ref["w_dec"] /= ref["w_dec"].norm(dim=1, keepdim=True)
    for name in init:
        torch.testing.assert_close(
            state.params[name].detach(), ref[name].detach(), rtol=1e-5, atol=1e-6
        )


def test_fitted_metrics_and_transform(blobs):
    sae = small(n_latents=32, k=4, max_epochs=20).fit(blobs)
    Z = sae.transform(blobs)
    assert Z.shape == (400, 32) and Z.dtype == np.float32 and (Z >= 0).all()
    assert ((Z > 0).sum(axis=1) <= 4).all()
    # fvu_ covers the training rows; score() = 1 - FVU over the data given.
    recon = sae.inverse_transform(Z)
    fvu_all = ((recon - blobs) ** 2).sum() / ((blobs - blobs.mean(0)) ** 2).sum()
    assert sae.score(blobs) == pytest.approx(1 - fvu_all, rel=1e-4)
    assert 0 < sae.fvu_ < 1 and 0 < sae.validation_fvu_ < 1
    assert sae.l0_ == pytest.approx(4.0, abs=0.05)
    assert sae.l0_threshold_ == pytest.approx(4.0, abs=0.05)
    assert len(sae.loss_curve_) == sae.n_iter_ == len(sae.validation_fvu_curve_)
    # Best = last improvement by more than tol; its weights are the ones kept.
    assert sae.best_validation_fvu_ in sae.validation_fvu_curve_
    assert sae.best_validation_fvu_ <= min(sae.validation_fvu_curve_) + sae.tol
    assert sae.validation_fvu_ == pytest.approx(sae.best_validation_fvu_, rel=1e-4)
    assert sae.latent_frequency_.shape == (32,)
    assert sae.dead_fraction_ == pytest.approx(np.mean(sae.latent_frequency_ == 0))


def test_input_scale_is_folded_into_weights(blobs):
    big = blobs * 1000.0
    a = small(n_latents=32, k=4).fit(blobs)
    b = small(n_latents=32, k=4).fit(big)
    assert b.input_scale_ == pytest.approx(a.input_scale_ / 1000.0, rel=1e-5)
    np.testing.assert_allclose(
        b.transform(big), a.transform(blobs), rtol=1e-3, atol=1e-3
    )
    assert b.score(big) == pytest.approx(a.score(blobs), abs=1e-4)


def test_sparse_output_equals_dense(blobs):
    sae = small(transform_batch_size=50).fit(blobs)
    dense = sae.transform(blobs)
    sae.set_params(sparse_output=True)
    Z = sae.transform(blobs)
    assert sp.issparse(Z) and Z.format == "csr" and Z.dtype == np.float32
    np.testing.assert_array_equal(Z.toarray(), dense)
    np.testing.assert_allclose(
        sae.inverse_transform(Z), sae.inverse_transform(dense), rtol=1e-5, atol=1e-6
    )


def test_batchtopk_threshold_gives_about_k_per_row(blobs):
    sae = small(n_latents=32, k=4, activation="batchtopk", max_epochs=30).fit(blobs)
    assert sae.threshold_ is not None and sae.threshold_ > 0
    assert sae.l0_ == pytest.approx(4.0, abs=0.05)
    # The threshold is learned to give about k per row without the batch.
    assert 2.0 <= sae.l0_threshold_ <= 6.0
    # Codes do not depend on which rows are transformed together.
    np.testing.assert_array_equal(sae.transform(blobs[:7]), sae.transform(blobs)[:7])


def test_matryoshka_prefix_reconstructs_alone():
    # Two-level data: one of 8 strong coarse atoms plus two weak fine ones per row.
    rng = np.random.default_rng(0)
    n, d = 3000, 32
    coarse = rng.normal(size=(8, d))
    fine = rng.normal(size=(40, d))
    coarse /= np.linalg.norm(coarse, axis=1, keepdims=True)
    fine /= np.linalg.norm(fine, axis=1, keepdims=True)
    X = coarse[rng.integers(0, 8, n)] * rng.uniform(2, 3, (n, 1))
    for _ in range(2):
        X += fine[rng.integers(0, 40, n)] * rng.uniform(0.3, 0.8, (n, 1))
    X = (X + 0.01 * rng.normal(size=X.shape)).astype(np.float32)

    def prefix_fvu(sae, end):
        Z = sae.transform(X)
        Z[:, end:] = 0
        err = ((sae.inverse_transform(Z) - X) ** 2).sum()
        return err / ((X - X.mean(0)) ** 2).sum()

    params = dict(n_latents=48, k=3, batch_size=128, max_epochs=20, random_state=0)
    plain = SparseAutoencoder(matryoshka_prefixes=None, **params).fit(X)
    nested = SparseAutoencoder(matryoshka_prefixes=[8], **params).fit(X)
    # The first 8 latents are trained to reconstruct on their own (0.14 vs 0.96).
    assert prefix_fvu(nested, 8) < 0.3
    assert prefix_fvu(plain, 8) > 0.8
    assert nested.fvu_ < 0.1


def test_same_seed_same_model(blobs):
    a = small().fit(blobs)
    b = small().fit(blobs)
    np.testing.assert_array_equal(a.encoder_weight_, b.encoder_weight_)
    np.testing.assert_array_equal(a.decoder_weight_, b.decoder_weight_)
    c = small(random_state=1).fit(blobs)
    assert not np.array_equal(a.decoder_weight_, c.decoder_weight_)


def test_given_validation_data(blobs):
    sae = small().fit(blobs[:300], X_val=blobs[300:])
    assert sae.validation_fvu_ == pytest.approx(1 - sae.score(blobs[300:]), rel=1e-5)


def test_warm_start_and_partial_fit(blobs):
    sae = small(max_epochs=3, warm_start=True, early_stopping=False).fit(blobs)
    first = sae.fvu_
    sae.fit(blobs)
    assert sae.n_iter_ == 6 and len(sae.loss_curve_) == 6
    assert sae.fvu_ < first
    inc = small(early_stopping=False)
    for _ in range(3):
        inc.partial_fit(blobs)
    assert inc.n_iter_ == 3 and inc.n_rows_seen_ == 1200
    before = inc.fvu_
    inc.partial_fit(blobs)
    assert inc.fvu_ < before


def test_pickle_holds_numpy_only(blobs):
    sae = small().fit(blobs)
    sae.transform(blobs[:5])  # builds the device cache
    state = sae.__getstate__()
    assert "_device_params" not in state
    assert not any(isinstance(v, torch.Tensor) for v in state.values())
    loaded = pickle.loads(pickle.dumps(sae))
    np.testing.assert_array_equal(loaded.transform(blobs), sae.transform(blobs))


def test_pipeline_gridsearch_set_output(blobs):
    y = (blobs[:, 0] + 0.1 * blobs[:, 1] > 0).astype(int)
    pipe = make_pipeline(small(), LogisticRegression())
    grid = GridSearchCV(
        pipe,
        {"sparseautoencoder__k": [2, 4], "sparseautoencoder__n_latents": [16, 24]},
        cv=2,
    )
    grid.fit(blobs, y)
    assert set(grid.cv_results_["param_sparseautoencoder__k"]) == {2, 4}
    assert grid.best_score_ > 0.6
    sae = clone(small()).set_output(transform="pandas")
    out = sae.fit_transform(pd.DataFrame(blobs, columns=[f"e{i}" for i in range(12)]))
    assert list(out.columns[:2]) == ["sparseautoencoder0", "sparseautoencoder1"]
    # Unsupervised search: GridSearchCV scores with 1 - FVU.
    search = GridSearchCV(small(), {"k": [1, 4]}, cv=2).fit(blobs)
    assert search.best_params_ == {"k": 4}


@pytest.mark.parametrize(
    "params, X, match",
    [
        (
            {"k": 20},
            None,
            r"'k' parameter of SparseAutoencoder must be an int in the "
            r"range \[1, n_latents=16\]. Got 20",
        ),
        (
            {"k": 0},
            None,
            r"'k' parameter of SparseAutoencoder must be an int in the "
            r"range \[1, inf\). Got 0",
        ),
        (
            {"matryoshka_prefixes": [8, 4]},
            None,
            r"'matryoshka_prefixes' .* Got \[8, 4\]",
        ),
        ({"activation": "gelu"}, None, r"'activation' parameter .* Got 'gelu'"),
        ({}, np.array([1.0, 2.0, 3.0]), r"Expected 2D array, got 1D array"),
        ({}, np.empty((0, 4)), r"0 sample\(s\)"),
        ({}, np.array([[1.0, np.nan], [0.0, 1.0]]), r"Input X contains NaN"),
        ({}, np.ones((1, 3)), r"n_samples=1"),
    ],
)
def test_bad_input_errors(params, X, match):
    X = np.random.default_rng(0).normal(size=(20, 4)) if X is None else X
    with pytest.raises(ValueError, match=match):
        small(**params).fit(X)


def test_wrong_width_after_fit(blobs):
    sae = small().fit(blobs)
    with pytest.raises(
        ValueError,
        match="X has 5 features, but SparseAutoencoder is expecting 12 features",
    ):
        sae.transform(blobs[:, :5])
    with pytest.raises(ValueError, match=r"shape \(n_samples, n_latents=16\)"):
        sae.inverse_transform(np.zeros((2, 3)))


def test_partial_fit_epochs_shuffle_differently(blobs, monkeypatch):
    import sklearn_hypothesaes.sae._training as training

    orders = []
    original = training.TrainState.step

    def record(self, x, k=None):
        orders.append(float(x[0, 0]))
        return original(self, x, k)

    monkeypatch.setattr(training.TrainState, "step", record)
    sae = small(early_stopping=False)
    sae.partial_fit(blobs)  # initialisation draws come first in this call
    orders.clear()
    sae.partial_fit(blobs)
    second = list(orders)
    orders.clear()
    sae.partial_fit(blobs)
    assert orders != second


@pytest.mark.parametrize("activation", ["topk", "batchtopk"])
def test_partial_fit_resumes_optimiser_after_pickling(blobs, activation):
    batch_a, batch_b = blobs[:200], blobs[200:]
    sae = small(activation=activation, early_stopping=False)
    sae.partial_fit(batch_a).partial_fit(batch_b)
    restored = small(activation=activation, early_stopping=False).partial_fit(batch_a)
    restored = pickle.loads(pickle.dumps(restored))
    restored.partial_fit(batch_b)
    for name in ("encoder_weight_", "encoder_bias_", "decoder_weight_"):
        np.testing.assert_array_equal(getattr(restored, name), getattr(sae, name))
    assert restored.threshold_ == sae.threshold_
    # A fresh optimiser (what unpickling gave before) lands elsewhere.
    fresh = small(activation=activation, early_stopping=False).partial_fit(batch_a)
    fresh.optimizer_state_ = None
    fresh.partial_fit(batch_b)
    assert not np.array_equal(fresh.decoder_weight_, sae.decoder_weight_)
    # The state is plain numpy: 4 Adam steps per 200 rows in batches of 64.
    state = restored.optimizer_state_
    assert all(isinstance(v, np.ndarray) for v in state.values())
    assert int(state["step"]) == 8
    assert state["exp_avg"].shape == (2 * 16 * 12 + 16 + 12,)


@pytest.mark.parametrize("activation", ["topk", "batchtopk"])
def test_transform_does_not_depend_on_batching(activation):
    # On two BLAS threads, a matmul over 7 rows and one over 400 rounded some
    # pre-activations 1 ulp apart; fixed row blocks give every row one path.
    X = np.random.default_rng(1).normal(size=(600, 64)).astype(np.float32)
    sae = SparseAutoencoder(
        128, 8, activation=activation, max_epochs=2, random_state=0
    ).fit(X)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        full = sae.transform(X)
        rows = np.random.default_rng(2).permutation(600)
        for idx in (np.arange(7), rows[:7], rows[:300], rows[:1]):
            np.testing.assert_array_equal(sae.transform(X[idx]), full[idx])
        sae.set_params(transform_batch_size=33)
        np.testing.assert_array_equal(sae.transform(X), full)
    finally:
        torch.set_num_threads(threads)


def test_fit_leaves_no_optimizer_state(blobs):
    sae = small().fit(blobs)
    assert sae.optimizer_state_ is None


def test_progress_bar_says_why_training_stopped(blobs, capsys):
    # tol=10 makes every epoch after the first "no improvement"; without a
    # decay phase the second bad epoch stops training at epoch 3 of 20.
    sae = small(
        max_epochs=20, tol=10.0, n_iter_no_change=2, decay_fraction=0.0, verbose=1
    ).fit(blobs)
    assert sae.n_iter_ == 3
    err = capsys.readouterr().err
    last = err.rstrip().split("\r")[-1]
    assert "SAE epochs (stopped early)" in last
    assert "early stop at epoch 3: no validation improvement for 2 epochs" in last
    assert last.endswith("]")  # closed: the final refresh was written whole
    assert err.endswith("\n")  # the line is kept, not erased


def test_progress_bar_says_when_annealing_ended_training(blobs, capsys):
    sae = small(max_epochs=20, tol=10.0, n_iter_no_change=2, verbose=1).fit(blobs)
    assert sae.n_iter_ < 20
    err = capsys.readouterr().err
    assert (
        f"stopped at epoch {sae.n_iter_}: learning rate annealed to 0 after a "
        "validation plateau" in err
    )


def test_progress_bar_complete_run_leaves_no_line(blobs, capsys):
    small(max_epochs=3, early_stopping=False, verbose=1).fit(blobs)
    err = capsys.readouterr().err
    assert "SAE epochs" in err and "stopped" not in err
    assert err.endswith("\r")  # erased on close, as before


@pytest.mark.parametrize(
    "params",
    [{}, {"activation": "batchtopk", "matryoshka_prefixes": None}],
)
def test_save_load_round_trip_is_exact(tmp_path, blobs, params):
    frame = pd.DataFrame(blobs, columns=[f"e{i}" for i in range(12)])
    sae = small(**params).fit(frame)
    path = save_sae(sae, tmp_path / "sae.npz")
    assert path == tmp_path / "sae.npz" and list(tmp_path.iterdir()) == [path]
    loaded = load_sae(path)
    assert type(loaded) is SparseAutoencoder
    assert loaded.get_params() == sae.get_params()
    np.testing.assert_array_equal(loaded.transform(frame), sae.transform(frame))
    Z = sae.transform(frame)
    np.testing.assert_array_equal(loaded.inverse_transform(Z), sae.inverse_transform(Z))
    assert loaded.score(frame) == sae.score(frame)
    for name, value in vars(sae).items():
        if name.endswith("_") and not name.startswith("_"):
            got = getattr(loaded, name)
            if isinstance(value, np.ndarray):
                assert got.dtype == value.dtype
                np.testing.assert_array_equal(got, value)
            else:
                assert got == value and type(got) is type(value), name
    # Nothing needs pickle to read.
    with np.load(path, allow_pickle=False) as npz:
        assert all(npz[n].dtype.kind in "biuf" for n in npz.files)


def test_loaded_model_continues_partial_fit(tmp_path, blobs):
    reference = small(early_stopping=False).partial_fit(blobs[:200])
    path = save_sae(reference, tmp_path / "sae.npz")
    reference.partial_fit(blobs[200:])
    loaded = load_sae(path).partial_fit(blobs[200:])
    np.testing.assert_array_equal(loaded.decoder_weight_, reference.decoder_weight_)


def test_save_is_atomic(tmp_path, blobs, monkeypatch):
    sae = small().fit(blobs)
    path = save_sae(sae, tmp_path / "sae.npz")
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", fail)
    with pytest.raises(OSError, match="No space left"):
        save_sae(small(k=2).fit(blobs), path)
    assert path.read_bytes() == before  # the old file is intact
    assert list(tmp_path.iterdir()) == [path]  # no temporary left behind


@pytest.mark.parametrize(
    "damage, reason",
    [
        ("truncated", "File is not a zip file"),
        ("bitflip", "Bad CRC-32 for file 'encoder_weight_.npy'"),
        ("garbage", "not an .npz archive of numeric arrays"),
        ("pickle", "not an .npz archive of numeric arrays"),
        ("npy", "a single .npy array, not an .npz archive"),
    ],
)
def test_load_corrupt_file_names_file_and_remedy(tmp_path, blobs, damage, reason):
    path = save_sae(small().fit(blobs), tmp_path / "sae.npz")
    content = path.read_bytes()
    if damage == "bitflip":
        flipped = bytearray(content)
        flipped[300] ^= 0xFF  # inside the first array's data
        path.write_bytes(bytes(flipped))
    elif damage == "truncated":
        path.write_bytes(content[: len(content) - 100])
    elif damage == "garbage":
        path.write_bytes(b"\x00" * 64)
    elif damage == "pickle":
        path.write_bytes(pickle.dumps(small()))
    else:
        np.save(path.open("wb"), np.zeros(3))
    with pytest.raises(ValueError) as err:
        load_sae(path)
    message = str(err.value)
    assert message.startswith(
        f"The file '{path}' is not a readable saved SparseAutoencoder ({reason})."
    )
    assert message.endswith(
        "It is truncated, corrupt or was not written by save_sae: delete it (a "
        "cache refits it; otherwise fit and save the model again)."
    )


def test_load_rejects_foreign_attribute_names(tmp_path, blobs):
    import json

    path = save_sae(small().fit(blobs), tmp_path / "sae.npz")
    with np.load(path) as npz:
        members = {n: npz[n] for n in npz.files}
    meta = json.loads(members["__meta__.json"].tobytes())
    meta["attributes"]["__class__"] = 1
    members["__meta__.json"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(path, **members)
    with pytest.raises(ValueError, match=r"'__class__' is not a fitted attribute"):
        load_sae(path)


def test_save_sae_errors(tmp_path, blobs):
    with pytest.raises(NotFittedError):
        save_sae(small(), tmp_path / "a.npz")
    with pytest.raises(TypeError, match="must be a SparseAutoencoder. Got dict"):
        save_sae({}, tmp_path / "a.npz")
    sae = small(random_state=np.random.RandomState(0)).fit(blobs)
    with pytest.raises(
        ValueError,
        match=r"The 'random_state' parameter of SparseAutoencoder is a RandomState",
    ):
        save_sae(sae, tmp_path / "a.npz")
    assert list(tmp_path.iterdir()) == []


def test_centred_squares_of_tensors_match_numpy():
    from sklearn_hypothesaes.sae._training import CentredSquares

    rng = np.random.default_rng(0)
    # A large offset: a plain sum of squares would cancel badly.
    X = (rng.normal(size=(1000, 7)) + 1e4).astype(np.float32)
    host, device = CentredSquares(), CentredSquares()
    for lo in range(0, len(X), 300):
        host.add(X[lo : lo + 300])
        device.add(torch.from_numpy(X[lo : lo + 300]))
    expected = ((X.astype(np.float64) - X.astype(np.float64).mean(0)) ** 2).sum()
    assert device.value() == pytest.approx(expected, rel=1e-12)
    assert device.value() == pytest.approx(host.value(), rel=1e-12)
    np.testing.assert_allclose(device.mean(), X.astype(np.float64).mean(0), rtol=1e-14)
    assert isinstance(device.mean(), np.ndarray)
    assert CentredSquares().mean() is None


def test_statistics_from_rows_on_the_device_match_the_host_path():
    X, _ = planted_dictionary(n=900, d=16, m=24, k=2)
    sae = small(n_latents=24, k=2, max_epochs=2, transform_batch_size=100).fit(X)
    idx = np.arange(3, 900, 2)
    host = sae._data_stats(X, idx)
    device = sae._data_stats(torch.from_numpy(X), idx)
    assert device["n"] == host["n"] == len(idx)
    assert device["sse"] == host["sse"]
    assert device["fvu"] == pytest.approx(host["fvu"], rel=1e-12)
    np.testing.assert_array_equal(device["frequency"], host["frequency"])
    np.testing.assert_allclose(device["mean"], X[idx].astype(np.float64).mean(0))


def test_batches_gathered_on_the_device_equal_the_host_batches(tmp_path):
    from sklearn_hypothesaes.sae._training import _Batches, rows_to_device

    X, _ = planted_dictionary(n=500, d=8, m=12, k=2)
    path = tmp_path / "rows.npy"
    np.save(path, X)
    X = np.load(path, mmap_mode="r")  # read-only: copied block by block
    rows = rows_to_device(X, torch.device("cpu"), block=64)
    np.testing.assert_array_equal(rows.numpy(), X)
    train_idx = np.sort(np.random.default_rng(1).permutation(500)[:430])
    host = _Batches(X, train_idx, 1.7, torch.device("cpu"))
    gathered = _Batches(X, train_idx, 1.7, torch.device("cpu"))
    # The GPU branch, on the CPU: all rows held, batches gathered by position.
    gathered.on_device = rows
    gathered.train_on_device = torch.from_numpy(train_idx)
    expected = list(host.epoch(torch.Generator().manual_seed(3), 64))
    got = list(gathered.epoch(torch.Generator().manual_seed(3), 64))
    assert len(got) == len(expected) == 7
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # The held rows stay unscaled, for the statistics after training.
    np.testing.assert_array_equal(rows.numpy(), X)


def test_sort_and_offset_helpers_match_their_plain_torch_forms():
    from sklearn_hypothesaes.sae._kernels import argsort_latents, group_starts

    gen = torch.Generator().manual_seed(0)
    for n_latents in (7, 256, 2**15, 2**15 + 1):
        # Many repeats: the order among equal ids must be the stable one.
        cols = torch.randint(0, n_latents, (4096,), generator=gen)
        order = argsort_latents(cols, n_latents)
        assert order.dtype == torch.int64
        torch.testing.assert_close(
            order, torch.argsort(cols, stable=True), rtol=0, atol=0
        )
        # Group starts of a sorted index, empty groups (ids absent) included.
        starts = group_starts(cols[order], n_latents)
        counts = torch.bincount(cols, minlength=n_latents)
        expected = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
        torch.testing.assert_close(starts, expected[:-1], rtol=0, atol=0)


def test_init_statistics_match_the_plain_formulas():
    from sklearn_hypothesaes.sae._kernels import geometric_median, total_variance

    gen = torch.Generator().manual_seed(0)
    # More rows than a block, an offset, and a few outliers.
    x = torch.randn(2500, 6, generator=gen, dtype=torch.float64) * 2 + 30
    x[:25] += 500
    assert total_variance(x) == pytest.approx(
        float(x.var(0, correction=0).sum()), rel=1e-12
    )
    # Weiszfeld on the whole array at once, as written in textbooks.
    median = x.mean(0)
    for _ in range(20):
        weights = 1 / (x - median).norm(dim=1).clamp_min(1e-6)
        new = (weights[:, None] * x).sum(0) / weights.sum()
        done = (new - median).norm() < 1e-6 * median.norm().clamp_min(1.0)
        median = new
        if done:
            break
    torch.testing.assert_close(geometric_median(x), median, rtol=1e-12, atol=0)
    # Robust: the outliers barely move it, unlike the mean.
    assert float((median - 30).abs().max()) < 1.0 < float((x.mean(0) - 30).min())


def test_skipped_dead_latent_checks_never_miss_a_dead_latent():
    """The CPU check is skipped only while no latent can be dead: at every step
    the dead latents AuxK uses are exactly those of a full check."""

    class Checked(TrainState):
        seen = []

        def _n_dead_update(self):
            expected = torch.nonzero(self.dead_mask()).squeeze(1)
            super()._n_dead_update()
            assert self._n_dead == len(expected)
            if self._n_dead:
                torch.testing.assert_close(self._dead, expected, rtol=0, atol=0)
            self.seen.append(self._n_dead)

    gen = torch.Generator().manual_seed(0)
    d, m = 12, 40
    params = {
        "w_enc": torch.randn(m, d, generator=gen),
        "b_enc": torch.zeros(m),
        "w_dec": torch.nn.functional.normalize(torch.randn(m, d, generator=gen)),
        "b_dec": torch.zeros(d),
    }
    state = Checked(
        params,
        row_var=float(d),
        lr=1e-2,
        k=2,
        activation="topk",
        prefixes=None,
        aux_k=4,
        aux_coef=1 / 32,
        dead_rows=100,
        clip_grad=1.0,
        compute_dtype=torch.float32,
    )
    # Rows from a few directions only: most latents fall silent, and AuxK
    # revives some of them.
    basis = torch.randn(3, d, generator=gen)
    for _ in range(80):
        x = torch.randn(16, 3, generator=gen) @ basis
        state.step(x)
    assert max(state.seen) > 0
    assert state.seen.count(0) > 0
