"""One writer per run folder: an exclusive OS-level lock on ``RUN_DIR/.capdrift.lock``.

``capdrift run`` (and its resume), ``capdrift merge`` and a report written into a run folder hold the
lock for as long as they write there. It is an ``fcntl.flock`` on an open file, so the kernel releases
it when the process ends in any way (exit, Ctrl-C, SIGTERM, SIGKILL, out-of-memory kill): a killed run
never leaves a stale lock behind, and its resume takes the lock at once. A second process asking for a
held folder is refused immediately, and the message names the holder (pid, host, command, start time),
which the holder writes into the lock file after taking it.

Array jobs are unaffected: each shard has its own ``--out`` folder, hence its own lock.

The lock is re-entrant within one process (``run`` writes its report while holding the run's lock;
a data-parallel run merges its replicas into the folder it holds), and per folder: the replicas of a
data-parallel run lock their own folders under ``RUN_DIR/replicas/``.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from capdrift_fast.errors import RunDirError

LOCK_FILE = ".capdrift.lock"

_held: dict[str, list[Any]] = {}
"""Resolved folder -> [open lock file, depth] for the locks this process holds."""


def holder_info(path: Path) -> dict[str, Any]:
    """What the lock file at ``path`` says about its holder (empty when unreadable)."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def describe_holder(info: dict[str, Any]) -> str:
    """``pid 123 on host h, `capdrift run`, started 2026-01-01 12:00:00 UTC`` (parts that are known)."""
    parts = []
    if "pid" in info:
        parts.append(f"pid {info['pid']}" + (f" on host {info['host']}" if info.get("host") else ""))
    if info.get("command"):
        parts.append(f"`{info['command']}`")
    if isinstance(info.get("started_at"), (int, float)):
        parts.append("started " + time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(info["started_at"])))
    return ", ".join(parts) or "holder unknown"


@contextmanager
def run_folder_lock(folder: str | os.PathLike[str], command: str = "capdrift") -> Iterator[Path]:
    """Hold the exclusive lock of run folder ``folder`` (created if missing) for the ``with`` block.

    Raises:
        RunDirError: another process holds it (the message names that process), or the folder cannot be
            created or written (a file in the way, no permission).
    """
    from capdrift_fast.rundir.paths import ensure_dir, os_reason

    folder = ensure_dir(Path(folder).expanduser(), "--out")
    key = str(folder)
    if key in _held:
        _held[key][1] += 1
        try:
            yield folder
        finally:
            _held[key][1] -= 1
        return
    path = folder / LOCK_FILE
    try:
        fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - kept open while the lock is held
    except OSError as exc:
        raise RunDirError(f"--out {folder}: cannot write in the folder ({os_reason(exc)})") from None
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        who = describe_holder(holder_info(path))
        fh.close()
        raise RunDirError(f"{folder} is in use by another capdrift process ({who}); wait for it to finish, "
                          "or use another --out folder (each shard of an array job needs its own)") from None
    except OSError as exc:
        fh.close()
        raise RunDirError(f"{folder}: cannot lock the run folder ({exc.strerror}); use a folder on a local or "
                          "lock-capable file system") from None
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                             "argv": sys.argv[1:4], "started_at": time.time()}))
        fh.flush()
    except OSError:
        pass  # the lock holds without the description; a refused process then says "holder unknown"
    _held[key] = [fh, 1]
    try:
        yield folder
    finally:
        _held[key][1] -= 1
        if _held[key][1] == 0:
            del _held[key]
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            fh.close()
