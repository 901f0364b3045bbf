"""Request ordering (engine.request_order) and the benchmark-facing config options."""

from __future__ import annotations

import polars as pl
import pytest
import yaml

from capdrift_fast.config import EngineConfig, SamplingConfig, load_config
from capdrift_fast.errors import ConfigError
from capdrift_fast.pipeline.plan import PLAN_SCHEMA, order_requests


def plan_frame(n_adapters: int, n_samples: int) -> pl.DataFrame:
    rows = [
        {"request_id": f"m{a}/t/{s}", "adapter": f"m{a}", "lora_id": a, "task": "t", "sample_id": str(s),
         "prompt": f"p{s}", "max_tokens": 4}
        for a in range(n_adapters + 1) for s in range(n_samples)
    ]
    return pl.DataFrame(rows, schema=PLAN_SCHEMA)


def test_grouped_keeps_adapters_contiguous_in_lora_id_order():
    plan = plan_frame(3, 4)
    shuffled = plan.sample(fraction=1.0, shuffle=True, seed=1)
    out = order_requests(shuffled, "grouped")
    assert out["lora_id"].to_list() == sorted(plan["lora_id"].to_list())
    # within an adapter, the incoming order is kept
    for a in range(4):
        want = shuffled.filter(pl.col("lora_id") == a)["request_id"].to_list()
        assert out.filter(pl.col("lora_id") == a)["request_id"].to_list() == want
    assert out.schema == plan.schema


def test_interleaved_is_round_robin_over_adapters():
    plan = plan_frame(3, 2).filter(pl.col("lora_id") > 0)
    out = order_requests(plan, "interleaved")
    assert out["lora_id"].to_list() == [1, 2, 3, 1, 2, 3]
    assert out["sample_id"].to_list() == ["0", "0", "0", "1", "1", "1"]
    assert sorted(out["request_id"].to_list()) == sorted(plan["request_id"].to_list())


def test_interleaved_with_unequal_adapter_sizes():
    plan = plan_frame(2, 3).filter(~((pl.col("lora_id") == 2) & (pl.col("sample_id") == "2")))
    out = order_requests(plan, "interleaved")
    assert out["lora_id"].to_list() == [0, 1, 2, 0, 1, 2, 0, 1]


def test_order_of_empty_and_bad_name():
    empty = plan_frame(1, 1).clear()
    assert order_requests(empty, "interleaved").height == 0
    with pytest.raises(ValueError, match="grouped"):
        order_requests(plan_frame(1, 1), "random")


def test_config_options_defaults_and_errors(tmp_path):
    assert EngineConfig().request_order == "grouped"
    assert SamplingConfig().ignore_eos is False
    raw = {"model": {"path": "m"}, "tasks": [{"benchmark": "gsm8k"}],
           "engine": {"request_order": "interleaved"}, "sampling": {"ignore_eos": True}}
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(raw))
    cfg = load_config(p)
    assert cfg.engine.request_order == "interleaved" and cfg.sampling.ignore_eos is True
    raw["engine"] = {"request_order": "shuffled"}
    p.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="field engine.request_order"):
        load_config(p)
