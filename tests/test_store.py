"""SQLiteStore: round trips, and unusable cache files named with the remedy."""

import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from sklearn_hypothesaes.utils._store import CacheError, SQLiteStore

REMEDY = (
    "point cache_dir (--cache-dir on the command line) at another folder, or "
    "turn caching off with cache_dir=False (--no-cache)."
)


def test_round_trip(tmp_path):
    store = SQLiteStore(tmp_path / "sub" / "kv.sqlite")
    store.put_json({"a": {"x": 1}, "b": "é"})
    store.put_arrays({"v": np.array([1.5, -2.0])})
    assert store.get_json(["a", "b", "missing"]) == {"a": {"x": 1}, "b": "é"}
    assert store.get_arrays(["v"])["v"].tolist() == [1.5, -2.0]
    assert len(store) == 3
    store.check_writable()
    assert len(store) == 3


def test_file_that_is_not_a_database(tmp_path):
    path = tmp_path / "embeddings.sqlite"
    path.write_bytes(b"this is not an SQLite file " * 20)
    with pytest.raises(CacheError) as exc:
        SQLiteStore(path)
    assert str(exc.value) == (
        f"The cache file '{path}' is not a readable SQLite database (file is not "
        "a database). It only holds cached results: delete it, or " + REMEDY
    )


def test_database_corrupted_after_opening(tmp_path):
    path = tmp_path / "llm.sqlite"
    store = SQLiteStore(path)
    store.put_json({"a": 1})
    store.close()
    path.write_bytes(b"\0" * 4096)
    for wal in tmp_path.glob("llm.sqlite-*"):
        wal.unlink()
    with pytest.raises(CacheError, match=re.escape(f"The cache file '{path}' is not")):
        store.get_json(["a"])


def _immutable(path):
    """Make ``path`` read-only even for root (chattr +i), or skip."""
    if os.geteuid() != 0:
        path.chmod(0o444)
        return lambda: path.chmod(0o644)
    if shutil.which("chattr") is None:
        pytest.skip("running as root without chattr: no read-only file")
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
    if done.returncode:
        pytest.skip(f"chattr +i failed: {done.stderr.decode().strip()}")
    return lambda: subprocess.run(["chattr", "-i", str(path)], check=True)


def test_read_only_database(tmp_path):
    path = tmp_path / "llm.sqlite"
    SQLiteStore(path).put_json({"a": 1})
    restore = _immutable(path)
    try:
        store = SQLiteStore(path)
        assert store.get_json(["a"]) == {"a": 1}  # reading still works
        message = (
            f"The cache file '{path}' cannot be written (attempt to write a "
            "readonly database). Make it and its folder writable, delete it, or "
            + REMEDY
        )
        with pytest.raises(CacheError) as exc:
            store.check_writable()
        assert str(exc.value) == message
        with pytest.raises(CacheError) as exc:
            store.put_json({"b": 2})
        assert str(exc.value) == message
    finally:
        restore()


def test_folder_that_is_a_file(tmp_path):
    (tmp_path / "cache").write_text("a file where the folder should be")
    with pytest.raises(CacheError, match=r"The cache folder '.*cache' cannot be"):
        SQLiteStore(tmp_path / "cache" / "llm.sqlite")
