"""SparseAutoencoder on data read chunk by chunk: np.memmap, Zarr, HDF5, chunk
iterables; shuffling, the capped validation slice, memory that does not grow
with the rows, CSR output; LatentSelector on sparse activations."""

import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from sklearn_hypothesaes import LatentSelector, SparseAutoencoder
from sklearn_hypothesaes.sae._streaming import ChunkSource, StreamBatches, StreamFeed

WEIGHTS = ("encoder_weight_", "encoder_bias_", "decoder_weight_", "decoder_bias_")


def planted(n=4000, d=16, m=24, k=3, seed=0):
    """Rows = sparse non-negative codes times unit atoms, plus a little noise."""
    rng = np.random.default_rng(seed)
    atoms = rng.normal(size=(m, d))
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    codes = np.zeros((n, m))
    picks = np.argsort(rng.random((n, m)), axis=1)[:, :k]
    np.put_along_axis(codes, picks, rng.uniform(0.5, 2.0, (n, k)), axis=1)
    return (codes @ atoms + 0.01 * rng.normal(size=(n, d))).astype(np.float32)


def params(**kw):
    out = dict(n_latents=32, k=3, batch_size=128, max_epochs=4, device="cpu")
    out.update(random_state=0, max_validation_rows=200)
    out.update(kw)
    return out


@pytest.fixture(scope="module")
def data():
    return planted()


@pytest.fixture(scope="module")
def on_disk(data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ooc")
    np.save(folder / "x.npy", data)
    return folder


def test_memmap_is_read_chunk_by_chunk_and_trains_like_memory(data, on_disk):
    mm = np.load(on_disk / "x.npy", mmap_mode="r")
    streamed = SparseAutoencoder(**params()).fit(ChunkSource(mm, chunk_rows=500))
    in_memory = SparseAutoencoder(**params()).fit(data)
    # Same rows held out (200 of 4000: the cap, not validation_fraction's 400).
    assert streamed.n_rows_seen_ == in_memory.n_rows_seen_ == 4 * 3800
    # Another shuffle, the same quality.
    assert abs(streamed.fvu_ - in_memory.fvu_) < 0.03
    assert streamed.fvu_ < 0.3
    assert streamed.score(mm) == pytest.approx(streamed.score(data), abs=1e-9)
    # A memmap given directly is wrapped too: nothing loads it as a whole.
    direct = SparseAutoencoder(**params(max_epochs=1)).fit(mm)
    assert direct.n_features_in_ == 16
    assert direct.n_rows_seen_ == 3800


def test_zarr_and_hdf5_train_like_the_memmap(data, on_disk):
    zarr = pytest.importorskip("zarr")
    h5py = pytest.importorskip("h5py")
    z = zarr.create_array(
        store=str(on_disk / "x.zarr"), shape=data.shape, chunks=(500, 16), dtype="f4"
    )
    z[:] = data
    with h5py.File(on_disk / "x.h5", "w") as f:
        f.create_dataset("x", data=data, chunks=(500, 16))
    mm = np.load(on_disk / "x.npy", mmap_mode="r")
    reference = SparseAutoencoder(**params()).fit(ChunkSource(mm, chunk_rows=1000))
    with h5py.File(on_disk / "x.h5", "r") as f:
        # Chunk size is rounded up to the stored chunks' multiple: 1000 here.
        for source in (ChunkSource(z, chunk_rows=1000), f["x"]):
            if not isinstance(source, ChunkSource):
                source = ChunkSource(source, chunk_rows=1000)
            fitted = SparseAutoencoder(**params()).fit(source)
            for name in WEIGHTS:
                np.testing.assert_array_equal(
                    getattr(fitted, name), getattr(reference, name), err_msg=name
                )
        # Given directly, an HDF5 dataset is wrapped with its own chunking.
        Z = SparseAutoencoder(**params(max_epochs=1)).fit(f["x"]).transform(f["x"])
    assert Z.shape == (4000, 32)
    assert ChunkSource(z).chunk_rows % 500 == 0


def test_chunk_iterables(data):
    chunks = np.array_split(data, 9)
    fitted = SparseAutoencoder(**params()).fit(lambda: iter(chunks))
    assert fitted.n_rows_seen_ == 4 * 3800
    assert fitted.fvu_ < 0.3
    # A list of chunks can be read many times too, and counts its rows.
    source = ChunkSource(chunks)
    assert source.shape == (4000, 16)
    np.testing.assert_array_equal(fitted.transform(source), fitted.transform(data))
    with pytest.raises(ValueError, match="hold 4000 rows; n_rows=10 was given"):
        _ = ChunkSource(chunks, n_rows=10).shape


def test_one_shot_iterators_and_bad_chunks_are_refused(data):
    with pytest.raises(TypeError, match="one-shot iterator can be read only once"):
        SparseAutoencoder(**params()).fit(iter(np.array_split(data, 4)))
    bad = data.copy()
    bad[1234, 5] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinity \(row 1234\)"):
        SparseAutoencoder(**params()).fit(ChunkSource(bad, chunk_rows=1000))
    ragged = [data[:100], data[100:200, :8]]
    with pytest.raises(ValueError, match=r"at row 100 has shape \(100, 8\); expected"):
        SparseAutoencoder(**params()).fit(lambda: iter(ragged))
    fitted = SparseAutoencoder(**params(max_epochs=1)).fit(data)
    with pytest.raises(ValueError, match="X has 8 features, but SparseAutoencoder"):
        fitted.transform(ChunkSource(data[:, :8]))


def test_batches_shuffle_by_chunk_and_within_windows():
    n, chunk = 1000, 50
    X = np.arange(n, dtype=np.float32)[:, None].repeat(2, axis=1)
    held_out = np.array([3, 500, 999])
    rows = ChunkSource(X, chunk_rows=chunk, shuffle_chunks=2).without(held_out)
    feed = StreamFeed(rows)
    batches = StreamBatches(rows, 1.0, torch.device("cpu"), feed.sizes)

    def epoch(seed):
        generator = torch.Generator().manual_seed(seed)
        return [b[:, 0].numpy().astype(int) for b in batches.epoch(generator, 64)]

    first = epoch(0)
    seen = np.concatenate(first)
    # Every training row once; the held-out ones never.
    np.testing.assert_array_equal(np.sort(seen), np.setdiff1d(np.arange(n), held_out))
    assert [len(b) for b in first] == [64] * 15 + [997 - 15 * 64]
    # Seeded: the same seed gives the same order, another seed another order.
    assert all(np.array_equal(a, b) for a, b in zip(first, epoch(0), strict=True))
    assert not np.array_equal(seen, np.concatenate(epoch(1)))
    # Chunks come in a random order, and a batch mixes two chunks' rows.
    chunk_order = list(dict.fromkeys(seen // chunk))
    assert chunk_order != sorted(chunk_order)
    assert len(np.unique(first[0] // chunk)) == 2
    # Rows are numbered without the held-out ones.
    np.testing.assert_array_equal(
        rows.positions([0, 3, 498, 499, 996]), [0, 4, 499, 501, 998]
    )


def test_partial_fit_streams_and_resumes(data, on_disk):
    mm = np.load(on_disk / "x.npy", mmap_mode="r")
    sae = SparseAutoencoder(**params())
    for _ in range(3):
        sae.partial_fit(ChunkSource(mm, chunk_rows=700))
    assert sae.n_iter_ == 3 and sae.n_rows_seen_ == 12000
    assert int(sae.optimizer_state_["step"]) == 3 * 32
    assert sae.fvu_ < 0.4


def test_sparse_transform_is_built_chunk_by_chunk(data, on_disk):
    mm = np.load(on_disk / "x.npy", mmap_mode="r")
    for activation in ("topk", "batchtopk"):
        sae = SparseAutoencoder(**params(activation=activation, max_epochs=2))
        dense = sae.fit(data).transform(data)
        sae.set_params(sparse_output=True, transform_batch_size=300)
        Z = sae.transform(ChunkSource(mm, chunk_rows=700))
        assert sp.isspmatrix_csr(Z) and Z.has_canonical_format
        assert Z.dtype == np.float32 and Z.shape == (4000, 32)
        np.testing.assert_array_equal(Z.toarray(), dense)
        np.testing.assert_array_equal(sae.transform(data).toarray(), dense)
    assert np.diff(Z.indptr).max() > np.diff(Z.indptr).min()  # BatchTopK varies


MEMORY_PROBE = textwrap.dedent(
    """
    import sys, threading, time
    import numpy as np, torch
    from sklearn_hypothesaes.sae import _streaming
    from sklearn_hypothesaes.sae._model import SparseAutoencoder

    # Both sizes start from a sample of the same size (the default, 65,536
    # rows, would be all of the smaller file): what remains is what grows.
    _streaming.INIT_SAMPLE_ROWS = 8192
    torch.set_num_threads(1)

    def anon():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("RssAnon:"))

    def peak_growth(fit):
        peak, done = [anon()], []
        def watch():
            while not done:
                peak.append(anon())
                time.sleep(0.001)
        thread = threading.Thread(target=watch)
        base = anon()
        thread.start()
        sae = fit()
        done.append(1)
        thread.join()
        return (max(peak) - base) / 1024, sae

    folder = sys.argv[1]
    rng = np.random.default_rng(0)
    params = dict(n_latents=32, k=4, batch_size=2048, max_epochs=1, device="cpu",
                  max_validation_rows=1000, random_state=0)
    for n in (3000, 20_000, 200_000):
        X = np.lib.format.open_memmap(
            f"{folder}/{n}.npy", mode="w+", dtype=np.float32, shape=(n, 64))
        for lo in range(0, n, 50_000):
            X[lo : lo + 50_000] = rng.normal(size=(min(50_000, n - lo), 64))
        X.flush()
        del X
        X = np.load(f"{folder}/{n}.npy", mmap_mode="r")
        source = _streaming.ChunkSource(X, chunk_rows=4096)
        growth, sae = peak_growth(lambda: SparseAutoencoder(**params).fit(source))
        print(n, round(growth, 2), sae.n_rows_seen_)
    """
)


def test_memory_does_not_grow_with_rows(tmp_path):
    # Large allocations straight from and back to the OS, so that RssAnon
    # follows what is alive rather than the heap's high-water mark.
    env = {"MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(tmp_path)],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, **env},
        timeout=300,
        check=True,
    ).stdout.split()
    rows = np.asarray(out, dtype=float).reshape(3, 3)
    small, large = rows[1], rows[2]
    # The validation slice is capped: 1000 rows held out of 200,000.
    assert large[2] == 199_000 and small[2] == 19_000
    # 180,000 more rows (44 MB more data) cost under 4 MB more anonymous
    # memory; before chunked reads and the cap, 65 MB more.
    assert large[1] - small[1] < 4.0, rows


def test_selector_takes_sparse_activations_without_densifying():
    rng = np.random.default_rng(0)
    n, p = 100_000, 512
    rows = np.repeat(np.arange(n), 4)
    cols = rng.integers(0, 64, size=4 * n)  # latents 64..511 never fire
    vals = rng.random(4 * n).astype(np.float32) + 0.1
    Z = sp.csr_matrix((vals, (rows, cols)), shape=(n, p))
    y = (Z[:, 3].toarray().ravel() > 0).astype(int)
    for method in ("correlation", "separation", "lasso"):
        tracemalloc.start()
        selector = LatentSelector(n_latents=5, method=method).fit(Z, y)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        # A dense float64 copy would be 410 MB (the dead columns alone 367 MB).
        assert peak < 40 * 2**20, (method, peak / 2**20)
        assert selector.selected_[0] == 3
        assert np.all(selector.scores_[64:] == 0)


@pytest.mark.parametrize("sizes", [[30, 30, 30, 10], [45, 55], [33, 33, 34], [100]])
def test_batches_of_any_sizes_cover_the_rows_once(sizes):
    # Distributed training asks for batches of its own sizes; a batch may
    # need rows of several windows, or all of them.
    X = np.arange(100, dtype=np.float32)[:, None].repeat(2, axis=1)
    rows = ChunkSource(X, chunk_rows=10, shuffle_chunks=2)
    batches = StreamBatches(rows, 2.0, torch.device("cpu"), lambda batch: sizes)
    got = list(batches.epoch(torch.Generator().manual_seed(0), 0))
    assert [len(b) for b in got] == sizes
    np.testing.assert_array_equal(
        np.sort(torch.cat(got)[:, 0].numpy()), 2.0 * np.arange(100)
    )


TRIM_PROBE = textwrap.dedent(
    """
    import numpy as np
    from sklearn_hypothesaes.sae._streaming import release_free_memory

    def anon():
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024

    start = anon()
    # 100 kB blocks come from glibc's heap (under its mmap threshold), as a
    # training step's smaller temporaries do; every other one freed leaves
    # holes the heap keeps.
    blocks = [np.ones(25_000, np.float32) for _ in range(4000)]
    del blocks[::2]
    before = anon()
    release_free_memory()
    print(start, before, anon())
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc, /proc")
def test_free_heap_memory_is_given_back():
    """An epoch over 10,000,000 rows held 16 GB of freed heap memory (RssAnon)
    before chunked reads and every 64 batches released it."""
    out = subprocess.run(
        [sys.executable, "-c", TRIM_PROBE],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.split()
    start, before, after = map(float, out)
    # 2,000 live blocks of 100 kB (190 MB) and 2,000 freed ones the heap
    # holds (190 MB more), given back.
    assert before - start > 300, out
    assert before - after > 150, out


def test_every_chunk_read_and_every_64_batches_release_memory(
    data, on_disk, monkeypatch
):
    from sklearn_hypothesaes.sae import _streaming

    calls = []
    monkeypatch.setattr(_streaming, "release_free_memory", lambda: calls.append(1))
    X = np.load(on_disk / "x.npy", mmap_mode="r")
    source = ChunkSource(X, chunk_rows=500)
    list(source.chunks())
    assert len(calls) == 8  # 4000 rows in chunks of 500
    calls.clear()
    feed = StreamFeed(source)
    n = sum(
        1
        for _ in feed.batches(1.0, torch.device("cpu")).epoch(
            torch.Generator().manual_seed(0), 16
        )
    )
    assert n == 250 and len(calls) == 8 + 250 // 64


def test_in_memory_epochs_on_cpu_release_memory_every_64_batches(data, monkeypatch):
    from sklearn_hypothesaes.sae import _training

    calls = []
    monkeypatch.setattr(_training, "release_free_memory", lambda: calls.append(1))
    SparseAutoencoder(**params(batch_size=16, max_epochs=1)).fit(data)
    # 3,800 training rows (200 held out) in batches of 16: 238 batches.
    assert len(calls) == 238 // 64
