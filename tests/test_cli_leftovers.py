"""Command lines: what killed runs leave behind is removed by the next run."""

import os
import signal
import subprocess
import sys
import time

import pytest

from sklearn_hypothesaes.app._cli import main
from sklearn_hypothesaes.app._cli_common import (
    check_output_folder,
    remove_stale_partials,
    write_folder,
)

pytestmark = pytest.mark.skipif(
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


def test_a_finished_or_failed_writer_leaves_no_lock(tmp_path):
    out = tmp_path / "out"
    write_folder(out, lambda f: (f / "a.csv").write_text("1"))

    def broken(folder):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_folder(out, broken)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert (out / "a.csv").read_text() == "1"
