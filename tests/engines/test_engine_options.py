"""Engine options the benchmarks rely on, on the shared real engine: request order and ignore_eos."""

from __future__ import annotations

import polars as pl
import pytest

from capdrift_fast.config import SamplingConfig
from capdrift_fast.demo import DEMO_ADAPTERS
from capdrift_fast.pipeline.plan import build_plan

pytestmark = pytest.mark.engine

K = len(DEMO_ADAPTERS)  # adapters; the small plan has 2 requests per model (base + K adapters)


@pytest.fixture()
def recorded(engine, monkeypatch):
    """Calls to the vLLM engine's add_request: (request_id, lora id or 0, SamplingParams)."""
    calls: list[tuple[str, int, object]] = []
    inner = engine.llm.llm_engine
    original = inner.add_request

    def spy(request_id, prompt, params, *args, lora_request=None, **kwargs):
        calls.append((request_id, lora_request.lora_int_id if lora_request else 0, params))
        return original(request_id, prompt, params, *args, lora_request=lora_request, **kwargs)

    monkeypatch.setattr(inner, "add_request", spy)
    return calls


def small_plan(demo_cfg) -> pl.DataFrame:
    req = build_plan(demo_cfg).requests
    keep = req.filter(pl.col("task") == "superni_task363").group_by("lora_id").head(2).sort("lora_id", "sample_id")
    return keep.with_columns(max_tokens=pl.lit(6, dtype=pl.Int32))


@pytest.mark.parametrize(("order", "want"), [("grouped", [0, 0] + [i for i in range(1, K + 1) for _ in (0, 1)]),
                                              ("interleaved", [0, 0] + list(range(1, K + 1)) * 2)])
def test_request_order_reaches_the_engine(engine, demo_cfg, recorded, monkeypatch, order, want):
    monkeypatch.setattr(engine, "settings", engine.settings.model_copy(update={"request_order": order}))
    out = list(engine.generate(small_plan(demo_cfg), demo_cfg.sampling))
    assert len(out) == 2 * (K + 1)
    assert [lora for _, lora, _ in recorded] == want  # base isolated first, then the order


def test_ignore_eos_gives_fixed_lengths(engine, demo_cfg, recorded):
    sampling = SamplingConfig(temperature=0.0, max_tokens=6, ignore_eos=True)
    out = list(engine.generate(small_plan(demo_cfg), sampling))
    assert all(p.ignore_eos for _, _, p in recorded)
    assert {r["output_tokens"] for r in out} == {6}
    assert {r["finish_reason"] for r in out} == {"length"}


def test_grouped_cpu_ops_serve_base_right_even_without_isolation(engine, demo_cfg, hf_reference, monkeypatch):
    """The batch that broke vLLM's CPU ops (base + max_loras distinct adapters) is served right by the
    grouped ops: every model's greedy tokens equal transformers+peft's, with isolate_base off."""
    if engine.cpu_lora_ops != "grouped":
        pytest.skip("grouped CPU LoRA ops not in use (not vLLM's CPU backend)")
    monkeypatch.setattr(engine, "settings", engine.settings.model_copy(
        update={"isolate_base": False, "request_order": "interleaved"}))
    plan = small_plan(demo_cfg)
    out = list(engine.generate(plan, SamplingConfig(temperature=0.0, max_tokens=6, ignore_eos=True)))
    assert len(out) == plan.height == 2 * (K + 1)
    for rec in out:
        (want,) = hf_reference.greedy(rec["adapter"], [rec["prompt"]], 6)
        assert rec["output_token_ids"][: len(want[:6])] == want[:6], rec["request_id"]


def test_length_check_in_slices_names_the_request_and_sends_nothing(engine, demo_cfg, recorded, monkeypatch):
    """The up-front length check tokenizes in slices (host memory, kernels_bench/memory.py); a request
    in a later slice whose prompt + max_tokens exceeds max_model_len is still found, and named."""
    import capdrift_fast.engines.vllm_engine as ve
    from capdrift_fast.errors import EngineError

    monkeypatch.setattr(ve, "_LENGTH_CHECK_SLICE", 1)
    plan = build_plan(demo_cfg).requests.filter(pl.col("task") == "gsm8k").head(5)
    assert plan.unique(subset=["task", "sample_id"]).height >= 2
    last = plan.row(plan.height - 1, named=True)
    too_long = plan.with_columns(max_tokens=pl.when(pl.col("sample_id") == last["sample_id"])
                                 .then(pl.lit(engine.max_model_len, dtype=pl.Int32)).otherwise(pl.col("max_tokens")))
    with pytest.raises(EngineError, match=rf"sample '{last['sample_id']}' has \d+ prompt tokens \+ max_tokens"):
        list(engine.generate(too_long, demo_cfg.sampling))
    assert recorded == []
    assert len(list(engine.generate(plan.head(2).with_columns(max_tokens=pl.lit(2, dtype=pl.Int32)),
                                    demo_cfg.sampling))) == 2


def test_freed_heap_is_handed_back_every_trim_interval(engine, demo_cfg, monkeypatch):
    """Long passes return freed heap pages to the OS every ``_TRIM_EVERY`` finished requests (host
    memory, kernels_bench/memory.py); here every 3rd of 2 x (K + 1)."""
    import capdrift_fast.engines.vllm_engine as ve

    calls = []
    monkeypatch.setattr(ve, "_TRIM_EVERY", 3)
    monkeypatch.setattr(ve, "release_free_heap", lambda: calls.append(1) or True)
    out = list(engine.generate(small_plan(demo_cfg), SamplingConfig(temperature=0.0, max_tokens=2)))
    # isolate_base: the base phase (2 requests: no trim) then the adapter phase (2K: every 3rd), counted per phase
    assert len(out) == 2 * (K + 1) and len(calls) == 2 // 3 + (2 * K) // 3


def test_release_free_heap_runs_on_this_platform():
    import platform

    from capdrift_fast.engines.vllm_engine import release_free_heap

    assert release_free_heap() is (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")
