"""The sample browser's data: for every adapter x task x metric cell, its items with the prompt, the
reference, the base and the adapter response and both models' metric values — flips first.

The report embeds it as JSON in ``report.html`` (Jinja2's ``tojson``, which escapes ``<``, ``>``, ``&``
and ``'`` as ``\\u003c``... so no response text can close the ``<script>`` element or inject markup; the
page's script puts every string into the DOM with ``textContent``, never as HTML).

Size: prompts and responses are stored once per task / per model x task, cells only list item ids. Each
cell embeds at most ``max_items`` items (:data:`DEFAULT_MAX_ITEMS`), flips first, and says how many it left
out; the full data stays in ``generations/*.arrow`` and ``scores.parquet`` (README, "Reading the report").

Kinds of an item in a cell (adapter value ``a``, base value ``b`` of the cell's metric):
binary metrics ``lost`` (b = 1, a = 0: base right, adapter wrong), ``gained`` (a = 1, b = 0), ``both``,
``neither``; graded metrics ``down`` (a < b), ``up`` (a > b), ``same``. Order: ``lost``, ``gained`` (for
graded: ``down``, ``up`` by |a - b| descending), then the rest, each by sample id.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from capdrift_fast.analysis.drift import long_scores
from capdrift_fast.benchmarks.base import reference_texts
from capdrift_fast.config import BASE_NAME
from capdrift_fast.conversation import prompt_text
from capdrift_fast.report.runs import RunData

DEFAULT_MAX_ITEMS = 60
"""Items embedded per cell by default (flips first). With 32 adapters x 4 tasks x 200 items this keeps
``report.html`` near 12 MB (``kernels_bench/report_size.py``; README, "Reading the report")."""

KIND_ORDER = {"lost": 0, "gained": 1, "down": 0, "up": 1, "both": 2, "neither": 3, "same": 2}


def cell_key(adapter: str, task: str, metric: str) -> str:
    """The id of a cell in the page (``#cell=<key>``): ``adapter/task/metric``, as request ids name requests."""
    return f"{adapter}/{task}/{metric}"


def browser_data(run: RunData, generations: pl.DataFrame | None, max_items: int = DEFAULT_MAX_ITEMS) -> dict[str, Any] | None:
    """The JSON the page embeds (see the module docstring), or None without generations or scores.

    Shape: ``{"tasks": {task: {"metrics": [...], "items": {sid: [prompt, reference]}}},
    "models": {model: {task: {sid: [response, finish_reason, output_tokens, [metric values]]}}},
    "cells": [{"key", "adapter", "task", "metric", "binary", "n", "shown", "left_out", "counts": {kind: n},
    "items": [[sid, kind], ...]}], "max_items": max_items}``.
    """
    if generations is None or run.scores is None or generations.height == 0:
        return None
    tasks = run.tasks
    long = long_scores(run.scores, tasks).select("adapter", "task", "sample_id", "metric", "value")
    base = long.filter(pl.col("adapter") == BASE_NAME).select("task", "sample_id", "metric", base_value="value")
    paired = long.filter(pl.col("adapter") != BASE_NAME).join(base, on=["task", "sample_id", "metric"], how="inner")
    binary = pl.DataFrame([(t, m.name, bool(m.binary and not m.weight)) for t, task in tasks.items() for m in task.metrics],
                          schema={"task": pl.Utf8, "metric": pl.Utf8, "binary": pl.Boolean}, orient="row")
    a, b = pl.col("value"), pl.col("base_value")
    paired = paired.join(binary, on=["task", "metric"], how="left").with_columns(pl.col("binary").fill_null(False)).with_columns(
        kind=pl.when(pl.col("binary")).then(
            pl.when((b > 0.5) & (a <= 0.5)).then(pl.lit("lost")).when((a > 0.5) & (b <= 0.5)).then(pl.lit("gained"))
            .when(a > 0.5).then(pl.lit("both")).otherwise(pl.lit("neither"))
        ).otherwise(pl.when(a < b).then(pl.lit("down")).when(a > b).then(pl.lit("up")).otherwise(pl.lit("same"))),
        gap=(a - b).abs(),
    ).with_columns(rank=pl.col("kind").replace_strict(KIND_ORDER, return_dtype=pl.Int8))
    ordered = paired.sort(["adapter", "task", "metric", "rank", "gap", "sample_id"], descending=[False, False, False, False, True, False])
    counts = paired.group_by("adapter", "task", "metric", "kind").len()
    kept = ordered.group_by("adapter", "task", "metric", maintain_order=True).agg(
        n=pl.len(), binary=pl.col("binary").first(), items=pl.col("sample_id").head(max_items), kinds=pl.col("kind").head(max_items))

    count_of: dict[tuple[str, str, str], dict[str, int]] = {}
    for r in counts.iter_rows(named=True):
        count_of.setdefault((r["adapter"], r["task"], r["metric"]), {})[r["kind"]] = r["len"]
    cells, wanted = [], set()
    for r in kept.iter_rows(named=True):
        key = (r["adapter"], r["task"], r["metric"])
        cells.append({"key": cell_key(*key), "adapter": key[0], "task": key[1], "metric": key[2], "binary": r["binary"],
                      "n": r["n"], "shown": len(r["items"]), "left_out": r["n"] - len(r["items"]),
                      "counts": count_of.get(key, {}), "items": [list(x) for x in zip(r["items"], r["kinds"])]})
        wanted.update((key[0], key[1], sid) for sid in r["items"])
    want = pl.DataFrame(sorted(wanted), schema={"adapter": pl.Utf8, "task": pl.Utf8, "sample_id": pl.Utf8}, orient="row")
    want = pl.concat([want, want.select(adapter=pl.lit(BASE_NAME), task="task", sample_id="sample_id")]).unique()

    metric_names = {t: [m.name for m in task.metrics] for t, task in tasks.items()}
    values = run.scores.join(want, on=["adapter", "task", "sample_id"], how="semi")
    gens = generations.join(want, on=["adapter", "task", "sample_id"], how="semi").join(
        values.select("adapter", "task", "sample_id", *{m for ms in metric_names.values() for m in ms if m in values.columns}),
        on=["adapter", "task", "sample_id"], how="left")
    models: dict[str, dict[str, dict[str, list[Any]]]] = {}
    items: dict[str, dict[str, list[str]]] = {t: {} for t in tasks}
    for task_name, sub in gens.partition_by("task", as_dict=True).items():
        t = task_name[0]
        names = [m for m in metric_names.get(t, []) if m in sub.columns]
        for r in sub.iter_rows(named=True):
            models.setdefault(r["adapter"], {}).setdefault(t, {})[r["sample_id"]] = [
                r["response"], r["finish_reason"], r["output_tokens"], [r[m] for m in names]]
            if r["sample_id"] not in items.setdefault(t, {}):
                items[t][r["sample_id"]] = [prompt_text(r["prompt"]), ""]
    for t, frame in run.samples.items():
        if t not in items or not items[t]:
            continue
        refs = frame.select("sample_id").with_columns(reference_texts(tasks[t], frame))
        for sid, ref in refs.filter(pl.col("sample_id").is_in(list(items[t]))).iter_rows():
            items[t][sid][1] = ref
    return {"tasks": {t: {"metrics": metric_names[t], "items": items.get(t, {})} for t in tasks},
            "models": models, "cells": cells, "max_items": max_items}
