"""The engine interface the pipeline speaks: capdrift's request and generation records, not a backend's.

An engine is started for one base model and its adapters (in config order) and generates plan rows
(``PLAN_SCHEMA``: ``request_id``, ``adapter`` — an adapter *name*, ``base`` for the base model — ``task``,
``sample_id``, ``prompt``, ``max_tokens``; the ``lora_id`` column is carried through to the record), yielding one
``GENERATION_SCHEMA`` record per request as it finishes. A row whose optional ``continuations`` column is set is
a log-likelihood request (multiple-choice tasks): its record carries one summed log-probability per
continuation (``choice_logprobs``, ``choice_tokens``, ``choice_greedy``; :mod:`capdrift_fast.engines.loglik`). How adapters are slotted into the backend
(vLLM's LoRA ids, base isolation, request order, CPU LoRA ops) is the backend's own business, set by its
engine config.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import polars as pl

from capdrift_fast.config import AdapterConfig, RunConfig, SamplingConfig


@runtime_checkable
class Engine(Protocol):
    """A started inference engine (see the module docstring).

    Attributes:
        adapters: the adapters it serves, in config order.
        startup_s: seconds it took to start.
        dtype: the numeric type it computes in (``float32``, ``bfloat16``, ...), for the parity guard.
    """

    adapters: Sequence[AdapterConfig]
    startup_s: float
    dtype: str

    def generate(self, requests: pl.DataFrame, sampling: SamplingConfig,
                 stop: dict[str, tuple[str, ...]] | None = None) -> Iterator[dict[str, Any]]:
        """Generate ``requests`` (plan rows); yield one generation record per request, in completion order.
        ``stop``: task name -> stop strings. A run with letter-choice tasks also passes ``letters=`` (task ->
        answer letters; :meth:`capdrift_fast.engines.vllm_engine.VLLMEngine.generate`)."""
        ...

    def close(self) -> None:
        """Release the engine's memory."""
        ...


def start_engine(cfg: RunConfig) -> Engine:
    """Start the engine for ``cfg``'s model and adapters (vLLM, the one backend today).

    Raises:
        EngineError: the backend is not installed or refused to start (its reason in the message).
    """
    from capdrift_fast.engines.vllm_engine import VLLMEngine  # heavy (vLLM, torch): only when a run needs it

    return VLLMEngine(cfg.model, cfg.engine, cfg.adapters, seed=cfg.sampling.seed)
