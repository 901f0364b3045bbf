"""The Arrow schema of a generation record: one row per (base or adapter) x prompt request.

A request is either a *generation* (``response`` is the generated text) or, for multiple-choice tasks, a
*log-likelihood* request (lm-evaluation-harness's ``loglikelihood``, one per choice, gathered in one record
per sample): then ``choice_logprobs[i]`` is the summed log-probability (nats) of choice ``i``'s continuation
tokens given the context, ``choice_tokens[i]`` their number, ``choice_greedy[i]`` whether every one of them
is the model's argmax (lm-eval's ``is_greedy``), ``response`` the highest-scoring choice's text and
``finish_reason`` ``"loglikelihood"``. The choice columns are null for generations.
"""

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
        # log-likelihood requests only (run-folder format 3): one entry per choice, in the task's choice order
        pa.field("choice_logprobs", pa.list_(pa.float64())),  # summed continuation log-prob, nats
        pa.field("choice_tokens", pa.list_(pa.int32())),  # continuation tokens scored
        pa.field("choice_greedy", pa.list_(pa.bool_())),  # every continuation token is the argmax
    ]
)

LATER_FIELDS = ("output_logprobs", "choice_logprobs", "choice_tokens", "choice_greedy")
"""Nullable fields added after capdrift_fast 0.1.0: a shard written without them reads with them null."""

LOGLIKELIHOOD_FINISH = "loglikelihood"
"""``finish_reason`` of a log-likelihood record."""


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
