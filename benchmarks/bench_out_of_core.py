"""Out-of-core SparseAutoencoder: one epoch over an on-disk array larger than
memory, with peak anonymous memory (RssAnon), rows/s against an in-memory fit
on a slice, and a transform to CSR of the whole array.

The array is synthetic, generated from a sparse dictionary (each row a sum of
a few of ``--atoms`` unit directions with exponential weights, plus noise),
written to disk block by block as a ``.npy`` file, and deleted at the end
unless ``--keep``. 10,000,000 x 768 float32 rows (the default) are 30.7 GB::

    python benchmarks/bench_out_of_core.py                     # 10M x 768
    python benchmarks/bench_out_of_core.py --rows 2000000      # 6.1 GB

Each phase (write, fit, an epoch from disk and one from memory, transform) runs
in a fresh Python process, so that its peak RssAnon (sampled every millisecond from
/proc/self/status) is its own: pages of the memory-mapped file count as
RssFile, which the kernel reclaims, not as anonymous memory. When the file is
smaller than RAM its pages stay in the page cache after writing, and training
reads memory rather than disk; the output says which.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np


def rss_anon():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no RssAnon in /proc/self/status (Linux only)")


class PeakAnon:
    """Peak RssAnon over a ``with`` block, sampled from a thread."""

    def __enter__(self):
        self.peak, self._done = rss_anon(), False

        def watch():
            while not self._done:
                self.peak = max(self.peak, rss_anon())
                time.sleep(0.001)

        self._thread = threading.Thread(target=watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done = True
        self._thread.join()
        self.peak = max(self.peak, rss_anon())


def write(args):
    rng = np.random.default_rng(0)
    atoms = rng.normal(size=(args.atoms, args.dim)).astype(np.float32)
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    import scipy.sparse as sp

    X = np.lib.format.open_memmap(
        args.path, mode="w+", dtype=np.float32, shape=(args.rows, args.dim)
    )
    block, per_row = 65_536, args.true_k
    start = time.perf_counter()
    with PeakAnon() as peak:
        for lo in range(0, args.rows, block):
            n = min(block, args.rows - lo)
            cols = rng.integers(0, args.atoms, size=n * per_row)
            vals = rng.exponential(size=n * per_row).astype(np.float32)
            codes = sp.csr_matrix(
                (vals, cols, np.arange(0, n * per_row + 1, per_row)),
                shape=(n, args.atoms),
            )
            rows = codes @ atoms
            rows += 0.05 * rng.standard_normal((n, args.dim), dtype=np.float32)
            X[lo : lo + n] = rows
        X.flush()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_anon_gb": peak.peak / 1e9}


def _estimator(args, **extra):
    from sklearn_hypothesaes import SparseAutoencoder

    return SparseAutoencoder(
        n_latents=args.n_latents,
        k=args.k,
        max_epochs=1,
        batch_size=args.batch_size,
        device="cpu",
        random_state=0,
        **extra,
    )


def train(args):
    import torch

    from sklearn_hypothesaes.sae import save_sae

    torch.set_num_threads(args.threads)
    X = np.load(args.path, mmap_mode="r")
    sae = _estimator(args)
    start = time.perf_counter()
    with PeakAnon() as peak:
        sae.fit(X)
    seconds = time.perf_counter() - start
    save_sae(sae, args.model)
    return {
        "seconds": seconds,
        "rows_per_s": sae.n_rows_seen_ / seconds,
        "train_rows": sae.n_rows_seen_,
        "validation_rows": X.shape[0] - sae.n_rows_seen_,
        "peak_anon_gb": peak.peak / 1e9,
        "fvu": sae.fvu_,
        "validation_fvu": sae.validation_fvu_,
    }


def epoch(args):
    """Rows/s of one more epoch (``partial_fit`` of the fitted model) over the
    on-disk array, between two epochs over its first ``--slice-rows`` rows as
    an in-memory array: the same work per row (the epoch, then the pass for
    ``fvu_``), measured in one process so that both see the same machine."""
    import torch

    from sklearn_hypothesaes.sae import load_sae

    torch.set_num_threads(args.threads)
    on_disk = np.load(args.path, mmap_mode="r")
    in_memory = np.array(on_disk[: args.slice_rows])
    if args.epoch_rows:
        on_disk = on_disk[: args.epoch_rows]
    sae = load_sae(args.model)
    # Untimed: a first partial_fit starts the optimiser state that the timed
    # ones resume from (so none reads a sample for the loss's scale).
    sae.partial_fit(in_memory[:1000])
    rates = {}
    for name, X in (("ram", in_memory), ("disk", on_disk), ("ram2", in_memory)):
        if name == "disk":
            _evict(args.path)
        start = time.perf_counter()
        sae.partial_fit(X)
        rates[name] = X.shape[0] / (time.perf_counter() - start)
    return {
        "disk_rows": on_disk.shape[0],
        "disk_rows_per_s": rates["disk"],
        "ram_rows_per_s": [rates["ram"], rates["ram2"]],
        "data_gb": in_memory.nbytes / 1e9,
    }


def _evict(path):
    """Drop the file's pages from the page cache, so that the epoch reads the
    disk even where an earlier phase left them cached (clean pages only,
    which a read-only memmap's are)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def transform(args):
    import torch

    from sklearn_hypothesaes.sae import load_sae

    torch.set_num_threads(args.threads)
    sae = load_sae(args.model).set_params(sparse_output=True)
    X = np.load(args.path, mmap_mode="r")
    start = time.perf_counter()
    with PeakAnon() as peak:
        Z = sae.transform(X)
    seconds = time.perf_counter() - start
    nbytes = Z.data.nbytes + Z.indices.nbytes + Z.indptr.nbytes
    return {
        "seconds": seconds,
        "rows_per_s": X.shape[0] / seconds,
        "peak_anon_gb": peak.peak / 1e9,
        "csr_gb": nbytes / 1e9,
        "nnz_per_row": Z.nnz / X.shape[0],
    }


PHASES = {
    "write": write,
    "train": train,
    "epoch": epoch,
    "transform": transform,
}


def run_phase(phase, argv):
    out = subprocess.run(
        [sys.executable, __file__, "--phase", phase, *argv],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--atoms", type=int, default=4096)
    parser.add_argument("--true-k", type=int, default=16)
    parser.add_argument("--n-latents", type=int, default=4096)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--slice-rows", type=int, default=200_000)
    parser.add_argument(
        "--epoch-rows",
        type=int,
        default=None,
        help="rows of the on-disk epoch (its first rows; default: all)",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dir", default=None, help="folder for the array")
    parser.add_argument("--keep", action="store_true", help="keep the array")
    parser.add_argument("--phase", choices=list(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--in-memory", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(PHASES[args.phase](args)))
        return

    folder = args.dir or tempfile.gettempdir()
    need = args.rows * args.dim * 4
    free = shutil.disk_usage(folder).free
    if need > 0.9 * free:
        sys.exit(
            f"{args.rows} x {args.dim} float32 rows take {need / 1e9:.1f} GB; "
            f"{folder} has {free / 1e9:.1f} GB free. Pass --rows smaller or "
            "--dir on a larger disk."
        )
    work = tempfile.mkdtemp(prefix="bench_ooc_", dir=folder)
    path = os.path.join(work, "embeddings.npy")
    model = os.path.join(work, "sae")
    argv = [
        *sys.argv[1:],
        *("--path", path, "--model", model),
    ]
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    print(
        f"{args.rows:,} x {args.dim} float32 = {need / 1e9:.1f} GB on disk "
        f"({ram / 1e9:.0f} GB RAM: "
        + (
            "larger than RAM, read from disk"
            if need > ram
            else "fits in the page cache, so reads come from memory"
        )
        + f"); SAE n_latents={args.n_latents}, k={args.k}, "
        f"batch_size={args.batch_size}, one epoch, {args.threads} torch thread(s)"
    )
    try:
        result = run_phase("write", argv)
        print(
            f"write      {result['seconds']:8.1f} s  "
            f"{need / 1e6 / result['seconds']:8.0f} MB/s   "
            f"peak RssAnon {result['peak_anon_gb']:.2f} GB"
        )
        trained = run_phase("train", argv)
        print(
            f"fit, disk  {trained['seconds']:8.1f} s  "
            f"{trained['rows_per_s']:8.0f} rows/s  "
            f"peak RssAnon {trained['peak_anon_gb']:.2f} GB  "
            f"({trained['train_rows']:,} training rows, "
            f"{trained['validation_rows']:,} held out; FVU {trained['fvu']:.3f}, "
            f"validation {trained['validation_fvu']:.3f})"
        )
        rates = run_phase("epoch", argv)
        ram = float(np.mean(rates["ram_rows_per_s"]))
        print(
            f"epoch      disk {rates['disk_rows_per_s']:8.0f} rows/s (first "
            f"{rates['disk_rows']:,} rows, out of the page cache), "
            f"in memory {ram:8.0f} rows/s (first "
            f"{args.slice_rows:,} rows, {rates['data_gb']:.2f} GB; mean of one "
            f"epoch before and one after: "
            + ", ".join(f"{r:.0f}" for r in rates["ram_rows_per_s"])
            + f"); on-disk / in-memory: {rates['disk_rows_per_s'] / ram:.2f}"
        )
        result = run_phase("transform", argv)
        print(
            f"transform  {result['seconds']:8.1f} s  "
            f"{result['rows_per_s']:8.0f} rows/s  "
            f"peak RssAnon {result['peak_anon_gb']:.2f} GB  "
            f"(CSR of {result['csr_gb']:.2f} GB, "
            f"{result['nnz_per_row']:.1f} non-zeros a row)"
        )
        print(
            "Each phase ran in its own process. The fit's time includes reading "
            "the 65,536-row starting sample and the validation slice, and the "
            "pass that computes fvu_ and latent_frequency_ after the epoch; the "
            "epoch line's epochs (partial_fit, one process) include that pass, "
            "not the sample or validation."
        )
    finally:
        if args.keep:
            print(f"kept {path}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
