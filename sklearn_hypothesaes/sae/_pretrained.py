"""Pretrained sparse autoencoders in the SAELens folder format, in and out.

A SAELens folder holds ``cfg.json`` (the configuration) and
``sae_weights.safetensors`` with ``W_enc`` [d_in, d_sae], ``b_enc`` [d_sae],
``W_dec`` [d_sae, d_in], ``b_dec`` [d_in] and, for JumpReLU, ``threshold``
[d_sae]. SAELens encodes ``x`` as ``act((x - b_dec * apply_b_dec_to_input) @
W_enc + b_enc)`` and decodes ``z @ W_dec + b_dec``, where ``act`` is ReLU
("standard"), ReLU of the ``k`` largest ("topk") or ``relu(pre) * (pre >
threshold)`` ("jumprelu"). :func:`load_pretrained` turns such a folder into a
fitted :class:`SparseAutoencoder` whose raw-frame weights compute the same
codes; :func:`save_pretrained` writes one of ours so that SAELens-based tools
open it. Weights are read with safetensors and settings with JSON, never a
pickle.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import secrets
import shutil
import tempfile
from numbers import Integral, Real
from pathlib import Path

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ..utils._misc import import_optional
from ._model import SparseAutoencoder

CONFIG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
# SAELens writes this next to the weights (log10 firing rates during training);
# a stale one would describe other weights, so overwriting removes it.
SPARSITY_FILE = "sparsity.safetensors"
SUPPORTED_ARCHITECTURES = ("standard", "topk", "jumprelu")
# SAELens reads metadata.sae_lens_version to pick its config parser: the folders
# written here follow the schema of SAELens 6.
SAELENS_SCHEMA_VERSION = "6.0.0"
# Key of cfg.json's metadata with what SAELens has no field for.
METADATA_KEY = "sklearn_hypothesaes"
_ACTIVATIONS = {"standard": "relu", "topk": "topk", "jumprelu": "jumprelu"}
_PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt", ".joblib"}
_NORMALIZE_NONE = (None, False, "none")
_DEFAULT_K = SparseAutoencoder().k


def _error(source, message, kind=ValueError):
    return kind(f"Cannot load the SAELens folder '{source}': {message}")


# ------------------------------------------------------------------ locating
def _local_folder(path):
    """The SAELens folder that ``path`` (a folder or one of its files) names."""
    if path.is_file():
        if path.suffix.lower() in _PICKLE_SUFFIXES:
            raise _error(
                path,
                f"'{path.name}' is a pickle-based checkpoint, which can run code "
                "when loaded and is never read here. Convert it to a SAELens "
                f"folder ({CONFIG_FILE} + {WEIGHTS_FILE}) where you trust it.",
            )
        if path.suffix.lower() == ".npz":
            raise _error(
                path, "an .npz file; files written by save_sae load with load_sae."
            )
        if path.name not in (CONFIG_FILE, WEIGHTS_FILE):
            raise _error(
                path, f"expected a folder holding {CONFIG_FILE} and {WEIGHTS_FILE}."
            )
        path = path.parent
    missing = [n for n in (CONFIG_FILE, WEIGHTS_FILE) if not (path / n).is_file()]
    if missing:
        pickles = sorted(
            p.name for p in path.iterdir() if p.suffix.lower() in _PICKLE_SUFFIXES
        )
        hint = (
            f" It holds pickle-based weights ({', '.join(pickles)}), which are "
            "never read here: convert them to safetensors where you trust them."
            if pickles
            else ""
        )
        raise _error(
            path,
            f"{' and '.join(missing)} not found; a SAELens folder holds "
            f"{CONFIG_FILE} and {WEIGHTS_FILE}.{hint}",
            FileNotFoundError,
        )
    return path


def saelens_registry():
    """SAELens's table of released SAEs (release -> repo, folders), or None.

    Read from the installed ``sae_lens`` package's ``pretrained_saes.yaml``
    without importing sae_lens (which loads TransformerLens).
    """
    spec = importlib.util.find_spec("sae_lens")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "pretrained_saes.yaml"
    if not path.is_file():
        return None
    yaml = import_optional("yaml", "Reading SAELens's table of released SAEs")
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def resolve_hub_id(hub_id, registry=None):
    """``(repo_id, folder, cfg_overrides, norm_scaling_factor)`` for a hub id.

    ``"release/sae_id"`` is looked up in SAELens's ``registry`` (see
    :func:`saelens_registry`); anything else is ``"owner/repo"`` optionally
    followed by the folder inside the repository.
    """
    release, _, sae_id = hub_id.partition("/")
    if registry and release in registry:
        entry = registry[release]
        converter = entry.get("conversion_func")
        if converter not in (None, "sae_lens"):
            raise NotImplementedError(
                f"SAELens release '{release}' is stored in the '{converter}' format, "
                "not as a SAELens folder. Load it with SAELens "
                f"(SAE.from_pretrained('{release}', '{sae_id}')), write it with "
                "sae.save_model(folder) and pass that folder to load_pretrained."
            )
        saes = {s["id"]: s for s in entry.get("saes", [])}
        if sae_id not in saes:
            ids = sorted(saes)
            shown = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
            raise ValueError(
                f"SAELens release '{release}' has no SAE '{sae_id}'. Its ids: {shown}."
            )
        overrides = dict(entry.get("config_overrides") or {})
        return (
            entry["repo_id"],
            saes[sae_id]["path"],
            overrides,
            saes[sae_id].get("norm_scaling_factor"),
        )
    parts = hub_id.split("/")
    return "/".join(parts[:2]), "/".join(parts[2:]), {}, None


def _download(hub_id, force_download):
    hub = import_optional("huggingface_hub", f"load_pretrained('{hub_id}')")
    registry = saelens_registry()
    repo_id, folder, overrides, scale = resolve_hub_id(hub_id, registry)
    paths = []
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        filename = f"{folder.strip('/')}/{name}" if folder.strip("/") else name
        try:
            paths.append(
                hub.hf_hub_download(
                    repo_id=repo_id, filename=filename, force_download=force_download
                )
            )
        except Exception as exc:  # offline, unknown repo, missing file, ...
            release_hint = (
                " A SAELens release name is resolved only when the sae_lens "
                "package is installed (pip install sae-lens)."
                if registry is None
                else ""
            )
            raise OSError(
                f"load_pretrained could not fetch '{filename}' from the Hugging "
                f"Face repository '{repo_id}' for '{hub_id}' "
                f"({type(exc).__name__}: {exc}). Check the id and the network, or "
                f"download the folder and pass its path.{release_hint}"
            ) from exc
    return Path(paths[0]).parent, Path(paths[1]), overrides, scale


# ------------------------------------------------------------------- reading
def _read_weights(path, source):
    """The tensors of a safetensors file as float64 numpy arrays."""
    safetensors_torch = import_optional("safetensors.torch", "load_pretrained")
    torch = import_optional("torch", "load_pretrained")
    try:
        tensors = safetensors_torch.load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own error types
        raise _error(
            source, f"{path.name} is not a readable safetensors file ({exc})."
        ) from exc
    # float64 so that folding biases and scales adds no rounding of its own;
    # via torch because numpy has no bfloat16.
    return {k: v.to(torch.float64).numpy() for k, v in tensors.items()}


def _int(cfg, key, source, low=1, high=None):
    value = cfg.get(key)
    ok = isinstance(value, Integral) and not isinstance(value, bool)
    if not ok or value < low or (high is not None and value > high):
        bound = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise _error(
            source, f"'{key}' in {CONFIG_FILE} must be an int {bound}. Got {value!r}."
        )
    return int(value)


def _parse_config(cfg, source):
    """What the forward pass needs from a cfg.json of any SAELens version."""
    if not isinstance(cfg, dict):
        raise _error(source, f"{CONFIG_FILE} is not a JSON object.")
    # Before SAELens 6 the activation was a field of its own, and a TopK SAE
    # could say architecture "standard" (or nothing) with activation "topk".
    activation = cfg.get("activation_fn", cfg.get("activation_fn_str"))
    fn_kwargs = cfg.get("activation_fn_kwargs") or {}
    architecture = cfg.get("architecture") or "standard"
    if activation == "topk" and fn_kwargs.get("k") is not None:
        architecture = "topk"
    if architecture not in SUPPORTED_ARCHITECTURES:
        raise _error(
            source,
            f"architecture {architecture!r} is not supported; load_pretrained "
            f"reads {', '.join(map(repr, SUPPORTED_ARCHITECTURES))}. (A SAELens "
            "BatchTopK training checkpoint becomes 'jumprelu' when SAELens saves "
            "it for inference.)",
            NotImplementedError,
        )
    if activation == "topk" and architecture != "topk":
        raise _error(
            source,
            f"activation_fn 'topk' needs activation_fn_kwargs.k in {CONFIG_FILE}.",
        )
    if activation not in (None, "relu", "topk"):
        raise _error(
            source,
            f"activation_fn {activation!r} is not supported (only ReLU-based "
            "activations are).",
            NotImplementedError,
        )
    d_in = _int(cfg, "d_in", source)
    d_sae = _int(cfg, "d_sae", source)
    k = None
    if architecture == "topk":
        k = cfg.get("k") if cfg.get("k") is not None else fn_kwargs.get("k")
        k = _int({"k": k}, "k", source, 1, d_sae)
    apply_b_dec = cfg.get("apply_b_dec_to_input", True)
    normalize = cfg.get("normalize_activations", "none")
    if normalize is True:  # the boolean of old SAELens versions
        normalize = "expected_average_only_in"
    if normalize in _NORMALIZE_NONE:
        normalize = "none"
    elif normalize in ("constant_norm_rescale", "layer_norm"):
        raise _error(
            source,
            f"normalize_activations={normalize!r} rescales every row at run time "
            "(and undoes it on the reconstruction), which SparseAutoencoder does "
            "not do; only 'none' and 'expected_average_only_in' are supported.",
            NotImplementedError,
        )
    elif normalize != "expected_average_only_in":
        raise _error(
            source, f"normalize_activations={normalize!r} is not a SAELens setting."
        )
    for key in ("apply_b_dec_to_input", "rescale_acts_by_decoder_norm"):
        if not isinstance(cfg.get(key, False), bool):
            raise _error(
                source,
                f"'{key}' in {CONFIG_FILE} must be true or false. Got {cfg[key]!r}.",
            )
    return {
        "architecture": architecture,
        "d_in": d_in,
        "d_sae": d_sae,
        "k": k,
        "apply_b_dec": apply_b_dec,
        "normalize": normalize,
        "rescale": architecture == "topk"
        and cfg.get("rescale_acts_by_decoder_norm", False),
        "finetuning": bool(cfg.get("finetuning_scaling_factor", False)),
        "ours": _ours(cfg),
    }


def _ours(cfg):
    """What save_pretrained put in ``metadata["sklearn_hypothesaes"]``, or {}."""
    metadata = cfg.get("metadata")
    ours = metadata.get(METADATA_KEY) if isinstance(metadata, dict) else None
    return ours if isinstance(ours, dict) else {}


def _check_tensors(tensors, spec, source):
    d, m = spec["d_in"], spec["d_sae"]
    shapes = {"W_enc": (d, m), "b_enc": (m,), "W_dec": (m, d), "b_dec": (d,)}
    if spec["architecture"] == "jumprelu":
        shapes["threshold"] = (m,)
    optional = {"scaling_factor": (m,), "finetuning_scaling_factor": (m,)}
    unexpected = sorted(set(tensors) - set(shapes) - set(optional))
    if unexpected:
        raise _error(
            source,
            f"{WEIGHTS_FILE} holds {unexpected}, which a "
            f"{spec['architecture']!r} SAE does not have; expected {sorted(shapes)}.",
        )
    for name, shape in {**shapes, **optional}.items():
        if name not in tensors:
            if name in shapes:
                raise _error(source, f"{WEIGHTS_FILE} has no '{name}' tensor.")
            continue
        got = tensors[name].shape
        if got != shape:
            raise _error(
                source,
                f"'{name}' in {WEIGHTS_FILE} has shape {got}; d_in={d} and "
                f"d_sae={m} in {CONFIG_FILE} need {shape}.",
            )
        if not np.isfinite(tensors[name]).all():
            raise _error(source, f"'{name}' in {WEIGHTS_FILE} holds NaN or inf.")


def _restored(ours, spec, threshold):
    """Activation, k, prefixes, threshold and input scale of the loaded SAE.

    Our own settings come from the metadata of a folder that save_pretrained
    wrote, and are used only where they agree with the weights.
    """
    activation, k = _ACTIVATIONS[spec["architecture"]], spec["k"]
    kept = ours.get("k")
    kept = kept if isinstance(kept, Integral) and 1 <= kept <= spec["d_sae"] else None
    constant = threshold is not None and bool(np.all(threshold == threshold[0]))
    if ours.get("activation") == "batchtopk" and constant and kept is not None:
        # A BatchTopK SAE saved by save_pretrained: its global threshold.
        activation, threshold = "batchtopk", float(threshold[0])
    same = ours.get("activation") == activation
    if k is None:
        k = kept if same and kept is not None else min(_DEFAULT_K, spec["d_sae"])
    prefixes = ours.get("matryoshka_prefixes") if same else None
    valid = prefixes == "auto" or (
        isinstance(prefixes, list)
        and all(isinstance(p, Integral) and 1 <= p <= spec["d_sae"] for p in prefixes)
    )
    scale = ours.get("input_scale")
    if not (isinstance(scale, Real) and math.isfinite(scale) and scale > 0):
        scale = None
    return activation, k, prefixes if valid else None, threshold, scale


def load_pretrained(
    path_or_hub_id,
    *,
    device="cpu",
    dtype="float32",
    norm_scaling_factor=None,
    force_download=False,
):
    """Load a SAELens-format sparse autoencoder as a fitted SparseAutoencoder.

    The folder holds ``cfg.json`` and ``sae_weights.safetensors`` (``W_enc``
    [d_in, d_sae], ``b_enc``, ``W_dec`` [d_sae, d_in], ``b_dec``, and
    ``threshold`` for JumpReLU). Architectures ``"standard"`` (ReLU, loaded as
    ``activation="relu"``), ``"topk"`` and ``"jumprelu"`` are read, with
    configurations of every SAELens version (old ones say
    ``activation_fn="topk"`` and ``activation_fn_kwargs={"k": ...}`` instead of
    ``architecture``). The result's :meth:`~SparseAutoencoder.transform` gives
    SAELens's ``encode`` and its
    :meth:`~SparseAutoencoder.inverse_transform` SAELens's ``decode``: the
    settings that change the forward pass are folded into the weights
    (``apply_b_dec_to_input``, ``rescale_acts_by_decoder_norm``, an old
    ``scaling_factor``, ``normalize_activations="expected_average_only_in"``
    with its factor). Codes agree with SAELens's up to float32 rounding (a
    pre-activation within rounding of a JumpReLU threshold or of the k-th
    largest may fall the other way). Hook-z SAEs take their input flattened,
    ``(n_samples, n_heads * d_head)``.

    Nothing is unpickled: weights are read with safetensors, the settings as
    JSON, and ``.pt``/``.pkl`` checkpoints are refused.

    Parameters
    ----------
    path_or_hub_id : str or Path
        A SAELens folder (or its ``cfg.json`` or weights file). Otherwise a
        Hugging Face id, fetched with ``huggingface_hub`` where the network
        allows: ``"owner/repo"`` or ``"owner/repo/folder/in/repo"``, or, when
        the ``sae_lens`` package is installed, ``"release/sae_id"`` from
        SAELens's table of released SAEs (its norm scaling factor is folded in,
        as SAELens does).
    device : str, default="cpu"
        The ``device`` parameter of the returned estimator.
    dtype : {"float32", "bfloat16"}, default="float32"
        Its ``compute_dtype``, used if training continues. Weights are held,
        and :meth:`~SparseAutoencoder.transform` computes, in float32 whatever
        the file's dtype (bfloat16 and float16 files are read exactly, float64
        ones rounded).
    norm_scaling_factor : float, default=None
        For ``normalize_activations="expected_average_only_in"``: the factor
        the SAE's training inputs were multiplied by, which the folder does not
        store. It is folded into the weights and kept as ``input_scale_``, so
        that raw activations go in. Required for such a folder (pass 1.0 if
        your inputs are already scaled); ignored otherwise.
    force_download : bool, default=False
        Fetch a hub id again even if it is cached.

    Returns
    -------
    sae : SparseAutoencoder
        Fitted. Statistics of training data (``fvu_``, ``l0_``,
        ``latent_frequency_``, ...) are None: the rows it was trained on are
        not known. ``input_scale_`` is 1.0 unless a norm scaling factor was
        folded in.

    Raises
    ------
    NotImplementedError
        For an architecture other than standard, TopK and JumpReLU (e.g.
        gated, transcoders) and for run-time normalisation
        (``constant_norm_rescale``, ``layer_norm``).
    ValueError
        For a pickle, a malformed configuration, or weights whose names or
        shapes do not match it.

    See Also
    --------
    save_pretrained : Write a fitted SparseAutoencoder in this format.
    load_sae : Read the package's own format (every fitted attribute).

    Examples
    --------
    >>> import json, tempfile, numpy as np
    >>> from pathlib import Path
    >>> from safetensors.numpy import save_file
    >>> from sklearn_hypothesaes.sae._pretrained import load_pretrained
    >>> folder = Path(tempfile.mkdtemp())
    >>> rng = np.random.default_rng(0)
    >>> weights = {"W_enc": rng.normal(size=(4, 6)), "b_enc": np.zeros(6),
    ...            "W_dec": rng.normal(size=(6, 4)), "b_dec": np.zeros(4)}
    >>> save_file({k: v.astype(np.float32) for k, v in weights.items()},
    ...           folder / "sae_weights.safetensors")
    >>> cfg = {"architecture": "topk", "d_in": 4, "d_sae": 6, "k": 2}
    >>> _ = (folder / "cfg.json").write_text(json.dumps(cfg))
    >>> sae = load_pretrained(folder)
    >>> sae.activation, sae.k, sae.transform(rng.normal(size=(3, 4))).shape
    ('topk', 2, (3, 6))
    """
    if dtype not in ("float32", "bfloat16"):
        raise ValueError(
            "The 'dtype' parameter of load_pretrained must be 'float32' or "
            f"'bfloat16'. Got {dtype!r} instead."
        )
    source = str(path_or_hub_id)
    path = Path(source).expanduser()
    overrides, registry_scale = {}, None
    if path.exists():
        folder = _local_folder(path)
        weights_path = folder / WEIGHTS_FILE
    elif path.suffix.lower() in _PICKLE_SUFFIXES:
        raise _error(
            source, "pickle-based checkpoints are never read here (and none exists)."
        )
    elif path.is_absolute() or source.startswith((".", "~")) or "/" not in source:
        raise FileNotFoundError(
            f"load_pretrained: no folder '{source}'. Pass a SAELens folder "
            f"({CONFIG_FILE} + {WEIGHTS_FILE}) or a Hugging Face id such as "
            "'owner/repo/folder'."
        )
    else:
        folder, weights_path, overrides, registry_scale = _download(
            source, force_download
        )
    try:
        cfg = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _error(source, f"{CONFIG_FILE} is not valid JSON ({exc}).") from exc
    if isinstance(cfg, dict):
        cfg.update(overrides)
    spec = _parse_config(cfg, source)
    tensors = _read_weights(weights_path, source)
    _check_tensors(tensors, spec, source)

    scale = 1.0
    if spec["normalize"] == "expected_average_only_in":
        factor = norm_scaling_factor
        factor = registry_scale if factor is None else factor
        if factor is None:
            raise _error(
                source,
                "normalize_activations='expected_average_only_in': the SAE "
                "expects inputs multiplied by a dataset-wide factor that the "
                "folder does not store. Pass norm_scaling_factor=<factor> (SAELens "
                "lists it for its released SAEs) to fold it into the weights, or "
                "norm_scaling_factor=1.0 if your inputs are already scaled.",
            )
        if not (isinstance(factor, Real) and math.isfinite(factor) and factor > 0):
            raise ValueError(
                "The 'norm_scaling_factor' parameter of load_pretrained must be a "
                f"positive finite number. Got {factor!r} instead."
            )
        scale = float(factor)
    elif norm_scaling_factor is not None:
        raise ValueError(
            "The 'norm_scaling_factor' parameter of load_pretrained applies only to "
            "a folder with normalize_activations='expected_average_only_in'; "
            f"'{source}' has normalize_activations='none'. Leave it as None."
        )

    w_enc = tensors["W_enc"].T.copy()  # (d_sae, d_in), as encoder_weight_
    b_enc, w_dec, b_dec = tensors["b_enc"], tensors["W_dec"], tensors["b_dec"]
    # The same order as SAELens: the norm scaling factor is folded into the
    # stored weights first, and the TopK rescaling uses the folded decoder.
    w_enc, w_dec, b_dec = w_enc * scale, w_dec / scale, b_dec / scale
    if spec["rescale"]:
        # SAELens ranks pre * |W_dec row| and divides the code by it again
        # when decoding: the same as scaling encoder rows up and decoder rows
        # down (a zero decoder row stays zero; SAELens would divide by 0).
        norms = np.linalg.norm(w_dec, axis=1)
        w_enc, b_enc = w_enc * norms[:, None], b_enc * norms
        w_dec = w_dec / np.where(norms > 0, norms, 1.0)[:, None]
    for name in ("scaling_factor", "finetuning_scaling_factor"):
        factor = tensors.get(name)
        if factor is None or np.all(factor == 1):
            continue
        if not spec["finetuning"]:
            raise _error(
                source,
                f"'{name}' in {WEIGHTS_FILE} is not all ones but "
                f"finetuning_scaling_factor is false in {CONFIG_FILE}.",
            )
        w_dec = w_dec * factor[:, None]  # SAELens decodes (z * factor) @ W_dec
    if spec["apply_b_dec"]:
        # Our encoder acts on raw inputs: W (x - b_dec) + b = W x + (b - W b_dec).
        b_enc = b_enc - w_enc @ b_dec

    threshold = None
    if spec["architecture"] == "jumprelu":
        # SAELens computes relu(pre) * (pre > t): a negative t acts as 0.
        threshold = np.maximum(tensors["threshold"], 0.0).astype(np.float32)
    activation, k, prefixes, threshold, kept_scale = _restored(
        spec["ours"], spec, threshold
    )
    sae = SparseAutoencoder(
        n_latents=spec["d_sae"],
        k=k,
        activation=activation,
        matryoshka_prefixes=prefixes,
        device=device,
        compute_dtype=dtype,
    )
    sae.n_features_in_ = spec["d_in"]
    sae.encoder_weight_ = np.ascontiguousarray(w_enc, dtype=np.float32)
    sae.encoder_bias_ = np.ascontiguousarray(b_enc, dtype=np.float32)
    sae.decoder_weight_ = np.ascontiguousarray(w_dec, dtype=np.float32)
    sae.decoder_bias_ = np.ascontiguousarray(b_dec, dtype=np.float32)
    sae.input_scale_ = scale if spec["normalize"] != "none" else kept_scale or 1.0
    sae.threshold_ = threshold
    sae.n_iter_, sae.n_rows_seen_ = 0, 0
    sae.loss_curve_, sae.validation_fvu_curve_ = [], []
    for name in (
        "best_validation_fvu_",
        "fvu_",
        "validation_fvu_",
        "l0_",
        "l0_threshold_",
        "dead_fraction_",
        "latent_frequency_",
        "optimizer_state_",
        "sparsity_coef_",
    ):
        setattr(sae, name, None)
    return sae


# ------------------------------------------------------------------- writing
def _architecture(sae):
    """SAELens architecture and threshold tensor for our activation."""
    if sae.activation == "topk":
        return "topk", None
    if sae.activation == "batchtopk":
        if sae.threshold_ is None:
            return "topk", None
        # As SAELens saves its own BatchTopK SAEs for inference: JumpReLU with
        # the global threshold in every latent (float32, as torch compares).
        return "jumprelu", np.full(sae.n_latents, sae.threshold_, dtype=np.float32)
    if sae.activation == "relu":
        return "standard", None
    if sae.activation == "jumprelu":
        return "jumprelu", np.asarray(sae.threshold_, dtype=np.float32)
    raise ValueError(
        f"save_pretrained cannot write activation={sae.activation!r} in the SAELens "
        "format; it writes 'topk', 'batchtopk', 'relu' and 'jumprelu'."
    )


def _replace_folder(tmp, path, overwrite):
    """Move the finished folder ``tmp`` to ``path``; readers never see half of it."""
    if path.is_dir() and not any(path.iterdir()):
        path.rmdir()
    if not path.exists():
        os.rename(tmp, path)
        return
    if not path.is_dir():
        raise FileExistsError(
            f"save_pretrained: '{path}' exists and is not a folder. Choose a "
            "folder path."
        )
    if not overwrite:
        raise FileExistsError(
            f"save_pretrained: the folder '{path}' exists and is not empty. Pass "
            "overwrite=True to replace the SAE in it, or choose another path."
        )
    known = {CONFIG_FILE, WEIGHTS_FILE, SPARSITY_FILE}
    others = sorted(p.name for p in path.iterdir() if p.name not in known)
    if others:
        raise FileExistsError(
            f"save_pretrained: the folder '{path}' holds files other than a "
            f"SAELens SAE ({', '.join(others)}); overwrite=True replaces the whole "
            "folder, so it refuses. Choose another path."
        )
    old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old."))
    os.rename(path, old / path.name)
    try:
        os.rename(tmp, path)
    except BaseException:
        os.rename(old / path.name, path)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def save_pretrained(sae, path, *, model_name=None, hook_name=None, overwrite=False):
    """Write a fitted SparseAutoencoder as a SAELens folder.

    The folder holds ``cfg.json`` (SAELens 6 schema) and
    ``sae_weights.safetensors`` (``W_enc`` [d_in, d_sae], ``b_enc``, ``W_dec``
    [d_sae, d_in], ``b_dec``, float32), so SAELens and tools built on it open
    it (``SAE.load_from_disk(path)``) and encode exactly as
    :meth:`~SparseAutoencoder.transform` does. The weights are our raw-frame
    weights (``input_scale_`` is already folded in) with
    ``apply_b_dec_to_input=false``, which needs no arithmetic: the encoder
    bias already includes the centring by the decoder bias.

    ``activation="topk"`` is written as ``"topk"`` (a Matryoshka loss only
    shaped training), ``"relu"`` as ``"standard"`` and ``"jumprelu"`` as
    ``"jumprelu"``. ``"batchtopk"`` is written as SAELens writes its own
    BatchTopK SAEs for inference: ``"jumprelu"`` with the learned global
    threshold in every latent, which encodes each row as our
    :meth:`~SparseAutoencoder.transform` does. What SAELens cannot hold (``k``
    of BatchTopK, the Matryoshka prefixes, ``input_scale_``) goes into
    ``metadata["sklearn_hypothesaes"]``, from which :func:`load_pretrained`
    restores it; the rest of our estimator (training settings, statistics,
    optimiser state) is only in :func:`save_sae`'s format.

    The folder is written in a temporary folder beside ``path`` and renamed
    into place, so no reader sees half of it.

    Parameters
    ----------
    sae : SparseAutoencoder
        Fitted.
    path : str or Path
        The folder to create. An existing empty folder is used.
    model_name : str, default=None
        ``metadata.model_name`` in cfg.json (the model whose activations the
        SAE reads), for tools that look it up.
    hook_name : str, default=None
        ``metadata.hook_name`` (e.g. ``"blocks.6.hook_resid_post"``).
    overwrite : bool, default=False
        Replace an existing SAELens folder at ``path`` (one holding only
        cfg.json, the weights and a sparsity file); a folder with other files
        is never replaced.

    Returns
    -------
    path : Path
        The folder written.

    See Also
    --------
    load_pretrained : Read it back (or any SAELens folder).
    save_sae : The package's own format, with every fitted attribute.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from sklearn_hypothesaes.sae import SparseAutoencoder
    >>> from sklearn_hypothesaes.sae._pretrained import (
    ...     load_pretrained, save_pretrained)
    >>> X = np.random.default_rng(0).normal(size=(200, 8)).astype(np.float32)
    >>> sae = SparseAutoencoder(16, 2, max_epochs=2, random_state=0).fit(X)
    >>> folder = save_pretrained(sae, os.path.join(tempfile.mkdtemp(), "sae"))
    >>> sorted(os.listdir(folder))
    ['cfg.json', 'sae_weights.safetensors']
    >>> bool((load_pretrained(folder).transform(X) == sae.transform(X)).all())
    True
    """
    if not isinstance(sae, SparseAutoencoder):
        raise TypeError(
            "The 'sae' argument of save_pretrained must be a SparseAutoencoder. "
            f"Got {type(sae).__name__} instead."
        )
    check_is_fitted(sae)
    for name, value in (("model_name", model_name), ("hook_name", hook_name)):
        if value is not None and not isinstance(value, str):
            raise TypeError(
                f"The '{name}' parameter of save_pretrained must be a str or None. "
                f"Got {type(value).__name__} instead."
            )
    save_file = import_optional("safetensors.numpy", "save_pretrained").save_file
    from .. import __version__

    architecture, threshold = _architecture(sae)
    ours = {"version": __version__, "activation": sae.activation, "k": int(sae.k)}
    ours["input_scale"] = float(sae.input_scale_)
    prefixes = sae.matryoshka_prefixes
    if prefixes is not None and not isinstance(prefixes, str):
        prefixes = [int(p) for p in np.asarray(prefixes).ravel()]
    ours["matryoshka_prefixes"] = prefixes
    cfg = {
        "architecture": architecture,
        "d_in": int(sae.n_features_in_),
        "d_sae": int(sae.n_latents),
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": False,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            "sae_lens_version": SAELENS_SCHEMA_VERSION,
            "sae_lens_training_version": None,
            "model_name": model_name,
            "hook_name": hook_name,
            METADATA_KEY: ours,
        },
    }
    if architecture == "topk":
        cfg["k"] = int(sae.k)
        cfg["rescale_acts_by_decoder_norm"] = False
    tensors = {
        "W_enc": np.ascontiguousarray(sae.encoder_weight_.T, dtype=np.float32),
        "b_enc": np.ascontiguousarray(sae.encoder_bias_, dtype=np.float32),
        "W_dec": np.ascontiguousarray(sae.decoder_weight_, dtype=np.float32),
        "b_dec": np.ascontiguousarray(sae.decoder_bias_, dtype=np.float32),
    }
    if threshold is not None:
        tensors["threshold"] = np.ascontiguousarray(threshold)

    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not mkdtemp, whose folder is private (0o700): this one becomes the SAE's.
    tmp = path.parent / f".{path.name}.tmp.{secrets.token_hex(8)}"
    tmp.mkdir()
    try:
        save_file(tensors, str(tmp / WEIGHTS_FILE))
        (tmp / CONFIG_FILE).write_text(json.dumps(cfg, indent=2), encoding="utf-8")
        _replace_folder(tmp, path, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path
