"""The torch side of :class:`SparseAutoencoder`: sparse codes, a training step
with hand-written gradients, and the optimiser.

Why sparse kernels: a sparse code makes the decoder a gather of a few rows per
example, and the encoder's gradient non-zero only on the selected latents.
Dense autograd spends ``B * M * d`` multiply-adds on each of those (five dense
matmuls per step); the kernels here spend ``B * k * d``, leaving one dense
matmul, the encoder's forward pass, per step.

Why gradients by hand instead of autograd: every term of the loss is a sum over
the code's entries, so each gradient is one ``embedding_bag`` (the decoder's
values, the decoder and encoder weights) or a short vector formula (the
biases). Written out, a step runs four sparse passes over the code however
many Matryoshka prefixes there are (autograd ran two per prefix, plus one for
the encoder input's gradient that only the decoder bias needed), and none of
autograd's bookkeeping. ``tests/test_sae.py`` and ``tests/test_sae_variants.py``
check every gradient against autograd on the dense formulas.

Codes are kept in COO form (:class:`Code`): ``rows`` (example), ``cols``
(latent) and the pre-activations ``pre`` of the selected entries, sorted by row
and, within a row, by latent. Bag ``row * S + s`` holds a row's entries in
Matryoshka segment ``s`` (latents between two prefix ends), so one
``embedding_bag`` decodes every segment and a cumulative sum gives every
prefix's reconstruction.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def as_tensor(array):
    """A tensor over a numpy array, copying only read-only arrays (memmaps)."""
    if not array.flags.writeable:
        array = array.copy()
    return torch.from_numpy(array)


_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}


def workspace(shape, dtype, device):
    """An uninitialised tensor for large temporaries.

    On CPU its memory comes from numpy, which asks for transparent huge pages
    for large arrays; torch does not, and the page faults of a fresh
    27 MB torch tensor cost about 11 ms here (numpy's: 1.5 ms), more than the
    arithmetic done in it.
    """
    if torch.device(device).type == "cpu" and dtype in _NUMPY_DTYPES:
        return torch.from_numpy(np.empty(shape, dtype=_NUMPY_DTYPES[dtype]))
    return torch.empty(shape, dtype=dtype, device=device)


def group_starts(index, n):
    """Where each of ``0..n-1`` starts in the sorted ``index``: the offsets of
    its groups of equal values (empty groups included).

    One binary search per group; counting the groups and taking an exclusive
    cumulative sum took five small ops (``torch.bincount`` would also read
    the maximum back, a device sync on a GPU).
    """
    return torch.searchsorted(index, torch.arange(n, device=index.device))


def argsort_latents(cols, n_latents):
    """``torch.argsort(cols, stable=True)`` for latent ids below ``n_latents``.

    On CPU with at most 2**15 latents, numpy's stable sort of 16-bit keys (a
    radix sort) gives the same order: 14 us for 4096 entries, where torch's
    took 56 us.
    """
    if cols.device.type == "cpu" and n_latents <= 2**15:
        keys = cols.numpy().astype(np.int16)
        return torch.from_numpy(np.argsort(keys, kind="stable"))
    return torch.argsort(cols, stable=True)


class Code:
    """A batch's sparse code: entries ``(rows, cols, pre)`` sorted by (row, col).

    ``segment_ends`` are the Matryoshka prefix ends (the last is ``n_latents``),
    a list or a tensor on the code's device; entries are grouped into bags
    ``row * S + segment``. The same entries are
    also indexed by latent (``order``, ``col_offsets``) so that a weight
    gradient is one ``embedding_bag`` gathering the rows where each latent
    fired.
    """

    def __init__(self, rows, cols, pre, n_rows, n_latents, segment_ends=None):
        self.rows, self.cols, self.pre = rows, cols, pre
        self.n_rows, self.n_latents = n_rows, n_latents
        self.n_segments = 1 if segment_ends is None else len(segment_ends)
        if self.n_segments > 1:
            bounds = segment_ends[:-1]
            if not isinstance(bounds, torch.Tensor):
                bounds = torch.as_tensor(bounds, device=cols.device)
            self.bags = rows * self.n_segments + torch.bucketize(
                cols, bounds, right=True
            )
        else:
            self.bags = rows
        # Bags are sorted, as the entries are sorted by (row, col).
        self.bag_offsets = group_starts(self.bags, n_rows * self.n_segments)
        self.order = argsort_latents(cols, n_latents)
        self.col_offsets = group_starts(cols[self.order], n_latents)

    def decode(self, vals, weight):
        """``out[bag] = sum of vals[i] * weight[cols[i]]`` over the bag's entries."""
        return F.embedding_bag(
            self.cols, weight, self.bag_offsets, mode="sum", per_sample_weights=vals
        )

    def decode_values_grad(self, grad_bags, weight):
        """Gradient of :meth:`decode` with respect to ``vals``:
        ``weight[cols[i]] . grad_bags[bags[i]]`` for each entry."""
        return torch.ops.aten._embedding_bag_per_sample_weights_backward(
            grad_bags, weight, self.cols, self.bag_offsets, self.bags, 0, -1
        )

    def by_latent(self, index, weights, source):
        """``out[m] = sum of weights[i] * source[index[i]]`` over latent m's entries."""
        return F.embedding_bag(
            index[self.order],
            source,
            self.col_offsets,
            mode="sum",
            per_sample_weights=weights[self.order],
        )

    def sum_by_latent(self, values):
        return torch.zeros(
            self.n_latents, dtype=values.dtype, device=values.device
        ).index_add_(0, self.cols, values)


def sparse_decode(rows, cols, vals, weight, n_rows, offsets=None):
    """``out[r] = sum_i vals[i] * weight[cols[i]]`` over entries with ``rows[i] == r``.

    ``rows`` must be sorted. Rows with no entries decode to zero.
    """
    if offsets is None:
        offsets = group_starts(rows, n_rows)
    return F.embedding_bag(cols, weight, offsets, mode="sum", per_sample_weights=vals)


def select_topk(pre, k, rows=None, sort_cols=False):
    """Per-row top-k of the pre-activations, as row-sorted COO (rows, cols, vals).

    ``rows`` may pass a precomputed ``arange(B).repeat_interleave(k)``;
    ``sort_cols`` orders each row's latents (needed for Matryoshka bags).
    """
    vals, cols = torch.topk(pre, k, dim=1, sorted=False)
    if sort_cols:
        cols, perm = torch.sort(cols, dim=1)
        vals = vals.gather(1, perm)
    if rows is None:
        rows = torch.arange(pre.shape[0], device=pre.device).repeat_interleave(k)
    return rows, cols.reshape(-1), vals.reshape(-1)


def select_batch_topk(pre, k):
    """Top ``k * B`` pre-activations of the whole batch (BatchTopK)."""
    n_rows, n_latents = pre.shape
    vals, flat = torch.topk(pre.reshape(-1), k * n_rows, sorted=False)
    flat, order = torch.sort(flat)
    return flat // n_latents, flat % n_latents, vals[order]


def select_threshold(pre, threshold):
    """Every pre-activation above a threshold: a number, or one per latent."""
    rows, cols = torch.nonzero(pre > threshold, as_tuple=True)
    return rows, cols, pre[rows, cols]


# Rows per encoder matmul at inference (about 10% slower than one large matmul).
ROW_BLOCK = 256


def preactivations(x, params):
    """``(x - b_dec) W_enc^T + b_enc``, computed ``ROW_BLOCK`` rows at a time.

    BLAS picks its kernels and thread split from the matrix shape, so one row
    can come out a few ulps apart when encoded among 7 or 400 rows (seen on two
    MKL threads), enough to move a latent across the BatchTopK threshold. Here
    every row goes through a matmul of the same shape, from the same aligned
    buffer (zero-padded), so a row's code does not depend on its batch.
    """
    n_rows = x.shape[0]
    w_t = params["w_enc"].T
    out = torch.empty(n_rows, w_t.shape[1], dtype=x.dtype, device=x.device)
    block = torch.zeros(ROW_BLOCK, x.shape[1], dtype=x.dtype, device=x.device)
    block_out = torch.empty(ROW_BLOCK, w_t.shape[1], dtype=x.dtype, device=x.device)
    for start in range(0, n_rows, ROW_BLOCK):
        n = min(ROW_BLOCK, n_rows - start)
        torch.sub(x[start : start + n], params["b_dec"], out=block[:n])
        block[n:] = 0
        torch.addmm(params["b_enc"], block, w_t, out=block_out)
        out[start : start + n] = block_out[:n]
    return out


def encode(x, params, k, activation, threshold=None):
    """Sparse codes of ``x`` as (rows, cols, vals) with vals > 0, no autograd.

    ``activation``: ``"topk"``, ``"batchtopk"`` (the batch decides, by
    design), ``"threshold"`` (every pre-activation above ``threshold``, a
    number or one per latent: BatchTopK's and JumpReLU's inference) or
    ``"relu"``. Otherwise a row's code is the same whichever rows it is
    encoded with.
    """
    pre = preactivations(x, params)
    if activation == "threshold":
        rows, cols, vals = select_threshold(pre, threshold)
    elif activation == "relu":
        rows, cols, vals = select_threshold(pre, 0.0)
    elif activation == "batchtopk":
        rows, cols, vals = select_batch_topk(pre, k)
    else:
        rows, cols, vals = select_topk(pre, k)
    keep = vals > 0
    return rows[keep], cols[keep], vals[keep]


class Adam:
    """Adam on a few tensors, with gradient clipping folded into the update.

    Same update as ``torch.optim.Adam``; written out because constructing any
    ``torch.optim`` optimiser imports ``torch._dynamo``: +1.0 s per process
    (importing sae._training then building torch.optim.Adam: 3.4 s vs 2.4 s).
    Clipping by global norm divides the gradients by ``max(1, norm / clip)``;
    the fused kernel takes that divisor as ``grad_scale``, saving a pass over
    every gradient.
    """

    def __init__(self, params, lr, betas=(0.9, 0.999), eps=1e-8):
        self.params = list(params)
        self.lr = lr
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.t = 0
        device = self.params[0].device
        self._step = torch.zeros((), device=device)
        self._fused = getattr(torch, "_fused_adam_", None) is not None and (
            device.type in ("cpu", "cuda")
        )

    @torch.no_grad()
    def step(self, grads, clip=None, exempt=()):
        """One update; ``clip`` bounds the global gradient norm of all but the
        tensors at positions ``exempt``."""
        self.t += 1
        scale = None
        if clip:
            clipped = [g for i, g in enumerate(grads) if i not in exempt]
            total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(clipped)))
            scale = torch.clamp(total / clip, min=1.0)
            for i in exempt:
                grads[i] = grads[i] * scale  # undone by the division below
        if self._fused:
            # One pass over each tensor instead of seven (same arithmetic).
            self._step.fill_(self.t)
            torch._fused_adam_(
                self.params,
                grads,
                self.exp_avg,
                self.exp_avg_sq,
                [],
                [self._step] * len(self.params),
                lr=self.lr,
                beta1=self.beta1,
                beta2=self.beta2,
                weight_decay=0.0,
                eps=self.eps,
                amsgrad=False,
                maximize=False,
                grad_scale=scale.to(torch.float32) if scale is not None else None,
            )
            return
        if scale is not None:
            grads = torch._foreach_div(grads, scale)
        torch._foreach_lerp_(self.exp_avg, grads, 1 - self.beta1)
        torch._foreach_mul_(self.exp_avg_sq, self.beta2)
        torch._foreach_addcmul_(self.exp_avg_sq, grads, grads, 1 - self.beta2)
        bias1 = 1 - self.beta1**self.t
        bias2 = 1 - self.beta2**self.t
        denom = torch._foreach_sqrt(self.exp_avg_sq)
        torch._foreach_div_(denom, math.sqrt(bias2))
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(self.params, self.exp_avg, denom, -self.lr / bias1)


def jumprelu_bandwidth(n_features):
    """Width of the rectangle kernel of JumpReLU's straight-through estimator.

    Gemma Scope uses 0.001 on inputs scaled to unit mean squared norm; the
    training frame here scales rows to mean norm ``sqrt(n_features)``, so the
    same kernel is ``0.001 * sqrt(n_features)`` wide.
    """
    return 1e-3 * math.sqrt(n_features)


# ReLU's adaptive L1 weight: per step, log(weight) moves by
# RATE * (L0 / target - 1), the deviation clipped to [-1, 1].
CONTROL_RATE = 0.05
# Starting coefficient of ReLU's L1 penalty, in loss units (an FVU estimate),
# and the bounds of its adaptation.
INITIAL_COEF = 0.05
COEF_BOUNDS = (1e-6, 1e3)
# Weight of JumpReLU's target-L0 penalty (L0 / k - 1)^2, in loss units.
TARGET_WEIGHT = 1.0


class TrainState:
    """Parameters, optimiser and bookkeeping of one training run.

    Parameters live in float32 ("master weights"); with ``compute_dtype``
    bfloat16 the encoder's dense matmul runs in bfloat16. ``params`` holds
    ``w_enc``, ``b_enc``, ``w_dec``, ``b_dec`` and, for JumpReLU, the
    per-latent ``threshold``, all in the scaled training frame.

    ``sparsity_coef`` (ReLU and JumpReLU): a fixed penalty weight, or None to
    adapt the weight so that the mean number of active latents per row
    tracks ``k``.
    """

    def __init__(
        self,
        params,
        *,
        row_var,
        lr,
        k,
        activation,
        prefixes,
        aux_k,
        aux_coef,
        dead_rows,
        clip_grad,
        compute_dtype,
        sparsity_coef=None,
        threshold_beta=0.999,
    ):
        self.params = {name: value.detach().clone() for name, value in params.items()}
        self.names = list(self.params)
        # JumpReLU's threshold gradient is a pseudo-derivative of arbitrary
        # scale: left out of the clipping norm, lest it shrink every step.
        self._exempt = [i for i, n in enumerate(self.names) if n == "threshold"]
        self.optimizer = Adam(self.params.values(), lr=lr)
        self.base_lr = lr
        # Sum of per-dimension variances of the data: losses are FVU estimates
        # against one fixed baseline, not each batch's own variance.
        self.row_var = float(row_var)
        self._rows_cache = {}
        self.k = k
        self.activation = activation
        self.prefixes = list(prefixes) if prefixes else None
        # As a device tensor once: built from a list per step it would be a
        # host-to-device copy (and on a GPU a sync) every step.
        self._segment_ends = (
            None
            if self.prefixes is None
            else torch.tensor(self.prefixes, device=params["w_enc"].device)
        )
        self.aux_k = aux_k
        self.aux_coef = aux_coef
        self.dead_rows = dead_rows
        self.clip_grad = clip_grad
        self.compute_dtype = compute_dtype
        self.threshold_beta = threshold_beta
        w_enc = self.params["w_enc"]
        device = w_enc.device
        n_latents, n_features = w_enc.shape
        self.rows_since_fired = torch.zeros(n_latents, dtype=torch.long, device=device)
        self.threshold = None
        self._threshold_ema = 0.0
        self._threshold_steps = 0
        self.bandwidth = jumprelu_bandwidth(n_features)
        self.fixed_coef = sparsity_coef
        start = INITIAL_COEF if sparsity_coef is None else sparsity_coef
        self.log_coef = torch.tensor(math.log(max(start, 1e-30)), device=device)
        # Multiplies a fixed coefficient during warmup (as Gemma Scope and
        # Anthropic ramp the penalty up); set by the training loop.
        self.coef_factor = 1.0
        self._n_dead, self._dead = 0, None
        # An upper bound on rows_since_fired.max() (CPU): its value at the
        # last check plus the rows counted since; unknown at first.
        self._silence_bound = math.inf
        self._steps = 0
        # Active-latent count and rows, summed as tensors to avoid a sync per step.
        self.nnz = 0
        self.rows = 0

    def set_lr(self, lr):
        self.optimizer.lr = lr

    @property
    def sparsity_coefficient(self):
        """The penalty weight in use now (ReLU, JumpReLU)."""
        if self.fixed_coef is not None:
            return self.fixed_coef * self.coef_factor
        if self.activation == "relu":
            return float(self.log_coef.exp())
        return None

    def to_numpy(self):
        """What resuming needs besides the weights, as numpy arrays.

        Adam's moments are flattened over the parameters in ``self.names``
        order; scalars are 0-d arrays, so the whole state pickles and saves to
        ``.npz`` as plain numbers.
        """
        opt = self.optimizer

        def flat(tensors):
            return torch.cat([t.detach().reshape(-1) for t in tensors]).cpu().numpy()

        ema = self._threshold_ema
        return {
            "step": np.asarray(opt.t, dtype=np.int64),
            "exp_avg": flat(opt.exp_avg),
            "exp_avg_sq": flat(opt.exp_avg_sq),
            "rows_since_fired": self.rows_since_fired.cpu().numpy(),
            "row_variance": np.asarray(self.row_var, dtype=np.float64),
            "threshold_ema": np.asarray(
                float(ema) if self._threshold_steps else 0.0, dtype=np.float32
            ),
            "threshold_steps": np.asarray(self._threshold_steps, dtype=np.int64),
            "log_sparsity_coef": np.asarray(float(self.log_coef), dtype=np.float64),
        }

    def restore(self, arrays):
        """Continue from :meth:`to_numpy`'s output (the weights are given apart)."""
        opt = self.optimizer
        device = self.rows_since_fired.device
        for name in ("exp_avg", "exp_avg_sq"):
            flat = torch.from_numpy(np.asarray(arrays[name], dtype=np.float32))
            moments = getattr(opt, name)
            sizes = [m.numel() for m in moments]
            if flat.numel() != sum(sizes):
                raise ValueError(
                    f"The saved optimiser state '{name}' has {flat.numel()} values; "
                    f"this model needs {sum(sizes)}. Refit the model."
                )
            for moment, part in zip(moments, flat.split(sizes), strict=True):
                moment.copy_(part.view_as(moment))
        opt.t = int(arrays["step"])
        self.rows_since_fired.copy_(torch.from_numpy(arrays["rows_since_fired"]))
        self._silence_bound = math.inf
        if "log_sparsity_coef" in arrays:
            self.log_coef.fill_(float(arrays["log_sparsity_coef"]))
        self._threshold_steps = int(arrays["threshold_steps"])
        if self._threshold_steps:
            # A float32 tensor, as _update_threshold leaves it: the next update
            # then rounds exactly as it would have without the round trip.
            ema = torch.tensor(float(arrays["threshold_ema"]), device=device)
            self._threshold_ema = ema
            beta = self.threshold_beta
            self.threshold = ema / (1 - beta**self._threshold_steps)

    def _update_threshold(self, low):
        """EMA of the smallest kept activation, bias-corrected as in Adam so
        that short runs get the mean of what they saw, not the first batches."""
        beta = self.threshold_beta
        self._threshold_ema = beta * self._threshold_ema + (1 - beta) * low
        self._threshold_steps += 1
        self.threshold = self._threshold_ema / (1 - beta**self._threshold_steps)

    def settle_threshold(self, threshold):
        """Continue from a learned threshold, its EMA taken as settled (no
        bias correction left to apply)."""
        self.threshold = self._threshold_ema = threshold
        self._threshold_steps = 10**6

    def dead_mask(self):
        return self.rows_since_fired >= self.dead_rows

    def _topk_rows(self, n_rows, k, device):
        """Row ids of a k-per-row code, built once per shape."""
        key = (n_rows, k)
        if key not in self._rows_cache:
            if len(self._rows_cache) > 64:  # a k schedule makes many shapes
                self._rows_cache.clear()
            rows = torch.arange(n_rows, device=device).repeat_interleave(k)
            self._rows_cache[key] = rows
        return self._rows_cache[key]

    def _preactivations(self, xc):
        p = self.params
        if self.compute_dtype == xc.dtype:
            return torch.addmm(p["b_enc"], xc, p["w_enc"].T)
        dtype = self.compute_dtype
        return torch.addmm(
            p["b_enc"].to(dtype), xc.to(dtype), p["w_enc"].T.to(dtype)
        ).to(xc.dtype)

    def _select(self, pre, k):
        """The entries whose values or gradients the loss needs."""
        n_rows = pre.shape[0]
        sort_cols = self.prefixes is not None and len(self.prefixes) > 1
        if self.activation == "topk":
            rows = self._topk_rows(n_rows, k, pre.device)
            return select_topk(pre, k, rows, sort_cols=sort_cols)
        if self.activation == "batchtopk":
            return select_batch_topk(pre, k)
        if self.activation == "relu":
            return select_threshold(pre, 0.0)
        # JumpReLU: the active entries and those within half a bandwidth
        # below the threshold, where the rectangle kernel is non-zero.
        return select_threshold(pre, self.params["threshold"] - self.bandwidth / 2)

    def step(self, x, k=None):
        """One optimisation step on batch ``x``; returns the reconstruction
        loss (a 0-d tensor). ``k`` overrides the number of active latents for
        this step (a k schedule)."""
        grads, loss, code, vals = self.loss_and_grads(x, k=k)
        w_dec = self.params["w_dec"]
        if self.activation != "relu":
            # Unit-norm decoder rows: drop the gradient along each row.
            g = grads["w_dec"]
            g.addcmul_(torch.linalg.vecdot(g, w_dec).unsqueeze(1), w_dec, value=-1)
        self.optimizer.step(
            [grads[n] for n in self.names], clip=self.clip_grad, exempt=self._exempt
        )
        with torch.no_grad():
            if self.activation != "relu":
                w_dec.div_(torch.linalg.vector_norm(w_dec, dim=1, keepdim=True))
            if self.activation == "jumprelu":
                self.params["threshold"].clamp_(min=0.0)
        rows_before = self.rows
        self._bookkeeping(code, vals, x.shape[0], k)
        # No latent's silence grew by more than the rows just counted.
        self._silence_bound += self.rows - rows_before
        return loss

    def _bookkeeping(self, code, vals, n_rows, k):
        with torch.no_grad():
            active = vals > 0
            n_active = active.sum()
            self.nnz += n_active
            self.rows += n_rows
            self.rows_since_fired += n_rows
            # Counted, not indexed by a mask: no device sync on a GPU.
            fired = code.sum_by_latent(active.to(vals.dtype)) > 0
            self.rows_since_fired.masked_fill_(fired, 0)
            # While a k schedule anneals, the smallest kept value belongs to a
            # larger k: the inference threshold learns from final-k steps only.
            if self.activation == "batchtopk" and (k or self.k) == self.k:
                positive = vals[active]
                if positive.numel():
                    self._update_threshold(positive.min())
            if self.activation == "relu" and self.fixed_coef is None:
                deviation = (n_active / (n_rows * (k or self.k)) - 1).clamp(-1, 1)
                self.log_coef += CONTROL_RATE * deviation
                self.log_coef.clamp_(*(math.log(b) for b in COEF_BOUNDS))
        self._steps += 1

    def loss_and_grads(self, x, k=None):
        """Reconstruction loss and the gradient of the full loss for every
        parameter, by hand (see the module docstring).

        Returns ``(grads, loss, code, vals)``: the gradients by parameter
        name, the reconstruction loss, the batch's :class:`Code` and its
        entries' activations.
        """
        p = self.params
        k = k or self.k
        n_rows, n_features = x.shape
        n_latents = p["w_enc"].shape[0]
        w_dec = p["w_dec"]
        xc = x - p["b_dec"]
        pre = self._preactivations(xc)
        rows, cols, pre_vals = self._select(pre, k)
        code = Code(rows, cols, pre_vals, n_rows, n_latents, self._segment_ends)
        n_seg = code.n_segments

        if self.activation == "jumprelu":
            theta = p["threshold"][cols]
            active = pre_vals > theta
            vals = pre_vals * active
        else:
            active = pre_vals > 0
            vals = pre_vals.clamp(min=0)

        # Reconstructions of every prefix: segment decodes summed in order.
        # (In-place adds over the few segments: cumsum and flip along a short
        # middle axis were each slower than the sparse decode itself.)
        recon = code.decode(vals, w_dec).view(n_rows, n_seg, n_features)
        for s in range(1, n_seg):
            recon[:, s] += recon[:, s - 1]
        resid = recon.add_(p["b_dec"]).sub_(x.unsqueeze(1))
        total_var = n_rows * self.row_var
        norm = 1.0 / (n_seg * total_var)
        flat = resid.view(-1)
        loss = torch.dot(flat, flat).mul_(norm)

        # d loss / d prefix reconstruction, then per segment: a segment's
        # latents appear in its own prefix and every later one. Summed in
        # place (no copy): the last segment, which AuxK reads below as the
        # residual, is left as it is.
        g_prefix = resid.mul_(2 * norm)
        grad_b_dec = g_prefix.sum((0, 1))
        for s in range(n_seg - 2, -1, -1):
            g_prefix[:, s] += g_prefix[:, s + 1]
        g_seg = g_prefix.view(n_rows * n_seg, n_features)
        g_vals = code.decode_values_grad(g_seg, w_dec)
        grad_w_dec = code.by_latent(code.bags, vals, g_seg)

        grads = {}
        if self.activation == "relu":
            # L1 weighted by decoder norms, per row, in units of the rows' norm.
            coef = self.sparsity_coefficient if self.fixed_coef is not None else None
            coef = self.log_coef.exp() if coef is None else coef
            dec_norm = torch.linalg.vector_norm(w_dec, dim=1)
            scale = coef / (n_rows * math.sqrt(self.row_var))
            g_vals = g_vals + scale * dec_norm[cols]
            per_latent = code.sum_by_latent(vals)
            grad_w_dec.addcmul_(
                (scale * per_latent / dec_norm.clamp_min(1e-12)).unsqueeze(1), w_dec
            )
            g_pre = g_vals
        elif self.activation == "jumprelu":
            # Straight-through estimator with a rectangle kernel (Rajamanoharan
            # et al. 2024): d z / d theta = -(theta / eps) K, and the L0
            # penalty's d H(pre - theta) / d theta = -(1 / eps) K.
            eps = self.bandwidth
            kernel = (pre_vals - theta).abs() < eps / 2
            if self.fixed_coef is not None:
                coef = self.sparsity_coefficient
            else:
                # Target L0: penalty (L0 / k - 1)^2, whose weight per active
                # latent, 2 (L0 / k - 1) / k, pushes thresholds up above the
                # target and down below it (dictionary_learning's recipe).
                l0 = active.sum().to(pre_vals.dtype) / n_rows
                coef = 2 * TARGET_WEIGHT * (l0 / k - 1) / k
            g_theta_entry = -(theta / eps) * g_vals - coef / (n_rows * eps)
            grads["threshold"] = code.sum_by_latent(g_theta_entry * kernel)
            g_pre = g_vals * active
        else:
            g_pre = g_vals * active

        grad_b_enc = code.sum_by_latent(g_pre)
        grad_w_enc = code.by_latent(code.rows, g_pre, xc)
        # pre = (x - b_dec) W_enc^T + b_enc: each entry pulls b_dec by -W_enc[col].
        grad_b_dec -= grad_b_enc @ p["w_enc"]

        self._n_dead_update()
        if self.aux_coef > 0 and self._n_dead > 0:
            full_resid = -resid.view(n_rows, n_seg, n_features)[:, -1] / (2 * norm)
            aux = self._aux_grads(
                xc, full_resid, pre, min(self.aux_k, self._n_dead), self.aux_coef
            )
            grad_w_enc += aux["w_enc"]
            grad_b_enc += aux["b_enc"]
            grad_w_dec += aux["w_dec"]
            grad_b_dec += aux["b_dec"]

        grads.update(w_enc=grad_w_enc, b_enc=grad_b_enc, w_dec=grad_w_dec)
        grads["b_dec"] = grad_b_dec
        return grads, loss, code, vals

    def _n_dead_update(self):
        # Reading the dead latents is a device sync: on a GPU, once every 8
        # steps (in between, a latent revived meanwhile still gets AuxK's
        # gradient, which does no harm). On CPU every step, except while the
        # longest silence cannot have reached dead_rows yet: then no latent
        # is dead, and the check (three small ops) is skipped.
        on_cpu = self.rows_since_fired.device.type == "cpu"
        if on_cpu and self._silence_bound < self.dead_rows:
            self._n_dead = 0
            return
        if on_cpu or self._steps % 8 == 0:
            self._dead = torch.nonzero(self.dead_mask()).squeeze(1)
            self._n_dead = len(self._dead)
            if on_cpu:
                self._silence_bound = int(self.rows_since_fired.max())

    def _aux_grads(self, xc, resid, pre, aux_k, coef):
        """AuxK: dead latents learn to reconstruct the main residual
        ``resid = x - x_hat``. Returns the gradients of ``coef * aux_loss``."""
        p = self.params
        n_rows, n_features = xc.shape
        # The top-k among the dead columns only: usually a few of thousands,
        # where masking the others would copy and search all B x M values.
        rows = self._topk_rows(n_rows, aux_k, pre.device)
        rows, pos, pre_vals = select_topk(pre.index_select(1, self._dead), aux_k, rows)
        code = Code(rows, self._dead[pos], pre_vals, n_rows, pre.shape[1])
        active = pre_vals > 0
        vals = pre_vals.clamp(min=0)
        diff = code.decode(vals, p["w_dec"]) - resid
        var = (resid - resid.mean(0)).square().sum().clamp_min(1e-12)
        g = diff * (2 * coef / var)
        g_vals = code.decode_values_grad(g, p["w_dec"])
        g_pre = g_vals * active
        grad_b_enc = code.sum_by_latent(g_pre)
        return {
            "w_dec": code.by_latent(code.rows, vals, g),
            "w_enc": code.by_latent(code.rows, g_pre, xc),
            "b_enc": grad_b_enc,
            "b_dec": -(grad_b_enc @ p["w_enc"]),
        }


def default_lr(n_latents):
    """Adam step size: 4e-3 up to 3906 latents, then shrinking as 1/sqrt(width).

    Measured on MiniLM embeddings of rotten-tomatoes snippets (inputs scaled
    to norm sqrt(d), batch 512), held-out FVU after 3 and 20 epochs: at 256
    latents (k=8) 8e-3 gave 0.669 and 0.590 where 4e-3 gave 0.693 and 0.597
    (1.6e-2: 0.666 and 0.604); at 1024 latents (k=16) 7.8e-3 gave 0.570 and
    0.462 where 4e-3 gave 0.586 and 0.483. The larger step is not the default:
    on the offline method (benchmarks/bench_offline.py, Rotten Tomatoes, seeds
    0-2) it gave 43 significant hypotheses where 4e-3 gave 46 (held-out AUC
    0.687 vs 0.689), and the demo's seed lost 4 of its 16. At 4096 latents
    3.9e-3 gave 0.406 after 20 epochs where sparsify's LLM-activation rule
    (2e-4 at 16k latents, i.e. 4e-4) gave 0.491. Wider dictionaries get a
    smaller step, as in sparsify.
    """
    return min(4e-3, 0.25 / math.sqrt(n_latents))


# Rows per pass over a large float64 sample on CPU: the temporaries of a
# block stay in cache, where a temporary of the whole sample (27 MB at
# 9k x 384) made each pass a trip to memory.
_SAMPLE_BLOCK = 1024


def _row_blocks(x):
    """(start, stop) of the row blocks of x: one block off the CPU."""
    n = len(x)
    step = _SAMPLE_BLOCK if x.device.type == "cpu" else max(n, 1)
    return [(lo, min(lo + step, n)) for lo in range(0, n, step)] or [(0, 0)]


def total_variance(x):
    """Sum of the column variances of the rows ``x`` (float64): the number
    ``x.var(0, correction=0).sum()``, up to rounding, in a fraction of its time
    (torch's column-wise variance is slow on CPU)."""
    mean = x.mean(0)
    blocks = _row_blocks(x)
    buf = torch.empty(blocks[0][1], x.shape[1], dtype=x.dtype, device=x.device)
    total = torch.zeros((), dtype=x.dtype, device=x.device)
    for lo, hi in blocks:
        centred = torch.sub(x[lo:hi], mean, out=buf[: hi - lo]).view(-1)
        total += torch.dot(centred, centred)
    return float(total / len(x))


def geometric_median(x, n_iter=20, eps=1e-6):
    """Weiszfeld's algorithm: a robust centre for the decoder bias."""
    median = x.mean(0)
    blocks = _row_blocks(x)
    buf = torch.empty(blocks[0][1], x.shape[1], dtype=x.dtype, device=x.device)
    dist = torch.empty(len(x), dtype=x.dtype, device=x.device)
    for _ in range(n_iter):
        for lo, hi in blocks:
            centred = torch.sub(x[lo:hi], median, out=buf[: hi - lo])
            torch.linalg.vector_norm(centred, dim=1, out=dist[lo:hi])
        weights = 1.0 / dist.clamp_min_(eps)
        new = (weights @ x) / weights.sum()
        if (new - median).norm() < eps * median.norm().clamp_min(1.0):
            return new
        median = new
    return median
