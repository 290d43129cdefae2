"""Out-of-core rows for :class:`SparseAutoencoder`: arrays on disk and chunk iterables.

:class:`ChunkSource` reads the rows of a memory-mapped, Zarr or HDF5 array, or
of an iterable of chunks, a chunk at a time, so that training, transform and
the statistics never hold more than a few chunks in memory. Training reads
chunks in a random order (arrays) and shuffles the rows of a window of a few
chunks at a time; a held-out validation slice is read once and kept.

:class:`StreamFeed` is what the training loop (``_training.train``) reads: the
number of training rows, the batches of an epoch, and the points where several
processes would have to agree (see ``_distributed``, whose feed overrides them).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Iterator
from numbers import Integral

import numpy as np

# Rows of the random sample that starts training (scale, decoder bias): the
# training loop's own sample size, so that a sample is never subsampled again.
INIT_SAMPLE_ROWS = 65_536
# Batches between two returns of the allocator's free memory to the system.
TRIM_EVERY = 64
# Bytes of a chunk read from an array when ``chunk_rows`` is not given.
CHUNK_BYTES = 64 * 2**20


def is_out_of_core(X):
    """Whether ``X`` is read chunk by chunk rather than validated as one array.

    True for a :class:`ChunkSource`, an ``np.memmap``, a Zarr array, an HDF5
    dataset, a callable (returning an iterator of chunks) and an iterator.
    """
    if isinstance(X, ChunkSource | np.memmap):
        return True
    if _library_of(X) in ("zarr", "h5py"):
        return True
    return callable(X) or isinstance(X, Iterator)


def _library_of(X):
    return type(X).__module__.split(".")[0]


def as_chunk_source(X):
    """``X`` itself if a :class:`ChunkSource`, else a ChunkSource over it."""
    return X if isinstance(X, ChunkSource) else ChunkSource(X)


class ChunkSource:
    """Rows of an on-disk array or of an iterable of chunks, read chunk by chunk.

    Pass one to :meth:`SparseAutoencoder.fit`, :meth:`~SparseAutoencoder.partial_fit`,
    :meth:`~SparseAutoencoder.transform` or :meth:`~SparseAutoencoder.score` to
    work on data larger than memory. An ``np.memmap``, a Zarr array or an HDF5
    dataset given to those methods directly is wrapped in a ChunkSource with
    the default settings.

    Training reads the chunks of an array in a random order, ``shuffle_chunks``
    at a time, and shuffles the rows of those chunks together (seeded by the
    estimator's ``random_state``); an iterable's chunks come in their own
    order, and are shuffled within windows the same way. Resident memory is
    about ``2 * shuffle_chunks`` chunks, the held-out validation rows
    (``max_validation_rows`` of the estimator at most) and a 65,536-row sample
    read once to start training, whatever the number of rows.

    Parameters
    ----------
    data : np.memmap, ndarray, zarr.Array, h5py.Dataset, callable or iterable
        A 2-D array (anything with ``shape`` whose slices ``data[a:b]`` are
        arrays), or chunks: a callable that returns a fresh iterator of 2-D
        chunks each time it is called (one call per pass over the data), or
        an iterable that can be iterated several times (a list of arrays, an
        object whose ``__iter__`` starts over). Every pass must yield the same
        rows in the same order: held-out rows are found by position. A one-shot
        iterator (a generator) is refused: training reads the data several
        times.
    chunk_rows : int, default=None
        Rows per chunk read from an array. None: about 64 MB a chunk, rounded
        up to a multiple of the array's own chunks (Zarr, HDF5) so that each
        stored chunk is decompressed once per pass. Ignored for chunk
        iterables.
    shuffle_chunks : int, default=4
        Chunks whose rows are shuffled together during training.
    n_rows : int, default=None
        Number of rows of a chunk iterable; None counts them with one pass
        over the chunks when first needed. Ignored for arrays.

    Attributes
    ----------
    shape : tuple of int
        ``(n_rows, n_features)``, held-out rows excluded.

    See Also
    --------
    SparseAutoencoder : Accepts a ChunkSource wherever it accepts an array.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_hypothesaes import ChunkSource, SparseAutoencoder
    >>> rng = np.random.default_rng(0)
    >>> chunks = [rng.normal(size=(300, 16)).astype(np.float32) for _ in range(4)]
    >>> source = ChunkSource(lambda: iter(chunks))
    >>> source.shape
    (1200, 16)
    >>> sae = SparseAutoencoder(n_latents=32, k=4, max_epochs=2, random_state=0)
    >>> Z = sae.fit(source).transform(source)
    >>> Z.shape
    (1200, 32)
    """

    def __init__(self, data, *, chunk_rows=None, shuffle_chunks=4, n_rows=None):
        if isinstance(data, ChunkSource):
            raise TypeError("ChunkSource(data) got a ChunkSource; pass it directly.")
        for name, value in (("chunk_rows", chunk_rows), ("n_rows", n_rows)):
            if value is not None and (
                not isinstance(value, Integral) or isinstance(value, bool) or value < 1
            ):
                raise ValueError(
                    f"The '{name}' parameter of ChunkSource must be None or an int "
                    f">= 1. Got {value!r} instead."
                )
        if not isinstance(shuffle_chunks, Integral) or shuffle_chunks < 1:
            raise ValueError(
                "The 'shuffle_chunks' parameter of ChunkSource must be an int >= 1. "
                f"Got {shuffle_chunks!r} instead."
            )
        self.data = data
        self.shuffle_chunks = int(shuffle_chunks)
        self._exclude = np.zeros(0, dtype=np.int64)
        if hasattr(data, "shape") and hasattr(data, "__getitem__"):
            shape = tuple(int(s) for s in data.shape)
            if len(shape) != 2 or shape[0] < 1 or shape[1] < 1:
                raise ValueError(
                    "ChunkSource needs a 2-D array of shape (n_rows, n_features) "
                    f"with at least one row and column. Got shape {shape} instead."
                )
            self.random_access = True
            self._n_total, self.n_features = shape
            self.chunk_rows = int(chunk_rows or self._default_chunk_rows())
        elif callable(data) or (
            isinstance(data, Iterable) and not isinstance(data, Iterator)
        ):
            self.random_access = False
            self._n_total, self.n_features = n_rows, None
            self.chunk_rows = None
        else:
            raise TypeError(
                "ChunkSource needs a 2-D array (np.memmap, zarr.Array, "
                "h5py.Dataset), a callable returning an iterator of 2-D chunks, or "
                f"a re-iterable of chunks. Got a {type(data).__name__} instead"
                + (
                    ": a one-shot iterator can be read only once; pass a function "
                    "that returns a fresh iterator, e.g. ChunkSource(lambda: "
                    "read_chunks(path))."
                    if isinstance(data, Iterator)
                    else "."
                )
            )

    # ----------------------------------------------------------------- shape
    def _default_chunk_rows(self):
        rows = max(1, CHUNK_BYTES // (4 * self.n_features))
        native = getattr(self.data, "chunks", None)
        if isinstance(native, tuple) and native and isinstance(native[0], Integral):
            rows = math.ceil(rows / native[0]) * native[0]
        return rows

    def _count(self):
        if self._n_total is None or self.n_features is None:
            n = 0
            for chunk in self._iterate():
                n += len(chunk)
            if self._n_total is not None and n != self._n_total:
                raise ValueError(
                    f"The chunks of ChunkSource hold {n} rows; n_rows={self._n_total} "
                    "was given. Pass the right n_rows, or None to count them."
                )
            self._n_total = n
            if n == 0:
                raise ValueError("The chunks of ChunkSource hold no rows.")

    @property
    def n_rows(self):
        """Rows of the whole source, held-out rows included."""
        self._count()
        return self._n_total

    @property
    def shape(self):
        self._count()
        return (self._n_total - len(self._exclude), self.n_features)

    ndim = 2
    dtype = np.dtype(np.float32)

    def __len__(self):
        return self.shape[0]

    def __repr__(self):
        kind = type(self.data).__name__
        return f"ChunkSource({kind}, chunk_rows={self.chunk_rows})"

    def without(self, positions):
        """The same source with the rows at ``positions`` (of the whole
        source) left out of every read."""
        view = object.__new__(ChunkSource)
        view.__dict__.update(self.__dict__)
        if positions is None:
            positions = np.zeros(0, dtype=np.int64)
        view._exclude = np.union1d(self._exclude, np.asarray(positions, np.int64))
        return view

    # ----------------------------------------------------------------- reads
    def _check_chunk(self, chunk, start, positions=None):
        """``chunk`` as C-contiguous float32, checked; its rows are those from
        ``start`` on, or at ``positions``."""
        chunk = np.asarray(chunk)
        if chunk.ndim != 2 or (
            self.n_features is not None and chunk.shape[1] != self.n_features
        ):
            expected = "(n, n_features)"
            if self.n_features is not None:
                expected = f"(n, {self.n_features})"
            raise ValueError(
                f"The chunk of ChunkSource at row {start} has shape {chunk.shape}; "
                f"expected {expected} like the chunks before it."
            )
        self.n_features = chunk.shape[1]
        chunk = np.ascontiguousarray(chunk, dtype=np.float32)
        if not np.isfinite(chunk).all():
            bad = int(np.flatnonzero(~np.isfinite(chunk).all(axis=1))[0])
            bad = start + bad if positions is None else int(positions[bad])
            raise ValueError(
                f"The data of ChunkSource contains NaN or infinity (row {bad}); "
                "training on it would give NaN weights. Clean or drop those rows."
            )
        return chunk

    def _iterate(self):
        """Chunks of an iterable, checked, in their order."""
        chunks = self.data() if callable(self.data) else iter(self.data)
        if not isinstance(chunks, Iterator):
            chunks = iter(chunks)
        start = 0
        for chunk in chunks:
            chunk = self._check_chunk(chunk, start)
            if len(chunk):
                yield chunk
            start += len(chunk)

    def _read(self, start, stop):
        return self._check_chunk(self.data[start:stop], start)

    def n_chunks(self):
        """Chunks an array is read in (None for an iterable)."""
        if not self.random_access:
            return None
        return math.ceil(self._n_total / self.chunk_rows)

    def chunks(self, order=None):
        """Yield the chunks, held-out rows removed, as float32 arrays.

        ``order``: chunk numbers to read, in that order (arrays only).
        """
        if self.random_access:
            if order is None:
                order = range(self.n_chunks())
            pieces = (
                (i * self.chunk_rows, self._read(i * self.chunk_rows, stop))
                for i in order
                for stop in [min((i + 1) * self.chunk_rows, self._n_total)]
            )
        else:
            pieces = self._with_starts(self._iterate())
        for start, chunk in pieces:
            # Each pass (an epoch's windows, the statistics, a transform)
            # frees the memory of the chunk before it: give it back.
            release_free_memory()
            chunk = self._drop_excluded(start, chunk)
            if len(chunk):
                yield chunk

    @staticmethod
    def _with_starts(chunks):
        start = 0
        for chunk in chunks:
            yield start, chunk
            start += len(chunk)

    def _drop_excluded(self, start, chunk):
        if not len(self._exclude):
            return chunk
        lo, hi = np.searchsorted(self._exclude, [start, start + len(chunk)])
        if lo == hi:
            return chunk
        return np.delete(chunk, self._exclude[lo:hi] - start, axis=0)

    def blocks(self, rows):
        """Yield ``(start, block)``: consecutive blocks of ``rows`` rows (the
        last one shorter), held-out rows removed, ``start`` counted likewise."""
        pending, n_pending, start = [], 0, 0
        for chunk in self.chunks():
            pending.append(chunk)
            n_pending += len(chunk)
            if n_pending < rows:
                continue
            buffer = np.concatenate(pending) if len(pending) > 1 else pending[0]
            cut = (n_pending // rows) * rows
            for lo in range(0, cut, rows):
                yield start, buffer[lo : lo + rows]
                start += rows
            pending = [buffer[cut:]] if cut < n_pending else []
            n_pending -= cut
        if n_pending:
            yield start, np.concatenate(pending)

    def take(self, positions):
        """Rows at sorted ``positions`` of the whole source, as one array."""
        positions = np.asarray(positions, dtype=np.int64)
        if not len(positions):
            return np.zeros((0, self.shape[1]), dtype=np.float32)
        if isinstance(self.data, np.ndarray):
            # A memmap reads only the pages of these rows.
            return self._check_chunk(self.data[positions], 0, positions)
        out = np.empty((len(positions), self.shape[1]), dtype=np.float32)
        filled = 0
        if self.random_access:
            step = self.chunk_rows
            starts = np.unique(positions // step) * step
            pieces = ((s, self._read(s, min(s + step, self._n_total))) for s in starts)
        else:
            pieces = self._with_starts(self._iterate())
        for start, chunk in pieces:
            lo, hi = np.searchsorted(positions, [start, start + len(chunk)])
            out[filled : filled + hi - lo] = chunk[positions[lo:hi] - start]
            filled += hi - lo
            if filled == len(positions):
                break
        return out

    def positions(self, view_positions):
        """Positions in the whole source of rows numbered without the held-out ones."""
        view_positions = np.asarray(view_positions, dtype=np.int64)
        if not len(self._exclude):
            return view_positions
        # Excluded row j has j excluded rows before it: it shifts every later
        # row by one; E - arange counts, for each, the kept rows before it.
        kept_before = self._exclude - np.arange(len(self._exclude))
        return view_positions + np.searchsorted(
            kept_before, view_positions, side="right"
        )

    def sample(self, n, seed):
        """``n`` random rows (all rows, in order, when there are at most ``n``)."""
        n_rows = self.shape[0]
        if n_rows <= n:
            picked = np.arange(n_rows)
        else:
            picked = np.sort(np.random.default_rng(seed).choice(n_rows, n, False))
        return self.take(self.positions(picked))


class StreamBatches:
    """The training batches of an epoch over a :class:`ChunkSource`.

    Arrays are read in a random order of chunks; ``shuffle_chunks`` chunks at
    a time are shuffled together, and rows left over after the last full batch
    of a window join the next window. ``sizes(batch)`` gives the row count of
    every batch of an epoch. A window goes to the device as a whole and is
    shuffled there: on a GPU one large copy instead of one per batch, and the
    gather runs on the GPU rather than in one CPU thread.
    """

    def __init__(self, rows, scale, device, sizes):
        self.rows, self.scale, self.device, self.sizes = rows, scale, device, sizes

    def epoch(self, generator, batch):
        import torch

        rows = self.rows
        order = None
        if rows.random_access:
            order = torch.randperm(rows.n_chunks(), generator=generator).tolist()
        sizes = iter(self.sizes(batch))
        want = next(sizes, None)
        window = []
        carry = torch.zeros((0, rows.shape[1]), device=self.device)
        chunks = rows.chunks(order)
        n_batches = 0
        exhausted = False
        while want is not None:
            chunk = next(chunks, None)
            if chunk is not None:
                window.append(chunk)
                if len(window) < rows.shuffle_chunks:
                    continue
            else:
                exhausted = True
            if len(window) == 1:
                fresh = window[0]
                if not fresh.flags.writeable:  # a memmap's pages: torch wants a copy
                    fresh = fresh.copy()
            else:
                fresh = np.concatenate(window or [np.zeros((0, rows.shape[1]))])
            pool = torch.from_numpy(fresh.astype(np.float32, copy=False))
            pool = pool.to(self.device)
            if len(carry):
                pool = torch.cat([carry, pool])
            window = fresh = []
            shuffle = torch.randperm(len(pool), generator=generator)
            pool = pool[shuffle.to(self.device)]
            used = 0
            while want is not None and (
                len(pool) - used >= want or (exhausted and used < len(pool))
            ):
                yield pool[used : used + want] * self.scale
                used += want
                want = next(sizes, None)
                n_batches += 1
                if n_batches % TRIM_EVERY == 0:
                    release_free_memory()
            carry = pool[used:]
            if exhausted:
                break
        if want is not None:
            raise RuntimeError(
                "ChunkSource yielded fewer rows than it has: did the chunks "
                "change between passes?"
            )


def release_free_memory():
    """Give the C allocator's free memory back to the system (glibc only).

    A training step frees temporaries of many sizes, and glibc serves the
    ones under its (self-raising) mmap threshold from its heap, which then
    fragments: freed but never returned, its pages count as resident. Over
    an epoch of 10,000,000 rows this held 16 GB; 100,000 rows at 4,096
    latents grew by 0.7 GB, and not at all with ``malloc_trim`` every 64
    batches and before each chunk is read. Elsewhere (or where it cannot be
    loaded) this does nothing.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None where there is none (looked up once)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name is not None else None
    except (OSError, AttributeError):
        return None
    if trim is not None:
        trim.argtypes = [ctypes.c_size_t]
    return trim


class StreamFeed:
    """What the training loop reads from a :class:`ChunkSource` (one process).

    ``rows`` are the training rows (held-out rows removed). The hooks where
    several processes must agree (``agree``, ``agree_value``, ``pool``,
    ``combine_stats``) are identities here; ``_distributed`` overrides them.
    """

    def __init__(self, rows):
        from ._kernels import TrainState

        self.rows = rows
        self.n_rows = rows.shape[0]
        self.state_class = TrainState

    def sizes(self, batch):
        full, rest = divmod(self.n_rows, batch)
        return [batch] * full + ([rest] if rest else [])

    def batches(self, scale, device):
        return StreamBatches(self.rows, scale, device, self.sizes)

    def sample(self, seed):
        return self.rows.sample(INIT_SAMPLE_ROWS, seed)

    def agree(self, params, scale, row_var):
        return params, scale, row_var

    def agree_value(self, value):
        return value

    def pool(self, X_val):
        return X_val

    def combine_stats(self, stats):
        return stats


def stream_feed(rows):
    """The feed for these training rows: distributed when a process group is
    active (inside :func:`~sklearn_hypothesaes.sae.fit_distributed`)."""
    from ._distributed import active_group

    group = active_group()
    if group is None:
        return StreamFeed(rows)
    from ._distributed import DistributedFeed

    return DistributedFeed(rows, group)


def validation_size(n_samples, fraction, cap):
    """Held-out rows: ``round(fraction * n_samples)``, at least 1, at most
    ``cap`` (split evenly between processes in distributed training)."""
    from ._distributed import active_group

    comm = active_group()
    if comm is not None:
        cap = max(1, cap // comm.world)
    return min(max(1, int(round(fraction * n_samples))), cap)


def csr_from_codes(codes, n_rows, n_latents, capacity=None):
    """A CSR matrix from ``(start, rows, cols, vals)`` batches, filled in place.

    ``capacity``: an upper bound on the non-zeros when known (``n_rows * k``
    for TopK), else the arrays grow by doubling. The peak is the non-zeros
    (twice at most while growing), never a dense ``n_rows x n_latents`` array
    nor a list of per-batch matrices stacked at the end.
    """
    import scipy.sparse as sp

    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    indices = np.empty(capacity or max(1024, n_rows), dtype=np.int32)
    data = np.empty(len(indices), dtype=np.float32)
    nnz = 0
    for start, rows, cols, vals in codes:
        rows = np.asarray(rows)
        order = np.lexsort((cols, rows))
        if nnz + len(order) > len(indices):
            size = max(2 * len(indices), nnz + len(order))
            indices = np.resize(indices, size)
            data = np.resize(data, size)
        indices[nnz : nnz + len(order)] = cols[order]
        data[nnz : nnz + len(order)] = vals[order]
        if len(rows):
            counts = np.bincount(rows)
            indptr[start + 1 : start + 1 + len(counts)] = counts
        nnz += len(order)
    np.cumsum(indptr, out=indptr)
    if nnz <= np.iinfo(np.int32).max:
        indptr = indptr.astype(np.int32)
    if nnz < 0.9 * len(indices):
        # Give spare capacity back (a copy of the non-zeros, once).
        indices, data = indices[:nnz].copy(), data[:nnz].copy()
    return sp.csr_matrix((data[:nnz], indices[:nnz], indptr), shape=(n_rows, n_latents))
