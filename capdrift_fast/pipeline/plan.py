"""The request plan: (base + every adapter) x every sample of every task.

Each request has a stable id ``"{adapter}/{task}/{sample_id}"`` (unique within a run, the same in every
run of the same config) and the integer LoRA id of its adapter (0 = base, adapters 1..N in config
order). The plan is a Polars frame so that 100k-request plans stay columnar.

A request of a multiple-choice task (``output_type == "multiple_choice"``: samples with ``choices``, a
``target_delimiter``) is a *log-likelihood* request: its ``continuations`` are the delimiter + each choice
(lm-eval's ``construct_requests``), scored against ``prompt`` as context; ``max_tokens`` is 1 (vLLM's minimum).
``continuations`` is null for generation requests. A request of a letter-choice task
(``output_type == "multiple_choice_letters"``) is a generation of ``max_tokens`` 1, restricted by the engine to
the task's ``letters`` (:func:`letter_choices`).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from capdrift_fast.config import BASE_NAME, RunConfig
from capdrift_fast.errors import DataError
from capdrift_fast.benchmarks import RowErrors, Task, build_task
from capdrift_fast.benchmarks.base import is_multiple_choice, output_type
from capdrift_fast.engines.order import REQUEST_ORDERS, order_requests  # noqa: F401  (their home before 0.2)

PLAN_SCHEMA = {
    "request_id": pl.Utf8,
    "adapter": pl.Utf8,
    "lora_id": pl.Int32,
    "task": pl.Utf8,
    "sample_id": pl.Utf8,
    "prompt": pl.Utf8,
    "max_tokens": pl.Int32,
    "continuations": pl.List(pl.Utf8),
}


def letter_choices(tasks: dict[str, Task]) -> dict[str, tuple[str, ...]]:
    """Task name -> answer letters of every letter-choice task (``output_type == "multiple_choice_letters"``;
    its ``letters`` are set once its samples are read), for the engine's ``allowed_token_ids`` and the parity
    guard's restricted reference."""
    return {name: tuple(getattr(t, "letters", ()))
            for name, t in tasks.items() if output_type(t) == "multiple_choice_letters"}


def with_plan_columns(requests: pl.DataFrame) -> pl.DataFrame:
    """``requests`` in ``PLAN_SCHEMA`` order, with ``continuations`` added as nulls when absent (the plan of a
    run folder of format 1 or 2)."""
    if "continuations" not in requests.columns:
        requests = requests.with_columns(continuations=pl.lit(None, dtype=pl.List(pl.Utf8)))
    return requests.select(list(PLAN_SCHEMA))


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
        if is_multiple_choice(task):
            delim = str(getattr(task, "target_delimiter", " "))
            conts = pl.col("choices").list.eval(pl.lit(delim) + pl.element())
            max_tokens = 1
        elif output_type(task) == "multiple_choice_letters":  # one letter
            conts, max_tokens = pl.lit(None, dtype=pl.List(pl.Utf8)), 1
        else:
            conts, max_tokens = pl.lit(None, dtype=pl.List(pl.Utf8)), cfg.task_max_tokens(tcfg)
        per_task.append(
            frame.select("sample_id", "prompt", continuations=conts).with_columns(
                task=pl.lit(task.name), max_tokens=pl.lit(max_tokens, dtype=pl.Int32)
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
