"""Per-group breakdowns of a metric that averages over units inside each item (IFEval: instruction-level
accuracy per instruction type), with a paired test per row and Benjamini–Hochberg across rows.

Input is the long frame tasks give through their optional ``breakdown`` hook (one row per request x unit x
metric, :data:`capdrift_fast.benchmarks.base.BREAKDOWN_SCHEMA`, plus ``adapter``, ``task``, ``sample_id``);
it is written to ``breakdown.parquet`` by the score stage. The table (:func:`breakdown_table`) has one row
per adapter x task x metric x group:

- ``score``: the adapter's accuracy over the group's units, ``base_score`` the base model's on the same
  units, ``delta = score - base_score``, ``n`` units;
- the McNemar 2x2 of the units (``n_both``, ``n_adapter_only``, ``n_base_only``, ``n_neither``) and its exact
  two-sided p-value (McNemar 1947; units are paired by item and position);
- ``q_value``: BH-adjusted over every adapter x group row of the same task and metric (Benjamini &
  Hochberg 1995), ``significant = q <= fdr``.

Because every unit belongs to exactly one group, ``sum_g score_g * n_g / sum_g n_g`` is the metric's
micro-average over the task (IFEval ILA, :mod:`capdrift_fast.benchmarks.ifeval`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import polars as pl

from capdrift_fast.analysis.stats import benjamini_hochberg, flip_counts, mcnemar_exact
from capdrift_fast.benchmarks.base import BREAKDOWN_SCHEMA, Task
from capdrift_fast.config import BASE_NAME

LONG_SCHEMA = {"adapter": pl.Utf8, "task": pl.Utf8, "sample_id": pl.Utf8, **BREAKDOWN_SCHEMA}
"""Columns of ``breakdown.parquet``: one row per request x unit x metric."""

TABLE_SCHEMA = {
    "adapter": pl.Utf8, "task": pl.Utf8, "metric": pl.Utf8, "group": pl.Utf8, "n": pl.UInt32,
    "score": pl.Float64, "base_score": pl.Float64, "delta": pl.Float64,
    "n_both": pl.UInt32, "n_adapter_only": pl.UInt32, "n_base_only": pl.UInt32, "n_neither": pl.UInt32,
    "p_value": pl.Float64, "q_value": pl.Float64, "significant": pl.Boolean,
}


def item_breakdown(generations: pl.DataFrame, tasks: Mapping[str, Task], samples: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """The long breakdown of every task that has a ``breakdown`` hook (``LONG_SCHEMA``; empty when none has).

    Args:
        generations: ``request_id, adapter, task, sample_id, response`` rows.
        tasks, samples: the run's tasks and their samples frames by name.
    """
    parts = []
    for name, task in tasks.items():
        hook = getattr(task, "breakdown", None)
        if not callable(hook) or name not in samples:
            continue
        sub = generations.filter(pl.col("task") == name).select("request_id", "adapter", "task", "sample_id", "response")
        if sub.height == 0:
            continue
        joined = sub.join(samples[name].drop("prompt", strict=False), on="sample_id", how="left")
        units = hook(joined)
        parts.append(sub.select("request_id", "adapter", "task", "sample_id").join(units, on="request_id"))
    if not parts:
        return pl.DataFrame(schema=LONG_SCHEMA)
    return pl.concat(parts).select(list(LONG_SCHEMA)).cast(LONG_SCHEMA)  # type: ignore[arg-type]


def breakdown_table(long: pl.DataFrame, fdr: float = 0.05) -> pl.DataFrame:
    """Per adapter x task x metric x group: accuracy, Δ vs base, McNemar table and p, BH q (``TABLE_SCHEMA``;
    base rows carry the base model's accuracy with null tests)."""
    if long.height == 0:
        return pl.DataFrame(schema=TABLE_SCHEMA)
    keys = ["task", "metric", "group"]
    base = long.filter(pl.col("adapter") == BASE_NAME).select(*keys, "sample_id", "unit", base_value="value")
    paired = long.filter(pl.col("adapter") != BASE_NAME).join(base, on=[*keys, "sample_id", "unit"], how="inner")
    flips = (
        paired.group_by("adapter", *keys, maintain_order=True)
        .agg(n=pl.len().cast(pl.UInt32), score=pl.col("value").mean(), base_score=pl.col("base_value").mean(),
             a=pl.col("value"), b=pl.col("base_value"))
    )
    counts = np.zeros((flips.height, 4), dtype=np.int64)
    p = np.ones(flips.height)
    for i, (a, b) in enumerate(zip(flips["a"].to_list(), flips["b"].to_list())):
        av, bv = np.array(a)[None, :], np.array(b)[None, :]
        counts[i] = flip_counts(av, bv)[0]
        p[i] = mcnemar_exact(av, bv)[0]
    rows = flips.drop("a", "b").with_columns(
        delta=pl.col("score") - pl.col("base_score"),
        **{c: pl.Series(counts[:, j], dtype=pl.UInt32) for j, c in enumerate(("n_both", "n_adapter_only", "n_base_only", "n_neither"))},
        p_value=pl.Series(p),
    )
    q = np.full(rows.height, np.nan)
    for _task, _metric, idx in rows.with_row_index("i").group_by("task", "metric", maintain_order=True).agg("i").iter_rows():
        q[idx] = benjamini_hochberg(p[idx])
    rows = rows.with_columns(q_value=pl.Series(q)).with_columns(significant=pl.col("q_value") <= fdr)
    base_rows = (
        long.filter(pl.col("adapter") == BASE_NAME).group_by("adapter", *keys, maintain_order=True)
        .agg(n=pl.len().cast(pl.UInt32), score=pl.col("value").mean())
        .with_columns(base_score=pl.col("score"), delta=pl.lit(0.0))
    )
    order = long.select("task", "metric").unique(maintain_order=True).with_row_index("_order")  # metrics as the task gave them
    return (pl.concat([base_rows, rows], how="diagonal_relaxed").join(order, on=["task", "metric"], how="left")
            .sort("_order", "group", maintain_order=True).select(list(TABLE_SCHEMA)).cast(TABLE_SCHEMA))  # type: ignore[arg-type]
