"""transformers+peft greedy decoding: the parity oracle for the vLLM engine.

Slow by design (one prompt at a time, no padding, so no batch effects), exact in float32: on CPU,
vLLM's greedy tokens for the base and each adapter must equal these token for token.
"""

from __future__ import annotations

from typing import Any, Sequence

from capdrift_fast.config import BASE_NAME, AdapterConfig, ModelConfig
from capdrift_fast.engine.prompts import encode_prompts, resolve_prompt_format


class HFReference:
    """The base model with every adapter loaded through peft (``set_adapter`` / ``disable_adapter``).

    Args:
        model: base model settings; loaded in float32 on CPU.
        adapters: peft LoRA adapters; each is selectable by name.
    """

    def __init__(self, model: ModelConfig, adapters: Sequence[AdapterConfig]) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model.tokenizer or model.path, revision=model.revision)
        self.prompt_format = resolve_prompt_format(self.tokenizer, model.prompt_format)
        base = AutoModelForCausalLM.from_pretrained(model.path, revision=model.revision, dtype=torch.float32)
        self.model: Any = base.eval()
        if adapters:
            from peft import PeftModel

            first, *rest = adapters
            self.model = PeftModel.from_pretrained(base, first.path, adapter_name=first.name).eval()
            for a in rest:
                self.model.load_adapter(a.path, adapter_name=a.name)

    def greedy(self, adapter: str, prompts: Sequence[str], max_tokens: int) -> list[list[int]]:
        """Greedy output token ids (EOS included if produced) for each prompt under ``adapter``
        (``base`` = adapters disabled). Shape: ``len(prompts)`` lists of at most ``max_tokens`` ints."""
        import contextlib

        import torch

        ids = encode_prompts(self.tokenizer, prompts, self.prompt_format)
        if adapter == BASE_NAME:
            ctx = self.model.disable_adapter() if hasattr(self.model, "disable_adapter") else contextlib.nullcontext()
        else:
            self.model.set_adapter(adapter)
            ctx = contextlib.nullcontext()
        outs: list[list[int]] = []
        with ctx, torch.inference_mode():
            for p in ids:
                x = torch.tensor([p])
                y = self.model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=max_tokens,
                                        do_sample=False, pad_token_id=self.tokenizer.pad_token_id)
                outs.append(y[0, len(p):].tolist())
        return outs
