"""A ``Pipeline(memory=...)`` cache that stores fitted autoencoders as arrays.

``joblib.Memory`` pickles what it caches, so whoever can write to the cache
folder can run code as the user who loads it. :class:`ArrayMemory` caches only
:class:`SparseAutoencoder` fits, the expensive step, as
:func:`~sklearn_hypothesaes.sae.save_sae` files (numeric arrays and JSON), and
fits every other step as if there were no cache.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from ..sae import SparseAutoencoder, load_sae, save_sae
from ..sae._io import to_json_value
from ..utils._misc import warn_user
from ..utils._store import CacheError

# Where versions before ArrayMemory cached fits: joblib.Memory(<cache>/fitted_sae)
# over a ``_fit_sae`` function of the command line (in ``_cli``, then
# ``app/_cli``), as pickles. A Path location has no "joblib" level; a str one has.
_PICKLED_FITS = [
    Path(*root, "sklearn_hypothesaes", *module, "_fit_sae")
    for root in ((), ("joblib",))
    for module in (("_cli",), ("app", "_cli"))
]
_JOBLIB_GITIGNORE = "# Created by joblib automatically.\n*\n"
_CALL_FOLDER = re.compile(r"[0-9a-f]{32}")
_CALL_FILES = {"output.pkl", "metadata.json"}

_REMEDY = (
    "Pass another folder (--cache-dir on the command line) or run without a "
    "cache (memory=None; --no-cache)"
)


class ArrayMemory:
    """Cache fitted :class:`SparseAutoencoder` steps of a Pipeline, without pickle.

    Pass it as ``Pipeline(memory=ArrayMemory(folder))``. A pipeline step that
    is a SparseAutoencoder is fitted once per distinct (parameters, X,
    package version; not y, which its fit ignores) and stored as
    ``SparseAutoencoder-<sha256>.npz`` in ``location``; the next fit of the
    same step on the same data loads it instead of training. ``verbose`` is
    left out of the key. Other steps, and steps given fit parameters, are
    fitted normally and not cached.

    A cached file that cannot be read is reported with a warning, refitted and
    overwritten. Nothing in the folder is ever unpickled.

    Parameters
    ----------
    location : str or Path
        Cache folder, created if missing. It is checked at once: a folder that
        cannot be created or written raises :class:`CacheError`.

    Attributes
    ----------
    location : Path
        The cache folder.

    See Also
    --------
    sklearn_hypothesaes.sae.save_sae : The file format of the cached fits.
    joblib.Memory : The pickle-based cache that ``memory="folder"`` gives.

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from sklearn.pipeline import Pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sklearn_hypothesaes import SparseAutoencoder
    >>> from sklearn_hypothesaes.app._memory import ArrayMemory
    >>> X = np.random.default_rng(0).normal(size=(200, 8)).astype(np.float32)
    >>> memory = ArrayMemory(tempfile.mkdtemp())
    >>> pipe = Pipeline(
    ...     [("sae", SparseAutoencoder(16, 2, max_epochs=2, random_state=0)),
    ...      ("scale", StandardScaler())],
    ...     memory=memory,
    ... )
    >>> first = pipe.fit_transform(X)
    >>> bool((pipe.fit_transform(X) == first).all())  # loaded, not retrained
    True
    >>> [p.suffix for p in memory.location.iterdir()]
    ['.npz']
    """

    def __init__(self, location):
        self.location = Path(location).expanduser()
        self._check_location()

    def __repr__(self):
        return f"ArrayMemory(location={str(self.location)!r})"

    def _check_location(self):
        """Fail now, naming the folder, rather than after the first fit."""
        folder = self.location
        try:
            # Fitted models are derived from user data: keep them private.
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not folder.is_dir():
                raise NotADirectoryError(f"'{folder}' is not a folder")
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as exc:
            raise CacheError(
                f"The SAE cache folder '{folder}' cannot be used "
                f"({exc.strerror or exc}). {_REMEDY}."
            ) from exc

    def cache(self, func, ignore=None, **kwargs):
        """Wrap sklearn's ``_fit_transform_one``, as ``joblib.Memory.cache`` does.

        Parameters
        ----------
        func : callable
            Called as ``func(transformer, X, y, weight, ..., params=...)`` and
            returning ``(X_transformed, fitted_transformer)``.
        ignore : list of str, default=None
            Accepted for ``joblib.Memory`` compatibility; the key never
            includes arguments other than the transformer, X and y.
        **kwargs : dict
            Other ``joblib.Memory.cache`` options, ignored.

        Returns
        -------
        cached : callable
            ``func`` with SparseAutoencoder fits cached.
        """
        signature = inspect.signature(func)

        @functools.wraps(func)
        def cached(*args, **kw):
            bound = signature.bind(*args, **kw).arguments
            transformer = bound.get("transformer")
            params = bound.get("params") or {}
            if (
                not isinstance(transformer, SparseAutoencoder)
                or bound.get("weight") is not None
                or any(params.values())
            ):
                return func(*args, **kw)
            try:
                key = cache_key(transformer, bound.get("X"))
            except ValueError as exc:
                warn_user(f"This SparseAutoencoder fit is not cached: {exc}")
                return func(*args, **kw)
            path = self.location / f"SparseAutoencoder-{key}.npz"
            if self._load_into(transformer, path):
                return transformer.transform(bound["X"]), transformer
            Xt, fitted = func(*args, **kw)
            try:
                save_sae(fitted, path)
            except (OSError, ValueError) as exc:
                warn_user(
                    f"Could not write the fitted SparseAutoencoder to '{path}' "
                    f"({exc}); it will be refitted next time. {_REMEDY}."
                )
            return Xt, fitted

        return cached

    def _load_into(self, transformer, path):
        """Give ``transformer`` the fitted state saved at ``path``, if usable.

        The fitted attributes are copied onto the transformer sklearn passed
        in, so it keeps its own settings (``verbose``, ``set_output``).
        """
        if not path.exists():
            return False
        try:
            loaded = load_sae(path)
            if _params_key(loaded) != _params_key(transformer):
                raise ValueError(
                    f"The file '{path}' holds a SparseAutoencoder with other "
                    "parameters than its name says; delete it."
                )
        except ValueError as exc:
            warn_user(
                f"Ignoring the cached SparseAutoencoder '{path}': {exc} "
                "Refitting it; the file will be overwritten."
            )
            return False
        for name, value in vars(loaded).items():
            if name.endswith("_") and not name.startswith("_"):
                setattr(transformer, name, value)
        return True


def _params_key(sae):
    params = sae.get_params(deep=False)
    params.pop("verbose", None)
    return {name: to_json_value(v, name=name) for name, v in params.items()}


def _array_digest(h, name, value):
    """Feed an array's shape, dtype, column names and bytes to ``h``."""
    columns = None
    if hasattr(value, "columns") and hasattr(value, "to_numpy"):
        columns = [str(c) for c in value.columns]
        value = value.to_numpy()
    if hasattr(value, "toarray"):
        raise ValueError(f"{name} is a sparse matrix; pass a dense array.")
    array = np.ascontiguousarray(np.asarray(value))
    if array.dtype.kind == "O":
        # Labels (strings, mixed): their text is their identity.
        array = np.ascontiguousarray(array.astype(str))
    header = {"shape": array.shape, "dtype": array.dtype.str, "columns": columns}
    h.update(f"{name}:{json.dumps(header)}\n".encode())
    h.update(array.reshape(-1).view(np.uint8))


def cache_key(sae, X):
    """SHA-256 naming a fit of ``sae`` on X.

    The key covers the class, the parameters except ``verbose``, the bytes,
    shape and dtype of X (and its column names), and the package version. Not
    y: a sparse autoencoder's fit ignores it, so the same texts with another
    target reuse the fit.

    Raises
    ------
    ValueError
        If a parameter is not JSON data (a ``RandomState`` random_state) or X
        is sparse: such a fit cannot be named, so it is not cached.
    """
    from .. import __version__

    cls = type(sae)
    head = {
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "params": _params_key(sae),
        "version": __version__,
    }
    h = hashlib.sha256(json.dumps(head, sort_keys=True).encode())
    _array_digest(h, "X", X)
    return h.hexdigest()


def remove_pickled_fits(folder) -> tuple[int, int]:
    """Delete the pickled fits that earlier versions cached in ``folder``.

    Before :class:`ArrayMemory`, the command line cached fitted autoencoders
    with ``joblib.Memory(folder)`` as pickles, which no version loads any
    more. Only that layout is deleted: ``[joblib/]sklearn_hypothesaes/
    [app/]_cli/_fit_sae/`` with its ``func_code.py`` and its call folders
    (32 hex digits) holding nothing but ``output.pkl`` and ``metadata.json``;
    then the folders left empty, and joblib's own ``.gitignore``. Anything
    else, and anything behind a link, stays.

    Parameters
    ----------
    folder : str or Path
        The autoencoder cache folder (``<cache>/fitted_sae`` on the command
        line).

    Returns
    -------
    n_fits, n_bytes : int
        Call folders (fits) deleted, and the bytes their files held.
    """
    folder = Path(folder)
    n_fits = n_bytes = 0
    found = False
    for relative in _PICKLED_FITS:
        depth = len(relative.parts)
        levels = [folder.joinpath(*relative.parts[:i]) for i in range(1, depth + 1)]
        if not all(level.is_dir() and not level.is_symlink() for level in levels):
            continue
        found = True
        for entry in os.scandir(levels[-1]):
            if entry.name == "func_code.py" and entry.is_file(follow_symlinks=False):
                n_bytes += _unlink(entry.path)
            elif _CALL_FOLDER.fullmatch(entry.name) and _is_call(entry):
                for file in os.scandir(entry.path):
                    n_bytes += _unlink(file.path)
                os.rmdir(entry.path)
                n_fits += 1
        for level in reversed(levels):  # those left empty, up to ``folder``
            try:
                level.rmdir()
            except OSError:
                break
    gitignore = folder / ".gitignore"
    leftover = [folder / "sklearn_hypothesaes", folder / "joblib"]
    if found and not any(os.path.lexists(p) for p in leftover):
        with contextlib.suppress(OSError, UnicodeDecodeError):
            if not gitignore.is_symlink() and gitignore.read_text() == (
                _JOBLIB_GITIGNORE
            ):
                n_bytes += _unlink(gitignore)
    return n_fits, n_bytes


def _is_call(entry) -> bool:
    """A joblib call folder: a real folder holding only its two files."""
    if not entry.is_dir(follow_symlinks=False):
        return False
    files = list(os.scandir(entry.path))
    return bool(files) and all(
        f.name in _CALL_FILES and f.is_file(follow_symlinks=False) for f in files
    )


def _unlink(path) -> int:
    size = os.lstat(path).st_size
    os.unlink(path)
    return size
