"""Benchmarks: each module loads one benchmark's data into prompts and references and scores generations.

``build_task`` turns a task entry of the run config into a :class:`Task`.
"""

from __future__ import annotations

from pathlib import Path

from capdrift_fast.config import GSM8KTaskConfig, IFEvalTaskConfig, RunConfig, SuperNITaskConfig, TaskConfig, task_name
from capdrift_fast.benchmarks.base import MetricSpec, RowErrors, Task
from capdrift_fast.benchmarks.gsm8k import GSM8KTask
from capdrift_fast.benchmarks.ifeval import IFEvalTask
from capdrift_fast.benchmarks.superni import SuperNITask

__all__ = ["MetricSpec", "RowErrors", "Task", "build_task", "build_tasks", "GSM8KTask", "IFEvalTask", "SuperNITask"]


def build_task(cfg: TaskConfig, data_dir: str | Path, errors: RowErrors | None = None) -> Task:
    """The task for one config entry; ``cfg.data`` is resolved against ``data_dir`` unless absolute.
    ``errors`` decides what happens to malformed rows (default: raise :class:`DataError`)."""
    data_dir = Path(data_dir)
    name = task_name(cfg)
    if isinstance(cfg, IFEvalTaskConfig):
        return IFEvalTask(name, data_dir / (cfg.data or "ifeval/input_data.jsonl"), cfg.limit, errors)
    if isinstance(cfg, GSM8KTaskConfig):
        return GSM8KTask(name, data_dir / (cfg.data or "gsm8k/test.jsonl"), cfg.limit, cfg.num_fewshot, errors)
    if isinstance(cfg, SuperNITaskConfig):
        return SuperNITask(name, data_dir / cfg.data, cfg.limit, cfg.num_pos_examples, errors,  # type: ignore[operator]
                           definition=cfg.definition, examples=cfg.examples)
    raise TypeError(f"no task for {type(cfg).__name__}")


def build_tasks(cfg: RunConfig) -> dict[str, Task]:
    """Every task of ``cfg`` by name, in config order, without reading their data (what scoring tables
    and reports need: names and metrics)."""
    tasks = (build_task(tcfg, cfg.data_dir or ".") for tcfg in cfg.tasks)
    return {task.name: task for task in tasks}
