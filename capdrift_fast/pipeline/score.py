"""The score stage: generations -> one row per generation with its metric values (``scores.parquet``), then
the drift matrix (``matrix.parquet``, with the parity guard's ``suspect``) and drift scores (``drift.parquet``).

Each task scores its own generations (see :mod:`capdrift_fast.benchmarks`) with the metric families of
:mod:`capdrift_fast.metrics`, each checked against its reference implementation in ``tests/metrics/``:

- :mod:`.ifeval`: IFEval checkers, strict/loose, prompt/instruction level (google-research, lm-eval);
- :mod:`.numeric`: GSM8K numeric match, lm-eval's ``strict-match`` and ``flexible-extract``;
- :mod:`.classification`: SuperNI exact match, format correctness, random-guess baseline (Kung & Peng);
- :mod:`.rouge`: SuperNI's ROUGE-L (rouge-score, stemmed);
- :mod:`.external`: ``capdrift score-file``, scoring response files produced elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import polars as pl

from capdrift_fast.analysis.breakdown import item_breakdown
from capdrift_fast.analysis.drift import analyze, mark_suspect
from capdrift_fast.analysis.format_drift import format_drift
from capdrift_fast.benchmarks.base import Task
from capdrift_fast.config import DriftConfig
from capdrift_fast.errors import EngineError
from capdrift_fast.pipeline.plan import Plan
from capdrift_fast.rundir import faults
from capdrift_fast.rundir.folder import RunFolder

ID_COLUMNS = ("request_id", "adapter", "task", "sample_id")
SCORED_COLUMNS = ("choice_logprobs", "choice_tokens", "choice_greedy")
"""Record columns a task's scorer sees besides ``response`` (log-likelihood records of multiple-choice tasks)."""


def score_generations(
    generations: pl.LazyFrame | pl.DataFrame, tasks: Mapping[str, Task], samples: Mapping[str, pl.DataFrame]
) -> pl.DataFrame:
    """Score every generation with its task's scorer.

    Args:
        generations: rows of ``GENERATION_SCHEMA`` (at least the ID columns and ``response``).
        tasks, samples: the plan's tasks and their samples frames, by task name.

    Returns:
        One row per generation: ``ID_COLUMNS``, ``finish_reason``, ``output_tokens`` and the metric
        (and weight) columns of its task; metrics of other tasks are null (Float64).
    """
    gens = generations.lazy() if isinstance(generations, pl.DataFrame) else generations
    # log-likelihood records carry per-choice scores (multiple-choice tasks); shards of older folders have none
    extra = [c for c in SCORED_COLUMNS if c in gens.collect_schema().names()]
    gens = gens.select(*ID_COLUMNS, "response", "finish_reason", "output_tokens", *extra).collect()
    parts = []
    for name, task in tasks.items():
        sub = gens.filter(pl.col("task") == name)
        if sub.height == 0:
            continue
        joined = sub.join(samples[name].drop("prompt"), on="sample_id", how="left")
        metrics = task.score(joined)
        parts.append(sub.drop("response", *extra).join(metrics, on="request_id", how="left"))
    if not parts:
        return gens.drop("response", *extra).head(0)
    return pl.concat(parts, how="diagonal_relaxed").sort("task", "adapter", "sample_id")


def coverage_gaps(planned: pl.Series, generations: pl.DataFrame) -> tuple[list[str], list[str], list[str]]:
    """Request ids ``(missing, doubled, unplanned)``: planned ids with no generation, ids with more than
    one, and generated ids that were not planned (``generations`` needs a ``request_id`` column)."""
    counts = generations.group_by("request_id").len()
    missing = planned.filter(~planned.is_in(counts.get_column("request_id"))).to_list()
    doubled = counts.filter(pl.col("len") > 1).get_column("request_id").to_list()
    extra = counts.filter(~pl.col("request_id").is_in(planned)).get_column("request_id").to_list()
    return missing, doubled, extra


def check_coverage(plan: Plan, generations: pl.DataFrame) -> None:
    """Every planned request appears exactly once among the generations.

    Raises:
        EngineError: requests are missing, doubled, or unplanned (counts and examples in the message).
    """
    missing, doubled, extra = coverage_gaps(plan.requests.get_column("request_id"), generations)
    if doubled or missing or extra:
        raise EngineError(
            f"generations do not cover the plan exactly once: {len(missing)} missing (e.g. {missing[:3]}), "
            f"{len(doubled)} doubled (e.g. {doubled[:3]}), {len(extra)} unplanned (e.g. {extra[:3]})"
        )


def score_run(run_dir: Path | RunFolder, plan: Plan, generations: pl.DataFrame | None = None,
              suspect: dict[str, bool | None] | None = None, drift: DriftConfig | None = None,
              labels: dict[str, str] | None = None, guard: dict[str, str] | None = None) -> pl.DataFrame:
    """Score the shards of ``run_dir`` into ``scores.parquet``, ``matrix.parquet`` (with the parity
    guard's ``suspect`` flags and ``guard`` statuses when given), ``drift.parquet`` (statistics with ``drift``
    settings; ``labels``: adapter -> nominal label), ``breakdown.parquet`` (the units of tasks that declare a
    breakdown, e.g. IFEval's instructions; :mod:`capdrift_fast.analysis.breakdown`) and ``format.parquet``
    (:mod:`capdrift_fast.analysis.format_drift`); return the matrix.

    Raises:
        EngineError: the generations do not cover the plan exactly once.
    """
    folder = run_dir if isinstance(run_dir, RunFolder) else RunFolder(run_dir)
    if generations is None:
        generations = folder.scan_generations().collect()
    check_coverage(plan, generations)
    scores = score_generations(generations, plan.tasks, plan.samples)
    analysis = analyze(scores, plan.tasks, drift, labels)
    matrix = analysis.matrix if suspect is None else mark_suspect(analysis.matrix, suspect, guard)
    faults.maybe_enospc("enospc-scoring", folder.file(folder.SCORES))
    folder.write_parquet(folder.SCORES, scores)
    folder.write_parquet(folder.MATRIX, matrix)
    folder.write_parquet(folder.DRIFT, analysis.drift)
    folder.write_parquet(folder.BREAKDOWN, item_breakdown(generations, plan.tasks, plan.samples))
    folder.write_parquet(folder.FORMAT, format_drift(generations, plan.tasks))  # langdetect: ~6 ms a response, once
    return matrix

