"""Many runs, one analysis: runs that differ in seed, base model or LoRA setting, side by side.

Runs are grouped into *configurations*: two runs are the same configuration when their configs are
equal except for ``sampling.seed`` (and the things that never change results: ``run_name``,
``data_dir``, the ``drift`` analysis settings). Within a configuration the runs are seeds; across
configurations the model, adapters, tasks, engine or sampling differ. Adapters, tasks and metrics are
matched by name.

Per cell (adapter x task x metric) the combination reports the spread of ``delta`` across the seeds
of each configuration, and marks

- ``seed_flip``: within some configuration, one seed's delta is > 0 and another's < 0 (``|delta| < EPS`` is 0);
- ``config_flip``: the configurations' mean deltas have both signs ("configuration sensitivity");
- ``significant_flip``: one run finds a significant rise and another a significant fall.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import polars as pl

from capdrift_fast.config import BASE_NAME
from capdrift_fast.report.runs import RunData

SEED_KEYS = ("sampling.seed",)
"""Config keys whose runs are seeds of one configuration."""
IGNORED_PREFIXES = ("run_name", "data_dir", "drift.")
"""Config keys that do not make a different configuration."""
EPS = 1e-9
"""|delta| below this counts as 0 (a mean of +x and -x is not a sign)."""


def flatten_config(cfg: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"a.b.c": json value}`` of a config dict; adapters and tasks are keyed by their name so that
    their order does not matter (``adapters.<name>.path``, ``tasks.<i>.limit``)."""
    out: dict[str, str] = {}
    for key, value in cfg.items():
        path = f"{prefix}{key}"
        if key == "adapters" and isinstance(value, list):
            for a in value:
                out.update(flatten_config({k: v for k, v in a.items() if k != "name"}, f"{path}.{a.get('name')}."))
        elif isinstance(value, dict):
            out.update(flatten_config(value, f"{path}."))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for i, v in enumerate(value):
                out.update(flatten_config(v, f"{path}.{i}."))
        else:
            out[path] = json.dumps(value, sort_keys=True, default=str)
    return out


def _short(value: str) -> str:
    v = json.loads(value)
    if isinstance(v, str) and "/" in v:
        return v.rstrip("/").rsplit("/", 1)[-1]
    return str(v)


@dataclass(frozen=True)
class Combined:
    """Several runs analysed together (all frames long).

    Attributes:
        runs: the runs, in the order given.
        varying: config keys whose values differ between runs (seed included).
        configurations: one row per configuration: ``config`` (C1, C2, ...), ``description``
            (its differing settings, ``key=value``), ``runs`` (labels), ``n_runs``.
        run_info: one row per run: ``run``, ``config``, ``seed``, ``description``.
        cells: every run's matrix with ``run``, ``config``, ``seed`` columns (``MATRIX_SCHEMA`` + 3).
        config_cells: per configuration x adapter x task x metric: ``n_seeds``, ``delta_mean``,
            ``delta_sd`` (across seeds, ddof 1; null with one seed), ``delta_min``, ``delta_max``,
            ``score_mean``, ``base_mean``, ``n_significant``.
        spread: per adapter x task x metric over all runs: ``n_runs``, ``delta_mean``, ``delta_sd``,
            ``delta_min``, ``delta_max``, ``n_sig_up``, ``n_sig_down``, ``seed_flip``, ``config_flip``,
            ``significant_flip``, ``drift_metric``.
        drift: every run's drift table with ``run``, ``config``, ``seed``.
        drift_summary: per configuration x adapter: ``n_runs``, mean and sd of ``drift``,
            ``on_gain``, ``off_gain``, and ``supported`` ("k/n" runs whose label status is supported).
    """

    runs: list[RunData]
    varying: list[str]
    configurations: pl.DataFrame
    run_info: pl.DataFrame
    cells: pl.DataFrame
    config_cells: pl.DataFrame
    spread: pl.DataFrame
    drift: pl.DataFrame
    drift_summary: pl.DataFrame


def combine(runs: list[RunData]) -> Combined:
    """Group ``runs`` into configurations and compute spread and sign flips (see module docstring).

    Raises:
        ValueError: ``runs`` is empty (the CLI requires at least one folder).
    """
    if not runs:
        raise ValueError("no runs to combine")
    flat = [flatten_config(r.config.model_dump(mode="json")) for r in runs]
    keys = sorted(set().union(*flat))
    varying = [k for k in keys if len({f.get(k) for f in flat}) > 1 and not k.startswith(IGNORED_PREFIXES)]
    config_keys = [k for k in varying if k not in SEED_KEYS]
    signature = [tuple(f.get(k) for k in config_keys) for f in flat]
    order: list[tuple] = []
    for s in signature:
        if s not in order:
            order.append(s)
    names = {s: f"C{i + 1}" for i, s in enumerate(order)}
    descr = {s: ", ".join(f"{k}={_short(v) if v is not None else '-'}" for k, v in zip(config_keys, s)) or "same settings"
             for s in order}
    run_info = pl.DataFrame({
        "run": [r.label for r in runs],
        "config": [names[s] for s in signature],
        "seed": [r.config.sampling.seed for r in runs],
        "description": [descr[s] for s in signature],
    })
    configurations = (
        run_info.group_by("config", maintain_order=True)
        .agg(pl.col("description").first(), runs=pl.col("run"), n_runs=pl.len().cast(pl.UInt32))
    )
    cells = pl.concat([  # diagonal: a run with parity marks has a `suspect` column, one without none
        r.analysis.matrix.with_columns(run=pl.lit(r.label), config=pl.lit(names[s]), seed=pl.lit(r.config.sampling.seed))
        for r, s in zip(runs, signature)
    ], how="diagonal_relaxed")
    adapters = cells.filter(pl.col("adapter") != BASE_NAME)
    config_cells = (
        cells.group_by("config", "adapter", "task", "metric", maintain_order=True)
        .agg(
            n_seeds=pl.len().cast(pl.UInt32), delta_mean=pl.col("delta").mean(), delta_sd=pl.col("delta").std(),
            delta_min=pl.col("delta").min(), delta_max=pl.col("delta").max(), score_mean=pl.col("score").mean(),
            base_mean=pl.col("base_score").mean(), n_significant=pl.col("significant").fill_null(False).sum().cast(pl.UInt32),
            seed_flip=(pl.col("delta").min() < -EPS) & (pl.col("delta").max() > EPS),
        )
    )
    per_config = config_cells.filter(pl.col("adapter") != BASE_NAME)
    flips = per_config.group_by("adapter", "task", "metric").agg(
        seed_flip=pl.col("seed_flip").any(),
        config_flip=(pl.len() > 1) & (pl.col("delta_mean").min() < -EPS) & (pl.col("delta_mean").max() > EPS),
    )
    spread = (
        adapters.group_by("adapter", "task", "metric", maintain_order=True)
        .agg(
            n_runs=pl.len().cast(pl.UInt32), delta_mean=pl.col("delta").mean(), delta_sd=pl.col("delta").std(),
            delta_min=pl.col("delta").min(), delta_max=pl.col("delta").max(),
            n_sig_up=(pl.col("significant").fill_null(False) & (pl.col("delta") > 0)).sum().cast(pl.UInt32),
            n_sig_down=(pl.col("significant").fill_null(False) & (pl.col("delta") < 0)).sum().cast(pl.UInt32),
            drift_metric=pl.col("drift_metric").any(),
        )
        .join(flips, on=["adapter", "task", "metric"], how="left", maintain_order="left")
        .with_columns(significant_flip=(pl.col("n_sig_up") > 0) & (pl.col("n_sig_down") > 0))
    )
    drift = pl.concat([
        r.analysis.drift.with_columns(run=pl.lit(r.label), config=pl.lit(names[s]), seed=pl.lit(r.config.sampling.seed))
        for r, s in zip(runs, signature)
    ])
    drift_summary = (
        drift.group_by("config", "adapter", maintain_order=True)
        .agg(
            label=pl.col("label").first(), n_runs=pl.len().cast(pl.UInt32),
            drift_mean=pl.col("drift").mean(), drift_sd=pl.col("drift").std(),
            on_gain_mean=pl.col("on_gain").mean(), off_gain_mean=pl.col("off_gain").mean(),
            n_supported=(pl.col("label_status") == "supported").sum().cast(pl.UInt32),
            n_not_supported=(pl.col("label_status") == "not supported").sum().cast(pl.UInt32),
        )
    )
    return Combined(runs, varying, configurations, run_info, cells, config_cells, spread, drift, drift_summary)
