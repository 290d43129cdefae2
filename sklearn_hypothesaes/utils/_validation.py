"""One validation layer: texts and targets are checked here, the same way, for
every estimator, public function and the command line."""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.utils.multiclass import type_of_target

from ._misc import warn_user

#: The task vocabulary of the whole package.
TASKS = ("binary", "multiclass", "regression")
#: Integer targets with more distinct values than this are a regression under
#: task="auto" (ratings 1-5 are classes; share or vote counts are not).
MAX_AUTO_CLASSES = 10


def check_texts(
    texts,
    *,
    caller,
    param="texts",
    n_rows=None,
    hint=None,
    empty="allow",
    empty_hint=None,
):
    """A list of str, or a clear error naming ``caller`` and ``param``.

    The one check of texts in the package. None, a single str, non-str
    elements (numbers, bytes) and missing values (None, NaN) are rejected with
    the same messages everywhere: a missing text must never become the word
    "nan". A one-column DataFrame or 2-D array is read as its column.

    Parameters
    ----------
    texts : sequence of str
        The texts (list, tuple, numpy array, pandas Series, one-column
        DataFrame).
    caller : str
        What is checking, e.g. ``"HypothesisGenerator.fit"``.
    param : str, default="texts"
        The parameter's name in the message.
    n_rows : int or None, default=None
        The number of texts expected (rows of X), when known.
    hint : str or None, default=None
        Appended to the message when ``texts`` is None (how to pass them).
    empty : {"allow", "error", "fill"}, default="allow"
        Empty or blank strings: kept; an error (together with missing
        values); or, with missing values, replaced by ``""``.
    empty_hint : str or None, default=None
        Appended to the message about empty texts.

    Returns
    -------
    texts : list of str

    Examples
    --------
    >>> check_texts(["a", "b"], caller="f")
    ['a', 'b']
    >>> check_texts(["a", float("nan")], caller="f")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: The 'texts' parameter of f has missing values (None or NaN) at ...
    """
    where = f"The {param!r} parameter of {caller}"
    if texts is None:
        raise ValueError(
            f"{where} is required (the raw texts, one per row); got None."
            + (f" {hint}" if hint else "")
        )
    if isinstance(texts, str | bytes):
        raise TypeError(
            f"{where} must be a sequence of str; got a single str. Wrap it in a list."
        )
    shape = getattr(texts, "shape", None)
    if shape is not None and len(shape) == 2:
        if shape[1] != 1:
            raise ValueError(
                f"{where} must be one column of texts; got {shape[1]} columns. "
                "Select the text column."
            )
        texts = texts.iloc[:, 0] if hasattr(texts, "iloc") else np.asarray(texts)[:, 0]
    elif shape is not None and len(shape) > 2:
        raise ValueError(f"{where} must be one column of texts; got shape {shape}.")
    if hasattr(texts, "tolist") and not isinstance(texts, list):
        values = texts.tolist()
    elif hasattr(texts, "to_list"):
        values = texts.to_list()
    else:
        try:
            values = list(texts)
        except TypeError:
            raise TypeError(
                f"{where} must be a sequence of str; got {type(texts).__name__}."
            ) from None
    missing = [i for i, t in enumerate(values) if _is_missing(t)]
    bad = [
        i for i, t in enumerate(values) if not isinstance(t, str) and i not in missing
    ]
    if bad:
        kinds = sorted({type(values[i]).__name__ for i in bad})
        raise TypeError(
            f"{where} must hold only str; positions {_positions(bad)} hold {kinds}."
        )
    if empty == "fill":
        values = ["" if _is_missing(t) else t for t in values]
    elif empty == "error":
        blank = [i for i, t in enumerate(values) if i in missing or not t.strip()]
        if blank:
            raise ValueError(
                f"{where} has empty or missing texts at positions "
                f"{_positions(blank)}." + (f" {empty_hint}" if empty_hint else "")
            )
    elif missing:
        raise ValueError(
            f"{where} has missing values (None or NaN) at positions "
            f"{_positions(missing)}. Drop those rows or fill them first, e.g. with "
            "df['text'].fillna('')."
        )
    if n_rows is not None and len(values) != n_rows:
        raise ValueError(
            f"{where} must hold one text per row of X ({n_rows}); got {len(values)}."
        )
    return values


def _positions(indices, show=10) -> str:
    shown = ", ".join(map(str, indices[:show]))
    more = f", ... ({len(indices)} in all)" if len(indices) > show else ""
    return f"[{shown}{more}]"


def resolve_task(y, task="auto", *, caller, param="y"):
    """The task of a target: ``"binary"``, ``"multiclass"`` or ``"regression"``.

    ``task="auto"`` reads y: strings, booleans and two-valued targets are
    classes; integers with at most ``MAX_AUTO_CLASSES`` distinct values are
    classes, with more a regression (said in a warning, since counts such as
    shares or votes are not categories); non-integer numbers are a regression.
    An explicit task is checked against y.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        The target.
    task : {"auto", "binary", "multiclass", "regression"}, default="auto"
        The requested task.
    caller : str
        What is checking, for messages.
    param : str, default="y"
        The target's name in messages.

    Returns
    -------
    task : str

    Examples
    --------
    >>> resolve_task([0, 1, 1], caller="f")
    'binary'
    >>> resolve_task(["a", "b", "c"], caller="f")
    'multiclass'
    >>> resolve_task([0.5, 1.2, 3.0], caller="f")
    'regression'
    """
    if task not in ("auto", *TASKS):
        raise ValueError(
            f"The 'task' parameter of {caller} must be one of "
            f"{['auto', *TASKS]}. Got {task!r} instead."
        )
    y = np.asarray(y)
    if y.ndim != 1:
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.ravel()
        else:
            raise ValueError(
                f"Unknown label type: {caller} needs a one-dimensional {param}; "
                f"got shape {y.shape}. Pass one target column."
            )
    if y.dtype.kind == "O" and all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) for v in y.tolist()
    ):
        y = y.astype(np.float64)  # numbers in an object column (pandas)
    numeric = y.dtype.kind in "iuf"
    distinct = np.unique(y[~_isnan(y)]) if numeric else _unique_objects(y)
    n_values = len(distinct)
    if task == "regression":
        if not numeric:
            raise ValueError(
                f"Unknown label type: {caller} with task='regression' needs a "
                f"numeric {param}; got "
                f"values such as {_plain(distinct[0])!r}. Use task='binary' or "
                "'multiclass' for categories."
            )
        return "regression"
    if task in ("binary", "multiclass") and numeric and y.dtype.kind == "f":
        if not np.all(np.mod(distinct, 1) == 0):
            raise ValueError(
                f"Unknown label type: {caller} with task={task!r} got a continuous "
                f"{param} (non-integer numbers). Use task='regression', or pass "
                "class labels."
            )
    if n_values < 2:
        raise ValueError(
            f"{caller} needs at least 2 distinct values of {param}; got "
            + (f"one class ({_plain(distinct[0])!r})." if n_values else "none.")
        )
    if task == "binary":
        if n_values != 2:
            raise ValueError(
                f"Only binary classification is supported with task='binary': "
                f"{caller} got {n_values} classes in {param}. Use "
                "task='multiclass' or 'regression'."
            )
        return "binary"
    if task == "multiclass":
        return "binary" if n_values == 2 else "multiclass"
    # task == "auto"
    kind = type_of_target(y, input_name=param) if numeric else "multiclass"
    if kind not in ("binary", "multiclass", "continuous"):
        raise ValueError(
            f"Unknown label type: {caller} got a {kind!r} {param}. Pass a "
            "one-dimensional target of class labels or numbers."
        )
    if y.dtype.kind == "b" or n_values == 2:
        return "binary"
    if kind == "continuous":
        return "regression"
    if numeric and n_values > MAX_AUTO_CLASSES:
        warn_user(
            f"{caller}: {param} holds integers with {n_values} distinct values, "
            f"more than {MAX_AUTO_CLASSES}; it is treated as a regression target "
            "(counts and scores are not categories). Pass task='multiclass' to "
            "treat them as classes."
        )
        return "regression"
    return "multiclass"


def _plain(value):
    """1, not np.int64(1), in messages."""
    return value.item() if isinstance(value, np.generic) else value


def _isnan(y):
    return np.isnan(y) if y.dtype.kind == "f" else np.zeros(y.shape, dtype=bool)


def _unique_objects(y):
    values = [v for v in y.tolist() if not _is_missing(v)]
    try:
        return np.unique(np.asarray(values))
    except TypeError:  # mixed types such as str and int
        return np.asarray(list(dict.fromkeys(values)), dtype=object)


def _is_missing(v):
    return (
        v is None
        or (isinstance(v, numbers.Real) and v != v)
        or type(v).__name__ in {"NAType", "NaTType"}  # pandas' missing values
    )
