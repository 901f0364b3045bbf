"""The drift matrix and the drift score.

Matrix (``matrix.parquet``, ``MATRIX_SCHEMA``): one row per model (base included) x task x metric —
the score, the base model's score, ``delta = score - base_score``, a paired bootstrap confidence
interval of ``delta``, a paired test of ``delta = 0`` and its Benjamini–Hochberg q-value over the
whole matrix. Everything stays long until display. A metric with a weight column (IFEval ILA:
``n_instructions``) is the weighted mean ``sum(v * w) / sum(w)``; others are means. The statistics are
in :mod:`capdrift_fast.analysis.stats`.

Drift score (``drift.parquet``, ``DRIFT_SCHEMA``), per adapter, in the units of the metrics
(README, "Drift score"): each task enters with one metric (``DriftConfig.metrics`` / the
benchmark default); with ``on`` the tasks its nominal label targets and ``off`` the others,

    on_gain  = mean_{t in on}  delta_t
    off_gain = mean_{t in off} delta_t
    drift    = off_gain - on_gain

Its interval comes from the same item bootstrap (tasks resampled independently, replicate by replicate).
"""

from __future__ import annotations

import fnmatch
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from capdrift_fast.config import BASE_NAME, DriftConfig
from capdrift_fast.errors import ConfigError
from capdrift_fast.analysis.stats import (
    benjamini_hochberg,
    bootstrap_replicates,
    flip_counts,
    mcnemar_exact,
    mde_mcnemar,
    mde_paired,
    percentile_ci,
    sign_flip_test,
)
from capdrift_fast.benchmarks.base import Task

MATRIX_SCHEMA = {
    "adapter": pl.Utf8, "task": pl.Utf8, "metric": pl.Utf8, "score": pl.Float64,
    "base_score": pl.Float64, "delta": pl.Float64, "n": pl.UInt32,
    "ci_low": pl.Float64, "ci_high": pl.Float64, "test": pl.Utf8, "p_value": pl.Float64,
    "q_value": pl.Float64, "significant": pl.Boolean, "on_target": pl.Boolean, "drift_metric": pl.Boolean,
    "n_both": pl.UInt32, "n_adapter_only": pl.UInt32, "n_base_only": pl.UInt32, "n_neither": pl.UInt32,
    "mde": pl.Float64,
}
"""Columns of ``matrix.parquet``. ``ci_low``/``ci_high``: paired bootstrap interval of ``delta`` at
``DriftConfig.confidence`` (expanded percentile, :func:`capdrift_fast.analysis.stats.percentile_ci`); ``test``:
``mcnemar`` (binary metrics) or ``sign_flip`` (others), null for the base rows; ``p_value``/``q_value``: two-sided p and its BH-adjusted value over every adapter cell;
``significant``: ``q_value <= DriftConfig.fdr``; ``on_target``: the task is a target of the adapter's
nominal label; ``drift_metric``: this metric stands for its task in the drift score.
``n_both``/``n_adapter_only``/``n_base_only``/``n_neither``: the paired 2x2 table behind the McNemar test
(items both models got right, only the adapter, only the base, neither; :func:`~capdrift_fast.analysis.stats.flip_counts`),
null for graded metrics and base rows; ``mde``: the minimum detectable effect, the smallest ``|delta|`` this
cell's ``n`` detects with 80% power at two-sided level ``1 - confidence`` (binary: Connor 1987 at the observed
discordant share, :func:`~capdrift_fast.analysis.stats.mde_mcnemar`; graded: :func:`~capdrift_fast.analysis.stats.mde_paired`),
so a non-significant cell reads as "no effect" (mde small) or "too few items" (mde large)."""

DRIFT_SCHEMA = {
    "adapter": pl.Utf8, "label": pl.Utf8, "drift_metrics": pl.List(pl.Utf8),
    "on_target_tasks": pl.List(pl.Utf8), "off_target_tasks": pl.List(pl.Utf8),
    "on_gain": pl.Float64, "on_low": pl.Float64, "on_high": pl.Float64,
    "off_gain": pl.Float64, "off_low": pl.Float64, "off_high": pl.Float64,
    "drift": pl.Float64, "drift_low": pl.Float64, "drift_high": pl.Float64,
    "off_abs_change": pl.Float64, "n_on_target": pl.UInt32, "n_on_improved": pl.UInt32,
    "label_status": pl.Utf8, "off_moved": pl.List(pl.Utf8),
}
"""Columns of ``drift.parquet`` (one row per adapter). ``drift_metrics``: ``task:metric`` used per
task; gains and drift with their bootstrap interval (``*_low``/``*_high``); ``off_abs_change``: mean
``|delta|`` over off-target tasks; ``n_on_improved``: on-target tasks whose drift metric rose
significantly (BH); ``label_status``: ``supported`` (all on-target tasks improved), ``partly
supported``, ``not supported`` (none did), or ``no on-target task``; ``off_moved``: off-target cells
(any metric) that moved significantly, as ``task/metric``."""

LABEL_STATUSES = ("supported", "partly supported", "not supported", "no on-target task")


@dataclass(frozen=True)
class DriftAnalysis:
    """The analysed matrix of one run.

    Attributes:
        matrix: ``MATRIX_SCHEMA`` rows.
        drift: ``DRIFT_SCHEMA`` rows, one per adapter.
        replicates: ``(adapter, task, metric)`` -> ``(n_boot,)`` bootstrap replicates of ``delta``.
    """

    matrix: pl.DataFrame
    drift: pl.DataFrame
    replicates: dict[tuple[str, str, str], np.ndarray] = field(repr=False)


def long_scores(scores: pl.DataFrame, tasks: Mapping[str, Task]) -> pl.DataFrame:
    """Scores in long form: adapter, task, sample_id, metric, value, weight (1.0 when unweighted)."""
    parts = []
    for name, task in tasks.items():
        sub = scores.filter(pl.col("task") == name)
        for m in task.metrics:
            parts.append(sub.select(
                "adapter", "task", "sample_id", metric=pl.lit(m.name), value=pl.col(m.name).cast(pl.Float64),
                weight=pl.col(m.weight).cast(pl.Float64) if m.weight else pl.lit(1.0),
            ))
    if not parts:
        return pl.DataFrame(schema={"adapter": pl.Utf8, "task": pl.Utf8, "sample_id": pl.Utf8,
                                    "metric": pl.Utf8, "value": pl.Float64, "weight": pl.Float64})
    return pl.concat(parts, how="vertical_relaxed").filter(pl.col("value").is_not_null())


def task_matches(task: Task, patterns: tuple[str, ...] | list[str]) -> bool:
    """True when a glob pattern matches the task's name or its benchmark."""
    return any(fnmatch.fnmatchcase(task.name, p) or fnmatch.fnmatchcase(task.benchmark, p) for p in patterns)


def drift_metric(task: Task, drift: DriftConfig) -> str:
    """The metric that stands for ``task`` in the drift score: the first ``drift.metrics`` pattern
    matching the task, else the task's metric marked ``drift`` (:class:`MetricSpec`), else its first
    primary (or first) metric.

    Raises:
        ConfigError: the configured metric is not one of the task's metrics (names field and choices).
    """
    names = [m.name for m in task.metrics]
    for pattern, metric in drift.metrics.items():
        if fnmatch.fnmatchcase(task.name, pattern) or fnmatch.fnmatchcase(task.benchmark, pattern):
            if metric not in names:
                raise ConfigError(
                    f"field drift.metrics.{pattern}: task {task.name!r} has no metric {metric!r}; "
                    f"choose one of {', '.join(names)}"
                )
            return metric
    marked = [m.name for m in task.metrics if m.drift]
    if marked:
        return marked[0]
    primary = [m.name for m in task.metrics if m.primary]
    return (primary or names)[0]


def check_drift_config(drift: DriftConfig, tasks: Mapping[str, Task]) -> None:
    """Validate ``drift`` against the run's tasks before any engine starts.

    Raises:
        ConfigError: a ``drift.metrics`` entry names a metric its tasks lack.
    """
    for task in tasks.values():
        drift_metric(task, drift)


def on_target(task: Task, label: str | None, drift: DriftConfig) -> bool:
    """Whether ``task`` is an on-target task of the nominal ``label`` (``drift.targets``)."""
    return bool(label) and task_matches(task, drift.targets.get(label, ()))  # type: ignore[arg-type]


def _rng(seed: int, task: str) -> np.random.Generator:
    # one stream per task, stable under task reordering
    return np.random.default_rng([seed, zlib.crc32(task.encode())])


def _task_stats(paired: pl.DataFrame, task: Task, drift: DriftConfig) -> tuple[pl.DataFrame, np.ndarray]:
    """Bootstrap CI and paired test of every adapter x metric cell of one task.

    ``paired``: adapter rows of this task with ``value``, ``base_value``, ``weight`` per item.
    Returns the stats frame (adapter, metric, ci_low, ci_high, test, p_value) and ``(n_boot, K)`` replicates.
    """
    items = paired.select("sample_id").unique().sort("sample_id").with_row_index("item")
    cells = paired.select("adapter", "metric").unique(maintain_order=True).with_row_index("cell")
    idx = paired.join(items, on="sample_id").join(cells, on=["adapter", "metric"])
    k, n = cells.height, items.height
    ci, ii = idx["cell"].to_numpy(), idx["item"].to_numpy()
    adapter, base, weight = np.zeros((k, n)), np.zeros((k, n)), np.zeros((k, n))
    adapter[ci, ii] = idx["value"].to_numpy()
    base[ci, ii] = idx["base_value"].to_numpy()
    weight[ci, ii] = idx["weight"].to_numpy()
    rng = _rng(drift.seed, task.name)
    reps = bootstrap_replicates(adapter - base, weight, drift.n_boot, rng)
    present = weight > 0
    low, high = percentile_ci(reps, drift.confidence, n=present.sum(axis=1))

    specs = {m.name: m for m in task.metrics}
    is01 = np.all(~present | ((adapter == 0) | (adapter == 1)) & ((base == 0) | (base == 1)), axis=1)
    binary = np.array([bool(specs[m].binary and not specs[m].weight) for m in cells["metric"]]) & is01
    p = np.empty(k)
    if binary.any():
        p[binary] = mcnemar_exact(adapter[binary], base[binary], present[binary])
    if (~binary).any():
        p[~binary] = sign_flip_test((adapter - base)[~binary], weight[~binary], drift.n_perm, rng)
    counts = flip_counts(adapter, base, present)
    alpha = 1.0 - drift.confidence
    mde = mde_paired(adapter - base, weight, alpha)
    if binary.any():
        mde[binary] = mde_mcnemar(present[binary].sum(axis=1), counts[binary, 1] + counts[binary, 2], alpha)
    flip = {name: pl.Series(np.where(binary, counts[:, j], 0), dtype=pl.UInt32)
            for j, name in enumerate(("n_both", "n_adapter_only", "n_base_only", "n_neither"))}
    stats = cells.select("adapter", "metric").with_columns(
        task=pl.lit(task.name), ci_low=pl.Series(low), ci_high=pl.Series(high),
        test=pl.Series(np.where(binary, "mcnemar", "sign_flip")), p_value=pl.Series(p),
        **{name: pl.when(pl.Series(binary)).then(col) for name, col in flip.items()}, mde=pl.Series(mde),
    )
    return stats, reps


def analyze(
    scores: pl.DataFrame,
    tasks: Mapping[str, Task],
    drift: DriftConfig | None = None,
    labels: Mapping[str, str] | None = None,
) -> DriftAnalysis:
    """Build the drift matrix with its statistics, and the per-adapter drift scores.

    Args:
        scores: ``scores.parquet`` rows (adapter, task, sample_id and the tasks' metric columns).
        tasks: the run's tasks by name (their ``MetricSpec`` give weights and binary-ness).
        drift: analysis settings (default ``DriftConfig()``).
        labels: adapter name -> nominal label (for on-target tasks); missing -> no on-target task.

    Returns:
        :class:`DriftAnalysis` (matrix, drift scores, bootstrap replicates).

    Raises:
        ConfigError: ``drift.metrics`` names a metric a task lacks.
    """
    drift = drift or DriftConfig()
    labels = labels or {}
    long = long_scores(scores, tasks)
    agg = (
        long.group_by("adapter", "task", "metric", maintain_order=True)
        .agg(score=(pl.col("value") * pl.col("weight")).sum() / pl.col("weight").sum(), n=pl.len().cast(pl.UInt32))
    )
    base = agg.filter(pl.col("adapter") == BASE_NAME).select("task", "metric", base_score="score")
    matrix = agg.join(base, on=["task", "metric"], how="left").with_columns(delta=pl.col("score") - pl.col("base_score"))

    base_items = long.filter(pl.col("adapter") == BASE_NAME).select("task", "sample_id", "metric", base_value="value")
    paired = long.filter(pl.col("adapter") != BASE_NAME).join(base_items, on=["task", "sample_id", "metric"], how="inner")
    stat_parts, replicates = [], {}
    for name, task in tasks.items():
        sub = paired.filter(pl.col("task") == name)
        if sub.height == 0:
            continue
        stats, reps = _task_stats(sub, task, drift)
        stat_parts.append(stats)
        for j, (a, m) in enumerate(stats.select("adapter", "metric").iter_rows()):
            replicates[(a, name, m)] = reps[:, j]
    stat_schema = {"adapter": pl.Utf8, "metric": pl.Utf8, "task": pl.Utf8, "ci_low": pl.Float64,
                   "ci_high": pl.Float64, "test": pl.Utf8, "p_value": pl.Float64,
                   **{c: pl.UInt32 for c in ("n_both", "n_adapter_only", "n_base_only", "n_neither")}, "mde": pl.Float64}
    stats = pl.concat(stat_parts) if stat_parts else pl.DataFrame(schema=stat_schema)
    matrix = matrix.join(stats, on=["adapter", "task", "metric"], how="left", maintain_order="left")
    q = benjamini_hochberg(matrix["p_value"].fill_null(np.nan).to_numpy())
    is_base = pl.col("adapter") == BASE_NAME
    flags = [
        (a, t, on_target(tasks[t], labels.get(a), drift) if a != BASE_NAME and t in tasks else None,
         t in tasks and m == drift_metric(tasks[t], drift))
        for a, t, m in matrix.select("adapter", "task", "metric").iter_rows()
    ]
    matrix = (
        matrix.with_columns(
            q_value=pl.Series(q).fill_nan(None),
            on_target=pl.Series([f[2] for f in flags], dtype=pl.Boolean),
            drift_metric=pl.Series([f[3] for f in flags], dtype=pl.Boolean),
            ci_low=pl.when(is_base).then(0.0).otherwise(pl.col("ci_low")),
            ci_high=pl.when(is_base).then(0.0).otherwise(pl.col("ci_high")),
        )
        .with_columns(significant=pl.when(is_base).then(None).otherwise(pl.col("q_value") <= drift.fdr))
        .select(list(MATRIX_SCHEMA))
        .cast(MATRIX_SCHEMA)  # type: ignore[arg-type]
    )
    return DriftAnalysis(matrix, drift_scores(matrix, replicates, tasks, drift, labels), replicates)


def build_matrix(
    scores: pl.DataFrame,
    tasks: Mapping[str, Task],
    drift: DriftConfig | None = None,
    labels: Mapping[str, str] | None = None,
) -> pl.DataFrame:
    """The drift matrix (``MATRIX_SCHEMA``): one row per model (base included) x task x metric.

    ``score`` is the (weighted) mean over the task's samples, ``base_score`` the base model's on the
    same task and metric, ``delta = score - base_score``, ``n`` the number of samples; the interval,
    test and q-value are described at ``MATRIX_SCHEMA``. See :func:`analyze` for the arguments.
    """
    return analyze(scores, tasks, drift, labels).matrix


def drift_scores(
    matrix: pl.DataFrame,
    replicates: Mapping[tuple[str, str, str], np.ndarray],
    tasks: Mapping[str, Task],
    drift: DriftConfig,
    labels: Mapping[str, str],
) -> pl.DataFrame:
    """One ``DRIFT_SCHEMA`` row per adapter: on-/off-target gain, drift = off_gain - on_gain, their
    bootstrap intervals (mean of the tasks' replicate deltas, replicate by replicate, then percentile
    interval) and the label verdict. See the module docstring and README, "Drift score"."""
    cells = {(r["adapter"], r["task"], r["metric"]): r for r in matrix.iter_rows(named=True)}
    metric_of = {name: drift_metric(task, drift) for name, task in tasks.items()}
    rows = []
    adapters = [a for a in matrix["adapter"].unique(maintain_order=True).to_list() if a != BASE_NAME]
    for a in adapters:
        label = labels.get(a, "")
        present = [t for t in tasks if (a, t, metric_of[t]) in cells]
        on = [t for t in present if on_target(tasks[t], label, drift)]
        off = [t for t in present if t not in on]

        def gain(ts: list[str]) -> tuple[float | None, np.ndarray | None]:
            if not ts:
                return None, None
            value = float(np.mean([cells[(a, t, metric_of[t])]["delta"] for t in ts]))
            return value, np.mean([replicates[(a, t, metric_of[t])] for t in ts], axis=0)

        on_gain, on_reps = gain(on)
        off_gain, off_reps = gain(off)
        d = None if on_gain is None or off_gain is None else off_gain - on_gain
        d_reps = None if on_reps is None or off_reps is None else off_reps - on_reps

        def interval(reps: np.ndarray | None, ts: list[str]) -> tuple[float | None, float | None]:
            if reps is None:
                return None, None
            n_min = min(int(cells[(a, t, metric_of[t])]["n"]) for t in ts)  # expansion of the smallest task
            lo, hi = percentile_ci(reps[:, None], drift.confidence, n=n_min)
            return float(lo[0]), float(hi[0])

        improved = sum(1 for t in on if cells[(a, t, metric_of[t])]["significant"] and cells[(a, t, metric_of[t])]["delta"] > 0)
        status = ("no on-target task" if not on else "supported" if improved == len(on)
                  else "partly supported" if improved else "not supported")
        moved = [
            f"{r['task']}/{r['metric']}" for r in matrix.filter(
                (pl.col("adapter") == a) & pl.col("task").is_in(off) & pl.col("significant").fill_null(False)
            ).iter_rows(named=True)
        ]
        rows.append({
            "adapter": a, "label": label, "drift_metrics": [f"{t}:{metric_of[t]}" for t in present],
            "on_target_tasks": on, "off_target_tasks": off,
            "on_gain": on_gain, **dict(zip(("on_low", "on_high"), interval(on_reps, on))),
            "off_gain": off_gain, **dict(zip(("off_low", "off_high"), interval(off_reps, off))),
            "drift": d, **dict(zip(("drift_low", "drift_high"), interval(d_reps, on + off))),
            "off_abs_change": float(np.mean([abs(cells[(a, t, metric_of[t])]["delta"]) for t in off])) if off else None,
            "n_on_target": len(on), "n_on_improved": improved, "label_status": status, "off_moved": moved,
        })
    return pl.DataFrame(rows, schema=DRIFT_SCHEMA)


def mark_suspect(matrix: pl.DataFrame, suspect: Mapping[str, bool | None],
                 guard: Mapping[str, str] | None = None) -> pl.DataFrame:
    """``matrix`` with a ``suspect`` (Boolean) column joined on ``adapter``: True when the parity guard
    found vLLM disagreeing with transformers+peft for that model, False when it agreed, null when the
    model was not checked (see :mod:`capdrift_fast.pipeline.parity`); and, when ``guard`` is given, a ``guard``
    (Utf8) column with the model's :data:`capdrift_fast.pipeline.parity.GUARD_STATUSES` entry (``not run`` when
    the guard could not run: null ``suspect`` then means unknown, not clean)."""
    flags = pl.DataFrame({"adapter": list(suspect), "suspect": list(suspect.values())},
                         schema={"adapter": pl.Utf8, "suspect": pl.Boolean})
    if guard is not None:
        flags = flags.with_columns(guard=pl.Series([guard.get(m, "not checked") for m in suspect], dtype=pl.Utf8))
    return matrix.join(flags, on="adapter", how="left")
