"""A durable key-value store on SQLite, shared by the embedding and LLM caches.

Values are bytes or JSON, never pickles: opening a cache file cannot execute
code. The database runs in WAL mode so several processes can read and write at
once, and every ``put_many`` commits, so a run killed halfway keeps everything
it had finished.

SQLite's own errors ("file is not a database", "attempt to write a readonly
database") become a :class:`CacheError` naming the file and the remedy: the
file only holds cached results, so deleting it, pointing the cache elsewhere
or turning caching off are always safe.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np

_SCHEMA = "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL)"
# SQLite caps host parameters per statement; stay well below it.
_CHUNK = 500
_REMEDY = (
    "point cache_dir (--cache-dir on the command line) at another folder, or "
    "turn caching off with cache_dir=False (--no-cache)"
)


class CacheError(RuntimeError):
    """A cache file that cannot be read or written; the message says which file
    and how to go on (delete it, move the cache or turn caching off)."""


def cache_error(path, exc: Exception, timeout: float | None = None) -> CacheError:
    """The CacheError for an sqlite3 or OS error raised on the cache ``path``."""
    name = getattr(exc, "sqlite_errorname", "")
    reason = str(exc) or type(exc).__name__
    where = f"The cache file '{path}'"
    if isinstance(exc, OSError):
        return CacheError(
            f"The cache folder '{Path(path).parent}' cannot be created or "
            f"written ({reason}). Make it writable or {_REMEDY}."
        )
    if name in ("SQLITE_NOTADB", "SQLITE_CORRUPT") or "not a database" in reason:
        return CacheError(
            f"{where} is not a readable SQLite database ({reason}). It only "
            f"holds cached results: delete it, or {_REMEDY}."
        )
    if name.startswith("SQLITE_READONLY") or "readonly" in reason:
        return CacheError(
            f"{where} cannot be written ({reason}). Make it and its folder "
            f"writable, delete it, or {_REMEDY}."
        )
    if name.startswith("SQLITE_CANTOPEN") or "unable to open" in reason:
        return CacheError(
            f"{where} cannot be opened ({reason}). Check that it and its folder "
            f"are readable and writable, or {_REMEDY}."
        )
    if name.startswith("SQLITE_BUSY") or "locked" in reason:
        return CacheError(
            f"{where} stayed locked by another process for {timeout} s "
            f"({reason}). Wait for the other run to finish, or {_REMEDY}."
        )
    return CacheError(f"{where} failed: {reason}. Delete it, or {_REMEDY}.")


class SQLiteStore:
    """Thread- and process-safe key -> bytes store in one SQLite file.

    Parameters
    ----------
    path : str or Path
        Database file; its folder is created if needed.
    timeout : float, default=60
        Seconds to wait for another writer's lock before failing.

    Raises
    ------
    CacheError
        From any method, when the file is not an SQLite database, cannot be
        written or opened, or stays locked; the message names the file and
        the remedy.
    """

    def __init__(self, path, timeout: float = 60.0):
        self.path = Path(path)
        self.timeout = timeout
        self._local = threading.local()
        with self._errors():
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            conn = self._conn()
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(_SCHEMA)
            conn.commit()

    @contextmanager
    def _errors(self):
        try:
            yield
        except (sqlite3.Error, OSError) as exc:
            raise cache_error(self.path, exc, self.timeout) from exc

    def check_writable(self):
        """Raise CacheError now if the file cannot be written, rather than
        after the work whose results it would cache."""
        with self._errors():
            conn = self._conn()
            with conn:
                # A write that changes nothing still needs a writable file.
                conn.execute("DELETE FROM kv WHERE 0")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self.timeout)
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        keys = list(dict.fromkeys(keys))
        found: dict[str, bytes] = {}
        with self._errors():
            conn = self._conn()
            for start in range(0, len(keys), _CHUNK):
                chunk = keys[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    f"SELECT key, value FROM kv WHERE key IN ({marks})", chunk
                ).fetchall()
                found.update(rows)
        return found

    def put_many(self, items: Mapping[str, bytes] | Iterable[tuple[str, bytes]]):
        pairs = list(items.items() if isinstance(items, Mapping) else items)
        if not pairs:
            return
        with self._errors():
            conn = self._conn()
            for attempt in range(5):
                try:
                    with conn:
                        conn.executemany(
                            "INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)",
                            pairs,
                        )
                    return
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or attempt == 4:
                        raise
                    time.sleep(0.1 * 2**attempt)

    def __len__(self) -> int:
        with self._errors():
            return self._conn().execute("SELECT COUNT(*) FROM kv").fetchone()[0]

    def close(self):
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # Typed helpers -------------------------------------------------------
    def get_json(self, keys: Iterable[str]) -> dict:
        return {k: json.loads(v) for k, v in self.get_many(keys).items()}

    def put_json(self, items: Mapping[str, object]):
        self.put_many(
            {k: json.dumps(v, ensure_ascii=False).encode() for k, v in items.items()}
        )

    def get_arrays(self, keys: Iterable[str], dtype=np.float32) -> dict:
        """Rows stored as raw little-endian bytes of one dtype."""
        return {
            k: np.frombuffer(v, dtype=dtype) for k, v in self.get_many(keys).items()
        }

    def put_arrays(self, items: Mapping[str, np.ndarray], dtype=np.float32):
        self.put_many(
            {
                k: np.ascontiguousarray(
                    v, dtype=np.dtype(dtype).newbyteorder("<")
                ).tobytes()
                for k, v in items.items()
            }
        )
