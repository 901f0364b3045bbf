"""Streaming generations to Arrow IPC shards, and reading them back safely on resume.

``ShardWriter`` buffers at most ``rows_per_shard`` records (or ``max_seconds`` worth) and then writes
them as one Arrow IPC file ``generations/shard-NNNNN.arrow`` atomically, so a crash loses at most the
unflushed buffer and never leaves a half-written shard under its final name (only a ``.shard-*.tmp``).
Leaving the writer through an exception (Ctrl-C, an engine error) still flushes the buffer.

:func:`read_shard` opens one shard and says why it is unusable (truncated, not Arrow, wrong schema),
so a resumed run can set such a file aside instead of failing or trusting it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc

from capdrift_fast.rundir import faults
from capdrift_fast.rundir.atomic import atomic_write
from capdrift_fast.records import GENERATION_SCHEMA, LATER_FIELDS

SHARD_GLOB = "shard-*.arrow"
TMP_GLOB = ".shard-*.tmp"
"""Temporary files of shards being written (see :func:`capdrift_fast.rundir.atomic.atomic_write`)."""


class ShardWriter:
    """Append generation records (dicts with the fields of ``GENERATION_SCHEMA``) to rolling shards.

    Use as a context manager; leaving it flushes the last partial shard.
    """

    def __init__(self, folder: str | Path, run_id: str, rows_per_shard: int = 1024, max_seconds: float = 30.0,
                 on_flush: Callable[[], None] | None = None) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.run_id, self.rows_per_shard, self.max_seconds = run_id, rows_per_shard, max_seconds
        existing = sorted(self.folder.glob(SHARD_GLOB))
        self._next = int(existing[-1].stem.split("-")[1]) + 1 if existing else 0
        self._buf: list[dict[str, Any]] = []
        self._since = time.monotonic()
        self.rows_written = 0
        self._seen = 0  # records handed to write() (for the fault hook)
        self.paths: list[Path] = []
        self.on_flush = on_flush
        """Called after each shard is in place (the runner records the session's progress in the manifest)."""

    def write(self, record: dict[str, Any]) -> None:
        """Buffer one record; flush when the shard is full or ``max_seconds`` have passed."""
        self._buf.append({**record, "run_id": self.run_id})
        self._seen += 1
        faults.maybe_sigterm("sigterm-after", self._seen)
        if len(self._buf) >= self.rows_per_shard or time.monotonic() - self._since >= self.max_seconds:
            self.flush()

    def flush(self) -> None:
        """Write the buffered records as the next shard (nothing if the buffer is empty)."""
        if not self._buf:
            return
        table = pa.Table.from_pylist(self._buf, schema=GENERATION_SCHEMA)
        path = self.folder / f"shard-{self._next:05d}.arrow"

        nth = len(self.paths) + 1

        def _write(tmp: Path) -> None:
            faults.maybe_enospc("enospc-shard", tmp, nth)
            with pa.OSFile(str(tmp), "wb") as sink, ipc.new_file(sink, GENERATION_SCHEMA) as writer:
                writer.write_table(table)
            if faults.armed("in-shard-write", nth):
                os.truncate(tmp, tmp.stat().st_size // 2)
                faults.kill()

        atomic_write(path, _write)
        self.paths.append(path)
        faults.maybe_kill("after-shards", nth)
        self.rows_written += table.num_rows
        self._next += 1
        self._buf.clear()
        self._since = time.monotonic()
        if self.on_flush is not None:
            self.on_flush()

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()


def read_shard(path: str | Path) -> tuple[pa.Table | None, str | None]:
    """Read one shard completely: ``(table, None)``, or ``(None, reason)`` when it is truncated, not an
    Arrow IPC file, or not in ``GENERATION_SCHEMA``."""
    try:
        with pa.OSFile(str(path), "rb") as source:
            table = ipc.open_file(source).read_all()
        table.validate(full=True)
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as exc:
        return None, f"unreadable ({exc})"
    if not table.schema.equals(GENERATION_SCHEMA):
        table = _with_later_fields(table)
        if table is None:
            return None, "not in the generation schema"
    return table, None


def _with_later_fields(table: pa.Table) -> pa.Table | None:
    """``table`` in ``GENERATION_SCHEMA`` with the :data:`LATER_FIELDS` it lacks added as nulls (a shard written
    by an earlier version: 0.1.0 had no ``output_logprobs``, format 2 no choice columns); None when it
    differs otherwise."""
    names = set(table.schema.names)
    missing = [f for f in GENERATION_SCHEMA if f.name not in names]
    if any(f.name not in LATER_FIELDS for f in missing):
        return None
    for f in missing:
        table = table.append_column(f, pa.nulls(table.num_rows, f.type))
    table = table.select(GENERATION_SCHEMA.names)
    return table if table.schema.equals(GENERATION_SCHEMA) else None


def read_generations(folder: str | Path) -> pl.LazyFrame:
    """A lazy scan of every shard in ``folder`` (rows in the schema above; empty frame if none)."""
    paths = sorted(Path(folder).glob(SHARD_GLOB))
    if not paths:
        return pl.DataFrame(schema=pl.Schema(pl.from_arrow(GENERATION_SCHEMA.empty_table()).schema)).lazy()
    full = pl.from_arrow(GENERATION_SCHEMA.empty_table()).schema
    current = [str(p) for p in paths if set(pl.read_ipc_schema(p)) >= set(full)]
    if len(current) == len(paths):
        return pl.scan_ipc(current)
    # shards of an earlier version (a resumed older run folder): their missing later fields read as nulls
    parts = [pl.scan_ipc(current)] if current else []
    for p in paths:
        if str(p) in current:
            continue
        have = pl.read_ipc_schema(p)
        parts.append(pl.scan_ipc(str(p)).with_columns(
            [pl.lit(None, dtype=dtype).alias(name) for name, dtype in full.items() if name not in have]
        ).select(list(full)))
    return pl.concat(parts, how="vertical_relaxed")
