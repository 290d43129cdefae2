"""Embeddings written to an on-disk array chunk by chunk, resumable after a kill.

A folder holds the array (``embeddings.npy``, a NumPy file opened as a memory
map, or ``embeddings.zarr``) and ``progress.json``: what was embedded (model and
options, number and hash of the texts) and how many chunks are finished. The
record is replaced atomically after each chunk's rows are flushed, so after a
kill at any point the folder says truthfully which rows are done, and a rerun
embeds only the rest. Only one chunk of texts and vectors is in memory at once.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..utils._misc import import_optional

RECORD_FILE = "progress.json"
ARRAY_FILES = {"npy": "embeddings.npy", "zarr": "embeddings.zarr"}
# Bump when the folder layout or the meaning of the record changes.
_LAYOUT = 1
DEFAULT_CHUNK_SIZE = 4096
_RECORD_KEYS = {"fingerprint", "chunk_size", "chunks_done", "n_dims"}


def _checked_rows(X, start: int, stop: int, check: Callable) -> list[str]:
    """Validated rows ``start:stop`` of a list, array, Series or DataFrame."""
    rows = X.iloc[start:stop] if hasattr(X, "iloc") else X[start:stop]
    try:
        return check(rows)
    except ValueError as exc:
        if start:
            exc.add_note(
                f"Positions count from row {start} of X (chunk {start}:{stop})."
            )
        raise


def texts_sha256(X, n_rows: int, chunk_size: int, check: Callable) -> str:
    """SHA-256 of the validated texts, read one chunk at a time.

    Each text goes in with its byte length, so that ``["ab", "c"]`` and
    ``["a", "bc"]`` differ.
    """
    digest = hashlib.sha256()
    for start in range(0, n_rows, chunk_size):
        for text in _checked_rows(X, start, start + chunk_size, check):
            data = text.encode("utf-8", "surrogatepass")
            digest.update(len(data).to_bytes(8, "little"))
            digest.update(data)
    return digest.hexdigest()


def _write_json_atomic(path: Path, obj: dict):
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    # A reader sees the old record or the new one, never half of one.
    os.replace(tmp, path)


def _mismatch_error(folder: Path, expected: dict, got: dict) -> ValueError:
    keys = sorted(k for k in expected if expected[k] != got.get(k))
    details = "; ".join(
        f"{k}: expected {expected[k]!r}, got {got.get(k)!r}" for k in keys
    )
    return ValueError(
        f"The folder {str(folder)!r} (the 'path' parameter of "
        "TextEmbedder.transform_to_disk) holds embeddings of other texts or of "
        f"another model or options ({details}). Pass another path for these "
        "texts, or delete the folder to embed them there from the start."
    )


class DiskArray:
    """An ``(n_rows, n_dims)`` float32 array in ``folder``, filled chunk by chunk.

    ``fingerprint`` names everything that decides the rows (model, options,
    number and hash of the texts); an existing folder with another one is
    refused. The array itself is created when the first chunk's rows arrive,
    since only they tell the width.
    """

    def __init__(self, folder, fingerprint: dict, *, chunk_size=None, storage="npy"):
        self.folder = Path(folder).expanduser()
        self.fingerprint = {"layout": _LAYOUT, "storage": storage, **fingerprint}
        self.record_path = self.folder / RECORD_FILE
        self.array_path = self.folder / ARRAY_FILES[storage]
        self.storage = storage
        self._array = None
        record = self._read_record()
        if record is None:
            self.chunk_size = chunk_size or DEFAULT_CHUNK_SIZE
            self.n_dims, self.chunks_done = None, 0
            return
        if record["fingerprint"] != self.fingerprint:
            raise _mismatch_error(self.folder, self.fingerprint, record["fingerprint"])
        if chunk_size is not None and chunk_size != record["chunk_size"]:
            raise ValueError(
                f"The folder {str(self.folder)!r} was filled in chunks of "
                f"{record['chunk_size']} texts; got chunk_size={chunk_size}. Pass "
                f"chunk_size={record['chunk_size']} (or None) to resume it."
            )
        self.chunk_size = record["chunk_size"]
        self.n_dims, self.chunks_done = record["n_dims"], record["chunks_done"]
        if self.chunks_done and not self.array_path.exists():
            raise ValueError(
                f"The folder {str(self.folder)!r} records {self.chunks_done} "
                f"finished chunks but has no {self.array_path.name}. Delete the "
                "folder to embed the texts there from the start."
            )

    def _read_record(self) -> dict | None:
        if not self.record_path.exists():
            if self.folder.exists() and any(self.folder.iterdir()):
                raise ValueError(
                    f"The 'path' parameter of TextEmbedder.transform_to_disk must "
                    f"be a new or empty folder, or one written by it; got "
                    f"{str(self.folder)!r}, which holds other files and no "
                    f"{RECORD_FILE}. Pass a new folder."
                )
            return None
        try:
            record = json.loads(self.record_path.read_text(encoding="utf-8"))
            missing = sorted(_RECORD_KEYS - record.keys())
            problem = f"no {', '.join(missing)}" if missing else None
        except (ValueError, AttributeError) as exc:
            record, problem = None, exc
        if problem:
            raise ValueError(
                f"{self.record_path} is not a progress record of "
                f"TextEmbedder.transform_to_disk ({problem}). Delete the folder "
                "to embed the texts there from the start."
            )
        return record

    @property
    def n_rows(self) -> int:
        return self.fingerprint["n_texts"]

    @property
    def n_chunks(self) -> int:
        return -(-self.n_rows // self.chunk_size)

    @property
    def rows_done(self) -> int:
        return min(self.chunks_done * self.chunk_size, self.n_rows)

    @property
    def complete(self) -> bool:
        return self.chunks_done == self.n_chunks

    def _save_record(self):
        _write_json_atomic(
            self.record_path,
            {
                "fingerprint": self.fingerprint,
                "chunk_size": self.chunk_size,
                "n_dims": self.n_dims,
                "chunks_done": self.chunks_done,
                "complete": self.complete,
            },
        )

    def _open(self, mode: str):
        shape = (self.n_rows, self.n_dims)
        if self.storage == "zarr":
            zarr = import_optional("zarr", "transform_to_disk(storage='zarr')")
            if mode == "w":
                return zarr.create_array(
                    store=str(self.array_path),
                    shape=shape,
                    chunks=(self.chunk_size, self.n_dims),
                    dtype="float32",
                    overwrite=True,
                )
            return zarr.open_array(store=str(self.array_path), mode=mode)
        if mode == "w":
            return np.lib.format.open_memmap(
                self.array_path, mode="w+", dtype=np.float32, shape=shape
            )
        return np.load(self.array_path, mmap_mode=mode)

    def start(self):
        """Create the folder and the record (nothing is written before)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if not self.record_path.exists():
            self._save_record()

    def write(self, chunk: int, rows: np.ndarray):
        """Store the rows of ``chunk`` (the next one), then record it as done."""
        if chunk != self.chunks_done:
            raise RuntimeError(
                f"Chunk {chunk} written before chunk {self.chunks_done}."
            )
        rows = np.asarray(rows, dtype=np.float32)
        if self.n_dims is None:
            self.n_dims = int(rows.shape[1])
            self._array = self._open("w")
        elif rows.shape[1] != self.n_dims:
            raise RuntimeError(
                f"The model returned vectors of length {rows.shape[1]} for chunk "
                f"{chunk}, after length {self.n_dims} in {self.folder}."
            )
        elif self._array is None:
            self._array = self._open("r+")
        start = chunk * self.chunk_size
        self._array[start : start + len(rows)] = rows
        if self.storage == "npy":
            # The rows reach the file before the record says they are there.
            self._array.flush()
        self.chunks_done += 1
        self._save_record()

    def result(self):
        """The finished array, opened read-only (a memory map or a Zarr array)."""
        self._array = None
        if self.n_rows and self.n_dims is None:
            raise RuntimeError(f"{self.folder} has no finished rows.")
        return self._open("r")


def embed_to_disk(
    X,
    path,
    *,
    embed: Callable,
    check: Callable,
    identity: dict,
    chunk_size=None,
    storage="npy",
    verbose=False,
):
    """Embed ``X`` into the folder ``path`` chunk by chunk; see
    :meth:`TextEmbedder.transform_to_disk`, which supplies ``embed`` (texts to
    float32 rows), ``check`` (a slice of ``X`` to a list of str) and
    ``identity`` (the model and options that decide the rows)."""
    from tqdm.auto import tqdm

    try:
        n_rows = len(X)
    except TypeError:
        raise TypeError(
            "The 'X' parameter of TextEmbedder.transform_to_disk must be a list, "
            f"array, Series or one-column DataFrame of str; got {type(X).__name__}, "
            "which has no length. Pass the texts as a list or a Series."
        ) from None
    if n_rows == 0:
        raise ValueError("TextEmbedder got 0 texts; at least 1 is required.")
    size = chunk_size or DEFAULT_CHUNK_SIZE
    fingerprint = {
        **identity,
        "n_texts": n_rows,
        "texts_sha256": texts_sha256(X, n_rows, size, check),
    }
    out = DiskArray(path, fingerprint, chunk_size=chunk_size, storage=storage)
    out.start()
    size = out.chunk_size
    with tqdm(
        total=n_rows,
        initial=out.rows_done,
        disable=not verbose,
        desc="Embedding to disk",
        unit="text",
        unit_scale=True,
        dynamic_ncols=True,
    ) as bar:
        for chunk in range(out.chunks_done, out.n_chunks):
            texts = _checked_rows(X, chunk * size, (chunk + 1) * size, check)
            out.write(chunk, embed(texts))
            bar.update(len(texts))
    return out.result()
