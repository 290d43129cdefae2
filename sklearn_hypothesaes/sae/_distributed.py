"""Data-parallel training of :class:`SparseAutoencoder` over several processes.

Each process (one per GPU, or several CPU processes) holds a shard of the
rows and calls :func:`fit_distributed` in step with the others. A step's
global batch is the union of the processes' local batches; everything that
one process would compute from the whole batch is made global:

- gradients are summed, each process's weighted by its share of the batch,
  so that the step equals one process's step on the global batch (checked by
  ``tests/test_distributed.py``);
- BatchTopK keeps the ``k * global batch`` largest pre-activations of the
  global batch (the processes exchange their local candidates), and its
  inference threshold learns from the global minimum;
- dead-latent counters see the global batch (a latent fired if it fired on
  any process), and AuxK divides by the global residual variance;
- training starts from one sample pooled from every shard, and process 0's
  starting weights are broadcast, so that every process holds the same
  weights throughout; the validation rows are pooled too, and process 0's
  validation FVU decides early stopping for all.

The collectives go through ``torch.distributed``: NCCL between GPUs, gloo
between CPU processes.
"""

from __future__ import annotations

import contextvars
import math
from functools import partial

import numpy as np

from ._kernels import COEF_BOUNDS, CONTROL_RATE, TrainState
from ._streaming import INIT_SAMPLE_ROWS, StreamFeed, as_chunk_source

_GROUP = contextvars.ContextVar("sklearn_hypothesaes_sae_group", default=None)


def active_group():
    """The :class:`Collectives` of the :func:`fit_distributed` call running, or None."""
    return _GROUP.get()


class Collectives:
    """The few collectives training needs, on the device the backend wants.

    NCCL exchanges CUDA tensors, gloo CPU tensors; tensors are moved there and
    back, so the training code need not know which.
    """

    def __init__(self, group, batch_size):
        import torch
        import torch.distributed as dist

        self.dist, self.group = dist, group
        self.world = dist.get_world_size(group)
        self.rank = dist.get_rank(group)
        self.root = dist.get_global_rank(group, 0)
        self.batch_size = batch_size
        backend = str(dist.get_backend(group)).lower()
        self.device = (
            torch.device("cuda", torch.cuda.current_device())
            if "nccl" in backend
            else torch.device("cpu")
        )

    def all_reduce(self, tensor, op="sum"):
        op = {"sum": self.dist.ReduceOp.SUM, "min": self.dist.ReduceOp.MIN}[op]
        moved = tensor.to(self.device)
        self.dist.all_reduce(moved, op=op, group=self.group)
        return moved.to(tensor.device)

    def broadcast(self, tensor):
        moved = tensor.to(self.device)
        self.dist.broadcast(moved, src=self.root, group=self.group)
        return moved.to(tensor.device)

    def all_gather(self, tensor):
        """Every process's ``tensor`` (same shape everywhere), in rank order."""
        import torch

        moved = tensor.to(self.device)
        out = [torch.empty_like(moved) for _ in range(self.world)]
        self.dist.all_gather(out, moved, group=self.group)
        return [t.to(tensor.device) for t in out]

    def gather_rows(self, array):
        """Every process's rows (numbers of rows may differ), in rank order."""
        import torch

        counts = self.all_gather(torch.tensor([len(array)], dtype=torch.long))
        counts = [int(c) for c in counts]
        buffer = torch.zeros(max(counts), array.shape[1], dtype=torch.float32)
        buffer[: len(array)] = torch.from_numpy(np.asarray(array, dtype=np.float32))
        parts = self.all_gather(buffer)
        return np.concatenate(
            [p[:c].numpy() for p, c in zip(parts, counts, strict=True)]
        )


class DistributedFeed(StreamFeed):
    """The training feed of one process of a distributed fit (see the module
    docstring): its own rows, every process's row count, and the collectives
    where the processes agree."""

    def __init__(self, rows, comm):
        import torch

        super().__init__(rows)
        self.comm = comm
        self.local_rows = rows.shape[0]
        counts = comm.all_gather(torch.tensor([self.local_rows], dtype=torch.long))
        self.counts = [int(c) for c in counts]
        self.n_rows = sum(self.counts)
        steps = math.ceil(self.n_rows / min(comm.batch_size, self.n_rows))
        if min(self.counts) < steps:
            # Raised by every process alike: the counts are the same everywhere.
            raise ValueError(
                f"Each process of fit_distributed needs at least one row per step "
                f"({steps} steps of batch_size={comm.batch_size} over "
                f"{self.n_rows} rows); the shards hold {self.counts} training "
                "rows. Give every process a similar share of the rows."
            )
        self.global_sizes = None
        self.state_class = partial(DistributedTrainState, comm=comm, feed=self)

    def sizes(self, batch):
        # Every process takes the same number of steps, each about its share
        # of the global batch.
        steps = math.ceil(self.n_rows / batch)
        shares = [self._split(count, steps) for count in self.counts]
        # Every process knows every step's global batch size without asking.
        self.global_sizes = [int(sum(step)) for step in zip(*shares, strict=True)]
        return shares[self.comm.rank]

    @staticmethod
    def _split(count, steps):
        base, extra = divmod(count, steps)
        return [base + 1] * extra + [base] * (steps - extra)

    def sample(self, seed):
        # Each shard gives its share; with at most INIT_SAMPLE_ROWS rows in all,
        # every row in rank order: the rows one process would start from.
        share = self.local_rows
        if self.n_rows > INIT_SAMPLE_ROWS:
            share = max(1, INIT_SAMPLE_ROWS * self.local_rows // self.n_rows)
        return self.comm.gather_rows(self.rows.sample(share, seed))

    def agree(self, params, scale, row_var):
        import torch

        params = {name: self.comm.broadcast(p) for name, p in params.items()}
        numbers = self.comm.broadcast(
            torch.tensor([scale, row_var], dtype=torch.float64)
        )
        return params, float(numbers[0]), float(numbers[1])

    def agree_value(self, value):
        import torch

        return float(self.comm.broadcast(torch.tensor([value], dtype=torch.float64)))

    def pool(self, X_val):
        return self.comm.gather_rows(X_val)

    def combine_stats(self, stats):
        import torch

        packed = torch.from_numpy(
            np.concatenate(
                [
                    [stats["n"], stats["sse"], stats["sst"]],
                    stats["mean"],
                    stats["frequency"] * stats["n"],
                ]
            ).astype(np.float64)
        )
        parts = torch.stack(self.comm.all_gather(packed)).numpy()
        n, sse, sst = parts[:, 0], parts[:, 1], parts[:, 2]
        d = len(stats["mean"])
        means, fired = parts[:, 3 : 3 + d], parts[:, 3 + d :]
        total = n.sum()
        mean = (n[:, None] * means).sum(0) / total
        # Pooled sum of squares: within each shard plus between the shards.
        sst = sst.sum() + float((n * ((means - mean) ** 2).sum(1)).sum())
        sse = sse.sum()
        fvu = sse / sst if sst > 0 else (0.0 if sse == 0 else math.inf)
        fired = np.rint(fired.sum(0))
        return {
            "fvu": fvu,
            "l0": float(fired.sum() / total),
            "frequency": fired / total,
            "n": int(total),
            "sse": sse,
            "sst": sst,
            "mean": mean,
        }


class DistributedTrainState(TrainState):
    """A :class:`TrainState` whose steps act on the global batch of all processes."""

    def __init__(self, params, *, comm, feed, **kwargs):
        super().__init__(params, **kwargs)
        self.comm, self.feed = comm, feed
        self._global_rows = None
        self._step_in_epoch = 0

    def loss_and_grads(self, x, k=None):
        import torch

        n_local = x.shape[0]
        # Every epoch takes the same steps: the feed's sizes, in turn (known
        # to every process, so no collective and no device sync here).
        sizes = self.feed.global_sizes
        self._global_rows = sizes[self._step_in_epoch % len(sizes)]
        self._step_in_epoch += 1
        grads, loss, code, vals = super().loss_and_grads(x, k=k)
        # Each process's loss is a mean over its rows: the global batch's mean
        # weighs them by their share. One all-reduce for every gradient.
        names = list(grads)
        flat = torch.cat([grads[n].reshape(-1) for n in names] + [loss.reshape(1)])
        flat = self.comm.all_reduce(flat * (n_local / self._global_rows))
        parts = flat.split([grads[n].numel() for n in names] + [1])
        for name, part in zip(names, parts, strict=False):
            grads[name] = part.view_as(grads[name])
        return grads, parts[-1].reshape(()), code, vals

    def _select(self, pre, k):
        import torch

        if self.activation != "batchtopk":
            return super()._select(pre, k)
        # The (k * global batch)-th largest pre-activation of the global batch:
        # among each process's own k * global batch largest.
        total = k * self._global_rows
        local = torch.topk(pre.reshape(-1), min(total, pre.numel()), sorted=False)
        padded = torch.full((total,), -math.inf, dtype=pre.dtype, device=pre.device)
        padded[: local.values.numel()] = local.values
        pooled = torch.cat(self.comm.all_gather(padded))
        threshold = torch.topk(pooled, total, sorted=False).values.min()
        rows, cols = torch.nonzero(pre >= threshold, as_tuple=True)
        return rows, cols, pre[rows, cols]

    def _aux_grads(self, xc, resid, pre, aux_k, coef):
        import torch

        # AuxK divides by the residual's variance over the global batch; the
        # base method divides by the local one, and its gradients are linear
        # in coef: rescale coef (and undo the share weighting applied later).
        n_local = resid.shape[0]
        mean = resid.mean(0)
        local_var = (resid - mean).square().sum()
        packed = torch.cat(
            [torch.tensor([float(n_local)], device=resid.device), mean, local_var[None]]
        ).double()
        parts = torch.stack(self.comm.all_gather(packed))
        n, means, variances = parts[:, 0], parts[:, 1:-1], parts[:, -1]
        pooled_mean = (n[:, None] * means).sum(0) / n.sum()
        pooled = variances.sum() + (n * (means - pooled_mean).square().sum(1)).sum()
        factor = local_var.double().clamp_min(1e-12) / pooled.clamp_min(1e-12)
        factor = (factor * (self._global_rows / n_local)).to(resid.dtype)
        return super()._aux_grads(xc, resid, pre, aux_k, coef * factor)

    def _bookkeeping(self, code, vals, n_rows, k):
        import torch

        # TrainState._bookkeeping with the counts of the global batch.
        with torch.no_grad():
            active = vals > 0
            fired = code.sum_by_latent(active.to(torch.float64))
            packed = torch.cat([fired, active.sum().reshape(1).to(torch.float64)])
            packed = self.comm.all_reduce(packed)
            fired, n_active = packed[:-1] > 0, packed[-1].round().long()
            n_rows = self._global_rows
            self.nnz += n_active
            self.rows += n_rows
            self.rows_since_fired += n_rows
            self.rows_since_fired.masked_fill_(fired, 0)
            if self.activation == "batchtopk" and (k or self.k) == self.k:
                positive = vals[active]
                low = positive.min() if positive.numel() else vals.new_tensor(math.inf)
                low = self.comm.all_reduce(low.reshape(1), op="min")[0]
                if bool(torch.isfinite(low)):
                    self._update_threshold(low)
            if self.activation == "relu" and self.fixed_coef is None:
                deviation = (n_active / (n_rows * (k or self.k)) - 1).clamp(-1, 1)
                self.log_coef += CONTROL_RATE * deviation
                self.log_coef.clamp_(*(math.log(b) for b in COEF_BOUNDS))
        self._steps += 1


def fit_distributed(sae, X, *, X_val=None, partial_fit=False, group=None):
    """Train ``sae`` on this process's shard ``X``, in step with the other
    processes of a ``torch.distributed`` process group.

    Every process of the group calls it with its own shard (an array, an
    ``np.memmap``, a Zarr or HDF5 array, or a :class:`ChunkSource`) and an
    estimator with the same parameters. Each step's batch is the union of
    the processes' batches, about ``sae.batch_size`` rows in all (each
    process contributes in proportion to its shard), and every process ends
    with the same weights, equal to one process training on the global
    batches. With early stopping, each process holds out its share of
    ``max_validation_rows`` and the held-out rows are pooled.

    Launch one process per GPU (or several on CPU) with ``torchrun``, and
    initialise the process group first::

        # train.py, run as: torchrun --nproc_per_node=4 train.py
        import os, numpy as np, torch, torch.distributed as dist
        from sklearn_hypothesaes import SparseAutoencoder, fit_distributed

        dist.init_process_group("nccl")         # "gloo" on CPU
        rank, world = dist.get_rank(), dist.get_world_size()
        local = int(os.environ["LOCAL_RANK"])
        torch.cuda.set_device(local)
        X = np.load("embeddings.npy", mmap_mode="r")
        shard = X[rank * len(X) // world : (rank + 1) * len(X) // world]
        sae = SparseAutoencoder(n_latents=4096, k=32, device=f"cuda:{local}",
                                random_state=0)
        fit_distributed(sae, shard)
        if rank == 0:
            save_sae(sae, "sae/")
        dist.destroy_process_group()

    Parameters
    ----------
    sae : SparseAutoencoder
        The estimator to fit (``fit``, or ``partial_fit`` with
        ``partial_fit=True``); the same parameters on every process.
    X : array-like, np.memmap, zarr.Array, h5py.Dataset or ChunkSource
        This process's rows.
    X_val : array-like, default=None
        This process's validation rows, pooled with the other processes'.
    partial_fit : bool, default=False
        Run one epoch of :meth:`SparseAutoencoder.partial_fit` instead of a fit.
    group : torch.distributed.ProcessGroup, default=None
        The processes to train with; None is the default (world) group.

    Returns
    -------
    sae : SparseAutoencoder
        The fitted estimator, the same on every process.

    Raises
    ------
    RuntimeError
        When no process group is initialised.
    ValueError
        For JumpReLU with an adaptive penalty (``sparsity_coef=None``), whose
        penalty weight each step derives from the local batch's L0: set
        ``sparsity_coef``; for NCCL with a CPU device; or when a shard has
        fewer rows than the training has steps.
    """
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(
            "fit_distributed needs an initialised torch.distributed process group: "
            "launch the script with torchrun and call "
            "torch.distributed.init_process_group('nccl') (GPUs) or ('gloo') (CPU) "
            "before it. To train in one process, call sae.fit(X)."
        )
    if sae.activation == "jumprelu" and sae.sparsity_coef is None:
        raise ValueError(
            "fit_distributed cannot train JumpReLU with an adaptive penalty "
            "(sparsity_coef=None): its weight is derived from each step's local "
            "L0. Set sparsity_coef to a number (e.g. the sparsity_coef_ of a "
            "single-process fit)."
        )
    group = group if group is not None else dist.group.WORLD
    comm = Collectives(group, sae.batch_size)
    on_gpu = str(sae.device).startswith("cuda") or (
        sae.device == "auto" and torch.cuda.is_available()
    )
    if comm.device.type == "cuda" and not on_gpu:
        raise ValueError(
            "fit_distributed runs on an NCCL process group, which exchanges GPU "
            f"tensors, but the SparseAutoencoder's device is {sae.device!r}: set "
            "device=f'cuda:{local_rank}', or use the 'gloo' backend on CPU."
        )
    token = _GROUP.set(comm)
    try:
        source = as_chunk_source(X)
        if partial_fit:
            sae.partial_fit(source)
        else:
            sae.fit(source, X_val=X_val)
    finally:
        _GROUP.reset(token)
    return sae
