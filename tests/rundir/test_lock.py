"""The run-folder lock (capdrift_fast.rundir.lock): a second process is refused at once with the holder's
pid, host and start time; the lock dies with its process (SIGKILL leaves no stale lock); it is
re-entrant within a process and per folder (distinct shard folders do not block each other)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from capdrift_fast.errors import RunDirError
from capdrift_fast.rundir.lock import LOCK_FILE, run_folder_lock

HOLD = """
import sys, time
from capdrift_fast.rundir.lock import run_folder_lock
with run_folder_lock(sys.argv[1], "capdrift run"):
    print("held", flush=True)
    time.sleep(120)
"""


def hold_in_subprocess(folder: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_second_process_is_refused_naming_the_holder_and_sigkill_frees_the_lock(tmp_path):
    folder = tmp_path / "run"
    proc = hold_in_subprocess(folder)
    try:
        t0 = time.monotonic()
        with pytest.raises(RunDirError) as err:
            with run_folder_lock(folder):
                pass
        assert time.monotonic() - t0 < 2  # refused at once, no waiting
        msg = str(err.value)
        assert f"pid {proc.pid}" in msg and socket.gethostname() in msg and "`capdrift run`" in msg
        assert "started 20" in msg and "UTC" in msg
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with run_folder_lock(folder):  # the kernel released the killed holder's lock: no stale lock
        assert (folder / LOCK_FILE).is_file()


def test_reentrant_in_one_process_and_per_folder(tmp_path):
    a, b = tmp_path / "shard-0", tmp_path / "shard-1"
    with run_folder_lock(a):
        with run_folder_lock(a):  # run -> its own report: same process, same folder
            pass
        with run_folder_lock(a):  # still held after the nested release
            pass
        proc = hold_in_subprocess(b)  # another shard folder: unaffected
        proc.kill()
        proc.wait()
        other = subprocess.run([sys.executable, "-c", HOLD.replace("time.sleep(120)", "pass"), str(a)],
                               capture_output=True, text=True)
        assert other.returncode != 0 and "in use by another capdrift process" in other.stderr
        assert f"pid {os.getpid()}" in other.stderr
    other = subprocess.run([sys.executable, "-c", HOLD.replace("time.sleep(120)", "pass"), str(a)],
                           capture_output=True, text=True)
    assert other.returncode == 0, other.stderr  # released on leaving the outer block


def test_out_is_a_file_or_unwritable(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(RunDirError, match="is a file, not a folder"):
        with run_folder_lock(f):
            pass
    with pytest.raises(RunDirError, match="a parent of this path is a file"):
        with run_folder_lock(f / "sub"):
            pass
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(RunDirError, match="cannot write in the folder"):
            with run_folder_lock(ro):
                pass
        with pytest.raises(RunDirError, match="permission denied"):
            with run_folder_lock(ro / "new"):
                pass
    finally:
        ro.chmod(0o755)
