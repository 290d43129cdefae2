"""SparseAutoencoder: a scikit-learn transformer that learns a sparse dictionary."""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ._streaming import (
    ChunkSource,
    as_chunk_source,
    csr_from_codes,
    is_out_of_core,
    stream_feed,
    validation_size,
)

# Rows per block of the statistics after training, for in-memory rows on CPU.
_CPU_STATS_BLOCK = 1024


def _torch():
    import torch

    return torch


class SparseAutoencoder(
    ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator
):
    """Sparse autoencoder (TopK, BatchTopK, JumpReLU or ReLU) for dense vectors
    such as text embeddings.

    Each input row ``x`` is encoded as ``z = sparsify(W_enc (x - b_dec) + b_enc)``
    with about ``k`` non-zero latents (``n_latents`` in all) and decoded as
    ``x_hat = W_dec^T z + b_dec``. Each latent is meant to be one concept; its
    decoder row is its direction in embedding space.

    Which activation: ``"topk"`` (the default) when every row should get
    exactly ``k`` latents and the sparsity must be known in advance, the most
    predictable choice for selecting and describing latents; ``"batchtopk"``
    when some rows deserve more latents than others at the same average;
    ``"jumprelu"`` (per-latent learned thresholds, the Gemma Scope recipe) to
    let each latent decide on its own when it fires, with sparsity set by a
    target or a penalty, and to read or write SAELens-style JumpReLU models;
    ``"relu"`` (an L1 penalty weighted by decoder norms, Anthropic's April 2024
    recipe) to compare with the classic SAEs, at the price of shrunken
    activations and a less sharp sparsity.

    Training follows the recipe of SAELens, sparsify and dictionary_learning:
    inputs are scaled to an average norm of ``sqrt(n_features)`` (the scale is
    folded back into the fitted weights), the decoder bias starts at the
    geometric median of the data, the encoder at the decoder's transpose,
    decoder rows are kept at unit norm (the gradient along them is removed),
    dead latents are revived with the AuxK loss, the learning rate scales with
    width by default, with warmup, linear decay and gradient clipping. Training
    stops early on a validation split and restores the best weights.

    On CPU the k-sparse code makes training cheap: decoding gathers ``k``
    decoder rows per example (``embedding_bag``) and the encoder's gradient is
    computed only for the selected latents.

    Parameters
    ----------
    n_latents : int, default=256
        Number of latents (dictionary size, often called M).
    k : int, default=8
        Number of active latents per example (average, for BatchTopK).
    activation : {"topk", "batchtopk", "jumprelu", "relu"}, default="topk"
        ``"topk"`` keeps the ``k`` largest pre-activations of each row.
        ``"batchtopk"`` keeps the ``k * batch_size`` largest of each training
        batch, and learns a threshold that :meth:`transform` uses instead, so
        that a row's code does not depend on the rest of its batch.
        ``"jumprelu"`` keeps each pre-activation above its latent's learned
        threshold: ``z = pre * (pre > threshold_)``. The thresholds are trained
        with a straight-through estimator (rectangle kernel of width
        ``0.001 * sqrt(n_features)`` in the training frame, Gemma Scope's
        0.001 at unit mean squared norm) and an L0 penalty.
        ``"relu"`` keeps every positive pre-activation, with an L1 penalty on
        ``z_m * ||W_dec[m]||`` (decoder rows are not held at unit norm).
        For both, the encoder bias starts where each latent fires on about
        ``k / n_latents`` of the rows.
    sparsity_coef : float or None, default=None
        Weight of the sparsity penalty of ``"jumprelu"`` (per active latent per
        row) and ``"relu"`` (per unit of ``z_m * ||W_dec[m]||`` per row, the
        rows scaled to unit root mean square deviation), added to a loss that
        is an FVU estimate; it ramps up over the warmup. ``None`` targets ``k``
        active latents per row: ReLU adapts its weight during training (the
        weight reached is ``sparsity_coef_``), JumpReLU adds the penalty
        ``(L0 / k - 1)^2``, which pushes thresholds up above the target and
        down below it. Ignored by ``"topk"`` and ``"batchtopk"``.
    initial_k : int or None, default=None
        Start training with this many active latents per row (or this target
        L0) and anneal linearly to ``k`` over the first ``k_anneal_fraction``
        of the planned steps: dense early steps give more latents a gradient.
        ``None`` trains at ``k`` throughout.
    k_anneal_fraction : float, default=0.1
        Share of the planned steps over which ``initial_k`` anneals to ``k``.
    matryoshka_prefixes : "auto", list of int or None, default="auto"
        Nested prefix sizes, e.g. ``[32, 256]``: the loss averages the
        reconstruction error of the first 32 latents alone and of all 256, so
        the first latents learn coarse concepts and the rest finer ones.
        ``n_latents`` is appended when missing. ``"auto"`` is
        ``[n_latents // 8]`` (``[32]`` for 256 latents, as the HypotheSAEs
        authors recommend); on rotten-tomatoes embeddings it lowers held-out
        FVU and makes the selected latents more predictive. None turns the
        Matryoshka loss off.
    batch_size : int, default=512
        Rows per optimisation step.
    max_epochs : int, default=100
        Maximum number of passes over the training data.
    learning_rate : float, default=None
        Adam step size. ``None`` scales it with width:
        ``min(4e-3, 0.25 / sqrt(n_latents))``.
    warmup_fraction : float, default=0.02
        Fraction of the planned steps over which the learning rate ramps up.
    decay_fraction : float, default=0.2
        Fraction of the planned steps, at the end, over which it decays to 0.
    aux_k : int, default=None
        Dead latents used by the AuxK loss per row; ``None`` means
        ``min(n_latents, n_features // 2)``.
    aux_coef : float, default=1/32
        Weight of the AuxK loss. 0 disables it.
    dead_rows : int, default=None
        A latent that has not fired in this many training rows counts as dead.
        ``None`` means ``min(100_000, n_training_rows)``.
    clip_grad : float or None, default=1.0
        Maximum gradient norm.
    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the rows (or use ``X_val`` given to
        :meth:`fit`) and stop when the validation FVU has not improved by
        ``tol`` for ``n_iter_no_change`` epochs; the best weights are restored.
    validation_fraction : float, default=0.1
        Share of rows held out for early stopping.
    max_validation_rows : int, default=50_000
        At most this many rows are held out, ``min(round(validation_fraction
        * n_samples), max_validation_rows)``, so that the validation slice (kept
        in memory, and evaluated after every epoch) does not grow with the data:
        50,000 rows of 768 float32 values are 154 MB, and estimate the FVU to
        about 0.1%.
    n_iter_no_change : int, default=5
        Patience, in epochs.
    tol : float, default=1e-4
        Minimum improvement of the validation FVU.
    sparse_output : bool, default=False
        Whether :meth:`transform` returns a scipy CSR matrix.
    device : {"auto", "cpu", "cuda"} or str, default="auto"
        Torch device; ``"auto"`` picks CUDA when available.
    compute_dtype : {"float32", "bfloat16"}, default="float32"
        Dtype of the encoder's dense matmul. Weights stay float32. bfloat16
        pays off on GPUs and CPUs with bfloat16 units.
    transform_batch_size : int, default=8192
        Rows per batch in :meth:`transform` and scoring.
    warm_start : bool, default=False
        Continue training from the fitted weights on the next :meth:`fit`.
    random_state : int, RandomState instance or None, default=None
        Seeds initialisation, shuffling and the validation split.
    verbose : int, default=0
        Show a progress bar over epochs when positive.

    Attributes
    ----------
    n_features_in_ : int
        Width of the input vectors.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of input columns, when X has string column names.
    encoder_weight_ : ndarray of shape (n_latents, n_features_in_)
        Encoder weights, acting on raw (unscaled) inputs.
    encoder_bias_ : ndarray of shape (n_latents,)
    decoder_weight_ : ndarray of shape (n_latents, n_features_in_)
        One row per latent, in raw input units (unit norm times ``1 / input_scale_``).
    decoder_bias_ : ndarray of shape (n_features_in_,)
    input_scale_ : float
        Factor that brought the training inputs to norm ``sqrt(n_features_in_)``.
    threshold_ : float, ndarray of shape (n_latents,) or None
        Learned activation threshold used by :meth:`transform`: one number for
        BatchTopK, one per latent for JumpReLU, in raw pre-activation units:
        with ``pre = X @ encoder_weight_.T + encoder_bias_`` (the encoder
        already includes the centring by the decoder bias), a JumpReLU code is
        ``Z = pre * (pre > threshold_)``. None for TopK and ReLU.
    sparsity_coef_ : float or None
        Sparsity penalty weight at the end of training: ReLU's, and
        JumpReLU's when ``sparsity_coef`` is set; None otherwise.
    n_iter_ : int
        Epochs run.
    n_rows_seen_ : int
        Training rows processed, over all epochs.
    loss_curve_ : list of float
        Mean training loss of each epoch.
    validation_fvu_curve_ : list of float
        Validation FVU after each epoch (empty without early stopping).
    best_validation_fvu_ : float or None
    fvu_ : float
        Fraction of variance unexplained on the training rows (over the whole
        data, not averaged per batch).
    validation_fvu_ : float or None
        The same on the validation rows.
    l0_ : float
        Mean active latents per row, as trained (top-k or batch top-k).
    l0_threshold_ : float
        Mean active latents per row as :meth:`transform` computes them.
    dead_fraction_ : float
        Share of latents that never fire on the training rows.
    latent_frequency_ : ndarray of shape (n_latents,)
        Share of training rows on which each latent fires.
    optimizer_state_ : dict of str to ndarray or None
        What the next :meth:`partial_fit` resumes from besides the weights (in
        the scaled training frame): Adam's ``step`` count and moments
        (``exp_avg``, ``exp_avg_sq``, flattened over encoder weight and bias,
        decoder weight and bias and JumpReLU thresholds), ``rows_since_fired``
        per latent (dead-latent tracking), the loss's ``row_variance``, the
        BatchTopK threshold's running average (``threshold_ema``,
        ``threshold_steps``) and the adaptive penalty weight
        (``log_sparsity_coef``). Plain numpy,
        so it survives pickling and :func:`save_sae`. None after :meth:`fit`,
        whose next warm start begins a new schedule.

    See Also
    --------
    LatentSelector : Keep the latents that predict a target.
    HypothesisGenerator : Describe selected latents in words.
    save_sae, load_sae : Store a fitted autoencoder as arrays and JSON (no pickle).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_hypothesaes import SparseAutoencoder
    >>> X = np.random.default_rng(0).normal(size=(500, 16)).astype(np.float32)
    >>> sae = SparseAutoencoder(n_latents=32, k=4, max_epochs=5, random_state=0)
    >>> Z = sae.fit_transform(X)
    >>> Z.shape, int((Z > 0).sum(axis=1).max()) <= 4
    ((500, 32), True)
    """

    _parameter_constraints: dict = {
        "n_latents": [Interval(Integral, 1, None, closed="left")],
        "k": [Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions({"topk", "batchtopk", "jumprelu", "relu"})],
        "sparsity_coef": [Interval(Real, 0, None, closed="left"), None],
        "initial_k": [Interval(Integral, 1, None, closed="left"), None],
        "k_anneal_fraction": [Interval(Real, 0, 1, closed="both")],
        "matryoshka_prefixes": [StrOptions({"auto"}), "array-like", None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither"), None],
        "warmup_fraction": [Interval(Real, 0, 1, closed="both")],
        "decay_fraction": [Interval(Real, 0, 1, closed="both")],
        "aux_k": [Interval(Integral, 1, None, closed="left"), None],
        "aux_coef": [Interval(Real, 0, None, closed="left")],
        "dead_rows": [Interval(Integral, 1, None, closed="left"), None],
        "clip_grad": [Interval(Real, 0, None, closed="neither"), None],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "max_validation_rows": [Interval(Integral, 1, None, closed="left")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "sparse_output": ["boolean"],
        "device": [str],
        "compute_dtype": [StrOptions({"float32", "bfloat16"})],
        "transform_batch_size": [Interval(Integral, 1, None, closed="left")],
        "warm_start": ["boolean"],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        n_latents=256,
        k=8,
        *,
        activation="topk",
        sparsity_coef=None,
        initial_k=None,
        k_anneal_fraction=0.1,
        matryoshka_prefixes="auto",
        batch_size=512,
        max_epochs=100,
        learning_rate=None,
        warmup_fraction=0.02,
        decay_fraction=0.2,
        aux_k=None,
        aux_coef=1 / 32,
        dead_rows=None,
        clip_grad=1.0,
        early_stopping=True,
        validation_fraction=0.1,
        max_validation_rows=50_000,
        n_iter_no_change=5,
        tol=1e-4,
        sparse_output=False,
        device="auto",
        compute_dtype="float32",
        transform_batch_size=8192,
        warm_start=False,
        random_state=None,
        verbose=0,
    ):
        self.n_latents = n_latents
        self.k = k
        self.activation = activation
        self.sparsity_coef = sparsity_coef
        self.initial_k = initial_k
        self.k_anneal_fraction = k_anneal_fraction
        self.matryoshka_prefixes = matryoshka_prefixes
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.learning_rate = learning_rate
        self.warmup_fraction = warmup_fraction
        self.decay_fraction = decay_fraction
        self.aux_k = aux_k
        self.aux_coef = aux_coef
        self.dead_rows = dead_rows
        self.clip_grad = clip_grad
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.max_validation_rows = max_validation_rows
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.sparse_output = sparse_output
        self.device = device
        self.compute_dtype = compute_dtype
        self.transform_batch_size = transform_batch_size
        self.warm_start = warm_start
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ checks
    def _check_hyperparameters(self):
        if self.k > self.n_latents:
            raise ValueError(
                "The 'k' parameter of SparseAutoencoder must be an int in the range "
                f"[1, n_latents={self.n_latents}]. Got {self.k} instead."
            )
        if self.initial_k is not None and self.initial_k > self.n_latents:
            raise ValueError(
                "The 'initial_k' parameter of SparseAutoencoder must be None or an "
                f"int in the range [1, n_latents={self.n_latents}]. Got "
                f"{self.initial_k} instead."
            )
        prefixes = self.matryoshka_prefixes
        if isinstance(prefixes, str):
            prefixes = [self.n_latents // 8] if self.n_latents >= 16 else None
        if prefixes is not None:
            prefixes = [int(p) for p in np.asarray(prefixes).ravel()]
            if prefixes and prefixes[-1] != self.n_latents:
                prefixes.append(self.n_latents)
            increasing = all(np.diff(prefixes) > 0)
            ok = increasing and all(1 <= p <= self.n_latents for p in prefixes)
            if not prefixes or not ok:
                raise ValueError(
                    "The 'matryoshka_prefixes' parameter of SparseAutoencoder must be "
                    "strictly increasing ints in [1, n_latents="
                    f"{self.n_latents}]. Got {self.matryoshka_prefixes!r} instead."
                )
        return prefixes

    def _torch_device(self):
        torch = _torch()
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            device = torch.device(self.device)
        except RuntimeError as exc:
            raise ValueError(
                "The 'device' parameter of SparseAutoencoder must be 'auto', 'cpu', "
                f"'cuda' or a torch device string. Got {self.device!r} instead."
            ) from exc
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(
                "The 'device' parameter of SparseAutoencoder is 'cuda' but no CUDA "
                "device is available; use device='auto' or 'cpu'."
            )
        return device

    def _validate_X(self, X, reset):
        if is_out_of_core(X):
            # Validating would read it all into memory: it is checked chunk by
            # chunk as it is read (width, dtype, finite values).
            X = as_chunk_source(X)
            if reset:
                self.n_features_in_ = X.shape[1]
                if hasattr(self, "feature_names_in_"):
                    del self.feature_names_in_
            elif X.shape[1] != self.n_features_in_:
                raise ValueError(
                    f"X has {X.shape[1]} features, but SparseAutoencoder is "
                    f"expecting {self.n_features_in_} features as input."
                )
            return X
        X = validate_data(
            self,
            X,
            reset=reset,
            dtype=np.float32,
            order="C",
            ensure_min_samples=1,
        )
        return X

    # --------------------------------------------------------------- fitting
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, X_val=None):
        """Train the autoencoder on the rows of X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or ChunkSource
            Training vectors. An ``np.memmap``, a Zarr array, an HDF5 dataset,
            a :class:`ChunkSource` or a callable returning an iterator of
            chunks is read chunk by chunk (see :class:`ChunkSource`): memory
            does not grow with the number of rows.
        y : None
            Ignored.
        X_val : array-like of shape (n_val, n_features), default=None
            Validation vectors for early stopping, read into memory; by
            default ``validation_fraction`` of X is held out (at most
            ``max_validation_rows``).

        Returns
        -------
        self : SparseAutoencoder
        """
        warm = self.warm_start and hasattr(self, "encoder_weight_")
        X = self._validate_X(X, reset=not warm)
        if X_val is not None:
            X_val = self._validate_X(X_val, reset=False)
            if isinstance(X_val, ChunkSource):
                X_val = X_val.take(X_val.positions(np.arange(X_val.shape[0])))
        self._fit(X, X_val, warm=warm, epochs=self.max_epochs)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None):
        """Run one epoch over X, initialising the model on the first call.

        Later calls continue the same Adam optimiser (its moments and step
        count are kept in ``optimizer_state_``), also after pickling. There is
        no warmup, decay or early stopping.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or ChunkSource
            Training vectors; on-disk arrays and chunk sources are read chunk
            by chunk, as in :meth:`fit`.
        y : None
            Ignored.

        Returns
        -------
        self : SparseAutoencoder
        """
        first = not hasattr(self, "encoder_weight_")
        X = self._validate_X(X, reset=first)
        self._fit(X, None, warm=not first, epochs=1, partial=True)
        return self

    def _fit(self, X, X_val, *, warm, epochs, partial=False):
        torch = _torch()
        from ._training import train

        prefixes = self._check_hyperparameters()
        device = self._torch_device()
        rng = check_random_state(self.random_state)
        n_samples = X.shape[0]
        stream = X if isinstance(X, ChunkSource) else None

        # Validation rows: given, split off (at most max_validation_rows), or
        # none (partial_fit).
        train_idx = np.arange(n_samples) if stream is None else None
        if not partial and self.early_stopping and X_val is None:
            n_val = validation_size(
                n_samples, self.validation_fraction, self.max_validation_rows
            )
            if n_samples - n_val < 1:
                raise ValueError(
                    "SparseAutoencoder needs at least 2 rows when early_stopping=True "
                    f"(one for validation). Got n_samples={n_samples}."
                )
            perm = rng.permutation(n_samples)
            val_idx = np.sort(perm[:n_val])
            if stream is None:
                train_idx = np.sort(perm[n_val:])
            del perm
        else:
            val_idx = None
        seed = int(rng.randint(np.iinfo(np.int32).max))
        if warm:
            # A fixed random_state must not replay the same shuffle on every
            # partial_fit or warm-start call.
            seed = (seed + self.n_iter_) % np.iinfo(np.int32).max
        generator = torch.Generator(device="cpu").manual_seed(seed)

        if val_idx is not None:
            X_val = X[val_idx] if stream is None else X.take(X.positions(val_idx))
        elif partial:
            X_val = None
        feed = None
        if stream is not None:
            held_out = None if val_idx is None else stream.positions(val_idx)
            feed = stream_feed(stream.without(held_out))
            if X_val is not None:
                X_val = feed.pool(X_val)
            # X becomes the sample that starts training (resumed partial_fit
            # needs none); the batches come from the feed.
            resuming = partial and getattr(self, "optimizer_state_", None) is not None
            if warm and resuming:
                X = np.zeros((0, self.n_features_in_), dtype=np.float32)
            else:
                X = feed.sample(seed)
            train_idx = np.arange(len(X))
        if not warm:
            self.loss_curve_, self.validation_fvu_curve_ = [], []
            self.n_iter_, self.n_rows_seen_ = 0, 0
            self.best_validation_fvu_ = None
        result = train(
            self,
            X,
            train_idx,
            X_val if self.early_stopping else None,
            prefixes=prefixes,
            device=device,
            generator=generator,
            weights=self._scaled_params() if warm else None,
            # Only partial_fit continues the optimiser; a warm-started fit
            # runs a new schedule, with fresh moments.
            resume=getattr(self, "optimizer_state_", None) if partial else None,
            epochs=epochs,
            partial=partial,
            feed=feed,
        )
        self._store_weights(result["params"], result["scale"], result["threshold"])
        self.sparsity_coef_ = result["sparsity_coef"]
        self.optimizer_state_ = result["state"].to_numpy() if partial else None
        self.l0_ = result["l0"]
        if feed is None:
            idx = None if len(train_idx) == n_samples else train_idx
            # The rows training copied to the GPU, when it did: the same
            # float32 values, with no second host-to-device copy.
            rows = result.pop("rows_on_device")
            stats = self._data_stats(X if rows is None else rows, idx)
            del rows
        else:
            stats = feed.combine_stats(self._data_stats(feed.rows))
        self.fvu_ = stats["fvu"]
        self.l0_threshold_ = stats["l0"]
        self.latent_frequency_ = stats["frequency"]
        self.dead_fraction_ = float(np.mean(stats["frequency"] == 0))
        self.validation_fvu_ = (
            self._data_stats(X_val)["fvu"] if X_val is not None else None
        )
        return self

    def _store_weights(self, params, scale, threshold):
        """Fold the input scale into the weights so they act on raw inputs."""
        w_enc = params["w_enc"].detach().cpu().double().numpy()
        b_enc = params["b_enc"].detach().cpu().double().numpy()
        w_dec = params["w_dec"].detach().cpu().double().numpy()
        b_dec = params["b_dec"].detach().cpu().double().numpy()
        # pre = W (s x - b_dec) + b_enc = (s W) x + (b_enc - W b_dec)
        self.encoder_weight_ = (w_enc * scale).astype(np.float32)
        self.encoder_bias_ = (b_enc - w_enc @ b_dec).astype(np.float32)
        self.decoder_weight_ = (w_dec / scale).astype(np.float32)
        self.decoder_bias_ = (b_dec / scale).astype(np.float32)
        self.input_scale_ = float(scale)
        # The scaled and raw frames share pre-activations, hence thresholds.
        if threshold is None:
            self.threshold_ = None
        elif isinstance(threshold, float):
            self.threshold_ = threshold
        else:
            self.threshold_ = threshold.detach().cpu().numpy().astype(np.float32)
        self._device_params = None

    def _scaled_params(self):
        """Weights in the scaled training frame (to resume training)."""
        s = self.input_scale_
        w_enc = self.encoder_weight_.astype(np.float64) / s
        b_dec = self.decoder_bias_.astype(np.float64) * s
        params = {
            "w_enc": w_enc.astype(np.float32),
            "b_enc": (self.encoder_bias_ + w_enc @ b_dec).astype(np.float32),
            "w_dec": (self.decoder_weight_ * s).astype(np.float32),
            "b_dec": b_dec.astype(np.float32),
        }
        if self.activation == "jumprelu":
            params["threshold"] = np.asarray(self.threshold_, dtype=np.float32)
        return params

    # ------------------------------------------------------------- inference
    def _params_on(self, device):
        cached = getattr(self, "_device_params", None)
        if cached is not None and cached[0] == device:
            return cached[1]
        torch = _torch()
        params = {
            "w_enc": torch.from_numpy(self.encoder_weight_).to(device),
            "b_enc": torch.from_numpy(self.encoder_bias_).to(device),
            "w_dec": torch.from_numpy(self.decoder_weight_).to(device),
            # Raw-frame encoder already includes the centring by b_dec.
            "b_dec": torch.zeros(self.n_features_in_, device=device),
        }
        if isinstance(self.threshold_, np.ndarray):
            params["threshold"] = torch.from_numpy(
                np.asarray(self.threshold_, dtype=np.float32)
            ).to(device)
        self._device_params = (device, params)
        return params

    def _encode_batches(self, X, idx=None):
        """Yield (start, block, rows, cols, vals) batch by batch, as numpy.

        ``idx`` selects rows of X without copying X as a whole.
        """
        for start, block, _, rows, cols, vals in self._encode_on_device(X, idx):
            yield (
                start,
                block,
                rows.cpu().numpy(),
                cols.cpu().numpy(),
                vals.cpu().numpy(),
            )

    def _encode_mode(self):
        """The ``encode`` mode and threshold that :meth:`transform` uses."""
        threshold = self.threshold_
        if self.activation == "relu":
            return "relu", None
        if threshold is None:
            return "topk", None
        if isinstance(threshold, np.ndarray):
            return "threshold", self._params_on(self._torch_device())["threshold"]
        return "threshold", float(threshold)

    def _encode_on_device(self, X, idx=None, size=None):
        """Yield (start, block, x, rows, cols, vals), the last four as tensors.

        X may also be a tensor (rows already on the device): blocks are then
        gathered there. ``size``: rows per block (default
        ``transform_batch_size``); a row's code does not depend on it.
        """
        torch = _torch()
        from ._kernels import as_tensor, encode

        device = self._torch_device()
        params = self._params_on(device)
        mode, threshold = self._encode_mode()
        n = X.shape[0] if idx is None else len(idx)
        size = size or self.transform_batch_size
        if isinstance(X, ChunkSource):
            blocks = X.blocks(size)
        elif isinstance(X, torch.Tensor):
            at = None if idx is None else torch.from_numpy(idx).to(X.device)
            blocks = (
                (lo, X[lo : lo + size] if at is None else X[at[lo : lo + size]])
                for lo in range(0, n, size)
            )
        else:
            blocks = (
                (lo, X[lo : lo + size] if idx is None else X[idx[lo : lo + size]])
                for lo in range(0, n, size)
            )
        with torch.no_grad():
            for start, block in blocks:
                x = block if isinstance(block, torch.Tensor) else as_tensor(block)
                x = x.to(device)
                rows, cols, vals = encode(x, params, self.k, mode, threshold)
                yield start, block, x, rows, cols, vals

    def transform(self, X):
        """Latent activations of X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or ChunkSource
            On-disk arrays and chunk sources are read chunk by chunk.

        Returns
        -------
        Z : ndarray or scipy.sparse.csr_matrix of shape (n_samples, n_latents)
            Non-negative, at most ``k`` non-zeros per row for TopK. CSR when
            ``sparse_output=True``, filled batch by batch: its peak memory is
            about its own size, with no dense ``n_samples x n_latents`` array.
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        n = X.shape[0]
        if self.sparse_output:
            codes = (
                (start, rows, cols, vals)
                for start, _, rows, cols, vals in self._encode_batches(X)
            )
            capacity = n * self.k if self.activation == "topk" else None
            return csr_from_codes(codes, n, self.n_latents, capacity)
        Z = np.zeros((n, self.n_latents), dtype=np.float32)
        for start, _, rows, cols, vals in self._encode_batches(X):
            Z[start + rows, cols] = vals
        return Z

    def inverse_transform(self, Z):
        """Reconstruct vectors from latent activations.

        Parameters
        ----------
        Z : array-like or sparse matrix of shape (n_samples, n_latents)

        Returns
        -------
        X_hat : ndarray of shape (n_samples, n_features_in_)
        """
        check_is_fitted(self)
        if sp.issparse(Z):
            Z = Z.tocsr().astype(np.float32)
        else:
            Z = np.asarray(Z, dtype=np.float32)
        if Z.ndim != 2 or Z.shape[1] != self.n_latents:
            raise ValueError(
                "The 'Z' argument of SparseAutoencoder.inverse_transform must have "
                f"shape (n_samples, n_latents={self.n_latents}). Got shape "
                f"{Z.shape} instead."
            )
        return np.asarray(Z @ self.decoder_weight_) + self.decoder_bias_

    def _data_stats(self, X, idx=None):
        """FVU over all rows (of ``idx``), L0 and latent frequency, in batches.

        X is a numpy array, a ChunkSource or a tensor of rows on the device.
        Every sum (the total variance too) is taken on the model's device, in
        float64, and read back once at the end: a host-side pass over all rows
        in float64 cost more than the encoding itself on a GPU.
        """
        torch = _torch()
        from ._kernels import sparse_decode, workspace
        from ._training import CentredSquares

        n = X.shape[0] if idx is None else len(idx)
        sst = CentredSquares()
        device = self._torch_device()
        w_dec = self._params_on(device)["w_dec"]
        b_dec = torch.from_numpy(self.decoder_bias_).to(device)
        # Sums stay on the device: one transfer at the end, not one per batch.
        sse = torch.zeros((), dtype=torch.float64, device=device)
        fired = torch.zeros(self.n_latents, dtype=torch.long, device=device)
        diff64 = None
        size = None
        if device.type == "cpu" and not isinstance(X, ChunkSource):
            # In-memory rows on CPU: blocks whose temporaries (codes,
            # reconstructions, float64 copies) stay in cache; at 8192 rows
            # each was a fresh allocation of up to 25 MB, paid in page faults.
            size = min(self.transform_batch_size, _CPU_STATS_BLOCK)
        for _, _, x, rows, cols, vals in self._encode_on_device(X, idx, size):
            # (recon - x).double().square().sum(), in place and in one reused
            # float64 buffer.
            diff = sparse_decode(rows, cols, vals, w_dec, x.shape[0])
            diff.add_(b_dec).sub_(x)
            if diff64 is None or diff64.shape[0] < diff.shape[0]:
                diff64 = workspace(diff.shape, torch.float64, device)
            sse += diff64[: diff.shape[0]].copy_(diff).square_().sum()
            sst.add(x)
            fired += torch.bincount(cols, minlength=self.n_latents)
        sse = float(sse)
        fired = fired.cpu().numpy()
        nnz = int(fired.sum())
        # Identical rows have no variance to explain: report 0 unexplained.
        mean = sst.mean()
        sst = sst.value()
        fvu = sse / sst if sst > 0 else (0.0 if sse == 0 else math.inf)
        # The sums too, for processes that combine their shards' statistics.
        return {
            "fvu": fvu,
            "l0": nnz / max(n, 1),
            "frequency": fired / max(n, 1),
            "n": n,
            "sse": sse,
            "sst": sst,
            "mean": mean,
        }

    def score(self, X, y=None, sample_weight=None):
        """Fraction of variance explained, ``1 - FVU``, on X (higher is better).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : None
            Ignored.
        sample_weight : array-like of shape (n_samples,), default=None
            Row weights.

        Returns
        -------
        score : float
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        if sample_weight is None:
            return 1.0 - self._data_stats(X)["fvu"]
        w = np.asarray(sample_weight, dtype=np.float64)
        if w.shape != (X.shape[0],):
            raise ValueError(
                "The 'sample_weight' argument of SparseAutoencoder.score must have "
                f"shape ({X.shape[0]},). Got {w.shape} instead."
            )
        if isinstance(X, ChunkSource):
            raise ValueError(
                "SparseAutoencoder.score takes sample_weight only with an in-memory "
                "X; for an on-disk X pass sample_weight=None (rows weighted alike)."
            )
        recon = self.inverse_transform(self.transform(X))
        mean = np.average(X, axis=0, weights=w)
        sse = (w[:, None] * (recon - X) ** 2).sum()
        sst = (w[:, None] * (X - mean) ** 2).sum()
        return 1.0 - (sse / sst if sst > 0 else 0.0)

    # ---------------------------------------------------------------- extras
    @property
    def _n_features_out(self):
        return self.n_latents

    def __getstate__(self):
        # A copy: object.__getstate__ returns the live __dict__ itself.
        state = dict(super().__getstate__())
        # Device tensors are rebuilt on demand.
        state.pop("_device_params", None)
        return state

    @classmethod
    def from_pretrained(cls, path_or_hub_id, **kwargs):
        """Load a SAELens folder (``cfg.json`` + ``sae_weights.safetensors``)
        or hub id as a fitted SparseAutoencoder.

        ``kwargs`` (``device``, ``dtype``, ``norm_scaling_factor``,
        ``force_download``) are those of :func:`load_pretrained`.

        Returns
        -------
        sae : SparseAutoencoder
        """
        from ._pretrained import load_pretrained

        return load_pretrained(path_or_hub_id, **kwargs)

    def save_pretrained(self, path, **kwargs):
        """Write this fitted autoencoder as a SAELens folder.

        ``kwargs`` (``model_name``, ``hook_name``, ``overwrite``) are those of
        :func:`save_pretrained`.

        Returns
        -------
        path : Path
        """
        from ._pretrained import save_pretrained

        return save_pretrained(self, path, **kwargs)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        tags.non_deterministic = self.device not in ("cpu", "auto") or (
            self.device == "auto" and _torch().cuda.is_available()
        )
        return tags
