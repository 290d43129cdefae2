"""What both command lines share: the main one (``_cli``) and the toolkit's
(``_toolkit_cli``).

Argument types, the help formatter, reading an input table, the checks of the
output and cache folders made before any work, the all-or-nothing writing of
the output folder, plain JSON values, and the way a run's errors are reported
(one line, no traceback, unless ``--debug``).
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import json
import os
import re
import shutil
import signal
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

_READERS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
}
_COMPRESSION = {".gz", ".bz2", ".xz", ".zst", ".zip"}
#: The autoencoder cache, in the cache folder (an ArrayMemory's location).
SAE_CACHE = "fitted_sae"
_LOCK = ".lock"  # suffix of a writer's lock file, next to its staging folder

try:  # POSIX; elsewhere writers take no lock and nothing stale is removed
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None


class InputError(Exception):
    """A problem with the user's input, reported as one line, no traceback."""


def note(message: str):
    """One line on stderr, prefixed with the program's name."""
    print(f"sklearn-hypothesaes: {message}", file=sys.stderr)


# ------------------------------------------------------------------ options
class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Examples kept as written; every option's help ends with its default."""

    def _get_help_string(self, action):
        help = action.help or ""
        takes_value = action.nargs != 0
        if takes_value and action.option_strings and "default" not in help:
            help += " (default: %(default)s)"
        return help


def encoding(value: str) -> str:
    """An encoding name, as Python's codecs spell it."""
    try:
        return codecs.lookup(value).name
    except LookupError:
        raise argparse.ArgumentTypeError(
            f"unknown encoding {value!r}; e.g. utf-8, latin-1, cp1252 or utf-16"
        ) from None


def fraction(value: str) -> float:
    """A number strictly between 0 and 1."""
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not 0 < number < 1:
        raise argparse.ArgumentTypeError(
            f"must be a number strictly between 0 and 1; got {value!r}"
        )
    return number


def json_object(value: str) -> dict:
    """A JSON object (``{...}``), parsed."""
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(
            f'expected a JSON object such as \'{{"reasoning_effort": "low"}}\'; '
            f"got {value!r}, which is not JSON ({exc.msg})"
        ) from None
    if not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError(
            f"expected a JSON object ({{...}}); got {value!r}, a "
            f"{type(parsed).__name__}"
        )
    return parsed


def positive_int(value: str) -> int:
    """An integer >= 1."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {value!r}")
    return number


def max_tokens(value: str) -> int | None:
    """A positive integer, or ``none`` to send no ``max_tokens`` at all (for
    servers that reject it, such as OpenAI's reasoning models)."""
    if value.strip().lower() == "none":
        return None
    try:
        return positive_int(value)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"must be a positive integer, or none to send no max_tokens; got {value!r}"
        ) from None


def llm_mode(args) -> bool:
    """Whether a run of either command line calls an LLM: an endpoint or the
    model that describes latents is given (or ``$OPENAI_BASE_URL`` set), and
    neither ``--offline`` nor the offline ``--demo``. ``--annotator-model``
    alone does not count (the main parser refuses it)."""
    if args.offline or getattr(args, "demo", False):
        return False
    models = ("model", "interpreter_model")
    return bool(
        args.base_url
        or os.environ.get("OPENAI_BASE_URL")
        or any(getattr(args, name, None) for name in models)
    )


# -------------------------------------------------------------------- input
def read_table(path, encoding="utf-8") -> pd.DataFrame:
    """Read a CSV, TSV, Parquet, JSON or JSONL file, or raise InputError.

    ``encoding`` applies to the text formats (Parquet stores its own).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"input file '{path}' does not exist.")
    if path.is_dir():
        raise InputError(f"input '{path}' is a folder, not a file.")
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSION:
        suffixes = suffixes[:-1]
    kind = _READERS.get(suffixes[-1] if suffixes else "")
    if kind is None:
        raise InputError(
            f"cannot tell the format of '{path}' from its extension; expected "
            f"one of {', '.join(sorted(_READERS))} (CSV optionally compressed)."
        )
    if path.stat().st_size == 0:
        raise InputError(f"input file '{path}' is empty.")
    try:
        if kind in ("csv", "tsv"):
            frame = pd.read_csv(
                path, sep="\t" if kind == "tsv" else ",", encoding=encoding
            )
        elif kind == "parquet":
            from ..utils._misc import import_optional

            import_optional("pyarrow", "Reading Parquet files")
            frame = pd.read_parquet(path)
        elif kind == "jsonl":
            frame = pd.read_json(path, lines=True, encoding=encoding)
        else:
            try:
                frame = pd.read_json(path, encoding=encoding)
            except ValueError:
                frame = pd.read_json(path, lines=True, encoding=encoding)
    except pd.errors.EmptyDataError:
        raise InputError(f"input file '{path}' is empty.") from None
    except ImportError as exc:
        raise InputError(str(exc)) from None
    except UnicodeDecodeError as exc:
        raise InputError(
            f"cannot read '{path}' as {kind.upper()}: it is not {encoding} text "
            f"({exc.reason}). Give its encoding with "
            "--encoding, e.g. --encoding latin-1 or --encoding cp1252."
        ) from None
    except PermissionError as exc:
        raise InputError(f"cannot read '{path}': {exc.strerror}.") from None
    except Exception as exc:  # pandas and pyarrow raise many parser errors
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise InputError(
            f"cannot read '{path}' as {kind.upper()}: {type(exc).__name__}"
            + (f": {reason}" if reason else "")
        ) from None
    if len(frame) == 0:
        raise InputError(f"input file '{path}' has no rows.")
    return frame


# ---------------------------------------------------------------- preflight
def check_output_folder(output, names: Iterable[str], *, example=None) -> Path:
    """Refuse, before any work, an --output that the run could not replace.

    It must be a folder (or not exist yet) holding only files in ``names``
    (outputs of earlier runs, or their ``.partial`` leftovers), must not be
    the current folder or one above it, and a sibling must be creatable
    next to it; nothing is created here but the parent folders. What runs
    killed while writing it left next to it is removed, and said in one line
    (:func:`remove_stale_partials`). ``example`` is a folder name suggested
    when the current folder is given.
    """
    output = Path(output)
    where = Path(os.path.abspath(output))
    if where == Path.cwd() or where in Path.cwd().parents:
        raise InputError(
            f"--output '{output}' is the current folder or holds it; each run "
            "replaces the output folder, so give a folder of its own"
            + (f", such as {example}." if example else ".")
        )
    if output.exists() and not output.is_dir():
        raise InputError(
            f"--output '{output}' is a file; give a folder (new, or written by "
            "an earlier run)."
        )
    if output.is_dir():
        ours = set(names)
        others = sorted(
            p.name
            for p in output.iterdir()
            if p.name not in ours and p.name.removesuffix(".partial") not in ours
        )
        if others:
            shown = ", ".join(others[:5]) + (" ..." if len(others) > 5 else "")
            raise InputError(
                f"--output '{output}' holds files that are not outputs of "
                f"sklearn-hypothesaes ({shown}); each run replaces the folder's "
                "content, so give a new folder or one written by an earlier run."
            )
    parent = where.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        probe = parent / f".{where.name}.check-{uuid.uuid4().hex[:8]}"
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        raise InputError(
            f"--output '{output}' cannot be written: cannot create a folder in "
            f"'{parent}' ({exc.strerror or exc}). Give a writable folder."
        ) from None
    done = remove_stale_partials(output)
    if done:
        note(
            f"removed {', '.join(done)}: left next to --output '{output}' by an "
            "earlier run that was killed while writing it."
        )
    return output


def check_cache(args) -> Path | None:
    """The cache folder, checked before any work: creatable and writable, and
    its SQLite files openable and writable. None with --no-cache."""
    from ..utils._misc import resolve_cache_dir
    from ..utils._store import CacheError, SQLiteStore

    if args.no_cache:
        return None
    where = "--cache-dir" if args.cache_dir is not None else "the cache folder"
    try:
        folder = resolve_cache_dir(args.cache_dir)
        probe = folder / f".check-{uuid.uuid4().hex[:8]}"
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        target = args.cache_dir or exc.filename or "the default cache folder"
        raise InputError(
            f"{where} '{target}' cannot be created or written "
            f"({exc.strerror or exc}). Give a writable --cache-dir, or run with "
            "--no-cache."
        ) from None
    for path in sorted(folder.glob("*.sqlite")):
        store = None
        try:
            store = SQLiteStore(path)
            store.check_writable()
        except CacheError as exc:
            raise InputError(str(exc)) from None
        finally:
            if store is not None:
                store.close()
    remove_old_fits(folder / SAE_CACHE)
    return folder


def remove_old_fits(folder: Path):
    """Delete the pickled autoencoder fits of earlier versions in ``folder``
    (:func:`~sklearn_hypothesaes.app._memory.remove_pickled_fits`), saying so
    in one line; if they cannot be deleted, say how to."""
    from ._memory import remove_pickled_fits

    try:
        n_fits, n_bytes = remove_pickled_fits(folder)
    except OSError as exc:
        old = [folder / "sklearn_hypothesaes", folder / "joblib"]
        command = " ".join(f"'{p}'" for p in old if os.path.lexists(p))
        note(
            f"could not delete the pickled autoencoder fits that an earlier "
            f"version cached in '{folder}' ({exc.strerror or exc}); no version "
            f"loads them: delete them with rm -r {command}"
        )
        return
    if n_fits:
        note(
            f"deleted {n_fits} pickled autoencoder fit{'s' * (n_fits > 1)} "
            f"({n_bytes / 1e6:.1f} MB) that an earlier version cached in "
            f"'{folder}'; no version loads them (fits are cached as arrays now)."
        )


# ------------------------------------------------------------------- output
def jsonable(value):
    """Plain JSON values: numpy scalars as numbers, NaN, infinity and pandas'
    missing values as None, anything else as its text."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray | pd.Index):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if value is pd.NA or value is pd.NaT:
        return None
    return str(value)


def write_folder(output, fill: Callable[[Path], None]) -> Path:
    """Write a run's outputs all at once: ``fill(folder)`` writes them into a
    new hidden sibling of ``output``, which then replaces it. A failure or
    Ctrl-C on the way leaves ``output`` as it was and no sibling behind.

    The sibling, ``.NAME.partial-ID``, comes with a lock file,
    ``.NAME.partial-ID.lock``, locked while this process writes: a run killed
    by SIGKILL leaves both behind with the lock released, and the next
    :func:`check_output_folder` of that output removes them
    (:func:`remove_stale_partials`) while never touching a live writer's.
    """
    where = Path(os.path.abspath(output))
    where.parent.mkdir(parents=True, exist_ok=True)
    with _writer_lock(where) as staging:
        try:
            staging.mkdir()
            fill(staging)
            replace_folder(staging, where)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return Path(output)


@contextmanager
def _writer_lock(where: Path):
    """A fresh staging path for ``where``, with its lock file held throughout.

    The lock file is unlinked before it is released, once the staging folder
    and the old output are gone: a lock file that can be locked belongs to a
    writer that is gone (see :func:`remove_stale_partials`).
    """
    while True:
        tag = uuid.uuid4().hex[:8]
        staging = where.parent / f".{where.name}.partial-{tag}"
        lock_path = staging.with_name(staging.name + _LOCK)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        if fcntl is None:  # no flock (Windows): no clean-up of others either
            break
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            held = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            held = False
        if held:
            break
        # A clean-up took the lock file between its creation and the lock,
        # judged it stale and removed it: draw another name.
        os.close(fd)
    try:
        yield staging
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock_path.unlink()
        os.close(fd)


def remove_stale_partials(output) -> list[str]:
    """Remove what killed writers of ``output`` left next to it.

    A writer killed by SIGKILL (or a power cut) leaves its staging folder
    ``.NAME.partial-ID``, possibly the previous output moved aside as
    ``.NAME.old-ID``, and its lock file ``.NAME.partial-ID.lock``. Those whose
    lock can be taken are removed: a live writer holds its lock, so two runs
    never remove each other's folders. If a writer died between moving the
    previous output aside and moving the new one in, the previous output is
    put back. Folders of versions that wrote no lock file are removed once
    untouched for an hour (such a writer works for seconds).

    Returns
    -------
    done : list of str
        What was done, one item per folder: its name, with " (put back as
        NAME)" for a previous output put back. Lock files are not listed.
    """
    if fcntl is None:
        return []
    where = Path(os.path.abspath(output))
    pattern = re.compile(
        rf"\.{re.escape(where.name)}\.(?:partial|old)-([0-9a-f]{{8}})"
        rf"(?:{re.escape(_LOCK)})?"
    )
    try:
        names = [p.name for p in where.parent.iterdir()]
    except OSError:
        return []
    tags = sorted({m.group(1) for n in names if (m := pattern.fullmatch(n))})
    stale, held, busy, done = [], [], False, []
    try:
        for tag in tags:
            staging = where.parent / f".{where.name}.partial-{tag}"
            lock_path = staging.with_name(staging.name + _LOCK)
            old = where.parent / f".{where.name}.old-{tag}"
            try:
                fd = os.open(lock_path, os.O_RDWR)
            except FileNotFoundError:
                if _untouched(staging, old, seconds=3600):
                    stale.append((staging, old, None))
                continue
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # held: its writer is alive
                os.close(fd)
                busy = True
                continue
            held.append(fd)
            stale.append((staging, old, lock_path))
        for staging, old, lock_path in stale:
            # With a live writer about, the missing output may be its doing.
            if old.is_dir() and not busy and not os.path.lexists(where):
                old.rename(where)
                done.append(f"{old.name} (put back as {where.name})")
            for folder in (staging, old):
                if folder.is_dir() and not folder.is_symlink():
                    shutil.rmtree(folder, ignore_errors=True)
                    if not os.path.lexists(folder):
                        done.append(folder.name)
            if lock_path is not None:
                with contextlib.suppress(FileNotFoundError):
                    lock_path.unlink()
    finally:
        for fd in held:
            os.close(fd)
    return done


def _untouched(*paths: Path, seconds: float) -> bool:
    """Whether none of ``paths`` that exist was modified in the last ``seconds``."""
    now = time.time()
    for path in paths:
        try:
            if now - path.lstat().st_mtime < seconds:
                return False
        except FileNotFoundError:
            pass
    return True


def replace_folder(new: Path, output: Path):
    """Put ``new`` in the place of ``output``: the old folder is moved aside,
    then deleted. Ctrl-C is ignored during the two renames; the run's work
    is done by then."""
    old = new.with_name(new.name.replace(".partial-", ".old-"))
    with sigint_ignored():
        if output.exists():
            output.rename(old)
        try:
            new.rename(output)
        except BaseException:
            if old.exists():
                old.rename(output)
            raise
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def sigint_ignored():
    """Ctrl-C is ignored inside (in the main thread; signals go nowhere else)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous or signal.default_int_handler)


# ------------------------------------------------------------------- errors
def run_reporting_errors(run: Callable, args) -> int:
    """``run(args)``, with its failures said in one line on stderr.

    Returns the exit status: ``run``'s on success, 1 on bad input or a
    failure (a traceback only with ``--debug``), 130 when interrupted.
    """
    from ..llm import LLMRequestError
    from ..utils._store import CacheError

    try:
        return run(args)
    except (InputError, CacheError) as exc:
        note(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        note(
            "interrupted; the previous outputs are as they were. "
            + (
                "Nothing was cached (--no-cache)."
                if args.no_cache
                else "Embeddings and LLM answers computed so far are cached; "
                "run the same command again to resume."
            )
        )
        return 130
    except LLMRequestError as exc:
        # The endpoint's own words and the fix say it all: no traceback hint.
        if args.debug:
            traceback.print_exc()
        note(f"error: {request_error_message(exc)}")
        return 1
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        note(
            f"error: {type(exc).__name__}: {_with_options(str(exc))}"
            + ("" if args.debug else " (run with --debug for the traceback)")
        )
        return 1


def request_error_message(exc) -> str:
    """An :class:`~sklearn_hypothesaes.llm.LLMRequestError` in the command
    line's terms: its fix names options, not ``LLMClient``'s parameters."""
    from ..llm import LLMUnusableAnswersError

    if isinstance(exc, LLMUnusableAnswersError):
        # The fix, written as this command line's options.
        text = " ".join(str(exc).split())
        text = text.replace(
            "extra_body={'chat_template_kwargs': {'enable_thinking': False}}",
            '--extra-body \'{"chat_template_kwargs": {"enable_thinking": false}}\'',
        )
        text = text.replace("raise max_tokens", "raise --max-tokens").replace(
            "(cache_dir=False)", "(--no-cache)"
        )
        return text[0].lower() + text[1:]

    server = " ".join(exc.server_message.split())
    if "max_tokens" in server.lower():
        fix = (
            "The server rejects 'max_tokens' (OpenAI's reasoning models take "
            "'max_completion_tokens'): give --max-tokens none --extra-body "
            "'{\"max_completion_tokens\": 4096}'."
        )
    elif "temperature" in server.lower():
        fix = (
            "The model rejects the temperature 0 that the command line sends; "
            "use the Python API with LLMClient(temperature=None), or another model."
        )
    else:
        fix = _with_options(exc.fix)
    return (
        f"the LLM endpoint rejected {exc.count} requests in a row with HTTP "
        f"{exc.status_code}: {server!r}. The run was stopped rather than left to "
        f"end with every answer missing. {fix}"
    )


def _with_options(message: str) -> str:
    """The library names LLMClient's parameters; say which options set them."""
    message = " ".join(message.split())
    if "extra_body" in message or "max_tokens" in message:
        message += (
            " On the command line, --max-tokens sets max_tokens and "
            "--extra-body sets extra_body."
        )
    return message


def add_request_options(group) -> None:
    """LLM request options both command lines take: the key's variable,
    ``--max-tokens`` and ``--extra-body``."""
    group.add_argument(
        "--api-key-env",
        default="OPENAI_API_KEY",
        help="name of the environment variable holding the API key",
    )
    group.add_argument(
        "--max-tokens",
        type=max_tokens,
        default=512,
        metavar="N",
        help="most tokens per LLM answer; a thinking model needs room for its "
        "thinking, or thinking turned off with --extra-body; none sends no "
        "max_tokens (for servers that reject it, such as OpenAI's reasoning "
        "models: give max_completion_tokens in --extra-body)",
    )
    group.add_argument(
        "--extra-body",
        type=json_object,
        default=None,
        metavar="JSON",
        help="extra request parameters merged into every LLM request, e.g. "
        '\'{"chat_template_kwargs": {"enable_thinking": false}}\' to turn '
        "thinking off on vLLM or llama.cpp server (default: none)",
    )


def add_output_options(parser, default_output: str) -> None:
    """The "output" group both command lines take: the folder, the cache,
    progress bars and tracebacks."""
    out = parser.add_argument_group("output")
    out.add_argument(
        "--output",
        "-o",
        default=default_output,
        help="output folder: new, or written by an earlier run (each run "
        "replaces its content)",
    )
    out.add_argument(
        "--cache-dir",
        default=None,
        help="cache folder for embeddings, LLM answers and fitted autoencoders "
        "(default: $SKLEARN_HYPOTHESAES_CACHE_DIR or the user cache folder)",
    )
    out.add_argument(
        "--no-cache",
        action="store_true",
        help="cache nothing on disk: embeddings, LLM answers and the "
        "autoencoder are computed anew",
    )
    out.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    out.add_argument(
        "--debug", action="store_true", help="show full tracebacks on errors"
    )
