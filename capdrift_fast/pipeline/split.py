"""Deterministic shards of a run's requests, balanced by expected tokens.

``capdrift run CONFIG --out DIR --shard I/N`` runs shard ``I`` of ``N`` (**0-based**: ``0/4`` .. ``3/4``, so
Kubernetes' ``$JOB_COMPLETION_INDEX`` and a Slurm ``--array=0-3`` task id can be passed as they are).

How requests are split: the unit is a **sample group** — one (task, sample) prompt with all of its
requests (the base model and every adapter), so a sample's paired comparison, its parity canaries and its
prompt stay in one shard. A group's expected cost is ``sum over its requests of (prompt tokens +
max_tokens)`` (prompt tokens counted with the model's tokenizer, as the engine encodes them). Groups are
assigned by greedy LPT (longest processing time first): sorted by cost, largest first (ties: plan order),
each goes to the shard with the least expected tokens so far (ties: lowest index). LPT's largest shard
is at most 4/3 of the optimum (Graham 1969); with many small groups it is within one group of the mean.

The split depends only on the config, the data and the tokenizer, so every array task computes the same
split independently; its digest (``assignment_sha256``) is stored in each shard's ``run.json`` and
checked by :func:`capdrift_fast.distributed.merge.merge`.
"""

from __future__ import annotations

import hashlib
import heapq
import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import polars as pl

from capdrift_fast.config import RunConfig
from capdrift_fast.errors import ConfigError
from capdrift_fast.pipeline.plan import PLAN_SCHEMA, Plan

if TYPE_CHECKING:
    from capdrift_fast.config import ModelConfig

_SHARD_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class ShardSpec:
    """Shard ``index`` (0-based) of ``count`` shards."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ConfigError(f"--shard {self.index}/{self.count}: the number of shards must be at least 1")
        if not 0 <= self.index < self.count:
            raise ConfigError(
                f"--shard {self.index}/{self.count}: shard indices are 0-based, so with {self.count} shard(s) "
                f"I runs from 0 to {self.count - 1} (Kubernetes: $JOB_COMPLETION_INDEX; Slurm: --array=0-{self.count - 1} "
                "and $SLURM_ARRAY_TASK_ID)"
            )

    @classmethod
    def parse(cls, text: str) -> "ShardSpec":
        """``"I/N"`` -> ShardSpec(I, N).

        Raises:
            ConfigError: not of the form ``I/N`` with integers, N < 1, or I outside 0..N-1.
        """
        m = _SHARD_RE.match(text or "")
        if not m:
            raise ConfigError(f"--shard {text!r}: expected I/N with 0-based I, e.g. --shard 0/4 for the first of 4 shards")
        return cls(int(m.group(1)), int(m.group(2)))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def label(self) -> str:
        """``"shard 1/4"`` (0-based index) for messages."""
        return f"shard {self.index}/{self.count}"


def sample_groups(requests: pl.DataFrame, prompt_tokens: pl.DataFrame) -> pl.DataFrame:
    """One row per (task, sample_id) group of ``requests`` (``PLAN_SCHEMA`` rows), in plan order, with
    ``order`` (0-based first appearance), ``n_requests`` and ``expected_tokens`` (sum over the group's
    requests of prompt tokens + max_tokens).

    ``prompt_tokens``: columns task, sample_id, prompt_tokens (one row per group).

    Raises:
        ValueError: a group has no prompt token count.
    """
    groups = (
        requests.with_row_index("_row")
        .join(prompt_tokens.select("task", "sample_id", "prompt_tokens"), on=["task", "sample_id"], how="left")
        .group_by("task", "sample_id")
        .agg(order=pl.col("_row").min(), n_requests=pl.len(),
             expected_tokens=(pl.col("prompt_tokens") + pl.col("max_tokens")).sum(),
             missing=pl.col("prompt_tokens").is_null().any())
        .sort("order")
    )
    if groups.get_column("missing").any():
        bad = groups.filter(pl.col("missing")).row(0, named=True)
        raise ValueError(f"no prompt token count for task {bad['task']!r} sample {bad['sample_id']!r}")
    return groups.drop("missing").with_columns(pl.col("expected_tokens").cast(pl.Int64))


def assign_shards(requests: pl.DataFrame, prompt_tokens: pl.DataFrame, count: int) -> pl.DataFrame:
    """Every request of ``requests`` with its ``shard`` (0-based, Int32) and its group's
    ``expected_tokens``, by greedy LPT over sample groups (module docstring). Deterministic: the same
    inputs give the same assignment; request order is kept.

    Returns:
        ``requests`` plus columns ``shard`` and ``group_tokens``; ``requests.height`` rows.
    """
    groups = sample_groups(requests, prompt_tokens)
    ranked = groups.sort(["expected_tokens", "order"], descending=[True, False])
    heap = [(0, i) for i in range(count)]
    shard_of: list[int] = []
    for cost in ranked.get_column("expected_tokens").to_list():
        load, idx = heapq.heappop(heap)
        shard_of.append(idx)
        heapq.heappush(heap, (load + int(cost), idx))
    table = ranked.select("task", "sample_id", group_tokens="expected_tokens").with_columns(
        shard=pl.Series(shard_of, dtype=pl.Int32))
    return requests.join(table, on=["task", "sample_id"], how="left", maintain_order="left")


def assignment_digest(assigned: pl.DataFrame) -> str:
    """SHA-256 over ``request_id<TAB>shard`` lines sorted by request id: equal digests = equal splits."""
    lines = assigned.select("request_id", "shard").sort("request_id")
    h = hashlib.sha256()
    for rid, shard in lines.iter_rows():
        h.update(f"{rid}\t{shard}\n".encode())
    return h.hexdigest()


def shard_summary(assigned: pl.DataFrame, count: int) -> list[dict[str, int]]:
    """Per shard (index 0..count-1) of :func:`assign_shards`' output: ``requests``, ``samples`` (groups)
    and ``expected_tokens`` (prompt tokens + max_tokens over its requests)."""
    reqs = dict(assigned.group_by("shard").len().iter_rows())
    groups = assigned.unique(subset=["task", "sample_id"]).group_by("shard").agg(
        samples=pl.len(), expected_tokens=pl.col("group_tokens").sum())
    got = {r["shard"]: r for r in groups.iter_rows(named=True)}
    return [{"shard": i, "requests": int(reqs.get(i, 0)), "samples": int(got[i]["samples"]) if i in got else 0,
             "expected_tokens": int(got[i]["expected_tokens"]) if i in got else 0} for i in range(count)]


def count_prompt_tokens(model: "ModelConfig", requests: pl.DataFrame, engine: Any = None) -> pl.DataFrame:
    """Prompt tokens of each (task, sample_id) of ``requests`` as the engine will encode them.

    ``engine``: a started :class:`~capdrift_fast.engines.vllm_engine.VLLMEngine` whose tokenizer is used;
    by default the model's tokenizer is loaded with transformers (no weights, no engine).

    Returns:
        columns task, sample_id, prompt_tokens (Int64), one row per distinct (task, sample_id).

    Raises:
        EngineError: the tokenizer cannot be loaded (the message names the model).
    """
    from capdrift_fast.engines.prompts import load_prompt_encoder

    uniq = requests.unique(subset=["task", "sample_id"], keep="first", maintain_order=True)
    prompts = uniq.get_column("prompt").to_list()
    encode = engine.encode if engine is not None else load_prompt_encoder(model, "to split the requests by tokens")
    ids = encode(prompts)
    return uniq.select("task", "sample_id").with_columns(
        prompt_tokens=pl.Series([len(i) for i in ids], dtype=pl.Int64))


def shard_plan(served: RunConfig, plan: Plan, shard: ShardSpec, engine: Any = None) -> tuple[Plan, dict[str, Any]]:
    """``plan`` restricted to ``shard``'s requests, and the shard's identity for ``run.json``: ``index``,
    ``count``, ``assignment_sha256`` (digest of the whole split), ``n_plan`` (requests of the whole plan),
    ``requests`` and ``expected_tokens`` of this shard, and ``split`` (requests, samples, expected tokens
    of every shard). Prompt tokens are counted with ``engine``'s tokenizer when given, else the model's.

    Raises:
        EngineError: the model's tokenizer cannot be loaded.
    """
    tokens = count_prompt_tokens(served.model, plan.requests, engine)
    assigned = assign_shards(plan.requests, tokens, shard.count)
    split = shard_summary(assigned, shard.count)
    mine = assigned.filter(pl.col("shard") == shard.index).select(list(PLAN_SCHEMA))
    info = {"index": shard.index, "count": shard.count, "assignment_sha256": assignment_digest(assigned),
            "n_plan": plan.requests.height, "requests": mine.height,
            "expected_tokens": split[shard.index]["expected_tokens"], "split": split}
    return replace(plan, requests=mine), info

