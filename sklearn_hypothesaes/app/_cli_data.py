"""The main command line's data: the texts and target of an input table (or
pairs of texts), the task, and the held-out split; the built-in demo."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd

from ._cli_common import InputError, note

__all__ = ["load_demo", "prepare_data", "split_data"]


def prepare_data(frame, text_column, target_column, task, pair_column=None):
    """Texts, target and the resolved task; rows with gaps dropped (said on
    stderr); InputError for a missing column or an unusable target.

    With ``pair_column``, the texts are an (n_rows, 2) array of pairs
    (``text_column``, ``pair_column``), and the task binary or regression.

    The task is decided by :func:`~sklearn_hypothesaes.utils._validation.
    resolve_task`, as the estimators decide it: ``"binary"``,
    ``"multiclass"`` or ``"regression"``.
    """
    columns = [str(c) for c in frame.columns]
    options = [("--text-column", text_column), ("--target-column", target_column)]
    if pair_column is not None:
        options.insert(1, ("--pair-column", pair_column))
    for option, column in options:
        if column not in frame.columns:
            raise InputError(
                f"{option} {column!r} is not a column of the input; its columns "
                f"are {columns[:20]}{' ...' if len(columns) > 20 else ''}."
            )
    texts = frame[text_column]
    target = frame[target_column]
    empty = texts.isna() | (texts.astype(str).str.strip() == "")
    if pair_column is not None:
        second = frame[pair_column]
        empty |= second.isna() | (second.astype(str).str.strip() == "")
    keep = ~empty & target.notna()
    dropped = int((~keep).sum())
    if dropped:
        note(
            f"dropped {dropped} of {len(frame)} rows with an empty text or a "
            "missing target."
        )
    texts, target = texts[keep].astype(str), target[keep]
    if pair_column is not None:
        texts = pd.concat([texts, second[keep].astype(str)], axis=1)
    if len(texts) == 0:
        raise InputError("no rows left with both a text and a target value.")
    n_values = target.nunique()
    if n_values < 2:
        raise InputError(
            f"--target-column {target_column!r} has {n_values} distinct value"
            f"{'' if n_values == 1 else 's'} "
            f"({_show(target.iloc[0])}); at least 2 are needed."
            if n_values
            else f"--target-column {target_column!r} has no values."
        )
    numeric = pd.api.types.is_numeric_dtype(target) and not pd.api.types.is_bool_dtype(
        target
    )
    if task == "regression" and not numeric:
        raise InputError(
            f"--task regression needs a numeric --target-column; "
            f"{target_column!r} holds values such as {_show(target.iloc[0])}."
        )
    if numeric:
        values = target.to_numpy(dtype=np.float64)
        # Whole numbers read as floats (a column with gaps) are labels 1, 2.
        if np.all(np.mod(values, 1) == 0):
            values = values.astype(np.int64)
    else:
        values = target.to_numpy()
    task = _resolve_task(values, task, target_column)
    if pair_column is not None and task == "multiclass":
        raise InputError(
            f"--target-column {target_column!r} has {target.nunique()} classes; "
            "with --pair-column the target says whether the first text wins (two "
            "classes) or by how much (a number). Recode it, or give --task "
            "regression for a numeric margin."
        )
    if task == "regression":
        values = values.astype(np.float64)
    else:
        counts = target.value_counts()
        if counts.min() < 2:
            raise InputError(
                f"--target-column {target_column!r}: class "
                f"{_show(counts.idxmin())} has only 1 row; every class needs at "
                "least 2 for a held-out split."
            )
    return texts.to_numpy(dtype=object), values, task


def _resolve_task(y, task, target_column):
    from ..utils._validation import resolve_task

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            task = resolve_task(
                y,
                task,
                caller="sklearn-hypothesaes",
                param=f"--target-column {target_column!r}",
            )
        except ValueError as exc:
            raise InputError(_as_options(str(exc))) from None
    for warning in caught:
        note(_as_options(str(warning.message)))
    return task


def _as_options(message: str) -> str:
    """The library's "task='multiclass'" as the command line's option."""
    return re.sub(r"task='(\w+)'", r"--task \1", message)


def _show(value) -> str:
    """A value as the user wrote it: 1, not np.int64(1)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def split_data(texts, y, task, *, holdout_fraction, max_rows, seed):
    """The training and held-out rows (at most ``max_rows`` in all), stratified
    for classes."""
    from sklearn.model_selection import train_test_split

    classes = task in ("binary", "multiclass")
    stratify = y if classes else None
    if max_rows is not None and max_rows < len(texts):
        texts, _, y, _ = train_test_split(
            texts, y, train_size=max_rows, stratify=stratify, random_state=seed
        )
        stratify = y if classes else None
    try:
        return train_test_split(
            texts,
            y,
            test_size=holdout_fraction,
            stratify=stratify,
            random_state=seed,
        )
    except ValueError as exc:
        raise InputError(
            f"cannot hold out {holdout_fraction:.0%} of {len(texts)} rows: {exc}"
        ) from None


def load_demo(max_rows, seed):
    """The Rotten Tomatoes reviews with their documented split, at most
    ``max_rows`` of them (the split's shares kept)."""
    from ..datasets import load_rotten_tomatoes

    try:
        train = load_rotten_tomatoes(split="train")
        holdout = load_rotten_tomatoes(split="holdout")
    except ModuleNotFoundError as exc:
        raise InputError(str(exc)) from None
    X_train, y_train = train.texts, train.target
    X_test, y_test = holdout.texts, holdout.target
    if max_rows is not None and max_rows < len(X_train) + len(X_test):
        from sklearn.model_selection import train_test_split

        n_test = max(2, round(max_rows * len(X_test) / (len(X_train) + len(X_test))))
        X_train, _, y_train, _ = train_test_split(
            X_train,
            y_train,
            train_size=max_rows - n_test,
            stratify=y_train,
            random_state=seed,
        )
        X_test, _, y_test, _ = train_test_split(
            X_test, y_test, train_size=n_test, stratify=y_test, random_state=seed
        )
    return X_train, X_test, y_train, y_test
