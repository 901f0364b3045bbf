"""The generate stage: hand the requests not yet on disk to an engine and stream each generation to the
run folder's Arrow shards as it finishes (crash-safe: a killed run keeps every written shard)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from capdrift_fast.config import RunConfig
from capdrift_fast.engines.base import Engine, start_engine
from capdrift_fast.errors import EngineError
from capdrift_fast.logs import get_logger
from capdrift_fast.pipeline.plan import Plan, letter_choices
from capdrift_fast.rundir.folder import RunFolder
from capdrift_fast.rundir.shards import ShardWriter

log = get_logger(__name__)


@dataclass(frozen=True)
class Generated:
    """What one session generated: ``n_generated`` requests, ``output_tokens``, ``engine_start_s`` (0 when
    the engine was handed in or none was needed), ``generation_s`` (wall seconds), and the engine's
    ``dtype`` (None when no engine ran)."""

    n_generated: int = 0
    output_tokens: int = 0
    engine_start_s: float = 0.0
    generation_s: float = 0.0
    dtype: str | None = None


def remaining_requests(plan: Plan, done: set[str]) -> pl.DataFrame:
    """The plan's requests without a generation on disk yet (``done``: their request ids)."""
    return plan.requests.filter(~pl.col("request_id").is_in(list(done)))


def generate(served: RunConfig, plan: Plan, folder: RunFolder, run_id: str, remaining: pl.DataFrame,
             engine: Engine | None = None, progress: bool = False,
             on_flush: Callable[[float, int], None] | None = None) -> Generated:
    """Generate ``remaining`` (plan rows) into ``folder``'s shards.

    Args:
        served: the config as served (adapters left out by the preflight removed).
        engine: an already started engine serving ``served``'s adapters in order (the tests share one);
            by default one is started here (:func:`~capdrift_fast.engines.base.start_engine`) and closed after,
            only when something is left to generate.
        progress: a progress bar on the terminal.
        on_flush: called after each shard is in place with the seconds generated so far and the rows written.

    Raises:
        EngineError: the engine could not start, serves other adapters, or failed (generations written so
            far stay on disk; the same command resumes).
    """
    if remaining.height == 0:
        return Generated()
    own = engine is None
    if engine is None:
        engine = start_engine(served)
    names = [a.name for a in served.adapters]
    if [a.name for a in engine.adapters] != names:
        raise EngineError(f"the engine serves adapters {[a.name for a in engine.adapters]}, the run needs "
                          f"{names} (in this order)")
    stops = {name: task.stop for name, task in plan.tasks.items()}
    out = served.output
    tokens = 0
    t0 = time.perf_counter()
    try:
        def flushed() -> None:
            if on_flush is not None:
                on_flush(time.perf_counter() - t0, writer.rows_written)

        with ShardWriter(folder.generations_dir, run_id, out.shard_rows, out.shard_seconds,
                         on_flush=flushed) as writer, \
                _progress(progress, remaining.height) as advance:
            letters = letter_choices(plan.tasks)  # only engines serving letter-choice tasks need the keyword
            for record in (engine.generate(remaining, served.sampling, stops, letters=letters) if letters
                           else engine.generate(remaining, served.sampling, stops)):
                writer.write(record)
                tokens += record["output_tokens"]
                advance()
    finally:
        gen_s = time.perf_counter() - t0
        if own:
            engine.close()
    return Generated(remaining.height, tokens, engine.startup_s if own else 0.0, gen_s, getattr(engine, "dtype", None))


class _progress:
    """A rich progress bar over ``total`` requests (no-op when disabled)."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled, self.total = enabled, total

    def __enter__(self):  # type: ignore[no-untyped-def]
        if not self.enabled:
            return lambda: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(TextColumn("generating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        self._bar.__enter__()
        task = self._bar.add_task("gen", total=self.total)
        return lambda: self._bar.advance(task)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self._bar.__exit__(*exc)
