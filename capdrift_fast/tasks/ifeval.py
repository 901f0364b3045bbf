"""IFEval (Zhou et al. 2023, arXiv:2311.07911): prompts with verifiable instructions.

Data: IFEval's ``input_data.jsonl`` (key, prompt, instruction_id_list, kwargs). Metrics, as defined by
the reference ``instruction_following_eval/evaluation_lib.py``: prompt-level accuracy (PLA, every
instruction of the prompt followed) and instruction-level accuracy (ILA, micro-average over
instructions), each strict and loose.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from capdrift_fast.errors import DataError, UnknownNameError
from capdrift_fast.tasks.base import MetricSpec, PromptWatch, RowErrors, no_samples_error, read_jsonl, require_fields

DEFAULT_DATA = "ifeval/input_data.jsonl"


class IFEvalTask:
    """IFEval bound to one ``input_data.jsonl``; ``limit`` keeps the first N prompts."""

    benchmark = "ifeval"
    version = "1.0"
    stop: tuple[str, ...] = ()
    metrics = (
        MetricSpec("pla_strict", "IFEval prompt-level accuracy, strict (Zhou et al. 2023)", primary=True),
        MetricSpec("ila_strict", "IFEval instruction-level accuracy, strict", weight="n_instructions", primary=True,
                   binary=False),
        MetricSpec("pla_loose", "IFEval prompt-level accuracy, loose"),
        MetricSpec("ila_loose", "IFEval instruction-level accuracy, loose", weight="n_instructions", binary=False),
    )

    def __init__(self, name: str, path: Path, limit: int | None = None, errors: RowErrors | None = None) -> None:
        self.name, self.path, self.limit = name, path, limit
        self.errors = errors or RowErrors()

    def samples(self) -> pl.DataFrame:
        """Columns: sample_id (the IFEval key), prompt, instruction_id_list (List[Utf8]), kwargs (JSON Utf8).

        Raises:
            DataError: (policy ``fail``) a line lacks a field, has the wrong type, repeats a key, names an
                unknown instruction id or gives it unusable kwargs; no usable line at all.
        """
        rows = []
        seen: dict[int, int] = {}
        self.lines: dict[str, int] = {}
        """sample_id -> line of the data file (for messages naming file:line)."""
        watch = PromptWatch(self.path, self.errors)
        for lineno, rec in read_jsonl(self.path, self.errors):
            try:
                self._check_row(lineno, rec)
                if rec["key"] in seen:  # request ids are adapter/task/key: a repeated key would double one
                    raise DataError(f"{self.path}:{lineno}: key {rec['key']} repeats line {seen[rec['key']]}",
                                    self.path, lineno)
                seen[rec["key"]] = lineno
            except DataError as err:
                self.errors.bad(err)
                continue
            watch.check(rec["prompt"], f"line {lineno}", lineno)
            self.lines[str(rec["key"])] = lineno
            rows.append({"sample_id": str(rec["key"]), "prompt": rec["prompt"],
                         "instruction_id_list": rec["instruction_id_list"], "kwargs": json.dumps(rec["kwargs"])})
            if self.limit and len(rows) >= self.limit:
                break
        if not rows:
            raise no_samples_error(self.path, self.errors)
        return pl.DataFrame(rows, schema={"sample_id": pl.Utf8, "prompt": pl.Utf8,
                                          "instruction_id_list": pl.List(pl.Utf8), "kwargs": pl.Utf8})

    def _check_row(self, lineno: int, rec: dict) -> None:
        """Raise :class:`DataError` (file:line) for a row the scorer could not score."""
        from capdrift_fast.scoring.ifeval import INSTRUCTION_IDS, parse_instruction

        path = self.path
        require_fields(path, lineno, rec, {"key": int, "prompt": str, "instruction_id_list": list, "kwargs": list})
        if len(rec["kwargs"]) != len(rec["instruction_id_list"]):
            raise DataError(f"{path}:{lineno}: kwargs has {len(rec['kwargs'])} entries for "
                            f"{len(rec['instruction_id_list'])} instructions", path, lineno)
        for iid, kw in zip(rec["instruction_id_list"], rec["kwargs"]):
            if not isinstance(iid, str) or iid not in INSTRUCTION_IDS:
                err = UnknownNameError("IFEval instruction id", str(iid), INSTRUCTION_IDS)
                raise DataError(f"{path}:{lineno}: {err}", path, lineno)
            if not isinstance(kw, dict):
                raise DataError(f"{path}:{lineno}: kwargs of {iid!r} should be an object, got {type(kw).__name__}",
                                path, lineno)
            try:  # the scorer's own validation: a bad kwarg found now, not after an overnight run
                parse_instruction(iid, kw)
            except (ValueError, TypeError, KeyError) as exc:
                raise DataError(f"{path}:{lineno}: {exc}", path, lineno) from None

    def score(self, generations: pl.DataFrame) -> pl.DataFrame:
        """Score ``generations`` (request_id, response + the samples columns) with the IFEval checkers."""
        from capdrift_fast.scoring.ifeval import score_ifeval

        scored = score_ifeval(generations.select("request_id", "response", "instruction_id_list", "kwargs"))
        return scored.select(
            "request_id",
            pl.col("prompt_level_strict").cast(pl.Float64).alias("pla_strict"),
            pl.col("inst_level_strict").list.mean().alias("ila_strict"),
            pl.col("prompt_level_loose").cast(pl.Float64).alias("pla_loose"),
            pl.col("inst_level_loose").list.mean().alias("ila_loose"),
            pl.col("inst_level_strict").list.len().cast(pl.Float64).alias("n_instructions"),
        )
