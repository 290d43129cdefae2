"""SparseAutoencoder training on a GPU: rows/s, step time, share of matmul peak.

Self-contained: the data is a planted sparse dictionary generated on the
device (``4 * M`` random unit atoms in ``d`` dimensions, ``K`` of them per row
with uniform weights, plus 1% noise), no download. For each configuration
(M latents, K active, default M=4096 K=32 and M=16384 K=64 on d=768) and each
``compute_dtype`` (float32, bfloat16) it fits one epoch with
``device="cuda"`` and reports:

- training rows/s and ms per step (the training loop alone: the time in
  ``sae._training.train`` less its initialisation and copy of the rows to the
  device) and the whole ``fit``, with seconds per phase of ``fit``
  (validation of X, initialisation, the copy to the device, the training
  loop, the statistics after training, the rest);
- the floor: one encoder matmul plus one top-k per batch, timed alone;
- the encoder matmul's throughput in TFLOPS, alone and spread over a whole
  step, as a share of the GPU's dense matmul peak;
- the fitted FVU on the training rows (a sanity check, not a quality claim).

Assumed peaks (dense, no sparsity), NVIDIA H100 SXM (and H200, same compute):
989 TFLOPS bfloat16, 494 TFLOPS TF32, 67 TFLOPS float32 without tensor cores.
Our float32 path runs a plain float32 matmul (torch leaves TF32 off unless
``torch.backends.cuda.matmul.allow_tf32`` is set), so its share is given
against 67 TFLOPS; the TF32 figure is printed for reference.

If the peer ``hypothesaes`` imports, its ``train_sae`` (which uses CUDA when
available) is timed on the same rows (at most ``--peer-rows``), one epoch,
same batch size.

Run:  PYTHONUNBUFFERED=1 python benchmarks/bench_sae_gpu.py --out results.json [--quick]
      python benchmarks/bench_sae_gpu.py --device cpu --quick   (tiny, a smoke test)
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

# Run from a plain checkout (as on a lent GPU machine): the package is the
# folder above this script.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PEAK_TFLOPS = {"bfloat16": 989.0, "tf32": 494.0, "float32": 67.0}


def assumed_peaks(device):
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return PEAK_TFLOPS if ("H100" in name or "H200" in name) else None


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def planted_rows(n_rows, d, n_atoms, k, device, seed=0, chunk=131_072):
    """``n_rows`` x ``d`` float32 rows (numpy), generated on ``device``."""
    gen = torch.Generator(device=device).manual_seed(seed)
    atoms = torch.randn(n_atoms, d, device=device, generator=gen)
    atoms /= atoms.norm(dim=1, keepdim=True)
    out = np.empty((n_rows, d), dtype=np.float32)
    for start in range(0, n_rows, chunk):
        n = min(chunk, n_rows - start)
        idx = torch.randint(0, n_atoms, (n, k), device=device, generator=gen)
        w = torch.rand(n, k, device=device, generator=gen) * 1.5 + 0.5
        # A weighted gather-sum: atoms[idx] would hold n * k * d floats.
        x = torch.nn.functional.embedding_bag(
            idx, atoms, mode="sum", per_sample_weights=w
        )
        x += 0.01 * torch.randn(n, d, device=device, generator=gen)
        out[start : start + n] = x.cpu().numpy()
    return out


def time_floor(M, K, d, batch, dtype, device, reps):
    """Seconds per batch of the encoder matmul alone and of matmul + top-k."""
    x = torch.randn(batch, d, device=device).to(dtype)
    w = torch.randn(M, d, device=device).to(dtype)
    b = torch.zeros(M, device=device).to(dtype)
    for _ in range(3):
        torch.topk(torch.addmm(b, x, w.T).float(), K, dim=1, sorted=False)
    sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        torch.addmm(b, x, w.T)
    sync(device)
    matmul = (time.perf_counter() - start) / reps
    start = time.perf_counter()
    for _ in range(reps):
        torch.topk(torch.addmm(b, x, w.T).float(), K, dim=1, sorted=False)
    sync(device)
    return matmul, (time.perf_counter() - start) / reps


# Phases of ``fit`` timed by wrapping these functions (module, attribute,
# label); the device is synchronised around each so its queued work is counted
# where it was issued. "train loop" is ``train`` less the phases inside it.
PHASES = [
    ("model", "SparseAutoencoder._validate_X", "validate X"),
    ("training", "_init_params", "init (sample, geometric median)"),
    ("training", "_Batches.__init__", "rows to device"),
    ("training", "validation_fvu", "validation FVU"),
    ("training", "train", "train"),
    ("model", "SparseAutoencoder._data_stats", "statistics after training"),
    ("model", "SparseAutoencoder._store_weights", "store weights"),
]


def run_ours(X, M, K, batch, dtype, device):
    import sklearn_hypothesaes.sae._model as model
    import sklearn_hypothesaes.sae._training as training
    from sklearn_hypothesaes import SparseAutoencoder

    modules = {"model": model, "training": training}
    timed = {}
    originals = []

    def timer(function, label):
        def wrapped(*args, **kwargs):
            sync(device)
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                sync(device)
                timed[label] = timed.get(label, 0.0) + time.perf_counter() - start

        return wrapped

    for module, name, label in PHASES:
        owner = modules[module]
        *path, attr = name.split(".")
        for part in path:
            owner = getattr(owner, part)
        originals.append((owner, attr, owner.__dict__[attr]))
        setattr(owner, attr, timer(getattr(owner, attr), label))

    sae = SparseAutoencoder(
        n_latents=M,
        k=K,
        batch_size=batch,
        max_epochs=1,
        early_stopping=False,
        device=str(device),
        compute_dtype=dtype,
        random_state=0,
    )
    try:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        sync(device)
        start = time.perf_counter()
        sae.fit(X)
        sync(device)
        fit_seconds = time.perf_counter() - start
    finally:
        for owner, attr, original in originals:
            setattr(owner, attr, original)
    peak_mem = (
        torch.cuda.max_memory_allocated(device) / 2**30
        if device.type == "cuda"
        else None
    )
    inside = ("init (sample, geometric median)", "rows to device", "validation FVU")
    phases = dict(timed)
    loop = phases.pop("train") - sum(phases.get(label, 0.0) for label in inside)
    phases["train loop"] = loop
    phases["other"] = fit_seconds - sum(phases.values())
    return {
        "train_seconds": loop,
        "fit_seconds": fit_seconds,
        "phase_seconds": phases,
        "fvu": sae.fvu_,
        "l0": sae.l0_,
        "dead_fraction": sae.dead_fraction_,
        "peak_gpu_memory_gib": peak_mem,
    }


def run_peer(X, M, K, batch, device):
    try:
        from hypothesaes.quickstart import train_sae
    except Exception as exc:  # the peer is optional
        return {"skipped": f"hypothesaes does not import: {exc!r}"}
    torch.manual_seed(0)
    sync(device)
    start = time.perf_counter()
    train_sae(embeddings=X, M=M, K=K, batch_size=batch, n_epochs=1, show_progress=False)
    sync(device)
    return {"seconds": time.perf_counter() - start, "rows": len(X)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", help="write the results as JSON to this file")
    parser.add_argument("--configs", nargs="*", default=None, help="M:K pairs")
    parser.add_argument("--d", type=int, default=None)
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--dtypes", nargs="*", default=["float32", "bfloat16"])
    parser.add_argument("--peer-rows", type=int, default=None)
    parser.add_argument("--no-peer", action="store_true")
    args = parser.parse_args()

    device = torch.device(args.device)
    cpu = device.type == "cpu"
    if cpu:
        # A smoke test of the script itself: tiny sizes, minutes of CPU.
        defaults = dict(configs=["128:8", "256:16"], d=64, rows=8192, batch=512)
        defaults["peer_rows"] = 4096
    elif args.quick:
        defaults = dict(configs=["4096:32", "16384:64"], d=768, rows=262_144)
        defaults.update(batch=4096, peer_rows=65_536)
    else:
        defaults = dict(configs=["4096:32", "16384:64"], d=768, rows=2_000_000)
        defaults.update(batch=4096, peer_rows=262_144)
    configs = args.configs or defaults["configs"]
    d = args.d or defaults["d"]
    n_rows = args.rows or defaults["rows"]
    batch = args.batch_size or defaults["batch"]
    peer_rows = args.peer_rows or defaults["peer_rows"]
    peaks = assumed_peaks(device)
    reps = 5 if cpu else 50

    info = {
        "device": torch.cuda.get_device_name(device)
        if not cpu
        else (platform.processor() or platform.machine()),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "rows": n_rows,
        "d": d,
        "batch_size": batch,
        "assumed_peak_tflops": peaks,
        "tf32_allowed": torch.backends.cuda.matmul.allow_tf32,
    }
    print(json.dumps(info), flush=True)
    results = {"info": info, "runs": []}

    def save():
        if args.out:
            with open(args.out, "w") as fh:
                json.dump(results, fh, indent=2)

    for config in configs:
        M, K = map(int, config.split(":"))
        start = time.perf_counter()
        X = planted_rows(n_rows, d, 4 * M, K, device)
        print(
            f"\nM={M} K={K}: {n_rows:,} x {d} planted rows generated in "
            f"{time.perf_counter() - start:.1f} s",
            flush=True,
        )
        steps = math.ceil(n_rows / batch)
        flops = 2.0 * batch * M * d  # encoder matmul per step
        for dtype in args.dtypes:
            row = {"M": M, "K": K, "compute_dtype": dtype}
            try:
                # Warm-up on a few batches: CUDA context, cuBLAS handles and
                # kernel loading are not training time.
                run_ours(X[: 4 * batch], M, K, batch, dtype, device)
                ours = run_ours(X, M, K, batch, dtype, device)
                matmul_s, floor_s = time_floor(
                    M, K, d, batch, getattr(torch, dtype), device, reps
                )
                step_s = ours["train_seconds"] / steps
                row.update(ours)
                row.update(
                    steps=steps,
                    rows_per_s=n_rows / ours["train_seconds"],
                    fit_rows_per_s=n_rows / ours["fit_seconds"],
                    step_ms=1e3 * step_s,
                    floor_ms=1e3 * floor_s,
                    matmul_ms=1e3 * matmul_s,
                    matmul_tflops=flops / matmul_s / 1e12,
                    step_matmul_tflops=flops / step_s / 1e12,
                )
                line = (
                    f"  ours {dtype:>8}: {row['rows_per_s']:>12,.0f} rows/s training "
                    f"({row['fit_rows_per_s']:,.0f} with the whole fit), step "
                    f"{row['step_ms']:.3f} ms, floor {row['floor_ms']:.3f} ms "
                    f"(matmul {row['matmul_ms']:.3f} ms), step/floor "
                    f"{step_s / floor_s:.2f}; FVU {row['fvu']:.3f}"
                )
                if peaks:
                    peak = peaks[dtype]
                    row["matmul_share_of_peak"] = row["matmul_tflops"] / peak
                    row["step_share_of_peak"] = row["step_matmul_tflops"] / peak
                    line += (
                        f"\n            encoder matmul {row['matmul_tflops']:.1f} "
                        f"TFLOPS alone = {100 * row['matmul_share_of_peak']:.1f}% of "
                        f"{peak:.0f}; over a whole step "
                        f"{row['step_matmul_tflops']:.1f} TFLOPS = "
                        f"{100 * row['step_share_of_peak']:.1f}%"
                    )
                    if dtype == "float32":
                        line += (
                            f" (vs TF32's {peaks['tf32']:.0f}: "
                            f"{100 * row['matmul_tflops'] / peaks['tf32']:.1f}% alone)"
                        )
                line += "\n            fit phases (s): " + ", ".join(
                    f"{name} {seconds:.2f}"
                    for name, seconds in row["phase_seconds"].items()
                )
                print(line, flush=True)
            except Exception as exc:  # keep the other configurations' numbers
                row["error"] = repr(exc)
                print(f"  ours {dtype}: FAILED {exc!r}", flush=True)
            results["runs"].append(row)
            save()
        if not args.no_peer:
            rows = X[: min(peer_rows, n_rows)]
            row = {"M": M, "K": K, "peer": True}
            try:
                peer = run_peer(rows, M, K, batch, device)
                row.update(peer)
                if "seconds" in peer:
                    row["rows_per_s"] = len(rows) / peer["seconds"]
                    print(
                        f"  peer float32: {row['rows_per_s']:>12,.0f} rows/s "
                        f"(train_sae, {len(rows):,} rows, one epoch, whole call)",
                        flush=True,
                    )
                else:
                    print(f"  peer: {peer['skipped']}", flush=True)
            except Exception as exc:
                row["error"] = repr(exc)
                print(f"  peer: FAILED {exc!r}", flush=True)
            results["runs"].append(row)
            save()
        del X
    save()


if __name__ == "__main__":
    main()
