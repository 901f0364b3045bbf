"""An adapter written directly (kernels_bench.assets, no peft) gives the same greedy tokens in the real
vLLM engine as in transformers+peft: the benchmarks' adapters are served as peft would serve them."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.engine


def test_direct_adapter_vllm_equals_peft(engine, demo_assets, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    from vllm import SamplingParams
    from vllm.lora.request import LoRARequest

    from capdrift_fast.demo import MODEL_SHAPE
    from kernels_bench.assets import ModelShape, build_adapters

    model_dir = demo_assets / "model"
    (path,) = build_adapters(tmp_path, ModelShape(**MODEL_SHAPE), 1, 8, str(model_dir), seed=5)
    prompts = ["Question: Natalia sold clips to 48 of her friends.\nAnswer:", "Premise: The man broke his toe."]
    ids = engine.encode(prompts)
    outs = engine.llm.generate([{"prompt_token_ids": p} for p in ids],
                               SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True),
                               lora_request=LoRARequest("direct", 97, str(path)), use_tqdm=False)
    got = [list(o.outputs[0].token_ids) for o in outs]
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    peft_model = PeftModel.from_pretrained(base, str(path)).eval()
    want = []
    with torch.inference_mode():
        for p in ids:
            x = torch.tensor([p])
            y = peft_model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=8,
                                    min_new_tokens=8, do_sample=False, pad_token_id=2)
            want.append(y[0, len(p):].tolist())
        with peft_model.disable_adapter():
            plain = [peft_model.generate(input_ids=torch.tensor([p]), max_new_tokens=8, min_new_tokens=8,
                                         do_sample=False, pad_token_id=2)[0, len(p):].tolist() for p in ids]
    assert got == want
    assert got != plain  # the adapter changes the greedy continuation
