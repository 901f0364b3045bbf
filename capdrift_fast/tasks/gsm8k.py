"""GSM8K test (Cobbe et al. 2021, arXiv:2110.14168): grade-school maths, scored by numeric match.

Prompt and scoring follow lm-evaluation-harness's ``gsm8k`` task (``lm_eval/tasks/gsm8k/gsm8k.yaml``):
prompt ``"Question: {question}\\nAnswer:"``, stop at ``"Question:"``; two answer extractions —
``strict-match`` (the number after ``#### ``) and ``flexible-extract`` (the last number in the
response) — compared with the gold final number after removing ``,``, ``$``, everything up to
``#### `` and a trailing ``.``, case-insensitively (lm-eval's ``exact_match`` with
``regexes_to_ignore``). An extraction that finds nothing is ``[invalid]`` and scores 0.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from capdrift_fast.errors import DataError
from capdrift_fast.tasks.base import MetricSpec, RowErrors, no_samples_error, read_jsonl, require_fields

DEFAULT_DATA = "gsm8k/test.jsonl"
STRICT_RE = r"#### (\-?[0-9\.\,]+)"
FLEXIBLE_RE = r"(-?[$0-9.,]{2,})|(-?[0-9]+)"
IGNORE_RES = (r",", r"\$", r"(?s).*#### ", r"\.$")
INVALID = "[invalid]"


def normalize_number(expr: pl.Expr) -> pl.Expr:
    """lm-eval's ``exact_match`` preprocessing for GSM8K: each of ``IGNORE_RES`` removed, then lower-cased."""
    for pattern in IGNORE_RES:
        expr = expr.str.replace_all(pattern, "")
    return expr.str.to_lowercase()


def extract_strict(response: pl.Expr) -> pl.Expr:
    """``strict-match``: the first ``#### N`` in the response, else ``[invalid]``."""
    return response.str.extract(STRICT_RE, 1).fill_null(INVALID)


def extract_flexible(response: pl.Expr) -> pl.Expr:
    """``flexible-extract``: the last match of ``FLEXIBLE_RE`` (first non-empty group), else ``[invalid]``."""
    last = response.str.extract_all(FLEXIBLE_RE).list.last()
    return last.fill_null(INVALID)


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
        shots, evals = records[: self.num_fewshot], records[self.num_fewshot :]
        prefix = "".join(f"Question: {r['question']}\nAnswer: {r['answer']}\n\n" for _, r in shots)
        if self.limit:
            evals = evals[: self.limit]
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
        """Numeric match per generation (1.0/0.0), both extractions."""
        gold = normalize_number(pl.col("target"))
        return generations.select(
            "request_id",
            (normalize_number(extract_strict(pl.col("response"))) == gold).cast(pl.Float64).alias("numeric_match_strict"),
            (normalize_number(extract_flexible(pl.col("response"))) == gold).cast(pl.Float64).alias("numeric_match_flexible"),
        )
