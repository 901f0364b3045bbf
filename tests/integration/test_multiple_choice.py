"""Multiple-choice tasks scored by log-likelihood for the base model and every adapter in one engine pass
(the shared real vLLM CPU engine), checked item by item against transformers+peft in float32."""

from __future__ import annotations

import json

import polars as pl
import pytest

from capdrift_fast.config import RunConfig

pytestmark = pytest.mark.engine

MC_TASKS = [
    {"benchmark": "superni", "data": "superni/task828_copa_commonsense_cause_effect.json",
     "output_type": "multiple_choice", "limit": 6},
    {"benchmark": "superni", "data": "superni/task363_sst2_polarity_classification.json",
     "output_type": "multiple_choice", "limit": 6},
]


@pytest.fixture(scope="module")
def mc_run(demo_cfg, engine, hf_reference, tmp_path_factory):
    """COPA and SST-2 as multiple choice, base + the demo adapters, one pass of the shared engine, parity
    guard on every sample (canaries_per_task = limit)."""
    from capdrift_fast.runner import run

    raw = json.loads(demo_cfg.model_dump_json())
    raw["tasks"] = MC_TASKS
    raw["parity"] = {**raw.get("parity", {}), "canaries_per_task": 6}
    cfg = RunConfig.model_validate(raw)
    out = tmp_path_factory.mktemp("mc") / "run"
    return cfg, run(cfg, out, progress=False, engine=engine, reference=hf_reference)


def test_acc_equals_transformers_peft_argmax_on_every_item(mc_run, hf_reference):
    cfg, result = mc_run
    gens = pl.read_ipc(str(result.run_dir / "generations" / "*.arrow"))
    scores = pl.read_parquet(result.run_dir / "scores.parquet")
    adapters = ["base"] + [a.name for a in cfg.adapters]
    assert len(adapters) >= 3
    assert gens.height == len(adapters) * 12 and set(gens["finish_reason"]) == {"loglikelihood"}
    worst = 0.0
    plan = pl.read_parquet(result.run_dir / "plan.parquet")
    for row in gens.iter_rows(named=True):
        labels = ["cause", "effect"] if "task828" in row["task"] else ["NEG", "POS"]
        conts = plan.filter(pl.col("request_id") == row["request_id"])["continuations"].item().to_list()
        assert conts == labels  # the prompt ends in "Output: ": target delimiter ""
        ref = hf_reference.loglikelihood(row["adapter"], row["prompt"], conts, cfg.engine.max_model_len)
        lls = [r.logprob for r in ref]
        worst = max(worst, *(abs(a - b) for a, b in zip(row["choice_logprobs"], lls)))
        assert row["choice_tokens"] == [r.n_tokens for r in ref]
        assert row["choice_greedy"] == [r.is_greedy for r in ref]
        ref_pred = max(range(len(lls)), key=lambda i: (lls[i], -i))  # transformers+peft's argmax
        acc = scores.filter(pl.col("request_id") == row["request_id"])["acc"].item()
        assert acc == float(labels[ref_pred] == _gold_label(row["task"], row["sample_id"])), row["request_id"]
        assert row["response"] == labels[ref_pred]
    assert worst < 1e-3
    parity = json.loads((result.run_dir / "parity.json").read_text())
    assert parity["status"] == "ok" and parity["worst_loglik_gap"] < 1e-3
    assert all(m["suspect"] is False and m["checked"] == 12 for m in parity["models"].values())


def _gold_label(task: str, sample_id: str) -> str:
    from capdrift_fast.config import default_data_dir

    name = ("task828_copa_commonsense_cause_effect" if "task828" in task else "task363_sst2_polarity_classification")
    data = json.loads((default_data_dir() / "superni" / f"{name}.json").read_text())
    return next(i["output"][0] for i in data["Instances"] if i["id"] == sample_id)


def test_matrix_treats_choice_accuracy_as_binary_with_random_baseline(mc_run):
    _, result = mc_run
    m = pl.read_parquet(result.run_dir / "matrix.parquet")
    assert set(m["metric"]) == {"acc", "acc_norm"}
    assert set(m["task"]) == {"superni_task828.mc", "superni_task363.mc"}
    drift = pl.read_parquet(result.run_dir / "drift.parquet")
    assert drift.height == 3
    from capdrift_fast.report.runs import random_baselines

    from capdrift_fast.pipeline.plan import build_plan
    cfg = RunConfig.model_validate(json.loads((result.run_dir / "config.json").read_text()))
    plan = build_plan(cfg)
    base, _ = random_baselines(plan.tasks, plan.samples)
    assert base.filter(pl.col("metric") == "acc")["score"].to_list() == [0.5, 0.5]
