"""Command lines: what killed runs and earlier versions left behind is
removed by the next run."""

import os
import signal
import subprocess
import sys
import time

import joblib
import numpy as np
import pytest

from sklearn_hypothesaes.app._cli import main
from sklearn_hypothesaes.app._cli_common import (
    check_output_folder,
    remove_stale_partials,
    write_folder,
)

posix_only = pytest.mark.skipif(
    sys.platform == "win32", reason="writers lock with flock, POSIX only"
)

# A writer that stops half-way through its output folder until it is killed.
SLOW_WRITER = """
import sys, time
from sklearn_hypothesaes.app._cli_common import write_folder

def fill(folder):
    (folder / "hypotheses.csv").write_text("half written")
    print("writing", flush=True)
    time.sleep(600)

write_folder(sys.argv[1], fill)
"""


def hidden(parent):
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


@posix_only
def test_sigkilled_writer_is_cleaned_by_the_next_run_never_while_alive(
    tmp_path, capsys
):
    out = tmp_path / "out"
    write_folder(out, lambda f: (f / "hypotheses.csv").write_text("previous"))
    writer = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITER, str(out)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout.readline() == "writing\n"
        (left,) = [n for n in hidden(tmp_path) if not n.endswith(".lock")]
        assert left.startswith(".out.partial-")
        assert hidden(tmp_path) == [left, left + ".lock"]

        # A run beside a live writer leaves its folder alone, and says nothing.
        check_output_folder(out, ["hypotheses.csv"])
        assert capsys.readouterr().err == ""
        assert hidden(tmp_path) == [left, left + ".lock"]
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=60)
    assert writer.returncode == -signal.SIGKILL
    # SIGKILL runs no clean-up: the half-written folder stays.
    assert (tmp_path / left / "hypotheses.csv").read_text() == "half written"

    # The next run into the same folder removes it, in one line, before its
    # own work (here it then stops at the missing input).
    code = main([str(tmp_path / "missing.csv"), "-o", str(out), "--no-cache"])
    assert code == 1
    note, error = capsys.readouterr().err.strip().splitlines()
    assert note == (
        f"sklearn-hypothesaes: removed {left}: left next to --output '{out}' by an "
        "earlier run that was killed while writing it."
    )
    assert "does not exist" in error
    assert hidden(tmp_path) == []
    assert (out / "hypotheses.csv").read_text() == "previous"

    # Nothing more to remove: nothing said.
    check_output_folder(out, ["hypotheses.csv"])
    assert capsys.readouterr().err == ""


@posix_only
def test_previous_output_moved_aside_is_put_back(tmp_path):
    """Killed between its two renames: the previous output is aside, the new
    one complete but not in place. The promise is the previous outputs."""
    (tmp_path / ".out.old-0123abcd").mkdir()
    (tmp_path / ".out.old-0123abcd" / "hypotheses.csv").write_text("previous")
    (tmp_path / ".out.partial-0123abcd").mkdir()
    (tmp_path / ".out.partial-0123abcd" / "hypotheses.csv").write_text("new")
    (tmp_path / ".out.partial-0123abcd.lock").touch()  # its writer is gone

    done = remove_stale_partials(tmp_path / "out")
    assert done == [".out.old-0123abcd (put back as out)", ".out.partial-0123abcd"]
    assert (tmp_path / "out" / "hypotheses.csv").read_text() == "previous"
    assert hidden(tmp_path) == []


@posix_only
def test_only_this_outputs_leftovers_are_removed(tmp_path):
    keep = [
        ".out.partial-fresh000",  # not a writer's name
        ".other.partial-0123abcd",  # another output's
        "out.partial-0123abcd",  # not hidden
        ".out.partial-0123abcdef",  # longer id
        ".out.partial-aaaaaaaa",  # no lock file, written a minute ago
    ]
    for name in keep:
        (tmp_path / name).mkdir()
    # A version that wrote no lock file, killed two hours ago.
    legacy = tmp_path / ".out.partial-bbbbbbbb"
    legacy.mkdir()
    (legacy / "report.html").write_text("<html>")
    two_hours_ago = time.time() - 7200
    os.utime(legacy, (two_hours_ago, two_hours_ago))
    minute_ago = time.time() - 60
    os.utime(tmp_path / keep[-1], (minute_ago, minute_ago))
    # A lock file alone: killed after taking its lock, before its folder.
    (tmp_path / ".out.partial-cccccccc.lock").touch()

    assert remove_stale_partials(tmp_path / "out") == [".out.partial-bbbbbbbb"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep)


@posix_only
def test_a_finished_or_failed_writer_leaves_no_lock(tmp_path):
    out = tmp_path / "out"
    write_folder(out, lambda f: (f / "a.csv").write_text("1"))

    def broken(folder):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_folder(out, broken)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert (out / "a.csv").read_text() == "1"


# ------------------------------------------------ pickles of earlier versions
def old_cache(location, module, n_calls):
    """What versions before ArrayMemory wrote: joblib.Memory(location) over
    the command line's ``_fit_sae``, in ``module``."""

    def _fit_sae(params, X, verbose):
        return {"W": np.full((4, 3), params["k"], dtype=np.float32)}

    _fit_sae.__module__, _fit_sae.__qualname__ = module, "_fit_sae"
    cached = joblib.Memory(location, verbose=0).cache(_fit_sae, ignore=["verbose"])
    for k in range(n_calls):
        cached({"k": k}, np.ones(5), 0)


def files_under(folder):
    return {
        str(p.relative_to(folder)): p.lstat().st_size
        for p in folder.rglob("*")
        if p.is_file() or p.is_symlink()
    }


def test_old_pickled_fits_are_deleted_and_nothing_else(tmp_path, capsys):
    cache = tmp_path / "cache"
    sae_cache = cache / "fitted_sae"
    old_cache(sae_cache, "sklearn_hypothesaes.app._cli", 2)  # a Path: no joblib/
    old_cache(str(sae_cache), "sklearn_hypothesaes._cli", 1)  # a str: joblib/
    old = files_under(sae_cache)
    assert len(old) == 1 + 5 + 3  # .gitignore, func_code.py and two files a fit
    # What stays: today's fits, a call folder holding something else, and a
    # layout behind a link.
    keep = {
        f"SparseAutoencoder-{'a' * 64}.npz": b"PK",
        f"sklearn_hypothesaes/app/_cli/_fit_sae/{'0' * 32}/output.pkl": b"x",
        f"sklearn_hypothesaes/app/_cli/_fit_sae/{'0' * 32}/extra.txt": b"notes",
    }
    for name, content in keep.items():
        (sae_cache / name).parent.mkdir(parents=True, exist_ok=True)
        (sae_cache / name).write_bytes(content)
    outside = tmp_path / "elsewhere"
    old_cache(outside, "sklearn_hypothesaes.app._cli", 1)
    linked = sae_cache / "joblib/sklearn_hypothesaes/app/_cli/_fit_sae"
    linked.parent.mkdir(parents=True)
    linked.symlink_to(outside / "sklearn_hypothesaes/app/_cli/_fit_sae")
    elsewhere = files_under(outside)

    argv = [str(tmp_path / "missing.csv"), "-o", str(tmp_path / "out")]
    code = main([*argv, "--cache-dir", str(cache)])
    assert code == 1
    note, error = capsys.readouterr().err.strip().splitlines()
    n_bytes = sum(size for name, size in old.items() if name != ".gitignore")
    assert note == (
        f"sklearn-hypothesaes: deleted 3 pickled autoencoder fits "
        f"({n_bytes / 1e6:.1f} MB) that an earlier version cached in "
        f"'{sae_cache}'; no version loads them (fits are cached as arrays now)."
    )
    assert "does not exist" in error
    assert files_under(sae_cache) == {
        ".gitignore": old[".gitignore"],  # the old layout is not all gone
        **{name: len(content) for name, content in keep.items()},
        "joblib/sklearn_hypothesaes/app/_cli/_fit_sae": linked.lstat().st_size,
    }
    assert files_under(outside) == elsewhere

    # Said once: the next run has nothing to delete.
    assert main([*argv, "--cache-dir", str(cache)]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_an_old_cache_alone_goes_entirely(tmp_path):
    from sklearn_hypothesaes.app._memory import remove_pickled_fits

    old_cache(tmp_path / "fitted_sae", "sklearn_hypothesaes.app._cli", 2)
    n_bytes = sum(files_under(tmp_path / "fitted_sae").values())
    assert remove_pickled_fits(tmp_path / "fitted_sae") == (2, n_bytes)
    assert list((tmp_path / "fitted_sae").iterdir()) == []
    assert remove_pickled_fits(tmp_path / "fitted_sae") == (0, 0)
