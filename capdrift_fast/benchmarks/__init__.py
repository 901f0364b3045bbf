"""Benchmarks: one plugin per benchmark (its config model, loader, prompts, metrics, label space,
lm-eval name and version, score-file reader), looked up by name in :data:`capdrift_fast.registry.benchmarks`.

``build_task`` turns a task entry of the run config into a :class:`Task`; nothing here knows a
benchmark by name.
"""

from __future__ import annotations

from pathlib import Path

from capdrift_fast import registry
from capdrift_fast.benchmarks.base import Benchmark, MetricSpec, RowErrors, Task
from capdrift_fast.config import RunConfig, TaskConfigBase

__all__ = ["Benchmark", "MetricSpec", "RowErrors", "Task", "build_task", "build_tasks"]


def build_task(cfg: TaskConfigBase, data_dir: str | Path, errors: RowErrors | None = None) -> Task:
    """The task for one config entry, built by the benchmark it names; ``cfg.data`` is resolved against
    ``data_dir`` unless absolute. ``errors`` decides what happens to malformed rows (default: raise
    :class:`~capdrift_fast.errors.DataError`).

    Raises:
        UnknownNameError: the entry names no registered benchmark.
    """
    bench = registry.benchmarks.get(cfg.benchmark)
    return bench.build(cfg, Path(data_dir), errors or RowErrors())


def build_tasks(cfg: RunConfig) -> dict[str, Task]:
    """Every task of ``cfg`` by name, in config order, without reading their data (what scoring tables
    and reports need: names and metrics)."""
    tasks = (build_task(tcfg, cfg.data_dir or ".") for tcfg in cfg.tasks)
    return {task.name: task for task in tasks}
