"""Distributed SparseAutoencoder training (fit_distributed) under torchrun.

One process per GPU with NCCL, or CPU processes with gloo::

    torchrun --nproc_per_node=1 benchmarks/bench_ddp.py --backend nccl
    torchrun --nproc_per_node=2 benchmarks/bench_ddp.py --backend gloo --rows 20000 \
        --dim 64 --n-latents 256 --k 8

Each process makes its own shard of a synthetic sparse-dictionary array in
memory (``--rows`` rows over all processes). Printed by process 0:

- the check: one distributed ``partial_fit`` step on a global batch against
  one single-process step on the same batch (largest weight difference);
- the rows/s of one ``fit_distributed`` epoch, next to the rows/s of a plain
  ``fit`` of one epoch on the process's shard on the same device (every
  process runs its plain fit at the same time, on its own device).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
import torch.distributed as dist

from sklearn_hypothesaes.sae._distributed import fit_distributed
from sklearn_hypothesaes.sae._model import SparseAutoencoder


def synthetic(n, dim, atoms, true_k, seed):
    """Rows = a few of ``atoms`` unit directions with exponential weights + noise."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(0).normal(size=(atoms, dim)).astype(np.float32)
    basis /= np.linalg.norm(basis, axis=1, keepdims=True)
    out = np.empty((n, dim), dtype=np.float32)
    for lo in range(0, n, 65_536):
        m = min(65_536, n - lo)
        codes = sp.csr_matrix(
            (
                rng.exponential(size=m * true_k).astype(np.float32),
                rng.integers(0, atoms, size=m * true_k),
                np.arange(0, m * true_k + 1, true_k),
            ),
            shape=(m, atoms),
        )
        out[lo : lo + m] = codes @ basis
        out[lo : lo + m] += 0.05 * rng.standard_normal((m, dim), dtype=np.float32)
    return out


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["nccl", "gloo"], default="nccl")
    parser.add_argument("--device", default=None, help="default: cuda with nccl")
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--atoms", type=int, default=8192)
    parser.add_argument("--true-k", type=int, default=16)
    parser.add_argument("--n-latents", type=int, default=4096)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=4096)
    args = parser.parse_args()

    dist.init_process_group(args.backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    local = int(os.environ.get("LOCAL_RANK", 0))
    device = args.device or ("cuda" if args.backend == "nccl" else "cpu")
    if device == "cuda":
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    params = dict(
        n_latents=args.n_latents,
        k=args.k,
        batch_size=args.batch_size,
        device=device,
        random_state=0,
    )
    say = print if rank == 0 else (lambda *a, **k: None)
    on_gpu = device.startswith("cuda")
    name = torch.cuda.get_device_name(torch.device(device)) if on_gpu else "CPU"
    say(
        f"{world} process(es), backend {args.backend}, device {device} ({name}); "
        f"n_latents={args.n_latents}, k={args.k}, global batch {args.batch_size}"
    )

    # The check: one step on one global batch, split between the processes.
    batch = synthetic(args.batch_size, args.dim, args.atoms, args.true_k, seed=99)
    rows = slice(rank * len(batch) // world, (rank + 1) * len(batch) // world)
    for activation in ("topk", "batchtopk"):
        step = dict(params, activation=activation, dead_rows=args.batch_size)
        distributed = fit_distributed(
            SparseAutoencoder(**step), batch[rows], partial_fit=True
        )
        single = SparseAutoencoder(**step).partial_fit(batch)
        worst = max(
            float(np.abs(getattr(distributed, n) - getattr(single, n)).max())
            for n in ("encoder_weight_", "decoder_weight_", "encoder_bias_")
        )
        scale = float(np.abs(single.encoder_weight_).max())
        say(
            f"check {activation:9s}: one distributed step vs one single-process "
            f"step on the same {args.batch_size}-row batch: largest weight "
            f"difference {worst:.2e} (weights up to {scale:.2e})"
        )

    shard_rows = args.rows // world
    X = synthetic(shard_rows, args.dim, args.atoms, args.true_k, seed=rank)
    epoch = dict(params, max_epochs=1, early_stopping=False)
    dist.barrier()
    sync(device)
    start = time.perf_counter()
    sae = fit_distributed(SparseAutoencoder(**epoch), X)
    sync(device)
    seconds = time.perf_counter() - start
    say(
        f"fit_distributed: {sae.n_rows_seen_:,} rows in {seconds:.1f} s, "
        f"{sae.n_rows_seen_ / seconds:,.0f} rows/s over {world} process(es); "
        f"FVU {sae.fvu_:.3f}"
    )
    dist.barrier()
    sync(device)
    start = time.perf_counter()
    plain = SparseAutoencoder(**epoch).fit(X)
    sync(device)
    seconds = time.perf_counter() - start
    say(
        f"plain fit (one process, its {shard_rows:,}-row shard in memory): "
        f"{seconds:.1f} s, {plain.n_rows_seen_ / seconds:,.0f} rows/s; "
        f"FVU {plain.fvu_:.3f}"
    )
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
