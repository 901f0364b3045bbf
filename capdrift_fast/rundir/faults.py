"""Crash injection for the resume tests: kill this process (SIGKILL, no clean-up) at a chosen point.

Set ``CAPDRIFT_FAULT`` to one of (K counts shards written by this process, from 1):

- ``after-shards:K`` — right after the K-th shard file is in place;
- ``in-shard-write:K`` — while writing the K-th shard: its temporary file is cut to half, then kill
  (what a crash or full disk mid-write leaves behind);
- ``before-scoring`` — after every generation is on disk, before parity and scoring;
- ``enospc-shard:K`` — writing the K-th shard fails with ``OSError(ENOSPC)`` (and so does every later
  attempt at it, as on a disk that stays full);
- ``enospc-scoring`` — writing ``scores.parquet`` fails with ``OSError(ENOSPC)``;
- ``sigterm-after:K`` — the process sends itself a real SIGTERM right after the K-th generation record
  is handed to the shard writer (what ``kubectl delete``, ``scancel`` or ``docker stop`` send).

Unset (always, outside tests) it does nothing. A SIGKILL is what the out-of-memory killer and
preemption do, so the run folder afterwards is exactly what such a crash leaves.
"""

from __future__ import annotations

import errno
import os
import signal

ENV = "CAPDRIFT_FAULT"


def armed(point: str, count: int | None = None) -> bool:
    """True when ``$CAPDRIFT_FAULT`` names ``point`` (and, for counted points, ``count``)."""
    spec = os.environ.get(ENV, "")
    if not spec:
        return False
    name, _, k = spec.partition(":")
    return name == point and (count is None or (k.isdigit() and int(k) == count))


def kill() -> None:
    """SIGKILL this process (never returns)."""
    os.kill(os.getpid(), signal.SIGKILL)


def maybe_kill(point: str, count: int | None = None) -> None:
    """:func:`kill` when :func:`armed`."""
    if armed(point, count):
        kill()


def maybe_enospc(point: str, path: object, count: int | None = None) -> None:
    """Raise ``OSError(ENOSPC)`` for ``path`` when :func:`armed` (a full disk)."""
    if armed(point, count):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def maybe_sigterm(point: str, count: int | None = None) -> None:
    """Send this process SIGTERM when :func:`armed` (its handler, if any, runs right after)."""
    if armed(point, count):
        os.kill(os.getpid(), signal.SIGTERM)
