"""The shard split on the real demo plan: 0-based I/N parsing, determinism, every request in exactly one
shard, a sample's base and adapter requests together, and balance by expected tokens."""

from __future__ import annotations

import polars as pl
import pytest

from capdrift_fast.pipeline.split import (ShardSpec, assign_shards, assignment_digest, count_prompt_tokens,
                                             sample_groups, shard_summary)
from capdrift_fast.errors import ConfigError
from capdrift_fast.pipeline.plan import build_plan


@pytest.mark.parametrize("text,expected", [("0/4", (0, 4)), ("3/4", (3, 4)), (" 0 / 1 ", (0, 1))])
def test_parse_zero_based(text, expected):
    spec = ShardSpec.parse(text)
    assert (spec.index, spec.count) == expected and str(spec) == f"{expected[0]}/{expected[1]}"


@pytest.mark.parametrize("text,needle", [("4/4", "0-based"), ("1/0", "at least 1"), ("-1/4", "expected I/N"),
                                         ("1of4", "expected I/N"), ("", "expected I/N"), ("a/b", "expected I/N")])
def test_parse_rejects_with_a_clear_message(text, needle):
    with pytest.raises(ConfigError, match=needle):
        ShardSpec.parse(text)


@pytest.fixture(scope="module")
def plan_tokens(demo_cfg):
    plan = build_plan(demo_cfg)
    return plan, count_prompt_tokens(demo_cfg.model, plan.requests)


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_split_is_a_deterministic_partition_of_sample_groups(plan_tokens, n):
    plan, tokens = plan_tokens
    a = assign_shards(plan.requests, tokens, n)
    assert a["request_id"].to_list() == plan.requests["request_id"].to_list()  # plan order kept
    assert a["shard"].null_count() == 0 and set(a["shard"].unique().to_list()) <= set(range(n))
    # a sample's base and adapter requests are in one shard
    per_group = a.group_by("task", "sample_id").agg(pl.col("shard").n_unique(), pl.len())
    assert per_group["shard"].max() == 1 and per_group["len"].min() == len(plan.adapters)
    # the same inputs (and a shuffled plan) give the same split
    again = assign_shards(plan.requests.sample(fraction=1.0, shuffle=True, seed=1), tokens, n)
    assert assignment_digest(again) == assignment_digest(a)
    assert sum(s["requests"] for s in shard_summary(a, n)) == plan.requests.height


def test_split_balances_expected_tokens(plan_tokens):
    """LPT: the largest shard exceeds the mean by less than the largest sample group (and beats the
    naive contiguous split of the plan)."""
    plan, tokens = plan_tokens
    groups = sample_groups(plan.requests, tokens)
    assert groups["expected_tokens"].min() > 0
    for n in (2, 3, 4):
        loads = [s["expected_tokens"] for s in shard_summary(assign_shards(plan.requests, tokens, n), n)]
        assert sum(loads) == groups["expected_tokens"].sum()
        assert max(loads) - sum(loads) / n < groups["expected_tokens"].max()
        # contiguous blocks of samples in plan order (tasks have very different lengths)
        block = groups.with_columns(shard=(pl.col("order").rank("ordinal") - 1) * n // groups.height)
        naive = block.group_by("shard").agg(pl.col("expected_tokens").sum())["expected_tokens"]
        assert max(loads) < naive.max()


def test_prompt_tokens_match_the_engine(plan_tokens, engine):
    plan, tokens = plan_tokens
    via_engine = count_prompt_tokens(None, plan.requests, engine)  # type: ignore[arg-type]
    assert via_engine.equals(tokens)
