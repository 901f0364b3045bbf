"""GSM8K test (Cobbe et al. 2021, arXiv:2110.14168): grade-school maths, scored by numeric match.

Prompt and scoring follow lm-evaluation-harness's ``gsm8k`` task (``lm_eval/tasks/gsm8k/gsm8k.yaml``):
prompt ``"Question: {question}\\nAnswer:"``, stop at ``"Question:"``; two answer extractions —
``strict-match`` (the number after ``#### ``) and ``flexible-extract`` (the last number in the
response) — compared with the gold final number after removing ``,``, ``$``, everything up to
``#### `` and a trailing ``.``, case-insensitively (lm-eval's ``exact_match`` with
``regexes_to_ignore``). An extraction that finds nothing is ``[invalid]`` and scores 0. The scorer
lives in :mod:`capdrift_fast.metrics.numeric`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import polars as pl
from pydantic import Field

from capdrift_fast.benchmarks.base import (
    Benchmark,
    MetricSpec,
    NoLabelSpace,
    PromptWatch,
    RowErrors,
    no_samples_error,
    read_jsonl,
    require_fields,
)
from capdrift_fast.benchmarks.score_file import (
    ScoreFileResult,
    join_responses,
    rate,
    response_field,
    unique_responses,
)
from capdrift_fast.config import TaskConfigBase
from capdrift_fast.errors import DataError
from capdrift_fast.metrics.numeric import score_numeric
from capdrift_fast.registry import register_benchmark

DEFAULT_DATA = "gsm8k/test.jsonl"


class GSM8KTaskConfig(TaskConfigBase):
    """GSM8K test (Cobbe et al. 2021): numeric match of the final answer, with ``num_fewshot``
    solved train-style examples taken from the head of the data file (and then not evaluated)."""

    benchmark: Literal["gsm8k"]
    num_fewshot: int = Field(default=0, ge=0, le=8)


class GSM8KTask(NoLabelSpace):
    """GSM8K bound to a ``test.jsonl`` (question, answer); ``num_fewshot`` examples come from its head."""

    benchmark = "gsm8k"
    version = "1.0"
    stop: tuple[str, ...] = ("Question:",)
    metrics = (
        MetricSpec("numeric_match_strict", "GSM8K numeric match, lm-eval strict-match (#### N)", primary=True,
                   lm_eval="exact_match,strict-match"),
        MetricSpec("numeric_match_flexible", "GSM8K numeric match, lm-eval flexible-extract (last number)", primary=True,
                   drift=True, lm_eval="exact_match,flexible-extract"),
    )

    def __init__(self, name: str, path: Path, limit: int | None = None, num_fewshot: int = 0,
                 errors: RowErrors | None = None) -> None:
        self.name, self.path, self.limit, self.num_fewshot = name, path, limit, num_fewshot
        self.errors = errors or RowErrors()

    def samples(self) -> pl.DataFrame:
        """Columns: sample_id (0-based line index in the file), prompt, target (gold final answer text).

        Raises:
            DataError: (policy ``fail``) a line lacks ``question``/``answer`` or its answer has no ``#### N``;
                no usable line at all.
        """
        records = []
        self.lines: dict[str, int] = {}
        """sample_id -> line of the data file (for messages naming file:line)."""
        watch = PromptWatch(self.path, self.errors)
        for lineno, rec in read_jsonl(self.path, self.errors):
            try:
                require_fields(self.path, lineno, rec, {"question": str, "answer": str})
                if "####" not in rec["answer"]:
                    raise DataError(f"{self.path}:{lineno}: answer has no '#### <number>' final answer",
                                    self.path, lineno)
            except DataError as err:
                self.errors.bad(err)
                continue
            records.append((lineno - 1, rec))
            self.lines[str(lineno - 1)] = lineno
        shots, evals = records[: self.num_fewshot], records[self.num_fewshot :]
        prefix = "".join(f"Question: {r['question']}\nAnswer: {r['answer']}\n\n" for _, r in shots)
        if self.limit:
            evals = evals[: self.limit]
        for i, r in evals:
            watch.check(r["question"], f"line {i + 1}", i + 1)
        if not evals:
            raise no_samples_error(self.path, self.errors)
        return pl.DataFrame(
            {
                "sample_id": [str(i) for i, _ in evals],
                "prompt": [f"{prefix}Question: {r['question']}\nAnswer:" for _, r in evals],
                "target": [r["answer"] for _, r in evals],
            },
            schema={"sample_id": pl.Utf8, "prompt": pl.Utf8, "target": pl.Utf8},
        )

    def score(self, generations: pl.DataFrame) -> pl.DataFrame:
        """Numeric match per generation (1.0/0.0), both extractions (:mod:`capdrift_fast.metrics.numeric`)."""
        scored = score_numeric(generations.select("request_id", "response", "target"))
        return scored.select(
            "request_id",
            pl.col("numeric_match_strict").cast(pl.Float64),
            pl.col("numeric_match_flexible").cast(pl.Float64),
        )


@register_benchmark("gsm8k")
class GSM8K(Benchmark):
    """The GSM8K plugin: default data ``gsm8k/test.jsonl``; on target for ``numeric`` adapters."""

    name = "gsm8k"
    config_model = GSM8KTaskConfig
    target_label = "numeric"
    lm_eval_task = "gsm8k"
    version = GSM8KTask.version

    @classmethod
    def build(cls, cfg: GSM8KTaskConfig, data_dir: Path, errors: RowErrors) -> GSM8KTask:
        """The GSM8K task of one config entry."""
        return GSM8KTask(cfg.task_name(), Path(data_dir) / (cfg.data or DEFAULT_DATA), cfg.limit, cfg.num_fewshot,
                         errors)

    @classmethod
    def corpus(cls, data_dir: Path) -> list[str]:
        """Demo tokenizer text: see :meth:`Benchmark.corpus`."""
        texts: list[str] = []
        gsm = Path(data_dir) / DEFAULT_DATA
        if gsm.is_file():
            for line in list(gsm.open(encoding="utf-8"))[:400]:
                rec = json.loads(line)
                texts += [rec["question"], rec["answer"]]
        return texts

    @classmethod
    def score_file(cls, data: Path, responses: Path, *, skip_missing: bool = False, skip_extra: bool = False,
                   seed: int = 0) -> ScoreFileResult:
        """:func:`score_gsm8k_file` (``seed`` unused)."""
        return score_gsm8k_file(data, responses, skip_missing, skip_extra)


def score_gsm8k_file(data: Path, responses: Path, skip_missing: bool, skip_extra: bool) -> ScoreFileResult:
    """``capdrift score-file gsm8k``: GSM8K ``test.jsonl`` + ``{index or question, response}`` lines; both
    lm-eval extractions (see :mod:`capdrift_fast.benchmarks.score_file`).

    Raises:
        DataError: a file is missing or malformed, or responses are missing/extra without the skip option.
    """
    items = []
    for lineno, rec in read_jsonl(data):
        require_fields(data, lineno, rec, {"question": str, "answer": str})
        items.append({"index": lineno - 1, "question": rec["question"], "target": rec["answer"]})
    if not items:
        raise DataError(f"{data}: no questions")
    frame = pl.DataFrame(items, schema={"index": pl.Int64, "question": pl.Utf8, "target": pl.Utf8})
    index_of = {}
    for item in items:
        index_of.setdefault(item["question"], []).append(item["index"])

    rows, notes, unmatched = [], [], []
    for lineno, rec in read_jsonl(responses):
        response = response_field(responses, lineno, rec, ("response",))
        if "index" in rec:
            if not isinstance(rec["index"], int) or isinstance(rec["index"], bool):
                raise DataError(f"{responses}:{lineno}: field 'index' should be an integer (0-based line of {data.name})")
            rows.append({"index": rec["index"], "response": response, "_line": lineno})
        elif "question" in rec:
            require_fields(responses, lineno, rec, {"question": str})
            found = index_of.get(rec["question"], [])
            if len(found) > 1:
                raise DataError(f"{responses}:{lineno}: the question is on {len(found)} lines of {data} "
                                f"({', '.join(str(i + 1) for i in found)}); give an 'index' instead")
            if found:
                rows.append({"index": found[0], "response": response, "_line": lineno})
            else:
                unmatched.append(lineno)
        else:
            raise DataError(f"{responses}:{lineno}: needs 'index' (0-based line of {data.name}) or 'question'")
    if unmatched:
        if not skip_extra:
            raise DataError(f"{responses}: {len(unmatched)} responses have a question that is in no line of {data} "
                            f"(e.g. line {unmatched[0]}); pass --skip-extra to ignore them")
        notes.append(f"ignored {len(unmatched)} responses whose question is in no line of {data.name}")
    answers = pl.DataFrame(rows, schema={"index": pl.Int64, "response": pl.Utf8, "_line": pl.Int64})
    unique_responses(answers, "index", responses)
    joined = join_responses(frame, answers, "index", data, responses, "question", skip_missing, skip_extra, notes, "index")
    scored = score_numeric(joined)
    out = scored.select("index", "extracted_strict", "extracted_flexible", "numeric_match_strict",
                        "numeric_match_flexible")
    accuracies = [rate("numeric_match_strict", out["numeric_match_strict"]),
                  rate("numeric_match_flexible", out["numeric_match_flexible"])]
    return ScoreFileResult("gsm8k", out, accuracies, notes=notes)
