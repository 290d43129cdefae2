"""Training loop of :class:`SparseAutoencoder`: schedule, validation, early stopping."""

from __future__ import annotations

import math

import numpy as np
import torch

from ._kernels import (
    TrainState,
    as_tensor,
    default_lr,
    encode,
    geometric_median,
    jumprelu_bandwidth,
    sparse_decode,
    total_variance,
    workspace,
)
from ._streaming import TRIM_EVERY, release_free_memory

_INIT_SAMPLE = 65_536
# Rows used to place the starting thresholds of ReLU and JumpReLU latents.
_QUANTILE_SAMPLE = 2048
# On a GPU the training rows are copied to device memory once when they take
# at most this share of the free memory; otherwise each batch is copied.
_DEVICE_DATA_SHARE = 0.25
# Rows per host-to-device copy when the rows are moved to the GPU once.
_COPY_BLOCK = 65_536


class CentredSquares:
    """Sum of squared deviations from the mean, accumulated block by block.

    Sums are taken around the first block's mean (a fixed shift), so one pass
    suffices without the cancellation of a plain sum of squares.

    Blocks are numpy arrays or tensors. A tensor's sums are taken in float64
    on its own device and stay there until :meth:`value` (no transfer or
    synchronisation per block): on a GPU a host-side float64 pass over every
    row would cost more than encoding them.
    """

    def __init__(self):
        self.n, self.shift = 0, None
        self.total = self.squares = 0.0
        self._buf = None

    def _float64(self, block):
        """A float64 copy of the block in a buffer reused across blocks (each
        fresh float64 block and temporary cost more in page faults than the
        sums themselves)."""
        n = block.shape[0]
        if self._buf is None or self._buf.shape[0] < n:
            self._buf = workspace(block.shape, torch.float64, block.device)
        return self._buf[:n].copy_(block)

    def add(self, block):
        if isinstance(block, torch.Tensor):
            # The same arithmetic as `centred = block.double() - shift` and
            # `centred.square().sum()`, in place.
            block = self._float64(block)
            if self.shift is None:
                self.shift = block.mean(0)
            centred = block.sub_(self.shift)
            self.n += len(block)
            self.total = self.total + centred.sum(0)
            self.squares = self.squares + centred.square_().sum()
            return
        block = np.array(block, dtype=np.float64)
        if self.shift is None:
            self.shift = block.mean(0)
        centred = np.subtract(block, self.shift, out=block)
        self.n += len(block)
        self.total = self.total + centred.sum(0)
        self.squares += float(np.square(centred, out=centred).sum())

    def value(self):
        if not self.n:
            return 0.0
        return float(self.squares) - float((self.total**2).sum()) / self.n

    def mean(self):
        """Mean row (float64 numpy), or None before any row."""
        if not self.n:
            return None
        mean = self.shift + self.total / self.n
        return mean.cpu().numpy() if isinstance(mean, torch.Tensor) else mean


def _init_params(est, X, train_idx, generator, device):
    """Scale, decoder bias from the data, unit decoder rows, encoder = decoder^T."""
    n_features = X.shape[1]
    pick = train_idx
    if len(pick) > _INIT_SAMPLE:
        sub = torch.randperm(len(pick), generator=generator)[:_INIT_SAMPLE].numpy()
        pick = pick[np.sort(sub)]
    # The sample's statistics and the geometric median (20 float64 passes over
    # it) are computed on the model's device: on a GPU host they took seconds
    # of CPU time. The random decoder rows still come from the CPU generator,
    # so that a seed gives the same start on every device.
    every_row = len(pick) == X.shape[0]  # pick is sorted and unique
    if device.type == "cpu":
        # Converted by numpy: its float64 copy is backed by huge pages, where
        # torch's .double() spent 10 ms in page faults at 9k x 384. A subset
        # is gathered block by block into it, with no float32 copy of the
        # whole sample beside it (100 MB at 65,536 x 384).
        if every_row:
            sample = np.array(X, dtype=np.float64)
        else:
            sample = np.empty((len(pick), n_features), dtype=np.float64)
            for lo in range(0, len(pick), _COPY_BLOCK // 8):
                sample[lo : lo + _COPY_BLOCK // 8] = X[pick[lo : lo + _COPY_BLOCK // 8]]
        sample = torch.from_numpy(sample)
    else:
        sample = as_tensor(X if every_row else X[pick]).to(device).double()
    mean_norm = float(sample.norm(dim=1).mean())
    scale = math.sqrt(n_features) / mean_norm if mean_norm > 0 else 1.0
    sample *= scale
    row_var = total_variance(sample)
    b_dec = geometric_median(sample).float()
    w_dec = torch.randn(est.n_latents, n_features, generator=generator)
    w_dec /= w_dec.norm(dim=1, keepdim=True)
    w_dec = w_dec.to(device)
    params = {
        "w_enc": w_dec.clone(),
        "b_enc": torch.zeros(est.n_latents, device=device),
        "w_dec": w_dec,
        "b_dec": b_dec,
    }
    if est.activation in ("relu", "jumprelu"):
        params.update(_start_at_target_sparsity(est, sample.float(), params))
    return params, scale, row_var


def _start_at_target_sparsity(est, sample, params):
    """Encoder bias (and JumpReLU thresholds) at which each latent fires on
    about ``k / n_latents`` of the rows.

    With a zero bias half the latents fire on every row at first (the ReLU
    recipes' start), which costs a dense step per batch until the penalty has
    pushed them down; starting at the target sparsity keeps every step sparse.
    """
    sample = sample[:_QUANTILE_SAMPLE]
    pre = (sample - params["b_dec"]) @ params["w_enc"].T
    n = pre.shape[0]
    k = est.initial_k or est.k
    firing = min(max(1, round(n * k / est.n_latents)), n - 1) if n > 1 else 0
    # The (firing + 1)-th largest value: `firing` rows lie strictly above it.
    quantile = pre.kthvalue(n - firing, dim=0).values if n > 1 else pre[0]
    if est.activation == "relu":
        return {"b_enc": -quantile}
    # Thresholds at the quantiles; where one would be below the kernel width,
    # the bias lifts the latent instead (thresholds stay positive).
    eps = jumprelu_bandwidth(sample.shape[1])
    return {
        "b_enc": (eps - quantile).clamp(min=0),
        "threshold": quantile.clamp(min=eps),
    }


def _row_var(X, idx, scale):
    pick = idx[:_INIT_SAMPLE]
    return total_variance(as_tensor(X[pick]).double() * scale)


@torch.no_grad()
def validation_fvu(params, X_val, scale, k, mode, threshold, sst, batch_size=None):
    """FVU of the current weights over all validation rows (scaled frame).

    ``sst`` is the rows' total variance in the scaled frame, computed once.
    ``batch_size``: rows per block, by default 1024 on CPU (temporaries that
    stay in cache) and 8192 elsewhere.
    """
    device = params["w_enc"].device
    sse = torch.zeros((), dtype=torch.float64, device=device)
    if batch_size is None:
        batch_size = 1024 if device.type == "cpu" else 8192
    for start in range(0, X_val.shape[0], batch_size):
        x = as_tensor(X_val[start : start + batch_size]).to(device) * scale
        rows, cols, vals = encode(x, params, k, mode, threshold)
        recon = sparse_decode(rows, cols, vals, params["w_dec"], x.shape[0])
        recon += params["b_dec"]
        sse += (recon - x).double().pow(2).sum()
    sse = float(sse)
    return sse / sst if sst > 0 else 0.0


def encode_mode(activation):
    """How codes are computed outside training: the argument of ``encode``."""
    return {"batchtopk": "threshold", "jumprelu": "threshold"}.get(
        activation, activation
    )


def rows_to_device(X, device, block=_COPY_BLOCK):
    """All rows of the numpy array X as a float32 tensor on ``device``.

    Copied block by block from contiguous slices: no host copy of X as a whole
    (as a fancy-indexed or converted X would be), and a read-only X (memmap)
    is copied one block at a time.
    """
    out = torch.empty(X.shape, dtype=torch.float32, device=device)
    for lo in range(0, X.shape[0], block):
        out[lo : lo + block].copy_(as_tensor(np.ascontiguousarray(X[lo : lo + block])))
    return out


class _Batches:
    """Training batches on the device, scaled to the training frame.

    On a GPU all rows of X (the validation rows too: at most
    ``max_validation_rows``) are copied to device memory once when they fit
    in a quarter of the free memory, so that a step does not wait for a
    host-to-device copy of its batch; a batch is then gathered on the device
    from the training positions. The rows stay unscaled (``on_device``) so
    that the statistics after training can read them without another copy;
    each batch is scaled as it is gathered, the same float32 product as
    scaling them all once. Otherwise (and on CPU) each batch is gathered from
    X as it comes.
    """

    def __init__(self, X, train_idx, scale, device):
        self.X, self.train_idx, self.scale, self.device = X, train_idx, scale, device
        self.on_device = self.train_on_device = None
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            if X.shape[0] * X.shape[1] * 4 <= _DEVICE_DATA_SHARE * free:
                self.on_device = rows_to_device(X, device)
                self.train_on_device = torch.from_numpy(train_idx).to(device)

    def epoch(self, generator, batch):
        n_train = len(self.train_idx)
        order = torch.randperm(n_train, generator=generator)
        if self.on_device is not None:
            order = order.to(self.device)
            for start in range(0, n_train, batch):
                pos = order[start : start + batch].sort().values
                yield self.on_device[self.train_on_device[pos]].mul_(self.scale)
            return
        perm = self.train_idx[order.numpy()]
        for i, start in enumerate(range(0, n_train, batch), 1):
            x = torch.from_numpy(self.X[np.sort(perm[start : start + batch])])
            yield x.to(self.device, non_blocking=True).mul_(self.scale)
            if i % TRIM_EVERY == 0:
                # The heap a step's temporaries fragment (see the function).
                release_free_memory()


def _schedule_k(est, step, planned):
    """k (or the target L0) at this step: ``initial_k`` annealed linearly to k."""
    if not est.initial_k or est.initial_k <= est.k:
        return est.k
    span = est.k_anneal_fraction * planned
    if span <= 0 or step >= span:
        return est.k
    return int(round(est.initial_k + (est.k - est.initial_k) * step / span))


def train(
    est,
    X,
    train_idx,
    X_val,
    *,
    prefixes,
    device,
    generator,
    weights,
    resume,
    epochs,
    partial,
    feed=None,
):
    """Optimise ``est``'s autoencoder on rows ``train_idx`` of the numpy array X.

    ``weights`` holds the weights to continue from in the scaled training frame
    (None: initialise from the data); ``resume`` the optimiser state of an
    earlier ``partial_fit`` (:meth:`TrainState.to_numpy`), or None for a fresh
    optimiser.

    ``feed`` (out-of-core or distributed training, ``_streaming.StreamFeed``):
    the batches come from ``feed.batches(scale, device)`` and there are
    ``feed.n_rows`` training rows; X is then only the sample that starts
    training. Its hooks make every process agree on the starting weights and
    the validation FVU, and ``feed.state_class`` takes the steps.
    """
    from tqdm.auto import tqdm

    n_train = len(train_idx) if feed is None else feed.n_rows
    warm = weights is not None
    if warm:
        scale = est.input_scale_
        params = {n: torch.from_numpy(v).to(device) for n, v in weights.items()}
        if resume is not None:
            row_var = float(resume["row_variance"])
        else:
            row_var = _row_var(X, train_idx, scale)
    else:
        params, scale, row_var = _init_params(est, X, train_idx, generator, device)
    if feed is not None:
        params, scale, row_var = feed.agree(params, scale, row_var)
    lr = est.learning_rate or default_lr(est.n_latents)
    aux_k = est.aux_k or max(1, X.shape[1] // 2)
    state = (TrainState if feed is None else feed.state_class)(
        params,
        row_var=row_var,
        lr=lr,
        k=est.k,
        activation=est.activation,
        prefixes=prefixes,
        aux_k=min(aux_k, est.n_latents),
        aux_coef=est.aux_coef,
        dead_rows=est.dead_rows or min(100_000, n_train),
        clip_grad=est.clip_grad,
        compute_dtype=getattr(torch, est.compute_dtype),
        sparsity_coef=est.sparsity_coef,
    )
    if resume is not None:
        state.restore(resume)
    else:
        if warm and est.threshold_ is not None and est.activation == "batchtopk":
            state.settle_threshold(torch.tensor(est.threshold_, device=device))
        if warm and getattr(est, "sparsity_coef_", None):
            state.log_coef.fill_(math.log(est.sparsity_coef_))

    batch = min(est.batch_size, n_train)
    steps_per_epoch = math.ceil(n_train / batch)
    planned = epochs * steps_per_epoch
    warmup = 0 if (partial or warm) else int(est.warmup_fraction * planned)
    decay_len = 0 if partial else int(est.decay_fraction * planned)
    decay_start = planned - decay_len
    step = 0
    mode = encode_mode(est.activation)
    if feed is None:
        batches = _Batches(X, train_idx, scale, device)
    else:
        batches = feed.batches(scale, device)

    val_sst = None
    if X_val is not None:
        squares = CentredSquares()
        for lo in range(0, X_val.shape[0], 8192):
            squares.add(X_val[lo : lo + 8192])
        val_sst = squares.value() * scale**2

    best = None
    best_fvu = est.best_validation_fvu_ if warm else None
    bad_epochs = 0
    nnz = rows_total = 0
    stopped = None
    # Updated by hand: a bar iterated over closes itself (erasing its line) as
    # soon as the loop breaks, before it could say why.
    bar = tqdm(total=epochs, desc="SAE epochs", disable=not est.verbose, leave=False)
    for epoch in range(epochs):
        losses = []
        for x in batches.epoch(generator, batch):
            if step < warmup:
                factor = (step + 1) / warmup
            elif step >= decay_start and decay_len:
                factor = max(0.0, (planned - step) / decay_len)
            else:
                factor = 1.0
            state.set_lr(state.base_lr * factor)
            # A fixed sparsity penalty ramps up with the learning rate.
            state.coef_factor = factor if step < warmup else 1.0
            k_now = _schedule_k(est, step, planned) if not partial else est.k
            losses.append(state.step(x, k=k_now))
            step += 1
        epoch_l0 = int(state.nnz) / max(state.rows, 1)
        nnz += int(state.nnz)
        rows_total += state.rows
        state.nnz = state.rows = 0
        losses = torch.stack(losses).tolist()
        est.loss_curve_.append(float(np.mean(losses)))
        est.n_iter_ += 1
        est.n_rows_seen_ += n_train
        bar.update()

        if X_val is None:
            continue
        thr = _current_threshold(state)
        fvu = validation_fvu(
            state.params,
            X_val,
            scale,
            est.k,
            mode if (thr is not None or mode == "relu") else "topk",
            thr,
            val_sst,
        )
        if feed is not None:
            fvu = feed.agree_value(fvu)
        est.validation_fvu_curve_.append(fvu)
        bar.set_postfix(loss=f"{losses[-1]:.4f}", val_fvu=f"{fvu:.4f}")
        if not _sparsity_settled(est, epoch_l0, step, warmup, k_now):
            # A penalised model still moving towards its sparsity would win
            # on FVU by being denser: it is neither kept nor counted.
            pass
        elif best_fvu is None or fvu < best_fvu - est.tol:
            best_fvu, bad_epochs = fvu, 0
            best = {n: p.detach().clone() for n, p in state.params.items()}
            best_threshold = thr
            best_coef = state.sparsity_coefficient
        else:
            bad_epochs += 1
        if step >= planned:
            if epoch + 1 < epochs:
                stopped = (
                    f"stopped at epoch {epoch + 1}: learning rate annealed to 0 "
                    "after a validation plateau"
                )
            break
        if bad_epochs >= est.n_iter_no_change:
            if step < decay_start and decay_len:
                # Plateau: anneal over a few epochs instead of stopping at full
                # learning rate; low-LR epochs buy a clearly lower FVU.
                decay_len = min(decay_len, est.n_iter_no_change * steps_per_epoch)
                decay_start, planned = step, step + decay_len
                bad_epochs = 0
            else:
                stopped = (
                    f"early stop at epoch {epoch + 1}: no validation improvement "
                    f"for {bad_epochs} epochs"
                )
                break
    if stopped is not None:
        # Otherwise the bar would end at e.g. "58%" with no word on why; the
        # line stays on screen to say it.
        bar.set_description_str("SAE epochs (stopped early)", refresh=False)
        bar.set_postfix_str(stopped, refresh=True)
        bar.leave = True
    bar.close()

    threshold = _current_threshold(state)
    params = state.params
    coef = state.sparsity_coefficient
    if best is not None:
        params, threshold, coef = best, best_threshold, best_coef
        est.best_validation_fvu_ = best_fvu
    if est.activation == "jumprelu":
        threshold = params["threshold"]
    elif est.activation != "batchtopk":
        threshold = None
    return {
        "params": params,
        "scale": scale,
        "threshold": threshold,
        "sparsity_coef": coef if est.activation in ("relu", "jumprelu") else None,
        "state": state,
        "l0": nnz / max(rows_total, 1),
        # All rows of X on the device (unscaled) or None: the statistics after
        # training read them there.
        "rows_on_device": None if feed is not None else batches.on_device,
    }


def _sparsity_settled(est, epoch_l0, step, warmup, k_now):
    """Whether this epoch's model may compete for the best validation FVU.

    TopK and BatchTopK always have their sparsity; a fixed penalty has it once
    warmed up; an adaptive one once the epoch's mean L0 is within 20% of its
    target.
    """
    if est.activation not in ("relu", "jumprelu"):
        return True
    if est.sparsity_coef is not None:
        return step > warmup
    return abs(epoch_l0 / k_now - 1) <= 0.2


def _current_threshold(state):
    """The inference threshold: BatchTopK's learned number (a float), or
    JumpReLU's per-latent thresholds (a tensor), or None."""
    if state.activation == "jumprelu":
        return state.params["threshold"]
    if state.threshold is None:
        return None
    return float(state.threshold)
