"""Prompt log-probs from a fresh vLLM CPU engine, in its own process (a second engine in the test process
is not cheap): ``python lm_head_probe.py SPEC.json`` prints one JSON line.

SPEC: ``model`` (folder), ``targets`` (vLLM ``lora_target_modules``, null = vLLM's default: every LoRA
module, ``lm_head`` included), ``adapters`` (name -> folder), ``batches`` (lists of ``[adapter or
"base", token ids]``; each list is one ``LLM.generate`` call, i.e. one engine step for these sizes).
Output: ``{"results": [per batch: list of per-request prompt log-probs (positions 1..n-1), or
"ERROR: <exception>"]}``.

The engine is :class:`capdrift_fast.engines.vllm_engine.VLLMEngine` (float32, grouped CPU LoRA ops,
chunked prefill off; ``targets`` goes to ``engine.lora_target_modules``).
"""

from __future__ import annotations

import json
import sys


def main(spec_path: str) -> None:
    from capdrift_fast.config import AdapterConfig, EngineConfig, ModelConfig
    from capdrift_fast.engines.vllm_engine import VLLMEngine

    spec = json.loads(open(spec_path, encoding="utf-8").read())
    engine = VLLMEngine(
        ModelConfig(path=spec["model"], prompt_format="raw"),
        EngineConfig(max_loras=4, max_lora_rank=16, max_num_seqs=16, dtype="float32", max_model_len=256,
                     kv_cache_memory_gib=0.25, lora_target_modules=spec.get("targets")),
        [AdapterConfig(name=name, path=path) for name, path in spec["adapters"].items()],
    )
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    llm = engine.llm
    lora = {name: engine.lora_request(name) for name in spec["adapters"]}
    params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
    results: list = []
    for batch in spec["batches"]:
        try:
            outs = llm.generate([TokensPrompt(prompt_token_ids=ids) for _, ids in batch], params,
                                lora_request=[lora.get(name) for name, _ in batch], use_tqdm=False)
        except Exception as exc:  # the measured vLLM failure is the point of the probe
            results.append(f"ERROR: {type(exc).__name__}: {exc}")
            continue
        results.append([[float(o.prompt_logprobs[k][ids[k]].logprob) for k in range(1, len(ids))]
                        for o, (_, ids) in zip(outs, batch)])
    print(json.dumps({"results": results}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
