"""The Arrow schema of a generation record: one row per (base or adapter) x prompt request."""

from __future__ import annotations

import pyarrow as pa

GENERATION_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("request_id", pa.string(), nullable=False),  # "{adapter}/{task}/{sample_id}"
        pa.field("adapter", pa.string(), nullable=False),  # "base" for the base model
        pa.field("lora_id", pa.int32(), nullable=False),  # 0 for base, 1..N in config order
        pa.field("task", pa.string(), nullable=False),
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("response", pa.string(), nullable=False),
        pa.field("prompt_tokens", pa.int32(), nullable=False),
        pa.field("output_tokens", pa.int32(), nullable=False),
        pa.field("output_token_ids", pa.list_(pa.int32()), nullable=False),
        pa.field("finish_reason", pa.string(), nullable=False),  # "stop" | "length" | ...
        pa.field("ttft_s", pa.float64()),  # time to first token in seconds, when the engine reports it
        pa.field("finished_at", pa.float64(), nullable=False),  # unix time, seconds
        # sampled runs (temperature > 0) only: vLLM's log-probability (nats, raw logits) of each output
        # token, which the parity guard compares with the reference's (null for greedy runs)
        pa.field("output_logprobs", pa.list_(pa.float32())),
    ]
)


GUARD_STATUSES = ("agreed", "SUSPECT", "not run", "disabled", "not checked")
"""Per model: the guard ran and vLLM agreed / disagreed (``SUSPECT``), could not run (``not run``: see
``parity.json``'s message), was switched off, or had no canary of this model (a shard without its canaries)."""


def guard_status(status: str, suspect: bool | None) -> str:
    """One model's :data:`GUARD_STATUSES` entry from the guard's ``status`` and the model's ``suspect``."""
    if status == "error":
        return "not run"
    if status == "disabled":
        return "disabled"
    return "not checked" if suspect is None else ("SUSPECT" if suspect else "agreed")
