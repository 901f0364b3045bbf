"""The drift matrix: per adapter x task x metric, the score, the base model's score and the gain.

Everything stays long (one row per adapter x task x metric) until display. A metric with a weight
column (IFEval ILA: ``n_instructions``) is a weighted mean ``sum(v * w) / sum(w)``; others are means.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from capdrift_fast.config import BASE_NAME
from capdrift_fast.tasks.base import Task

MATRIX_SCHEMA = {
    "adapter": pl.Utf8, "task": pl.Utf8, "metric": pl.Utf8, "score": pl.Float64,
    "base_score": pl.Float64, "delta": pl.Float64, "n": pl.UInt32,
}


def long_scores(scores: pl.DataFrame, tasks: Mapping[str, Task]) -> pl.DataFrame:
    """Scores in long form: adapter, task, sample_id, metric, value, weight (1.0 when unweighted)."""
    parts = []
    for name, task in tasks.items():
        sub = scores.filter(pl.col("task") == name)
        for m in task.metrics:
            parts.append(sub.select(
                "adapter", "task", "sample_id", metric=pl.lit(m.name), value=pl.col(m.name),
                weight=pl.col(m.weight) if m.weight else pl.lit(1.0),
            ))
    if not parts:
        return pl.DataFrame(schema={"adapter": pl.Utf8, "task": pl.Utf8, "sample_id": pl.Utf8,
                                    "metric": pl.Utf8, "value": pl.Float64, "weight": pl.Float64})
    return pl.concat(parts, how="vertical_relaxed").filter(pl.col("value").is_not_null())


def build_matrix(scores: pl.DataFrame, tasks: Mapping[str, Task]) -> pl.DataFrame:
    """The drift matrix (``MATRIX_SCHEMA``): one row per adapter (base included) x task x metric.

    ``score`` is the (weighted) mean over the task's samples, ``base_score`` the base model's on the
    same task and metric, ``delta = score - base_score`` (the gain vs base), ``n`` the number of samples.
    """
    agg = (
        long_scores(scores, tasks)
        .group_by("adapter", "task", "metric", maintain_order=True)
        .agg(score=(pl.col("value") * pl.col("weight")).sum() / pl.col("weight").sum(), n=pl.len().cast(pl.UInt32))
    )
    base = agg.filter(pl.col("adapter") == BASE_NAME).select("task", "metric", base_score="score")
    return (
        agg.join(base, on=["task", "metric"], how="left")
        .with_columns(delta=pl.col("score") - pl.col("base_score"))
        .select(list(MATRIX_SCHEMA))
        .cast(MATRIX_SCHEMA)  # type: ignore[arg-type]
    )


def mark_suspect(matrix: pl.DataFrame, suspect: Mapping[str, bool | None]) -> pl.DataFrame:
    """``matrix`` with a ``suspect`` (Boolean) column joined on ``adapter``: True when the parity guard
    found vLLM disagreeing with transformers+peft for that model, False when it agreed, null when the
    model was not checked (see :mod:`capdrift_fast.parity`)."""
    flags = pl.DataFrame({"adapter": list(suspect), "suspect": list(suspect.values())},
                         schema={"adapter": pl.Utf8, "suspect": pl.Boolean})
    return matrix.join(flags, on="adapter", how="left")
