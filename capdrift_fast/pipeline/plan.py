"""The request plan: (base + every adapter) x every sample of every task.

Each request has a stable id ``"{adapter}/{task}/{sample_id}"`` (unique within a run, the same in every
run of the same config) and the integer LoRA id of its adapter (0 = base, adapters 1..N in config
order). The plan is a Polars frame so that 100k-request plans stay columnar.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from capdrift_fast.config import BASE_NAME, RunConfig
from capdrift_fast.errors import DataError
from capdrift_fast.benchmarks import RowErrors, Task, build_task
from capdrift_fast.engines.order import REQUEST_ORDERS, order_requests  # noqa: F401  (their home before 0.2)

PLAN_SCHEMA = {
    "request_id": pl.Utf8,
    "adapter": pl.Utf8,
    "lora_id": pl.Int32,
    "task": pl.Utf8,
    "sample_id": pl.Utf8,
    "prompt": pl.Utf8,
    "max_tokens": pl.Int32,
}


@dataclass(frozen=True)
class Plan:
    """The tasks of a run and its requests.

    Attributes:
        tasks: name -> task, in config order.
        samples: name -> samples frame of that task (see :mod:`capdrift_fast.benchmarks.base`).
        requests: one row per request, columns ``PLAN_SCHEMA``; base requests first, then per adapter.
        skipped_rows: malformed data rows left out (``data_errors: skip``), each naming file and line.
        warnings: usable but suspicious rows (empty prompts, prompts repeated within a task), file:line.
    """

    tasks: dict[str, Task]
    samples: dict[str, pl.DataFrame]
    requests: pl.DataFrame
    skipped_rows: tuple[DataError, ...] = ()
    warnings: tuple[DataError, ...] = ()

    @property
    def adapters(self) -> list[str]:
        """``base`` then the adapter names, in plan order."""
        return self.requests.get_column("adapter").unique(maintain_order=True).to_list()


def build_plan(cfg: RunConfig, data_errors: str | None = None) -> Plan:
    """Load every task's samples and cross them with base + adapters.

    ``data_errors`` (default ``cfg.data_errors``): ``fail`` raises on the first malformed row; ``skip``
    leaves malformed rows out and lists them in ``Plan.skipped_rows``.

    Raises:
        DataError: a task's data file is missing or unusable, or (``fail``) a row is malformed.
    """
    tasks: dict[str, Task] = {}
    samples: dict[str, pl.DataFrame] = {}
    per_task = []
    errors = RowErrors(data_errors or cfg.data_errors)  # type: ignore[arg-type]
    for tcfg in cfg.tasks:
        task = build_task(tcfg, cfg.data_dir or ".", errors)
        frame = task.samples()
        tasks[task.name], samples[task.name] = task, frame
        per_task.append(
            frame.select("sample_id", "prompt").with_columns(
                task=pl.lit(task.name), max_tokens=pl.lit(cfg.task_max_tokens(tcfg), dtype=pl.Int32)
            )
        )
    items = pl.concat(per_task)
    models = pl.DataFrame(
        {"adapter": [BASE_NAME] + [a.name for a in cfg.adapters], "lora_id": list(range(len(cfg.adapters) + 1))},
        schema={"adapter": pl.Utf8, "lora_id": pl.Int32},
    )
    requests = models.join(items, how="cross").with_columns(
        request_id=pl.concat_str("adapter", "task", "sample_id", separator="/")
    )
    return Plan(tasks=tasks, samples=samples, requests=requests.select(list(PLAN_SCHEMA)),
                skipped_rows=tuple(errors.skipped), warnings=tuple(errors.warnings))
