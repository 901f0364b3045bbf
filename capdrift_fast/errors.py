"""Errors the CLI prints as one clear message, without a traceback.

Every error raised for bad user input is a :class:`CapdriftError` whose message names the file, field or
adapter at fault and says what to do. Anything else reaching the CLI is a bug in capdrift_fast.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CapdriftError(Exception):
    """Base class of errors caused by user input or the environment (not bugs)."""


class ConfigError(CapdriftError):
    """The run config is missing, unreadable or invalid; the message names the file and field."""


class DataError(CapdriftError):
    """A benchmark data file is missing or malformed; the message names the file (and line).

    Attributes:
        path: the data file, when the error is about one row of it (else None).
        line: 1-based line number of that row in a JSON-lines file, or None (whole-file errors, JSON files).
    """

    def __init__(self, message: str, path: object = None, line: int | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else str(path)
        self.line = line


class AdapterError(CapdriftError):
    """An adapter cannot be served; the message names the adapter and what to do."""


class PreflightError(AdapterError):
    """One or more adapters (or the base model) failed the preflight; ``problems`` holds one line each."""

    def __init__(self, problems: "list[object]") -> None:
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(
            f"preflight found {len(problems)} problem(s); no engine was started:\n{lines}\n"
            "Fix them, or set `on_bad_adapter: skip` in the config to run without the bad adapters."
        )


class EngineError(CapdriftError):
    """The inference engine could not start or refused the requests."""


class UnknownNameError(ConfigError, KeyError):
    """A name (task, metric, ...) is not registered; the message suggests the closest known names."""

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        super().__init__(f"unknown {kind} {name!r}.{hint} Available: {', '.join(known)}")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class RunFolderError(CapdriftError):
    """A run folder cannot be read, resumed, merged or reported as asked (another config, foreign or
    doubled shards, missing or unreadable files); the message names the folder and file."""


RunDirError = RunFolderError
"""The former name of :class:`RunFolderError` (0.1.0 had two classes for one concept)."""


class PluginError(CapdriftError):
    """A benchmark or metric plugin could not be registered or loaded (names the entry point)."""
