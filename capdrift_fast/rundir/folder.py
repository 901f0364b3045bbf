"""The run-folder contract: one type owns every artefact of a run folder — its names, typed readers and
atomic writers — and the folder's format version.

``run.json`` carries ``format_version`` (:data:`FORMAT_VERSION`); folders written by capdrift_fast 0.1.0
have none and read as version 1. Both versions have the same files; version 2 only adds the key, so a
0.1.0 folder resumes and reports unchanged (``tests/test_golden.py`` runs one).

=====================  ==========================================================================
file                   content (writer)
=====================  ==========================================================================
``run.json``           run id, created_at, format_version; shard identity or ``merged_from``
``config.json``        the resolved run config
``plan.parquet``       every planned request (``PLAN_SCHEMA``)
``generations/``       ``shard-NNNNN.arrow`` (``GENERATION_SCHEMA``), streamed (:mod:`.shards`)
``preflight.json``     the adapter checks; ``data_errors.json``: malformed rows left out
``parity.json``        the parity guard's canaries and verdict per model
``scores.parquet``     one row per generation with its metric values
``matrix.parquet``     one row per model x task x metric (``MATRIX_SCHEMA`` + ``suspect``)
``drift.parquet``      one row per adapter (``DRIFT_SCHEMA``)
``breakdown.parquet``  one row per request x unit x metric of tasks with a breakdown (IFEval instructions)
``format.parquet``     output-format signals per model x task (length, truncation, empty, language, stop)
``manifest.json``      versions, hashes, sessions, timings
``quarantine/``        shards set aside on resume
report files           ``report.md``, ``report.html``, ``heatmap.png``, ``lm_eval/``
=====================  ==========================================================================
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from capdrift_fast.errors import RunFolderError
from capdrift_fast.rundir.atomic import atomic_write, atomic_write_text
from capdrift_fast.rundir.shards import read_generations

FORMAT_VERSION = 3
"""Version of the run-folder layout written by this code (``run.json: format_version``); 0.1.0 = 1; 3 adds
the log-likelihood columns of the generation shards (``choice_*``) and the plan's ``continuations`` (both
null for generations), so folders of versions 1 and 2 read, resume and merge unchanged."""


class RunFolder:
    """Every artefact of one run folder (paths absolute).

    Args:
        path: the folder (need not exist yet).
    """

    RUN = "run.json"
    CONFIG = "config.json"
    PLAN = "plan.parquet"
    GENERATIONS = "generations"
    PREFLIGHT = "preflight.json"
    DATA_ERRORS = "data_errors.json"
    PARITY = "parity.json"
    SCORES = "scores.parquet"
    MATRIX = "matrix.parquet"
    DRIFT = "drift.parquet"
    BREAKDOWN = "breakdown.parquet"
    FORMAT = "format.parquet"
    MANIFEST = "manifest.json"
    QUARANTINE = "quarantine"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser().resolve()

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def file(self, name: str) -> Path:
        """The path of artefact ``name`` (one of the class constants)."""
        return self.path / name

    @property
    def generations_dir(self) -> Path:
        """``generations/`` (Arrow shards)."""
        return self.path / self.GENERATIONS

    # --- readers --------------------------------------------------------------------------------------

    def read_json(self, name: str) -> Any:
        """The JSON artefact ``name``.

        Raises:
            RunFolderError: missing or not JSON (names the file).
        """
        path = self.file(name)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunFolderError(f"{path}: missing; is {self.path} a capdrift run folder?") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise RunFolderError(f"{path}: cannot read ({exc}); is this a finished capdrift run folder?") from None

    def read_parquet(self, name: str) -> pl.DataFrame:
        """The Parquet artefact ``name``.

        Raises:
            RunFolderError: missing or unreadable (names the file).
        """
        path = self.file(name)
        if not path.is_file():
            raise RunFolderError(f"{path}: missing; is {self.path} a finished capdrift run folder?")
        try:
            return pl.read_parquet(path)
        except Exception as exc:  # polars raises several types for a damaged file
            raise RunFolderError(f"{path}: cannot read ({exc})") from None

    def has(self, name: str) -> bool:
        """Whether artefact ``name`` exists."""
        return self.file(name).exists()

    @property
    def format_version(self) -> int:
        """``run.json``'s ``format_version`` (1 for folders written by 0.1.0, which had none).

        Raises:
            RunFolderError: ``run.json`` is missing or unreadable, or its version is newer than this code reads.
        """
        version = int(self.read_json(self.RUN).get("format_version", 1))
        if version > FORMAT_VERSION:
            raise RunFolderError(f"{self.file(self.RUN)}: run-folder format {version} is newer than this "
                                 f"capdrift_fast reads ({FORMAT_VERSION}); upgrade capdrift_fast")
        return version

    def scan_generations(self) -> pl.LazyFrame:
        """Every generation in the folder's shards (``GENERATION_SCHEMA``), lazily."""
        return read_generations(self.generations_dir)

    # --- writers (atomic: temporary file in the folder, fsync, rename) --------------------------------

    def write_json(self, name: str, obj: Any) -> Path:
        """Write ``obj`` as indented JSON to artefact ``name``; return its path."""
        return atomic_write_text(self.file(name), json.dumps(obj, indent=2, default=str))

    def write_parquet(self, name: str, frame: pl.DataFrame) -> Path:
        """Write ``frame`` to artefact ``name``; return its path."""
        path = self.file(name)
        atomic_write(path, lambda tmp: frame.write_parquet(tmp))
        return path

    def write_run_info(self, info: dict[str, Any]) -> Path:
        """Write ``run.json`` with ``info`` and this code's ``format_version``."""
        return self.write_json(self.RUN, {**info, "format_version": FORMAT_VERSION})
