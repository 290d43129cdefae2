"""JumpReLU and ReLU sparse autoencoders, and the k schedule."""

import math
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from planted import planted_dictionary, recovered
from sklearn.utils.estimator_checks import parametrize_with_checks

import sklearn_hypothesaes.sae._training as training
from sklearn_hypothesaes import SparseAutoencoder
from sklearn_hypothesaes.sae import load_sae, save_sae
from sklearn_hypothesaes.sae._kernels import TrainState, jumprelu_bandwidth


@pytest.fixture(scope="module")
def planted():
    return planted_dictionary()


@pytest.fixture(scope="module")
def blobs():
    return np.random.default_rng(0).normal(size=(400, 12)).astype(np.float32)


def small(**kw):
    params = dict(n_latents=16, k=3, max_epochs=5, batch_size=64, random_state=0)
    params.update(kw)
    return SparseAutoencoder(**params)


@parametrize_with_checks(
    [
        small(activation="jumprelu"),
        small(activation="relu"),
        small(activation="relu", sparsity_coef=0.1),
        small(initial_k=8),
    ]
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def fit_planted(X, **kw):
    params = dict(
        n_latents=48,
        k=3,
        batch_size=128,
        max_epochs=40,
        matryoshka_prefixes=None,  # the planted atoms have no hierarchy
        random_state=0,
    )
    params.update(kw)
    return SparseAutoencoder(**params).fit(X)


def test_jumprelu_recovers_planted_dictionary_at_target_l0(planted):
    X, atoms = planted
    sae = fit_planted(X, activation="jumprelu")
    # Measured: 98% of atoms at cosine >= 0.9, validation FVU 0.045, L0 2.97.
    assert recovered(sae, atoms) >= 0.9
    assert sae.validation_fvu_ < 0.1
    assert sae.l0_threshold_ == pytest.approx(3.0, abs=0.4)
    assert sae.dead_fraction_ <= 0.1
    assert sae.threshold_.shape == (48,) and sae.threshold_.dtype == np.float32
    assert (sae.threshold_ > 0).all()
    assert sae.sparsity_coef_ is None


def test_relu_recovers_planted_dictionary_with_fixed_penalty(planted):
    X, atoms = planted
    sae = fit_planted(X, activation="relu", sparsity_coef=0.1)
    # Measured: all atoms at cosine >= 0.99, validation FVU 0.048, L0 5.1
    # (an L1 penalty needs spare latents to undo its shrinkage).
    assert recovered(sae, atoms) >= 0.9
    assert sae.validation_fvu_ < 0.1
    assert 3.0 <= sae.l0_threshold_ <= 8.0
    assert sae.threshold_ is None and sae.sparsity_coef_ == 0.1
    # Decoder rows are free: the penalty is weighted by their norms.
    norms = np.linalg.norm(sae.decoder_weight_ * sae.input_scale_, axis=1)
    assert norms.std() > 1e-3


def test_relu_adapts_its_penalty_to_the_target_l0(planted):
    X, _ = planted
    sae = fit_planted(X[:3000], activation="relu", max_epochs=15, k=4)
    # The weight starts low and rises: the mean over training (l0_) is above
    # the target, the final model is near it.
    assert sae.l0_threshold_ == pytest.approx(4.0, abs=0.6)
    assert 1e-3 < sae.sparsity_coef_ < 10


def test_jumprelu_fixed_penalty_trades_sparsity(blobs):
    params = dict(activation="jumprelu", n_latents=32, max_epochs=30)
    l0 = [
        small(sparsity_coef=c, learning_rate=0.02, **params).fit(blobs).l0_threshold_
        for c in (1e-4, 0.2)
    ]
    # Measured: 2.76 and 1.54 active latents per row.
    assert l0[0] > l0[1] + 0.8


def test_jumprelu_transform_is_documented_formula(blobs):
    sae = small(activation="jumprelu", n_latents=32, max_epochs=10).fit(blobs)
    pre = blobs.astype(np.float64) @ sae.encoder_weight_.T + sae.encoder_bias_
    expected = np.where(pre > sae.threshold_, pre, 0.0)
    Z = sae.transform(blobs)
    # Rows whose pre-activation sits within rounding of a threshold may differ.
    close = np.abs(pre - sae.threshold_) < 1e-4
    np.testing.assert_allclose(Z[~close], expected[~close], rtol=1e-4, atol=1e-4)
    assert (Z >= 0).all()


# ------------------------------------------------------------------ gradients
def _rect(u):
    return ((u > -0.5) & (u < 0.5)).to(u)


class _JumpReLU(torch.autograd.Function):
    """The Gemma Scope pseudo-derivatives, written densely for reference."""

    @staticmethod
    def forward(ctx, x, theta, eps):
        ctx.save_for_backward(x, theta)
        ctx.eps = eps
        return x * (x > theta)

    @staticmethod
    def backward(ctx, grad):
        x, theta = ctx.saved_tensors
        window = _rect((x - theta) / ctx.eps)
        return (x > theta) * grad, (-(theta / ctx.eps) * window * grad).sum(0), None


class _Step(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, theta, eps):
        ctx.save_for_backward(x, theta)
        ctx.eps = eps
        return (x > theta).to(x)

    @staticmethod
    def backward(ctx, grad):
        x, theta = ctx.saved_tensors
        window = _rect((x - theta) / ctx.eps)
        return torch.zeros_like(x), (-(1 / ctx.eps) * window * grad).sum(0), None


@pytest.mark.parametrize(
    "activation, coef",
    [("relu", 0.3), ("relu", None), ("jumprelu", 0.3), ("jumprelu", None)],
)
@pytest.mark.parametrize("prefixes", [None, [5, 17, 40]])
@pytest.mark.parametrize("dead", [False, True])
def test_gradients_match_dense_autograd(activation, coef, prefixes, dead):
    B, d, M, k, row_var = 32, 16, 40, 4, 2.0
    gen = torch.Generator().manual_seed(1)
    x = 3 * torch.randn(B, d, dtype=torch.float64, generator=gen)
    init = {
        "w_enc": 0.3 * torch.randn(M, d, dtype=torch.float64, generator=gen),
        "b_enc": 0.1 * torch.randn(M, dtype=torch.float64, generator=gen),
        "w_dec": torch.randn(M, d, dtype=torch.float64, generator=gen),
        "b_dec": 0.1 * torch.randn(d, dtype=torch.float64, generator=gen),
    }
    eps = jumprelu_bandwidth(d)
    if activation == "jumprelu":
        pre = (x - init["b_dec"]) @ init["w_enc"].T + init["b_enc"]
        theta = 0.5 * torch.rand(M, dtype=torch.float64, generator=gen)
        # Ten thresholds just above a pre-activation: inside the kernel window.
        theta[:10] = pre[0, :10] + 0.3 * eps
        init["threshold"] = theta.clamp(min=0)
    state = TrainState(
        init,
        row_var=row_var,
        lr=1e-3,
        k=k,
        activation=activation,
        prefixes=prefixes,
        aux_k=6,
        aux_coef=0.5 if dead else 0.0,
        dead_rows=1,
        clip_grad=None,
        compute_dtype=torch.float64,
        sparsity_coef=coef,
    )
    if dead:
        state.rows_since_fired[::3] = 5
    grads, loss, code, _ = state.loss_and_grads(x)

    ref = {n: p.clone().requires_grad_() for n, p in init.items()}
    pre = (x - ref["b_dec"]) @ ref["w_enc"].T + ref["b_enc"]
    if activation == "jumprelu":
        z = _JumpReLU.apply(pre, ref["threshold"], eps)
        l0 = _Step.apply(pre, ref["threshold"], eps).sum() / B
        penalty = coef * l0 if coef is not None else (l0 / k - 1) ** 2
    else:
        z = F.relu(pre)
        weight = coef if coef is not None else state.sparsity_coefficient
        dec_norms = ref["w_dec"].norm(dim=1)
        penalty = weight * (z * dec_norms).sum() / (B * math.sqrt(row_var))
    ends = prefixes or [M]
    recon_loss = torch.stack(
        [
            (z[:, :end] @ ref["w_dec"][:end] + ref["b_dec"] - x).pow(2).sum()
            for end in ends
        ]
    ).mean() / (B * row_var)
    total = recon_loss + penalty
    if dead:
        resid = (x - z @ ref["w_dec"] - ref["b_dec"]).detach()
        dead_mask = state.dead_mask()
        with torch.no_grad():
            picked = pre.masked_fill(~dead_mask, float("-inf")).topk(6, dim=1).indices
        aux_mask = torch.zeros(B, M, dtype=torch.bool).scatter_(1, picked, True)
        resid_hat = (F.relu(pre) * aux_mask) @ ref["w_dec"]
        var = (resid - resid.mean(0)).pow(2).sum()
        total = total + 0.5 * (resid_hat - resid).pow(2).sum() / var
    total.backward()

    torch.testing.assert_close(loss, recon_loss.detach(), rtol=1e-12, atol=1e-12)
    for name, param in ref.items():
        scale = max(1.0, float(param.grad.abs().max()))
        torch.testing.assert_close(
            grads[name], param.grad, rtol=1e-10, atol=1e-10 * scale
        )
    if activation == "jumprelu":
        # The kernel window was hit: the threshold gradient is not all zero.
        assert int((grads["threshold"] != 0).sum()) >= 5


# ------------------------------------------------------- files and resuming
@pytest.mark.parametrize(
    "params",
    [
        {"activation": "jumprelu"},
        {"activation": "relu"},
        {"activation": "relu", "sparsity_coef": 0.05, "matryoshka_prefixes": None},
    ],
)
def test_save_load_round_trip_is_exact(tmp_path, blobs, params):
    sae = small(**params).fit(blobs)
    loaded = load_sae(save_sae(sae, tmp_path / "sae.npz"))
    assert loaded.get_params() == sae.get_params()
    np.testing.assert_array_equal(loaded.transform(blobs), sae.transform(blobs))
    assert loaded.score(blobs) == sae.score(blobs)
    if sae.activation == "jumprelu":
        np.testing.assert_array_equal(loaded.threshold_, sae.threshold_)
    else:
        assert loaded.threshold_ is None
    assert loaded.sparsity_coef_ == sae.sparsity_coef_


def test_load_rejects_jumprelu_without_thresholds(tmp_path, blobs):
    sae = small(activation="jumprelu").fit(blobs)
    sae.threshold_ = sae.threshold_[:5]
    path = save_sae(sae, tmp_path / "sae.npz")
    with pytest.raises(ValueError, match=r"'threshold_' should have shape \(16,\)"):
        load_sae(path)


@pytest.mark.parametrize("activation", ["jumprelu", "relu"])
def test_partial_fit_resumes_after_pickling(blobs, activation):
    batch_a, batch_b = blobs[:200], blobs[200:]
    sae = small(activation=activation, early_stopping=False)
    sae.partial_fit(batch_a).partial_fit(batch_b)
    restored = small(activation=activation, early_stopping=False).partial_fit(batch_a)
    restored = pickle.loads(pickle.dumps(restored))
    restored.partial_fit(batch_b)
    for name in ("encoder_weight_", "encoder_bias_", "decoder_weight_"):
        np.testing.assert_array_equal(getattr(restored, name), getattr(sae, name))
    if activation == "jumprelu":
        np.testing.assert_array_equal(restored.threshold_, sae.threshold_)
        # Adam's moments cover the thresholds too.
        n = 2 * 16 * 12 + 16 + 12 + 16
        assert restored.optimizer_state_["exp_avg"].shape == (n,)
    else:
        assert restored.sparsity_coef_ == sae.sparsity_coef_


def test_warm_start_continues_thresholds(blobs):
    sae = small(activation="jumprelu", warm_start=True, early_stopping=False)
    sae.set_params(max_epochs=3).fit(blobs)
    first = sae.threshold_.copy()
    sae.fit(blobs)
    assert sae.n_iter_ == 6
    assert not np.array_equal(sae.threshold_, first)
    assert np.abs(sae.threshold_ - first).max() < 0.5


# ------------------------------------------------------------ the k schedule
@pytest.mark.parametrize("activation", ["topk", "batchtopk"])
def test_k_schedule_anneals_from_initial_k(blobs, monkeypatch, activation):
    seen = []
    original = training.TrainState.step

    def record(self, x, k=None):
        seen.append(k)
        return original(self, x, k)

    monkeypatch.setattr(training.TrainState, "step", record)
    sae = small(
        activation=activation,
        initial_k=11,
        k_anneal_fraction=0.5,
        max_epochs=10,
        early_stopping=False,
    ).fit(blobs)
    # 7 steps per epoch, 70 planned: k falls from 11 to 3 over the first 35.
    assert len(seen) == 70
    assert seen[0] == 11 and seen[35:] == [3] * 35
    assert all(a >= b for a, b in zip(seen, seen[1:], strict=False))
    assert seen[17] == round(11 - 8 * 17 / 35)
    assert sae.l0_threshold_ == pytest.approx(3.0, abs=1.0)


def test_initial_k_above_n_latents_is_refused(blobs):
    with pytest.raises(
        ValueError,
        match=r"'initial_k' parameter of SparseAutoencoder must be None or an int "
        r"in the range \[1, n_latents=16\]. Got 40 instead.",
    ):
        small(initial_k=40).fit(blobs)
