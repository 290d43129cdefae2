"""TextEmbedder.transform_to_disk: chunked on-disk output, resuming after a kill,
refusing another corpus or model, bounded memory, progress bar.

A fake local backend (deterministic vectors from a hash of each text, counting
its calls) stands in for the model so that these tests take seconds; the real
model goes through the same ``_embed_texts`` path (see the docstring example).
"""

import contextlib
import hashlib
import json
import os
import signal
import time

import numpy as np
import pytest

from sklearn_hypothesaes import TextEmbedder
from sklearn_hypothesaes.text import _embedder


class FakeBackend:
    """Stands in for SentenceTransformerBackend: vectors from SHA-256 of the text."""

    dims = 8
    calls: list = []  # texts of each encode call, across instances
    fail_after = None  # raise on this call (0-based), to simulate a crash
    delay = 0.0

    def __init__(self, model, **config):
        self.max_seq_length = 512

    def configure(self, prompt=None, layer=None, pooling="mean"):
        self.prompt = prompt

    def count_truncated(self, texts):
        return 0

    def run(self, batches, batch_size):
        for i, batch in enumerate(batches):
            yield i, self.encode(batch)

    def encode(self, texts):
        if FakeBackend.fail_after is not None and (
            len(FakeBackend.calls) >= FakeBackend.fail_after
        ):
            raise RuntimeError("simulated crash")
        FakeBackend.calls.append(list(texts))
        time.sleep(FakeBackend.delay)
        return fake_vectors(texts, self.dims)


def fake_vectors(texts, dims=8):
    out = np.empty((len(texts), dims), dtype=np.float32)
    for i, text in enumerate(texts):
        digest = hashlib.sha256(text.encode()).digest()
        out[i] = np.resize(np.frombuffer(digest, dtype=np.uint8), dims) / 255.0
    return out


def install_fake(monkeypatch=None, dims=8):
    FakeBackend.dims, FakeBackend.calls = dims, []
    FakeBackend.fail_after, FakeBackend.delay = None, 0.0
    if monkeypatch is None:
        _embedder.SentenceTransformerBackend = FakeBackend
    else:
        monkeypatch.setattr(_embedder, "SentenceTransformerBackend", FakeBackend)


@pytest.fixture
def fake(monkeypatch):
    install_fake(monkeypatch)
    return FakeBackend


def corpus(n):
    return [f"text number {i} " + "word " * (i % 7) for i in range(n)]


def embedder(**params):
    params = {"cache_dir": False, "batch_size": 16, **params}
    return TextEmbedder("fake-model", **params)


def n_encoded():
    return sum(len(c) for c in FakeBackend.calls)


def test_one_shot_equals_transform(tmp_path, fake):
    texts = corpus(100)
    X = embedder().transform_to_disk(texts, tmp_path / "out", chunk_size=32)
    assert isinstance(X, np.memmap) and X.shape == (100, 8) and X.dtype == np.float32
    assert not X.flags.writeable
    np.testing.assert_array_equal(X, fake_vectors(texts))
    again = np.load(tmp_path / "out" / "embeddings.npy", mmap_mode="r")
    np.testing.assert_array_equal(again, X)
    record = json.loads((tmp_path / "out" / "progress.json").read_text())
    assert record["chunks_done"] == 4 and record["complete"] is True
    assert record["n_dims"] == 8 and record["fingerprint"]["n_texts"] == 100
    # A finished folder is returned as it is, with no model work.
    calls = n_encoded()
    Y = embedder().transform_to_disk(texts, tmp_path / "out")
    np.testing.assert_array_equal(Y, X)
    assert n_encoded() == calls


def test_options_follow_transform(tmp_path, fake):
    texts = corpus(40)
    emb = embedder(normalize=True, chunk_words=2)
    X = emb.transform_to_disk(texts, tmp_path / "out", chunk_size=16)
    np.testing.assert_allclose(X, emb.transform(texts), rtol=0, atol=0)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1, atol=1e-6)


def test_resume_after_a_crash_embeds_only_unfinished_chunks(tmp_path, fake):
    texts = corpus(100)
    one_shot = embedder().transform_to_disk(texts, tmp_path / "one", chunk_size=20)
    # Chunks of 20 texts are 2 batches of 16 + 4; crash in the 6th batch (chunk 2).
    install_fake()
    FakeBackend.fail_after = 5
    with pytest.raises(RuntimeError, match="simulated crash"):
        embedder().transform_to_disk(texts, tmp_path / "two", chunk_size=20)
    record = json.loads((tmp_path / "two" / "progress.json").read_text())
    assert record["chunks_done"] == 2 and record["complete"] is False
    FakeBackend.fail_after, FakeBackend.calls = None, []
    resumed = embedder().transform_to_disk(texts, tmp_path / "two")
    np.testing.assert_array_equal(resumed, one_shot)
    assert sorted(t for c in FakeBackend.calls for t in c) == sorted(texts[40:])
    assert len(FakeBackend.calls) == 6


def test_resume_after_sigkill(tmp_path, fake):
    out = tmp_path / "out"
    texts = corpus(300)
    # A forked child has the fake installed and the modules imported already.
    pid = os.fork()
    if pid == 0:
        try:
            FakeBackend.delay = 0.02
            embedder().transform_to_disk(texts, out, chunk_size=20)
        finally:
            os._exit(0)
    record_path = out / "progress.json"
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if os.waitpid(pid, os.WNOHANG) != (0, 0):
                pytest.fail("the run ended before it could be killed")
            if record_path.exists():
                if json.loads(record_path.read_text())["chunks_done"] >= 3:
                    break
            time.sleep(0.01)
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    finally:
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    done = json.loads(record_path.read_text())["chunks_done"]
    assert 3 <= done < 15
    X = embedder().transform_to_disk(texts, out)
    np.testing.assert_array_equal(X, fake_vectors(texts))
    # Only the chunks the killed run had not recorded were embedded again.
    assert n_encoded() == 300 - 20 * done


def test_refuses_another_corpus_or_model(tmp_path, fake):
    texts = corpus(30)
    out = tmp_path / "out"
    embedder().transform_to_disk(texts, out, chunk_size=10)
    other = [*texts[:-1], "a different last text"]
    with pytest.raises(ValueError) as info:
        embedder().transform_to_disk(other, out)
    message = str(info.value)
    assert str(out) in message and "texts_sha256: expected '" in message
    assert "Pass another path" in message and "delete the folder" in message
    with pytest.raises(ValueError, match=r"n_texts: expected 29, got 30"):
        embedder().transform_to_disk(texts[:-1], out)
    with pytest.raises(ValueError, match=r"normalize: expected True, got False"):
        embedder(normalize=True).transform_to_disk(texts, out)
    with pytest.raises(ValueError, match=r"embedder: expected \{.*'other-model'"):
        TextEmbedder("other-model", cache_dir=False).transform_to_disk(texts, out)
    with pytest.raises(ValueError, match="chunks of 10 texts; got chunk_size=5"):
        embedder().transform_to_disk(texts, out, chunk_size=5)


def test_refuses_a_folder_of_other_files_and_bad_arguments(tmp_path, fake):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="holds other files and no progress.json"):
        embedder().transform_to_disk(corpus(3), tmp_path)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "progress.json").write_text('{"chunk_size": 3}')
    with pytest.raises(ValueError, match=r"bad.progress\.json is not a progress rec"):
        embedder().transform_to_disk(corpus(3), tmp_path / "bad")
    with pytest.raises(ValueError, match="'chunk_size' parameter .* Got 0 instead"):
        embedder().transform_to_disk(corpus(3), tmp_path / "a", chunk_size=0)
    with pytest.raises(ValueError, match="'storage' parameter .* Got 'h5' instead"):
        embedder().transform_to_disk(corpus(3), tmp_path / "a", storage="h5")
    with pytest.raises(TypeError, match="has no length"):
        embedder().transform_to_disk(iter(corpus(3)), tmp_path / "a")
    with pytest.raises(ValueError, match=r"positions \[1\]") as info:
        embedder().transform_to_disk(
            ["a", "b", "c", None], tmp_path / "b", chunk_size=2
        )
    assert "Positions count from row 2 of X" in str(info.value.__notes__)


def test_zarr_storage(tmp_path, fake):
    zarr = pytest.importorskip("zarr", reason="the zarr extra is not installed")
    texts = corpus(50)
    X = embedder().transform_to_disk(
        texts, tmp_path / "out", chunk_size=16, storage="zarr"
    )
    assert isinstance(X, zarr.Array) and X.chunks == (16, 8)
    np.testing.assert_array_equal(X[:], fake_vectors(texts))
    with pytest.raises(ValueError, match="storage: expected 'npy', got 'zarr'"):
        embedder().transform_to_disk(texts, tmp_path / "out")


def test_progress_bar_shows_rate_and_time_left(tmp_path, fake, capsys):
    texts = corpus(60)
    embedder(verbose=True).transform_to_disk(texts, tmp_path / "out", chunk_size=20)
    err = capsys.readouterr().err
    assert "Embedding to disk" in err and "60.0/60.0" in err
    assert "text/s" in err and "<00:00" in err


def anon_mib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if "RssAnon:" in line) / 1024


def test_memory_does_not_grow_with_the_number_of_texts(tmp_path, fake):
    install_fake(dims=768)
    peak = [0.0]
    encode = FakeBackend.encode

    def watched(self, texts):
        peak[0] = max(peak[0], anon_mib())
        return encode(self, texts)

    FakeBackend.encode = watched
    try:
        emb = embedder(batch_size=512)
        emb.transform_to_disk(corpus(10), tmp_path / "warm", chunk_size=5)
        growth = {}
        for n in (5_000, 50_000):
            texts = corpus(n)
            before = peak[0] = anon_mib()
            X = emb.transform_to_disk(texts, tmp_path / str(n), chunk_size=2048)
            assert X.shape == (n, 768)
            growth[n] = peak[0] - before
            del texts, X
    finally:
        FakeBackend.encode = encode
    # Held in memory, the 50,000 x 768 output alone would take 146 MiB.
    assert growth[50_000] < 30, growth
    assert growth[50_000] < growth[5_000] + 10, growth
