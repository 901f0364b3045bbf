"""The report: ``report.md``, a self-contained ``report.html``, ``heatmap.png`` and lm-eval-shaped exports.

``write_report([RUN_DIR], out)`` reads one or more run folders (:mod:`.runs`), recomputes each
run's matrix with its statistics (:mod:`capdrift_fast.analysis.drift`), combines several runs into
configurations x seeds (:mod:`.combine`), draws the heatmap (:mod:`.heatmap`), renders the pages
(:mod:`.render`) and exports every model's results in lm-evaluation-harness's JSON shape
(:mod:`.lm_eval`). With one run it also writes ``drift.parquet`` (per-adapter drift scores), and the page
gets the per-item sections: the sample browser (:mod:`.samples`), the flip table, per-group breakdowns
(:mod:`capdrift_fast.analysis.breakdown`) and the format-drift panel (:mod:`capdrift_fast.analysis.format_drift`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from capdrift_fast.errors import RunFolderError
from capdrift_fast.rundir.atomic import atomic_write, atomic_write_text
from capdrift_fast.rundir.paths import inside
from capdrift_fast.report.combine import Combined, combine
from capdrift_fast.report.runs import RunData, load_run

__all__ = ["ReportFiles", "RunData", "Combined", "combine", "load_run", "write_report"]


@dataclass(frozen=True)
class ReportFiles:
    """Paths written by :func:`write_report` (absolute), and the analysed runs."""

    markdown: Path
    html: Path
    heatmap: Path
    lm_eval: list[Path]
    runs: list[RunData]
    combined: Combined | None


def _unique_labels(dirs: list[Path]) -> list[str]:
    labels: list[str] = []
    for d in dirs:
        name, k = d.name, 2
        while name in labels:
            name, k = f"{d.name}-{k}", k + 1
        labels.append(name)
    return labels


def write_report(
    run_dirs: list[str | Path],
    out: str | Path | None = None,
    samples: dict[str, pl.DataFrame] | None = None,
    max_items: int | None = None,
) -> ReportFiles:
    """Analyse ``run_dirs`` and write the report into ``out``.

    Args:
        run_dirs: one or more run folders (each with ``config.json`` and ``scores.parquet``).
        out: output folder; default: the run folder when there is one run (required otherwise).
        samples: task samples from the plan of a single run (saves re-reading data for baselines).
        max_items: items embedded per cell in the HTML sample browser (flips first; default
            :data:`capdrift_fast.report.samples.DEFAULT_MAX_ITEMS`); the rest stays in the run's files.

    Returns:
        :class:`ReportFiles`.

    Raises:
        RunFolderError: no run, a folder is not a finished run, the same folder is given twice, or
            ``out`` is missing for several runs.
        RunDirError: ``out`` is in use by another capdrift process, or a folder in it is a symbolic link.
    """
    dirs = [Path(d).expanduser().resolve() for d in run_dirs]
    if not dirs:
        raise RunFolderError("no run folder given; pass one or more RUN_DIRs")
    dup = sorted({str(d) for d in dirs if dirs.count(d) > 1})
    if dup:
        raise RunFolderError(f"run folder given more than once: {', '.join(dup)}")
    if out is None:
        if len(dirs) > 1:
            raise RunFolderError("several run folders: pass --out DIR for the combined report")
        out = dirs[0]
    from capdrift_fast.rundir.lock import run_folder_lock

    with run_folder_lock(Path(out), "capdrift report") as locked:  # one writer per folder (capdrift_fast.rundir.lock)
        return _write_report(dirs, locked, samples, max_items)


def _write_report(dirs: list[Path], out: Path, samples: dict[str, pl.DataFrame] | None,
                  max_items: int | None = None) -> ReportFiles:
    from capdrift_fast.analysis.breakdown import breakdown_table
    from capdrift_fast.report.heatmap import breakdown_heatmap, combined_heatmap, draw_heatmap, single_run_heatmap
    from capdrift_fast.report.lm_eval import export_lm_eval
    from capdrift_fast.report.render import metric_order, render, report_context
    from capdrift_fast.report.samples import DEFAULT_MAX_ITEMS, browser_data

    runs = [load_run(d, label, samples if len(dirs) == 1 else None) for d, label in zip(dirs, _unique_labels(dirs))]
    combined = combine(runs) if len(runs) > 1 else None

    order = metric_order(runs)
    labels = {a.name: a.label for r in runs for a in r.config.adapters}
    drift_cfg = runs[0].config.drift
    if combined is None:
        run = runs[0]
        data = single_run_heatmap(run.analysis.matrix, run.baselines, order, labels, drift_cfg.confidence, drift_cfg.fdr,
                                  f"Drift matrix — {run.config.run_name}: Δ vs base", run.analysis.drift)
        atomic_write(out / "drift.parquet", lambda tmp: run.analysis.drift.write_parquet(tmp))
    else:
        baselines = pl.concat([r.baselines for r in runs]).unique(["task", "metric"], keep="first", maintain_order=True)
        data = combined_heatmap(combined.config_cells, combined.spread, baselines, order, labels,
                                combined.configurations.height, f"Drift matrix — {len(runs)} runs: mean Δ vs base",
                                combined.drift_summary)
    heatmap = out / "heatmap.png"
    atomic_write(heatmap, lambda tmp: draw_heatmap(data, tmp))

    lm_paths: list[Path] = []
    for r in runs:
        lm_paths += export_lm_eval(r, inside(out, "lm_eval", *([r.label] if combined else []), what="run label"))
    details: dict = {}
    if combined is None:  # the per-item sections of a single run
        run = runs[0]
        gens = run.generations()
        details["breakdown"] = breakdown_table(run.breakdown(gens), drift_cfg.fdr)
        details["breakdown_png"] = {}
        for task, metric in details["breakdown"].select("task", "metric").unique(maintain_order=True).iter_rows():
            if task in details["breakdown_png"]:
                continue  # one small heatmap per task, of its first metric (IFEval: ila_strict)
            png = inside(out, f"breakdown_{task}.png", what="task name")
            bdata = breakdown_heatmap(details["breakdown"], task, metric, f"{task} by group: {metric}, Δ vs base")
            atomic_write(png, lambda tmp, d=bdata: draw_heatmap(d, tmp))
            details["breakdown_png"][task] = (metric, png)
        details["format"] = run.format_drift(gens)
        if gens is not None:
            details["browser"] = browser_data(run, gens, DEFAULT_MAX_ITEMS if max_items is None else max_items)
    ctx = report_context(runs, combined, heatmap, lm_paths, out, details)
    md = atomic_write_text(out / "report.md", render(ctx, "md"))
    html = atomic_write_text(out / "report.html", render(ctx, "html"))
    if combined is None and runs[0].run_dir == out and "report_error" in runs[0].manifest:
        import json  # the failed report of `capdrift run` is redone: its error is no longer current

        manifest = {k: v for k, v in runs[0].manifest.items() if k != "report_error"}
        atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2, default=str))
    return ReportFiles(md, html, heatmap, lm_paths, runs, combined)
