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
    sparse_decode,
)

_INIT_SAMPLE = 65_536


class CentredSquares:
    """Sum of squared deviations from the mean, accumulated block by block.

    Sums are taken around the first block's mean (a fixed shift), so one pass
    suffices without the cancellation of a plain sum of squares.
    """

    def __init__(self):
        self.n, self.shift = 0, None
        self.total = self.squares = 0.0

    def add(self, block):
        block = np.asarray(block, dtype=np.float64)
        if self.shift is None:
            self.shift = block.mean(0)
        centred = block - self.shift
        self.n += len(block)
        self.total = self.total + centred.sum(0)
        self.squares += float((centred**2).sum())

    def value(self):
        if not self.n:
            return 0.0
        return self.squares - float((self.total**2).sum()) / self.n


def _init_params(est, X, train_idx, generator, device):
    """Scale, decoder bias from the data, unit decoder rows, encoder = decoder^T."""
    n_features = X.shape[1]
    pick = train_idx
    if len(pick) > _INIT_SAMPLE:
        sub = torch.randperm(len(pick), generator=generator)[:_INIT_SAMPLE].numpy()
        pick = pick[np.sort(sub)]
    sample = as_tensor(X[pick]).double()
    mean_norm = float(sample.norm(dim=1).mean())
    scale = math.sqrt(n_features) / mean_norm if mean_norm > 0 else 1.0
    sample *= scale
    row_var = float(sample.var(0, correction=0).sum())
    b_dec = geometric_median(sample).float()
    w_dec = torch.randn(est.n_latents, n_features, generator=generator)
    w_dec /= w_dec.norm(dim=1, keepdim=True)
    params = {
        "w_enc": w_dec.clone(),
        "b_enc": torch.zeros(est.n_latents),
        "w_dec": w_dec,
        "b_dec": b_dec,
    }
    return {n: p.to(device) for n, p in params.items()}, scale, row_var


def _row_var(X, idx, scale):
    pick = idx[:_INIT_SAMPLE]
    return float((as_tensor(X[pick]).double() * scale).var(0, correction=0).sum())


@torch.no_grad()
def validation_fvu(params, X_val, scale, k, mode, threshold, sst, batch_size=8192):
    """FVU of the current weights over all validation rows (scaled frame).

    ``sst`` is the rows' total variance in the scaled frame, computed once.
    """
    sse = 0.0
    device = params["w_enc"].device
    for start in range(0, X_val.shape[0], batch_size):
        x = as_tensor(X_val[start : start + batch_size]).to(device) * scale
        rows, cols, vals = encode(x, params, k, mode, threshold)
        recon = sparse_decode(rows, cols, vals, params["w_dec"], x.shape[0])
        recon += params["b_dec"]
        sse += float((recon - x).double().pow(2).sum())
    return sse / sst if sst > 0 else 0.0


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
):
    """Optimise ``est``'s autoencoder on rows ``train_idx`` of the numpy array X.

    ``weights`` holds the weights to continue from in the scaled training frame
    (None: initialise from the data); ``resume`` the optimiser state of an
    earlier ``partial_fit`` (:meth:`TrainState.to_numpy`), or None for a fresh
    optimiser.
    """
    from tqdm.auto import tqdm

    n_train = len(train_idx)
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
    lr = est.learning_rate or default_lr(est.n_latents)
    aux_k = est.aux_k or max(1, X.shape[1] // 2)
    state = TrainState(
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
    )
    if resume is not None:
        state.restore(resume)
    elif warm and est.threshold_ is not None:
        state.settle_threshold(torch.tensor(est.threshold_, device=device))

    batch = min(est.batch_size, n_train)
    steps_per_epoch = math.ceil(n_train / batch)
    planned = epochs * steps_per_epoch
    warmup = 0 if (partial or warm) else int(est.warmup_fraction * planned)
    decay_len = 0 if partial else int(est.decay_fraction * planned)
    decay_start = planned - decay_len
    step = 0
    mode = "threshold" if est.activation == "batchtopk" else "topk"

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
        perm = train_idx[torch.randperm(n_train, generator=generator).numpy()]
        losses = []
        for start in range(0, n_train, batch):
            if step < warmup:
                factor = (step + 1) / warmup
            elif step >= decay_start and decay_len:
                factor = max(0.0, (planned - step) / decay_len)
            else:
                factor = 1.0
            state.set_lr(state.base_lr * factor)
            x = torch.from_numpy(X[np.sort(perm[start : start + batch])])
            x = x.to(device, non_blocking=True) * scale
            losses.append(state.step(x))
            step += 1
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
        thr = None if state.threshold is None else float(state.threshold)
        fvu = validation_fvu(
            state.params,
            X_val,
            scale,
            est.k,
            mode if thr is not None else "topk",
            thr,
            val_sst,
        )
        est.validation_fvu_curve_.append(fvu)
        bar.set_postfix(loss=f"{losses[-1]:.4f}", val_fvu=f"{fvu:.4f}")
        if best_fvu is None or fvu < best_fvu - est.tol:
            best_fvu, bad_epochs = fvu, 0
            best = {n: p.detach().clone() for n, p in state.params.items()}
            best_threshold = thr
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

    threshold = None if state.threshold is None else float(state.threshold)
    params = state.params
    if best is not None:
        params, threshold = best, best_threshold
        est.best_validation_fvu_ = best_fvu
    return {
        "params": params,
        "scale": scale,
        "threshold": threshold if est.activation == "batchtopk" else None,
        "state": state,
        "l0": nnz / max(rows_total, 1),
    }
