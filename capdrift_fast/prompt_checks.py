"""Prompt lengths checked before any engine starts.

vLLM refuses a prompt whose tokens plus ``max_tokens`` exceed ``max_model_len`` — after the engine has
started, and once the run folder is tied to the config. :func:`check_prompt_lengths` tokenizes every
distinct prompt of the plan with the model's tokenizer (as the engine will encode it: chat template
included; no weights, no engine) and, per the run's ``data_errors`` policy, stops with the first
over-long row (``fail``, the message names file:line, its length and what to do) or leaves such rows out
of the plan (``skip``: every model's request for that sample), listing them with file:line like other
malformed rows. ``capdrift validate`` runs the same check.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from capdrift_fast.errors import DataError

if TYPE_CHECKING:
    from capdrift_fast.config import RunConfig
    from capdrift_fast.pipeline.plan import Plan

SLICE = 2048
"""Prompts tokenized at a time (only their lengths are kept, so host memory stays flat)."""


def model_max_len(cfg: "RunConfig", local_dir: Path | None) -> int | None:
    """``engine.max_model_len``, else the model's ``max_position_embeddings`` (what vLLM defaults to), else
    None (then only the engine checks)."""
    if cfg.engine.max_model_len:
        return cfg.engine.max_model_len
    if local_dir is None or not (local_dir / "config.json").is_file():
        return None
    try:
        conf = json.loads((local_dir / "config.json").read_text(encoding="utf-8"))
        conf = conf.get("text_config", conf) if isinstance(conf, dict) else {}
        value = conf.get("max_position_embeddings")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and value > 0 else None


def prompt_lengths(cfg: "RunConfig", requests: pl.DataFrame, engine: Any = None) -> pl.DataFrame:
    """Columns task, sample_id, prompt_tokens, max_tokens: one row per distinct (task, sample_id).

    Raises:
        EngineError: the tokenizer cannot be loaded (the message names the model).
    """
    from capdrift_fast.engines.prompts import load_prompt_encoder

    uniq = requests.unique(subset=["task", "sample_id"], keep="first", maintain_order=True)
    prompts = uniq.get_column("prompt")
    encode = engine.encode if engine is not None else load_prompt_encoder(cfg.model, "to check prompt lengths")

    lens = [len(ids) for start in range(0, len(prompts), SLICE)
            for ids in encode(prompts.slice(start, SLICE).to_list())]
    return uniq.select("task", "sample_id", "max_tokens").with_columns(
        prompt_tokens=pl.Series(lens, dtype=pl.Int64))


def _where(plan: "Plan", task: str, sample_id: str) -> tuple[str, int | None]:
    t = plan.tasks[task]
    path = str(getattr(t, "path", task))
    lines = getattr(t, "lines", None) or {}
    line = lines.get(sample_id)
    if line is None and hasattr(t, "line_of"):
        line = t.line_of(sample_id)
    return path, line


def check_prompt_lengths(cfg: "RunConfig", plan: "Plan", max_len: int | None, engine: Any = None,
                         policy: str | None = None) -> "Plan":
    """``plan`` without the samples whose prompt tokens + ``max_tokens`` exceed ``max_len`` (policy
    ``skip``: they join ``skipped_rows``), or ``plan`` unchanged when all fit (``max_len`` None: no check).

    Raises:
        DataError: (policy ``fail``, default ``cfg.data_errors``) the first over-long row, with file:line.
        EngineError: the tokenizer cannot be loaded.
    """
    if max_len is None or plan.requests.height == 0:
        return plan
    policy = policy or cfg.data_errors
    lengths = prompt_lengths(cfg, plan.requests, engine)
    over = lengths.filter(pl.col("prompt_tokens") + pl.col("max_tokens") > max_len)
    if over.height == 0:
        return plan
    errors = []
    for row in over.iter_rows(named=True):
        path, line = _where(plan, row["task"], row["sample_id"])
        loc = f"{path}:{line}" if line is not None else f"{path} (sample {row['sample_id']!r})"
        err = DataError(
            f"{loc}: prompt of task {row['task']!r} is {row['prompt_tokens']} tokens; with max_tokens "
            f"{row['max_tokens']} it exceeds max_model_len {max_len}: shorten the row, raise engine.max_model_len, "
            "lower max_tokens, or set data_errors: skip to leave it out", path, line)
        err.task, err.sample_id = row["task"], row["sample_id"]  # type: ignore[attr-defined]
        errors.append(err)
    if policy == "fail":
        raise errors[0]
    drop = over.select("task", "sample_id")
    requests = plan.requests.join(drop, on=["task", "sample_id"], how="anti")
    samples = {name: frame.join(drop.filter(pl.col("task") == name).select("sample_id"), on="sample_id", how="anti")
               for name, frame in plan.samples.items()}
    empty = [name for name, frame in samples.items() if frame.height == 0]
    if empty:
        raise DataError(f"task {empty[0]!r}: every prompt exceeds max_model_len {max_len}; "
                        "raise engine.max_model_len or lower max_tokens")
    return replace(plan, requests=requests, samples=samples, skipped_rows=plan.skipped_rows + tuple(errors))


def drop_samples(plan: "Plan", skipped: list[dict[str, Any]]) -> "Plan":
    """``plan`` without the samples a run folder's ``data_errors.json`` lists as left out for their length
    (entries with ``task`` and ``sample_id``): how ``capdrift merge`` rebuilds the shards' plan without a
    tokenizer."""
    keys = [(e["task"], e["sample_id"]) for e in skipped if e.get("task") is not None and e.get("sample_id") is not None]
    if not keys:
        return plan
    drop = pl.DataFrame(keys, schema={"task": pl.Utf8, "sample_id": pl.Utf8}, orient="row")
    samples = {name: frame.join(drop.filter(pl.col("task") == name).select("sample_id"), on="sample_id", how="anti")
               for name, frame in plan.samples.items()}
    return replace(plan, requests=plan.requests.join(drop, on=["task", "sample_id"], how="anti"), samples=samples)
