"""SIGTERM handled like Ctrl-C.

Kubernetes, Slurm and Docker stop a job with SIGTERM, then SIGKILL after a grace period. By default
Python dies on SIGTERM at once, losing the generations buffered for the next shard. While a command
runs under :func:`sigterm_as_interrupt`, SIGTERM raises :class:`Terminated` (a ``KeyboardInterrupt``) in
the main thread instead, so the same clean-up as Ctrl-C runs: the shard writer flushes its buffer, the
engine is closed, and the CLI says where the work is and exits with 143 (128 + SIGTERM). A second
SIGTERM during that clean-up is ignored (SIGKILL still ends the process).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

EXIT_SIGTERM = 128 + signal.SIGTERM
EXIT_SIGINT = 128 + signal.SIGINT


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM (see the module docstring)."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one clean-up; a second SIGTERM must not cut it short
    raise Terminated(f"received signal {signum}")


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated`; the previous handler is restored after it.
    Does nothing outside the main thread (Python delivers signals only there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def exit_code(exc: KeyboardInterrupt) -> int:
    """143 for SIGTERM, 130 for Ctrl-C."""
    return EXIT_SIGTERM if isinstance(exc, Terminated) else EXIT_SIGINT
