"""fit_distributed: two gloo processes on 127.0.0.1 take the steps one process
takes on the same global batches."""

import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sklearn_hypothesaes.sae._distributed import fit_distributed
from sklearn_hypothesaes.sae._model import SparseAutoencoder

N_ROWS, N_FEATURES = 64, 24
WEIGHTS = ("encoder_weight_", "encoder_bias_", "decoder_weight_", "decoder_bias_")
# One global batch per partial_fit call, every row in it; dead_rows=N_ROWS makes
# the latents that did not fire in the first batch dead, so the second step
# runs AuxK (whose variance is the global batch's).
STEP_PARAMS = dict(
    n_latents=256,
    k=2,
    batch_size=N_ROWS,
    dead_rows=N_ROWS,
    aux_k=8,
    device="cpu",
    random_state=0,
)
ACTIVATIONS = {
    "topk": {},
    "batchtopk": {"activation": "batchtopk"},
    "relu": {"activation": "relu"},
}


def _batches():
    rng = np.random.default_rng(0)
    atoms = rng.normal(size=(32, N_FEATURES))
    codes = rng.exponential(size=(2, N_ROWS, 32)) * (rng.random((2, N_ROWS, 32)) < 0.1)
    noise = 0.05 * rng.normal(size=(2, N_ROWS, N_FEATURES))
    return (codes @ atoms + noise + 1.0).astype(np.float32)


def _record(sae):
    out = {name: getattr(sae, name) for name in WEIGHTS}
    for name in ("rows_since_fired", "threshold_ema", "step", "log_sparsity_coef"):
        out[f"state_{name}"] = sae.optimizer_state_[name]
    out["l0"] = np.asarray(sae.l0_)
    out["fvu"] = np.asarray(sae.fvu_)
    out["frequency"] = sae.latent_frequency_
    return out


def _worker(rank, world, port, folder):
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        batches = _batches()
        half = slice(rank * N_ROWS // world, (rank + 1) * N_ROWS // world)
        for name, extra in ACTIVATIONS.items():
            sae = SparseAutoencoder(**STEP_PARAMS, **extra)
            for step, batch in enumerate(batches):
                fit_distributed(sae, batch[half], partial_fit=True)
                np.savez(f"{folder}/{name}_{step}_{rank}.npz", **_record(sae))
        # A whole fit with early stopping: pooled validation rows, several
        # epochs and steps; every process must end with the same weights.
        data = np.concatenate(batches)
        rows = slice(rank * len(data) // world, (rank + 1) * len(data) // world)
        sae = SparseAutoencoder(
            n_latents=48, k=4, batch_size=16, max_epochs=4, random_state=rank
        )
        fit_distributed(sae, data[rows])
        np.savez(
            f"{folder}/fit_{rank}.npz",
            **{name: getattr(sae, name) for name in WEIGHTS},
            curve=np.asarray(sae.validation_fvu_curve_),
            n_rows_seen=np.asarray(sae.n_rows_seen_),
            fvu=np.asarray(sae.fvu_),
        )
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def distributed_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    # Forked, not spawned: the children need not import torch again (seconds
    # each on a busy machine); they use one thread, as torch wants after fork.
    mp.start_processes(
        _worker,
        args=(2, _free_port(), str(folder)),
        nprocs=2,
        join=True,
        start_method="fork",
    )
    return folder


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_distributed_step_equals_one_process_step(distributed_run, activation):
    torch.set_num_threads(1)
    sae = SparseAutoencoder(**STEP_PARAMS, **ACTIVATIONS[activation])
    dead = []
    for step, batch in enumerate(_batches()):
        sae.partial_fit(batch)
        expected = _record(sae)
        dead.append(int((expected["state_rows_since_fired"] >= N_ROWS).sum()))
        for rank in range(2):
            got = np.load(distributed_run / f"{activation}_{step}_{rank}.npz")
            for name, value in expected.items():
                np.testing.assert_allclose(
                    got[name], value, rtol=1e-5, atol=1e-6, err_msg=name
                )
    if activation != "relu":  # ReLU starts with every latent firing on some row
        # The second step ran AuxK on the latents the first batch left dead.
        assert dead[0] > 0
    if activation == "batchtopk":
        assert float(expected["state_threshold_ema"]) > 0


def test_distributed_fit_keeps_processes_identical(distributed_run):
    first, second = (np.load(distributed_run / f"fit_{r}.npz") for r in range(2))
    for name in (*WEIGHTS, "curve", "n_rows_seen", "fvu"):
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)
    # 128 rows, 12 pooled validation rows (6 a process): 116 per epoch.
    assert int(first["n_rows_seen"]) == 4 * 116
    assert 0 < float(first["fvu"]) < 1


def test_fit_distributed_needs_a_process_group():
    X = np.zeros((10, 3), dtype=np.float32)
    with pytest.raises(RuntimeError, match="initialised torch.distributed"):
        fit_distributed(SparseAutoencoder(), X)
