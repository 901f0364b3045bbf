"""GSM8K test (Cobbe et al. 2021, arXiv:2110.14168): grade-school maths, scored by numeric match.

Prompt and scoring follow lm-evaluation-harness's ``gsm8k`` task (``lm_eval/tasks/gsm8k/gsm8k.yaml``):
prompt ``"Question: {question}\\nAnswer:"``, stop at ``"Question:"``; two answer extractions —
``strict-match`` (the number after ``#### ``) and ``flexible-extract`` (the last number in the
response) — compared with the gold final number after removing ``,``, ``$``, everything up to
``#### `` and a trailing ``.``, case-insensitively (lm-eval's ``exact_match`` with
``regexes_to_ignore``). An extraction that finds nothing is ``[invalid]`` and scores 0. The scorer
lives in :mod:`capdrift_fast.scoring.numeric`.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from capdrift_fast.errors import DataError
from capdrift_fast.scoring.numeric import score_numeric
from capdrift_fast.tasks.base import MetricSpec, PromptWatch, RowErrors, no_samples_error, read_jsonl, require_fields

DEFAULT_DATA = "gsm8k/test.jsonl"


class GSM8KTask:
    """GSM8K bound to a ``test.jsonl`` (question, answer); ``num_fewshot`` examples come from its head."""

    benchmark = "gsm8k"
    version = "1.0"
    stop: tuple[str, ...] = ("Question:",)
    metrics = (
        MetricSpec("numeric_match_strict", "GSM8K numeric match, lm-eval strict-match (#### N)", primary=True),
        MetricSpec("numeric_match_flexible", "GSM8K numeric match, lm-eval flexible-extract (last number)", primary=True),
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
        """Numeric match per generation (1.0/0.0), both extractions (:mod:`capdrift_fast.scoring.numeric`)."""
        scored = score_numeric(generations.select("request_id", "response", "target"))
        return scored.select(
            "request_id",
            pl.col("numeric_match_strict").cast(pl.Float64),
            pl.col("numeric_match_flexible").cast(pl.Float64),
        )
