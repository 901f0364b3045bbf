"""Progress messages through the standard ``logging`` module: every module logs to a child of the
``capdrift_fast`` logger (one line per message, INFO for progress, WARNING for things left out or suspect);
the CLI shows them on the terminal (:func:`console_handler`), a notebook sees them with ``logging.basicConfig``."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

ROOT = "capdrift_fast"


def get_logger(name: str) -> logging.Logger:
    """The logger of module ``name`` (a child of ``capdrift_fast``)."""
    return logging.getLogger(name if name.startswith(ROOT) else f"{ROOT}.{name}")


class _Forward(logging.Handler):
    def __init__(self, sink: Callable[[str], None]) -> None:
        super().__init__(logging.INFO)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink(record.getMessage())


@contextlib.contextmanager
def forward_to(sink: Callable[[str], None] | None) -> Iterator[None]:
    """While in the block, every INFO-or-above message of the ``capdrift_fast`` loggers is also passed to
    ``sink`` (a one-argument callable; None: nothing). The CLI prints them this way; tests collect them."""
    if sink is None:
        yield
        return
    root = logging.getLogger(ROOT)
    handler = _Forward(sink)
    old = root.level
    root.addHandler(handler)
    if root.getEffectiveLevel() > logging.INFO:
        root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(old)
