"""Grouped multi-LoRA ops for vLLM's CPU backend (``engine.cpu_lora_ops: grouped``).

vLLM's CPU LoRA path (``PunicaWrapperCPU`` -> ``vllm/lora/ops/torch_ops``) gathers every token's
adapter weights (``lora_weights[indices]``: batch x rank x d per layer and slice) and multiplies
token by token; it also indexes with the no-LoRA index -1, which selects the *last* adapter slot, so
a base request batched with a full set of ``max_loras`` adapters is served that adapter
(``kernels_bench/lora_kernels.py``). The ops here have the same signatures and, for tokens with an
adapter, the same results; they group the tokens by adapter (two matmuls per distinct adapter in the
batch, the weights read once) and leave index -1 tokens without LoRA.

:func:`install` swaps them into ``vllm.lora.punica_wrapper.punica_cpu`` for this process (vLLM's
engine core runs in-process here: ``VLLM_ENABLE_V1_MULTIPROCESSING=0``); :func:`uninstall` restores
vLLM's. Shapes below: ``B`` tokens, ``L`` adapter slots, ``r`` rank.
"""

from __future__ import annotations

from typing import Any

import torch

_ORIGINAL: dict[str, Any] = {}
_cache: dict[str, Any] = {"indices": None, "groups": None}


def rows_by_slot(indices: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
    """(slot, token rows) for every adapter slot present in ``indices`` (shape (B,), int), ascending
    slots; rows of index -1 (no LoRA) are left out. Uncached; rows are int64 tensors."""
    order = torch.argsort(indices, stable=True)
    keys, counts = torch.unique_consecutive(indices[order], return_counts=True)
    out, start = [], 0
    for k, c in zip(keys.tolist(), counts.tolist()):
        if k >= 0:
            out.append((k, order[start:start + c]))
        start += c
    return out


def lora_groups(indices: torch.Tensor) -> list[tuple[int, torch.Tensor | None]]:
    """(slot, token rows) per adapter slot used in ``indices`` (shape (B,), int; -1 = no LoRA, left out).
    ``rows`` is None when that slot covers every token. The grouping of the last ``indices`` is reused
    while the next call's indices are equal (every layer of a step passes the same indices)."""
    last = _cache["indices"]
    if last is not None and last.shape == indices.shape and torch.equal(last, indices):
        return _cache["groups"]
    n = indices.numel()
    if n == 0:
        groups: list[tuple[int, torch.Tensor | None]] = []
    else:
        first = int(indices[0])
        if bool((indices == first).all()):
            groups = [(first, None)] if first >= 0 else []
        else:
            groups = rows_by_slot(indices)
    _cache["indices"], _cache["groups"] = indices.clone(), groups
    return groups


def _slot(weights: torch.Tensor, k: int) -> torch.Tensor:
    w = weights[k]
    return w[0] if w.dim() == 3 else w  # (L, 1, a, b) or (L, a, b) -> (a, b)


def _apply(x: torch.Tensor, weights: torch.Tensor, indices: torch.Tensor, out: torch.Tensor, scale: float,
           add: bool) -> None:
    """``out[t] (+)= scale * x[t] @ W[indices[t]].T`` per token; -1 tokens: unchanged if ``add``, else 0.
    x (B, in); weights (L, [1,] o, in); out (B, o) (a view into the caller's tensor)."""
    dtype = out.dtype
    x = x.to(dtype)
    groups = lora_groups(indices)
    if not add and not (len(groups) == 1 and groups[0][1] is None):
        out.zero_()
    for k, rows in groups:
        w = _slot(weights, k).to(dtype)
        if rows is None:
            y = x @ w.T
            if scale != 1.0:
                y.mul_(scale)
            if add:
                out.add_(y)
            else:
                out.copy_(y)
        else:
            y = x.index_select(0, rows) @ w.T
            if scale != 1.0:
                y.mul_(scale)
            out.index_add_(0, rows, y)


def _standard(inputs: torch.Tensor, output: torch.Tensor, indices: torch.Tensor) -> bool:
    return inputs.dim() == 2 and inputs.shape[0] == output.shape[0] == indices.shape[0]


def bgmv_shrink(inputs: torch.Tensor, lora_a_weights: torch.Tensor, output_tensor: torch.Tensor,
                lora_indices_tensor: torch.Tensor, scaling: float = 1.0) -> None:
    """``output[:, :r] = scaling * inputs @ A[idx].T`` per token. inputs (B, d_in); A (L, [1,] r, d_in);
    output (B, >= r). Unusual shapes fall back to vLLM's op."""
    if not _standard(inputs, output_tensor, lora_indices_tensor):
        return _vllm("bgmv_shrink")(inputs, lora_a_weights, output_tensor,
                                                                    lora_indices_tensor, scaling)
    r = lora_a_weights.shape[-2]
    _apply(inputs, lora_a_weights, lora_indices_tensor, output_tensor[:, :r], scaling, add=False)


def bgmv_expand(inputs: torch.Tensor, lora_b_weights: torch.Tensor, output_tensor: torch.Tensor,
                lora_indices_tensor: torch.Tensor, add_inputs: bool = True) -> None:
    """``output[:, :o] (+)= inputs @ B[idx].T`` per token (o = min(B's out dim, output width)).
    inputs (B, r); B (L, [1,] out, r); output (B, width)."""
    if not _standard(inputs, output_tensor, lora_indices_tensor):
        return _vllm("bgmv_expand")(inputs, lora_b_weights, output_tensor,
                                                                    lora_indices_tensor, add_inputs)
    common = min(lora_b_weights.shape[-2], output_tensor.shape[1])
    w = lora_b_weights[..., :common, :]
    _apply(inputs, w, lora_indices_tensor, output_tensor[:, :common], 1.0, add=add_inputs)


def bgmv_expand_slice(inputs: torch.Tensor, lora_b_weights: torch.Tensor, output_tensor: torch.Tensor,
                      lora_indices_tensor: torch.Tensor, slice_offset: int, slice_size: int,
                      add_inputs: bool = True) -> None:
    """``output[:, off:off+size] (+)= inputs @ B[idx].T`` per token. inputs (B, r); B (L, [1,] size, r)."""
    if not _standard(inputs, output_tensor, lora_indices_tensor) or lora_b_weights.shape[-2] != slice_size:
        return _vllm("bgmv_expand_slice")(
            inputs, lora_b_weights, output_tensor, lora_indices_tensor, slice_offset, slice_size, add_inputs)
    out = output_tensor[:, slice_offset:slice_offset + slice_size]
    _apply(inputs, lora_b_weights, lora_indices_tensor, out, 1.0, add=add_inputs)


def _explode(lora_indices_tensor: torch.Tensor, seq_len_tensor: torch.Tensor) -> torch.Tensor:
    return torch.repeat_interleave(lora_indices_tensor, seq_len_tensor)


def sgmv_shrink(inputs, lora_a_weights, output_tensor, b_seq_start_loc, seq_len_tensor, lora_indices_tensor,
                batches, max_seq_length, token_nums, scaling):  # noqa: ANN001, ANN201
    """Prefill form of :func:`bgmv_shrink` (per-sequence indices, expanded to tokens)."""
    bgmv_shrink(inputs, lora_a_weights, output_tensor, _explode(lora_indices_tensor, seq_len_tensor), scaling)


def sgmv_expand(inputs, lora_b_weights, output_tensor, b_seq_start_loc, seq_len_tensor, lora_indices_tensor,
                batches, max_seq_length, token_nums, add_inputs=False):  # noqa: ANN001, ANN201
    """Prefill form of :func:`bgmv_expand`."""
    bgmv_expand(inputs, lora_b_weights, output_tensor, _explode(lora_indices_tensor, seq_len_tensor), add_inputs)


def sgmv_expand_slice(inputs, lora_b_weights, output_tensor, b_seq_start_loc, seq_len_tensor, lora_indices_tensor,
                      batches, max_seq_length, token_nums, slice_offset, slice_size,
                      add_inputs=False):  # noqa: ANN001, ANN201
    """Prefill form of :func:`bgmv_expand_slice`."""
    bgmv_expand_slice(inputs, lora_b_weights, output_tensor, _explode(lora_indices_tensor, seq_len_tensor),
                      slice_offset, slice_size, add_inputs)


OPS = {"bgmv_shrink": bgmv_shrink, "bgmv_expand": bgmv_expand, "bgmv_expand_slice": bgmv_expand_slice,
       "sgmv_shrink": sgmv_shrink, "sgmv_expand": sgmv_expand, "sgmv_expand_slice": sgmv_expand_slice}


def _vllm(name: str) -> Any:
    from vllm.lora.ops import torch_ops

    return getattr(torch_ops, name)


def install() -> bool:
    """Use the grouped ops in vLLM's CPU punica wrapper (this process). Returns False (and changes
    nothing) when this vLLM has no ``punica_cpu`` module with these ops."""
    try:
        from vllm.lora.punica_wrapper import punica_cpu
    except ImportError:  # pragma: no cover - depends on the vLLM build
        return False
    if not all(hasattr(punica_cpu, name) for name in OPS):
        return False  # pragma: no cover
    for name, fn in OPS.items():
        current = getattr(punica_cpu, name)
        if current is not fn:
            _ORIGINAL[name] = current
        setattr(punica_cpu, name, fn)
    return True


def uninstall() -> None:
    """Restore vLLM's own CPU ops."""
    try:
        from vllm.lora.punica_wrapper import punica_cpu
    except ImportError:  # pragma: no cover
        return
    for name, fn in _ORIGINAL.items():
        setattr(punica_cpu, name, fn)
    _ORIGINAL.clear()


# --- prompt log-probabilities (log-likelihood requests) ---------------------------------------------------

_LOGITS: dict[str, Any] = {}
_zero_cache: dict[tuple[int, int], bool] = {}


class PromptLogitsLoRAError(RuntimeError):
    """vLLM computed prompt logits for an adapter whose LoRA reaches ``lm_head``: it cannot apply it there."""


def _all_zero(weights: torch.Tensor) -> bool:
    key = (weights.data_ptr(), weights._version)
    if key not in _zero_cache:
        _zero_cache.clear()
        _zero_cache[key] = not bool(torch.count_nonzero(weights))
    return _zero_cache[key]


def add_lora_logits(self: Any, y: torch.Tensor, x: torch.Tensor, lora_a_stacked: torch.Tensor,
                    lora_b_stacked: torch.Tensor, scale: float, *, buffer: torch.Tensor | None = None,
                    **kwargs: Any) -> None:
    """``PunicaWrapperCPU.add_lora_logits`` that also serves *prompt* logits (``prompt_logprobs``).

    vLLM 0.32's model runner computes prompt log-probabilities with ``compute_logits`` on one request's
    prompt hidden states (x: (prompt tokens, d)), while the wrapper's ``sampler_indices`` hold one LoRA slot
    per request of the batch; vLLM's CPU op then fails (``einsum(): subscript b has size ...``) for every
    prompt-logprobs request of a LoRA-enabled engine, the base model's included. When no served adapter has
    LoRA weights on ``lm_head`` (the stacked ``lm_head`` B weights are all zero), the LoRA adds nothing to the
    logits, so the prompt logits are left as the base layer computed them: exact. Otherwise the slot of the
    rows is unknown here and :class:`PromptLogitsLoRAError` is raised (vllm#51594: adapters with LoRA on
    ``lm_head`` are not served in prompt log-probabilities). Sampling logits (one row per request), and the
    prompt logits of a step holding one request (its one slot holds for every row; measured exact with LoRA
    on ``lm_head``, tests/engines/test_lm_head_logprobs.py), go to vLLM's own method unchanged. Left open:
    a step whose prompt positions happen to equal its number of requests looks like sampling logits here
    (vLLM's op then applies other requests' ``lm_head`` LoRA); the preflight refuses such adapters for runs
    with log-likelihood tasks, so the stacked weights are zero and the term is zero.
    """
    slots = self.sampler_indices.shape[0]
    if x.view(-1, x.shape[-1]).shape[0] != slots and slots != 1:
        if _all_zero(lora_b_stacked):
            return None
        raise PromptLogitsLoRAError(
            "an adapter with LoRA weights on lm_head cannot be scored by log-likelihood: vLLM computes prompt "
            "log-probabilities without the adapter's lm_head (vllm#51594); drop the adapter's lm_head LoRA "
            "(target_modules) or score its tasks generatively")
    return _LOGITS["add_lora_logits"](self, y, x, lora_a_stacked, lora_b_stacked, scale, buffer=buffer, **kwargs)


def install_prompt_logits() -> bool:
    """Install :func:`add_lora_logits` on vLLM's ``PunicaWrapperCPU`` (this process; whatever
    ``cpu_lora_ops`` says). Returns False (and changes nothing) when this vLLM has no such wrapper."""
    try:
        from vllm.lora.punica_wrapper.punica_cpu import PunicaWrapperCPU
    except ImportError:  # pragma: no cover - depends on the vLLM build
        return False
    current = PunicaWrapperCPU.add_lora_logits
    if current is not add_lora_logits:
        _LOGITS["add_lora_logits"] = current
        PunicaWrapperCPU.add_lora_logits = add_lora_logits
    return True
