"""The demo assets of capdrift_fast 0.1.0 (``demo-v1``): the same tiny random Llama and tokenizer as today
(:func:`capdrift_fast.demo.build_tokenizer`, :func:`capdrift_fast.demo.build_model`), with the three *random*
LoRA adapters of that version (random A and B, B scaled by 0.5). Only the golden test needs them: the
committed 0.1.0 run folder (tests/fixtures/run_0_1_0) was generated with these weights, and resuming it
re-runs the parity guard on them. Deterministic (fixed seeds): the weights are byte-identical to 0.1.0's."""

from __future__ import annotations

import json
from pathlib import Path

from capdrift_fast.demo import build_model, build_tokenizer

V1_ADAPTERS = (
    ("instruct-r8", 8, 16, ("q_proj", "v_proj", "o_proj"), 1),
    ("math-r16", 16, 32, ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"), 2),
    ("cls-r8", 8, 8, ("gate_proj", "up_proj", "down_proj"), 3),
)
"""(name, rank, alpha, target modules, seed) of each 0.1.0 demo adapter."""


def build_random_adapter(model_dir: Path, r: int, alpha: int, targets: tuple[str, ...], seed: int, out: Path) -> None:
    """A peft LoRA adapter on ``model_dir`` with random A and B (``init_lora_weights=False``, B x 0.5)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    torch.manual_seed(seed)
    cfg = LoraConfig(r=r, lora_alpha=alpha, target_modules=list(targets), init_lora_weights=False,
                     lora_dropout=0.0, bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(base, cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.mul_(0.5)
    model.save_pretrained(out, safe_serialization=True)
    meta = json.loads((out / "adapter_config.json").read_text())
    meta["base_model_name_or_path"] = str(model_dir)
    (out / "adapter_config.json").write_text(json.dumps(meta, indent=2))


def build_demo_v1_assets(data_dir: Path, root: Path) -> Path:
    """``root/model`` and ``root/adapters/<name>`` as capdrift_fast 0.1.0 built them; returns ``root``."""
    build_tokenizer(data_dir, root / "model")
    build_model(root / "model")
    for name, r, alpha, targets, seed in V1_ADAPTERS:
        build_random_adapter(root / "model", r, alpha, targets, seed, root / "adapters" / name)
    return root
