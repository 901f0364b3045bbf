"""The request plan on the real data: (base + adapters) x samples, stable unique ids."""

from __future__ import annotations

import polars as pl

from capdrift_fast.config import BASE_NAME
from capdrift_fast.pipeline.plan import PLAN_SCHEMA, build_plan


def test_plan_crosses_models_and_samples(demo_cfg):
    plan = build_plan(demo_cfg)
    n_samples = sum(s.height for s in plan.samples.values())
    assert n_samples == 6 * len(demo_cfg.tasks)
    assert plan.requests.height == (1 + len(demo_cfg.adapters)) * n_samples
    assert dict(plan.requests.schema) == PLAN_SCHEMA
    assert plan.requests["request_id"].is_unique().all()
    assert plan.adapters == [BASE_NAME] + [a.name for a in demo_cfg.adapters]
    ids = plan.requests.select("adapter", "lora_id").unique().sort("lora_id")
    assert ids["lora_id"].to_list() == list(range(len(demo_cfg.adapters) + 1))
    # stable: the same config gives the same ids in the same order
    assert build_plan(demo_cfg).requests["request_id"].to_list() == plan.requests["request_id"].to_list()


def test_per_task_max_tokens(demo_cfg):
    plan = build_plan(demo_cfg)
    mt = dict(plan.requests.group_by("task").agg(pl.col("max_tokens").first()).iter_rows())
    assert mt["superni_task828"] == 8 and mt["gsm8k"] == 64
