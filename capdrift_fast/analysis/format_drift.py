"""Output-format drift: cheap per-response signals of an adapter that learned a format, not a skill
(Kung & Peng 2023, "Do models really learn to follow instructions?", ACL, arXiv:2305.11383).

One row per model x task (``FORMAT_SCHEMA``), from the generations (one row per request):

- ``tokens_median`` / ``tokens_p90``: output length in tokens (``output_tokens``);
- ``truncated``: share with ``finish_reason == "length"`` (stopped at ``max_tokens``);
- ``empty``: share whose response is empty after stripping whitespace;
- ``off_language``: share of non-empty responses with at least ``MIN_LETTERS`` letters whose language, by
  ``langdetect`` (Shuyo 2010; seeded, deterministic), is not the task's (``language`` of the task, default
  ``en``); shorter responses are not judged (``judged`` counts those that were);
- ``stopped``: share with ``finish_reason == "stop"`` (ended by end-of-sequence or one of the task's stop
  sequences — vLLM drops a matched stop string from the text and the run records no stop reason, so the
  two are not told apart);
- the ``d_*`` columns: the adapter's value minus the base model's on the same task.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from capdrift_fast.benchmarks.base import Task, task_language
from capdrift_fast.config import BASE_NAME

MIN_LETTERS = 20
"""Responses with fewer letters are not language-checked (langdetect is unreliable on very short text)."""

SIGNALS = ("tokens_median", "tokens_p90", "truncated", "empty", "off_language", "stopped")

FORMAT_SCHEMA = {
    "adapter": pl.Utf8, "task": pl.Utf8, "n": pl.UInt32, "language": pl.Utf8, "judged": pl.UInt32,
    **{s: pl.Float64 for s in SIGNALS}, **{f"d_{s}": pl.Float64 for s in SIGNALS},
}


def _detect(text: str) -> str | None:
    from langdetect import DetectorFactory, detect
    from langdetect.lang_detect_exception import LangDetectException

    DetectorFactory.seed = 0  # langdetect is random unless seeded
    try:
        return detect(text)
    except LangDetectException:
        return None


def format_drift(generations: pl.DataFrame, tasks: Mapping[str, Task]) -> pl.DataFrame:
    """``FORMAT_SCHEMA`` rows, base first per task.

    Args:
        generations: ``adapter, task, response, output_tokens, finish_reason`` rows (one per request).
        tasks: the run's tasks by name (for each one's language).
    """
    lang = {name: task_language(t) for name, t in tasks.items()}
    g = generations.select("adapter", "task", "response", "output_tokens", "finish_reason").with_columns(
        language=pl.col("task").replace_strict(lang, default="en", return_dtype=pl.Utf8),
        letters=pl.col("response").str.count_matches(r"[^\W\d_]"),
    )
    judged = g.filter(pl.col("letters") >= MIN_LETTERS)
    detected = pl.Series([_detect(t) for t in judged["response"].to_list()], dtype=pl.Utf8)
    judged = judged.with_columns(off=(detected != pl.col("language")).fill_null(True))
    off = judged.group_by("adapter", "task").agg(judged=pl.len().cast(pl.UInt32), off_language=pl.col("off").mean())
    rows = (
        g.group_by("adapter", "task", maintain_order=True)
        .agg(n=pl.len().cast(pl.UInt32), language=pl.col("language").first(),
             tokens_median=pl.col("output_tokens").median().cast(pl.Float64),
             tokens_p90=pl.col("output_tokens").quantile(0.9, "linear").cast(pl.Float64),
             truncated=(pl.col("finish_reason") == "length").mean(),
             empty=(pl.col("response").str.strip_chars() == "").mean(),
             stopped=(pl.col("finish_reason") == "stop").mean())
        .join(off, on=["adapter", "task"], how="left")
        .with_columns(pl.col("judged").fill_null(0))
    )
    base = rows.filter(pl.col("adapter") == BASE_NAME).select("task", *[pl.col(s).alias(f"b_{s}") for s in SIGNALS])
    rows = rows.join(base, on="task", how="left").with_columns(
        **{f"d_{s}": pl.when(pl.col("adapter") != BASE_NAME).then(pl.col(s) - pl.col(f"b_{s}")) for s in SIGNALS})
    order = {t: i for i, t in enumerate(tasks)}
    return (rows.with_columns(_t=pl.col("task").replace_strict(order, default=len(order)),
                              _b=pl.col("adapter") != BASE_NAME)
            .sort("_t", "_b", maintain_order=True).select(list(FORMAT_SCHEMA)).cast(FORMAT_SCHEMA))  # type: ignore[arg-type]
