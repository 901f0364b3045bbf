"""IFEval (Zhou et al. 2023, arXiv:2311.07911): prompts with verifiable instructions.

Data: IFEval's ``input_data.jsonl`` (key, prompt, instruction_id_list, kwargs). Metrics, as defined by
the reference ``instruction_following_eval/evaluation_lib.py``: prompt-level accuracy (PLA, every
instruction of the prompt followed) and instruction-level accuracy (ILA, micro-average over
instructions), each strict and loose.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import polars as pl
from pydantic import Field

from capdrift_fast.benchmarks.base import (
    BREAKDOWN_SCHEMA,
    Benchmark,
    LmEvalDefinition,
    MetricSpec,
    NoLabelSpace,
    PromptWatch,
    RowErrors,
    no_samples_error,
    read_jsonl,
    require_fields,
)
from capdrift_fast.benchmarks.score_file import Accuracy, ScoreFileResult, join_responses, response_field
from capdrift_fast.config import TaskConfigBase
from capdrift_fast.errors import DataError, UnknownNameError
from capdrift_fast.metrics.ifeval import (
    INSTRUCTION_IDS,
    UnknownInstructionError,
    ifeval_accuracies,
    parse_instruction,
    parse_kwargs,
    score_ifeval,
)
from capdrift_fast.registry import register_benchmark

DEFAULT_DATA = "ifeval/input_data.jsonl"


LM_EVAL_IFEVAL = LmEvalDefinition(
    task="ifeval", version=4.0, num_fewshot=0, fewshot_split=None, until=(), max_gen_toks=1280,
    dataset_path="google/IFEval", dataset_name=None, test_split="train",
)
"""lm-eval 0.4.13's ``lm_eval/tasks/ifeval/ifeval.yaml``."""


class IFEvalTaskConfig(TaskConfigBase):
    """IFEval (Zhou et al. 2023): verifiable instructions, scored strict and loose (ILA/PLA).
    ``max_tokens`` defaults to lm-eval's ``max_gen_toks`` 1280 (responses cut at the limit have
    ``finish_reason: length``, counted per adapter and task in the matrix's ``truncated`` column)."""

    benchmark: Literal["ifeval"]
    max_tokens: int | None = Field(default=LM_EVAL_IFEVAL.max_gen_toks, ge=1,
                                   description="Max new tokens; lm-eval's ifeval uses 1280.")


class IFEvalTask(NoLabelSpace):
    """IFEval bound to one ``input_data.jsonl``; ``limit`` keeps the first N prompts."""

    benchmark = "ifeval"
    version = "1.0"
    lm_eval = LM_EVAL_IFEVAL
    num_fewshot = 0
    stop: tuple[str, ...] = ()
    metrics = (
        MetricSpec("pla_strict", "IFEval prompt-level accuracy, strict (Zhou et al. 2023)", primary=True,
                   lm_eval="prompt_level_strict_acc,none"),
        MetricSpec("ila_strict", "IFEval instruction-level accuracy, strict", weight="n_instructions", primary=True,
                   binary=False, drift=True, lm_eval="inst_level_strict_acc,none"),
        MetricSpec("pla_loose", "IFEval prompt-level accuracy, loose", lm_eval="prompt_level_loose_acc,none"),
        MetricSpec("ila_loose", "IFEval instruction-level accuracy, loose", weight="n_instructions", binary=False,
                   lm_eval="inst_level_loose_acc,none"),
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
        scored = score_ifeval(generations.select("request_id", "response", "instruction_id_list", "kwargs"))
        return scored.select(
            "request_id",
            pl.col("prompt_level_strict").cast(pl.Float64).alias("pla_strict"),
            pl.col("inst_level_strict").list.mean().alias("ila_strict"),
            pl.col("prompt_level_loose").cast(pl.Float64).alias("pla_loose"),
            pl.col("inst_level_loose").list.mean().alias("ila_loose"),
            pl.col("inst_level_strict").list.len().cast(pl.Float64).alias("n_instructions"),
        )

    def breakdown(self, generations: pl.DataFrame) -> pl.DataFrame:
        """One row per instruction of each generation (``BREAKDOWN_SCHEMA``): ``group`` = the instruction id
        (``change_case:english_lowercase``, ...), ``metric`` = ``ila_strict`` / ``ila_loose``, ``value`` 0/1 —
        the instruction-level results whose micro-average is ILA (Zhou et al. 2023), by instruction type."""
        scored = score_ifeval(generations.select("request_id", "response", "instruction_id_list", "kwargs"))
        per = (
            scored.select("request_id", pl.col("instruction_id_list").alias("group"),
                          pl.col("inst_level_strict").alias("ila_strict"), pl.col("inst_level_loose").alias("ila_loose"))
            .with_columns(unit=pl.int_ranges(pl.col("group").list.len()).cast(pl.List(pl.Int32)))
            .explode("group", "ila_strict", "ila_loose", "unit")
        )
        return per.unpivot(["ila_strict", "ila_loose"], index=["request_id", "unit", "group"], variable_name="metric") \
            .with_columns(pl.col("value").cast(pl.Float64)).select(list(BREAKDOWN_SCHEMA)).cast(BREAKDOWN_SCHEMA)

    def references(self, samples: pl.DataFrame) -> pl.Series:
        """The instructions to follow, one per line with their arguments (the sample browser's reference)."""
        return pl.Series("reference", [
            "\n".join(f"{i} {json.dumps({k: v for k, v in kw.items() if v is not None})}" if kw else i
                      for i, kw in zip(ids, json.loads(kws)))
            for ids, kws in zip(samples["instruction_id_list"].to_list(), samples["kwargs"].to_list())
        ], dtype=pl.Utf8)

    def lm_eval_samples(self, generations: pl.DataFrame) -> pl.DataFrame:
        """Per-sample rows of lm-eval's ``samples_ifeval_*.jsonl`` (filter ``none``, target ``"0"`` as its
        ``doc_to_target: 0``): ``request_id``, ``target``, ``filter``, ``filtered_resp`` (the response) and
        ``metrics`` (JSON: lm-eval's ``process_results`` — prompt-level booleans, instruction-level lists)."""
        scored = score_ifeval(generations.select("request_id", "response", "instruction_id_list", "kwargs"))
        metrics = [json.dumps({"prompt_level_strict_acc": ps, "inst_level_strict_acc": list(is_),
                               "prompt_level_loose_acc": pl_, "inst_level_loose_acc": list(il)})
                   for ps, is_, pl_, il in scored.select("prompt_level_strict", "inst_level_strict", "prompt_level_loose",
                                                        "inst_level_loose").iter_rows()]
        return scored.select("request_id", target=pl.lit("0"), filter=pl.lit("none"),
                             filtered_resp=pl.col("response").fill_null("")).with_columns(
            metrics=pl.Series(metrics, dtype=pl.Utf8))


@register_benchmark("ifeval")
class IFEval(Benchmark):
    """The IFEval plugin: default data ``ifeval/input_data.jsonl``; on target for ``instruction`` adapters."""

    name = "ifeval"
    config_model = IFEvalTaskConfig
    target_label = "instruction"
    lm_eval_task = "ifeval"
    version = IFEvalTask.version

    @classmethod
    def build(cls, cfg: IFEvalTaskConfig, data_dir: Path, errors: RowErrors) -> IFEvalTask:
        """The IFEval task of one config entry."""
        return IFEvalTask(cfg.task_name(), Path(data_dir) / (cfg.data or DEFAULT_DATA), cfg.limit, errors)

    @classmethod
    def corpus(cls, data_dir: Path) -> list[str]:
        """Demo tokenizer text: see :meth:`Benchmark.corpus`."""
        texts: list[str] = []
        for path in sorted((Path(data_dir) / "ifeval").glob("input_data*.jsonl"))[:1]:
            texts += [json.loads(line)["prompt"] for line in path.open(encoding="utf-8")]
        return texts

    @classmethod
    def score_file(cls, data: Path, responses: Path, *, skip_missing: bool = False, skip_extra: bool = False,
                   seed: int = 0) -> ScoreFileResult:
        """:func:`score_ifeval_file` (``seed`` unused)."""
        return score_ifeval_file(data, responses, skip_missing, skip_extra)


def score_ifeval_file(data: Path, responses: Path, skip_missing: bool, skip_extra: bool) -> ScoreFileResult:
    """``capdrift score-file ifeval``: IFEval ``input_data.jsonl`` + ``{prompt, response}`` lines, joined on the
    prompt text as the reference ``evaluation_lib`` does (see :mod:`capdrift_fast.benchmarks.score_file`).

    Raises:
        DataError: a file is missing or malformed, or responses are missing/extra without the skip option.
    """
    items = []
    for lineno, rec in read_jsonl(data):
        require_fields(data, lineno, rec, {"key": int, "prompt": str, "instruction_id_list": list, "kwargs": list})
        try:
            parse_kwargs(rec["instruction_id_list"], rec["kwargs"])
        except (UnknownInstructionError, ValueError) as exc:
            raise DataError(f"{data}:{lineno}: key {rec['key']}: {exc}") from None
        items.append({"key": rec["key"], "prompt": rec["prompt"], "instruction_id_list": rec["instruction_id_list"],
                      "kwargs": json.dumps(rec["kwargs"])})
    if not items:
        raise DataError(f"{data}: no prompts")
    frame = pl.DataFrame(items, schema={"key": pl.Int64, "prompt": pl.Utf8, "instruction_id_list": pl.List(pl.Utf8),
                                        "kwargs": pl.Utf8})
    dup = frame.filter(pl.col("prompt").is_duplicated())
    if dup.height:
        raise DataError(f"{data}: {dup.height} rows share a prompt text (e.g. key {dup['key'][0]}); responses are "
                        "joined by prompt text, so prompts must be unique")

    rows: dict[str, dict] = {}
    repeated = 0
    for lineno, rec in read_jsonl(responses):
        require_fields(responses, lineno, rec, {"prompt": str})
        response = response_field(responses, lineno, rec, ("response",))
        repeated += rec["prompt"] in rows
        rows[rec["prompt"]] = {"prompt": rec["prompt"], "response": response, "_line": lineno}
    notes = []
    if repeated:
        notes.append(f"{repeated} prompts occur more than once in {responses.name}; their last response is used "
                     "(as the reference's prompt -> response dict does)")
    answers = pl.DataFrame(list(rows.values()), schema={"prompt": pl.Utf8, "response": pl.Utf8, "_line": pl.Int64})
    joined = join_responses(frame, answers, "prompt", data, responses, "prompt", skip_missing, skip_extra, notes, "key")
    try:
        scored = score_ifeval(joined.select("key", "response", "instruction_id_list", "kwargs"))
    except FileNotFoundError as exc:
        raise DataError(str(exc)) from None
    acc = ifeval_accuracies(scored)
    n_inst = int(scored["inst_level_strict"].list.len().sum())
    accuracies = [
        Accuracy("prompt_level_strict_acc", acc["prompt_level_strict_acc"],
                 int(scored["prompt_level_strict"].sum()), scored.height),
        Accuracy("inst_level_strict_acc", acc["inst_level_strict_acc"],
                 int(scored["inst_level_strict"].list.sum().sum()), n_inst),
        Accuracy("prompt_level_loose_acc", acc["prompt_level_loose_acc"],
                 int(scored["prompt_level_loose"].sum()), scored.height),
        Accuracy("inst_level_loose_acc", acc["inst_level_loose_acc"],
                 int(scored["inst_level_loose"].list.sum().sum()), n_inst),
    ]
    out = scored.select("key", "prompt_level_strict", "prompt_level_loose", "inst_level_strict", "inst_level_loose")
    return ScoreFileResult("ifeval", out, accuracies, notes=notes)
