"""kernels_bench/assets.py: models and adapters written directly load in transformers, peft and vLLM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from kernels_bench.assets import ALL_TARGETS, SHAPES, ModelShape, build_adapters, build_model, build_tokenizer


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, data_dir) -> Path:
    out = tmp_path_factory.mktemp("bench") / "model"
    build_tokenizer(out, SHAPES["tiny"].vocab_size, data_dir)
    build_model(out, SHAPES["tiny"], shard_bytes=300_000)  # several shards + index
    return out


def test_tokenizer_has_exact_vocab_and_decodes_every_id(tiny):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny)
    assert len(tok) == SHAPES["tiny"].vocab_size
    assert tok("Natalia sold clips")["input_ids"][0] == 0  # <s>
    text = tok.decode(list(range(3, SHAPES["tiny"].vocab_size)))
    assert isinstance(text, str) and text


def test_model_loads_in_transformers_with_the_shape(tiny):
    from transformers import AutoModelForCausalLM

    assert json.loads((tiny / "model.safetensors.index.json").read_text())["weight_map"]
    model = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32)
    s = SHAPES["tiny"]
    assert model.config.hidden_size == s.hidden_size and model.config.num_hidden_layers == s.num_hidden_layers
    assert model.model.layers[1].mlp.down_proj.weight.shape == (s.hidden_size, s.intermediate_size)
    with torch.inference_mode():
        logits = model(torch.tensor([[0, 5, 9]])).logits
    assert torch.isfinite(logits).all() and logits.shape == (1, 3, s.vocab_size)


def test_adapter_loads_in_peft_with_the_written_weights(tiny, tmp_path):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    (path,) = build_adapters(tmp_path, SHAPES["tiny"], 1, 8, str(tiny))
    written = load_file(str(path / "adapter_model.safetensors"))
    assert len(written) == 2 * len(ALL_TARGETS) * SHAPES["tiny"].num_hidden_layers
    base = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(path))
    q = model.base_model.model.model.layers[0].self_attn.q_proj
    assert torch.equal(q.lora_A["default"].weight, written["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"])
    assert q.scaling["default"] == 2.0  # alpha = 2 r
    x = torch.tensor([[0, 5, 9, 11]])
    with torch.inference_mode():
        with_lora = model(x).logits
        with model.disable_adapter():
            without = model(x).logits
    assert (with_lora - without).abs().max() > 1e-3  # the adapter really changes outputs


def test_adapter_loads_in_vllm(tiny, tmp_path):
    from vllm.lora.lora_model import LoRAModel
    from vllm.lora.peft_helper import PEFTHelper

    (path,) = build_adapters(tmp_path, SHAPES["tiny"], 1, 16, str(tiny))
    helper = PEFTHelper.from_local_dir(str(path), max_position_embeddings=4096)
    assert helper.r == 16 and helper.lora_alpha == 32
    lora = LoRAModel.from_local_checkpoint(str(path), set(ALL_TARGETS), helper, lora_model_id=1, device="cpu",
                                          dtype=torch.float32)
    assert len(lora.loras) == len(ALL_TARGETS) * SHAPES["tiny"].num_hidden_layers


def test_adapters_are_distinct_and_reused(tmp_path):
    shape = ModelShape(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=1,
                       num_attention_heads=1, num_key_value_heads=1)
    a = build_adapters(tmp_path, shape, 3, 8, "m")
    from safetensors.torch import load_file

    w = [load_file(str(p / "adapter_model.safetensors")) for p in a]
    key = "base_model.model.model.layers.0.mlp.up_proj.lora_B.weight"
    assert w[0][key].shape == (96, 8) and not torch.equal(w[0][key], w[1][key])
    mtime = (a[0] / "adapter_model.safetensors").stat().st_mtime_ns
    assert build_adapters(tmp_path, shape, 3, 8, "m") == a
    assert (a[0] / "adapter_model.safetensors").stat().st_mtime_ns == mtime
