"""File formats for fitted sparse autoencoders, none of them a pickle.

:func:`save_sae` and :func:`load_sae` write and read the package's own format:
one ``.npz`` holding only numeric arrays (the weights and array-valued fitted
attributes) plus one ``uint8`` array with a JSON document (constructor
parameters, scalar fitted attributes, format version). It is read with
``np.load(..., allow_pickle=False)``, so a file from a shared cache folder or a
download cannot run code when loaded, unlike ``joblib.load``.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import zipfile
from numbers import Integral, Real
from pathlib import Path

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ._model import SparseAutoencoder

FORMAT = "sklearn_hypothesaes.SparseAutoencoder"
FORMAT_VERSION = 1
# Name of the JSON member inside the .npz (no fitted attribute ends this way).
_META = "__meta__.json"
# Fitted attributes only: a file must not set methods or private state.
_ATTRIBUTE = re.compile(r"[a-z][a-z0-9_]*_\Z")


def to_json_value(value, *, name, owner="SparseAutoencoder"):
    """``value`` as plain JSON data (numpy scalars and arrays become numbers and
    lists); a ValueError naming ``name`` for anything else."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real):
        return float(value)
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return value.tolist()
    if isinstance(value, list | tuple | np.ndarray):
        return [to_json_value(v, name=name, owner=owner) for v in value]
    raise ValueError(
        f"The '{name}' parameter of {owner} is a {type(value).__name__}, which "
        "cannot be stored as JSON; expected None, a bool, a number, a string or "
        "a list of them. Set it to such a value (e.g. an int random_state) "
        "before saving."
    )


def _split_fitted(sae):
    """Fitted attributes as (numeric arrays for the npz, JSON-able description)."""
    arrays, scalars, strings, dicts = {}, {}, {}, {}
    for name, value in vars(sae).items():
        if not name.endswith("_") or name.startswith("_"):
            continue
        if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
            arrays[name] = value
        elif isinstance(value, np.ndarray):
            # feature_names_in_: an object array of str, which npz would pickle.
            strings[name] = [str(v) for v in value]
        elif isinstance(value, dict):
            dicts[name] = sorted(value)
            for key, part in value.items():
                arrays[f"{name}/{key}"] = np.asarray(part)
        else:
            scalars[name] = to_json_value(value, name=name)
    meta = {"attributes": scalars, "string_arrays": strings, "array_dicts": dicts}
    meta["arrays"] = sorted(n for n in arrays if "/" not in n)
    return arrays, meta


def save_sae(sae, path):
    """Write a fitted :class:`SparseAutoencoder` to ``path`` without pickle.

    The file is an ``.npz`` of numeric arrays with the constructor parameters
    and scalar fitted attributes as JSON inside. It is written to a temporary
    file in the same folder and moved into place, so a reader never sees half
    a file.

    Parameters
    ----------
    sae : SparseAutoencoder
        A fitted autoencoder. Its parameters must be JSON data (an int or None
        ``random_state``, not a ``RandomState``).
    path : str or Path
        Destination, conventionally ending in ``.npz``; written as given.

    Returns
    -------
    path : Path
        The file written.

    See Also
    --------
    load_sae : Read it back.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from sklearn_hypothesaes.sae import SparseAutoencoder, load_sae, save_sae
    >>> X = np.random.default_rng(0).normal(size=(200, 8)).astype(np.float32)
    >>> sae = SparseAutoencoder(16, 2, max_epochs=2, random_state=0).fit(X)
    >>> path = save_sae(sae, os.path.join(tempfile.mkdtemp(), "sae.npz"))
    >>> bool((load_sae(path).transform(X) == sae.transform(X)).all())
    True
    """
    if not isinstance(sae, SparseAutoencoder):
        raise TypeError(
            "The 'sae' argument of save_sae must be a SparseAutoencoder. Got "
            f"{type(sae).__name__} instead."
        )
    check_is_fitted(sae)
    from .. import __version__

    path = Path(path)
    params = {
        name: to_json_value(value, name=name)
        for name, value in sae.get_params(deep=False).items()
    }
    arrays, meta = _split_fitted(sae)
    meta.update(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        package_version=__version__,
        params=params,
    )
    blob = json.dumps(meta, sort_keys=True).encode("utf-8")
    arrays[_META] = np.frombuffer(blob, dtype=np.uint8)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _corrupt(path, reason):
    return ValueError(
        f"The file '{path}' is not a readable saved SparseAutoencoder ({reason}). "
        "It is truncated, corrupt or was not written by save_sae: delete it (a "
        "cache refits it; otherwise fit and save the model again)."
    )


def _read(path):
    """Every member of the npz, and the decoded JSON document."""
    try:
        npz = np.load(path, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise ValueError("a single .npy array, not an .npz archive")
        with npz:
            data = {name: npz[name] for name in npz.files}
        meta = json.loads(data.pop(_META).tobytes().decode("utf-8"))
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except KeyError:
        raise _corrupt(path, f"no '{_META}' member") from None
    except (
        OSError,
        ValueError,
        EOFError,
        zipfile.BadZipFile,
        UnicodeDecodeError,
    ) as exc:
        reason = str(exc) or type(exc).__name__
        if "pickle" in reason:
            # numpy's own message suggests loading it unsafely: never here.
            reason = "not an .npz archive of numeric arrays"
        raise _corrupt(path, reason) from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise _corrupt(path, f"its format is not {FORMAT!r}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"The file '{path}' holds format version "
            f"{meta.get('format_version')!r} of {FORMAT}; this version of "
            f"sklearn_hypothesaes reads version {FORMAT_VERSION}. Upgrade the "
            "package, or delete the file and fit again."
        )
    return data, meta


def _check_shapes(sae, path):
    m, d = sae.n_latents, getattr(sae, "n_features_in_", None)
    expected = {
        "encoder_weight_": (m, d),
        "encoder_bias_": (m,),
        "decoder_weight_": (m, d),
        "decoder_bias_": (d,),
        "latent_frequency_": (m,),
    }
    for name, shape in expected.items():
        got = getattr(sae, name, None)
        # A pretrained SAE (load_pretrained) never saw its training rows, so
        # it has no latent frequencies to store.
        if name == "latent_frequency_" and got is None:
            continue
        if not isinstance(got, np.ndarray) or got.shape != shape:
            found = None if got is None else getattr(got, "shape", type(got).__name__)
            raise _corrupt(path, f"'{name}' should have shape {shape}, got {found}")
    threshold = getattr(sae, "threshold_", None)
    if sae.activation == "jumprelu" and (
        not isinstance(threshold, np.ndarray) or threshold.shape != (m,)
    ):
        found = getattr(threshold, "shape", type(threshold).__name__)
        raise _corrupt(path, f"'threshold_' should have shape {(m,)}, got {found}")


def load_sae(path):
    """Read a :class:`SparseAutoencoder` written by :func:`save_sae`.

    Nothing is unpickled: arrays are read with ``allow_pickle=False`` and the
    rest is JSON. The result transforms, reconstructs and scores exactly as the
    saved model did, and :meth:`~SparseAutoencoder.partial_fit` continues its
    optimiser.

    Parameters
    ----------
    path : str or Path
        A file written by :func:`save_sae`.

    Returns
    -------
    sae : SparseAutoencoder
        The fitted autoencoder.

    Raises
    ------
    ValueError
        If the file is truncated, corrupt or not in this format; the message
        names the file and says to delete it.

    See Also
    --------
    save_sae : Write one.
    """
    path = Path(path)
    data, meta = _read(path)
    try:
        names = [*meta["arrays"], *meta["attributes"], *meta["string_arrays"]]
        bad = [n for n in [*names, *meta["array_dicts"]] if not _ATTRIBUTE.match(n)]
        if bad:
            raise _corrupt(path, f"{bad[0]!r} is not a fitted attribute name")
        sae = SparseAutoencoder(**meta["params"])
        for name in meta["arrays"]:
            setattr(sae, name, data[name])
        for name, value in meta["attributes"].items():
            setattr(sae, name, value)
        for name, values in meta["string_arrays"].items():
            setattr(sae, name, np.asarray(values, dtype=object))
        for name, keys in meta["array_dicts"].items():
            setattr(sae, name, {key: data[f"{name}/{key}"] for key in keys})
    except (KeyError, TypeError, AttributeError) as exc:
        raise _corrupt(path, f"missing or unexpected entry {exc}") from exc
    _check_shapes(sae, path)
    return sae
