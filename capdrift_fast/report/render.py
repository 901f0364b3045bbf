"""Turning analysed runs into the report's context and rendering ``report.md`` / ``report.html``.

Everything numeric was computed in :mod:`capdrift_fast.analysis.drift` / :mod:`capdrift_fast.report.combine`;
this module only pivots for display (rows task x metric, columns models), formats numbers and fills
the Jinja2 templates in ``templates/``. The HTML page is self-contained: CSS inline and the heatmap
embedded as a base64 PNG.
"""

from __future__ import annotations

import base64
import math
import time
from pathlib import Path
from typing import Any

import polars as pl

from capdrift_fast.config import BASE_NAME
from capdrift_fast.report.combine import Combined
from capdrift_fast.report.lm_eval import comparability
from capdrift_fast.report.runs import RunData
from capdrift_fast.report.samples import cell_key

TEMPLATES = Path(__file__).with_name("templates")

READ_FULL_DATA = ('pl.scan_parquet("RUN_DIR/scores.parquet").join(pl.scan_ipc("RUN_DIR/generations/*.arrow")'
                  '.select("request_id", "prompt", "response"), on="request_id")'
                  '.filter(pl.col("task") == "TASK", pl.col("adapter").is_in(["base", "ADAPTER"])).collect()')
"""The README's Polars one-liner for every item behind a cell (the page embeds a capped subset)."""


def sgn(x: float | None, digits: int = 3) -> str:
    """A signed number (``+0.083``), ``-`` for missing."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{round(x, digits) + 0.0:+.{digits}f}"  # + 0.0: no "-0.000" for a tiny negative


def num(x: float | None, digits: int = 3) -> str:
    """An unsigned number, ``–`` for missing."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{digits}f}"


def interval(lo: float | None, hi: float | None, digits: int = 3) -> str:
    """``[lo, hi]`` with signs."""
    if lo is None or hi is None:
        return "–"
    return f"[{sgn(lo, digits)}, {sgn(hi, digits)}]"


def pval(p: float | None) -> str:
    """A p- or q-value: 2 significant digits, ``<0.001`` below."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.2g}" if p < 0.1 else f"{p:.2f}"


def cell_colors(delta: float | None, vmax: float) -> tuple[str, str]:
    """Background and text colours of a delta cell: matplotlib's ``RdBu`` at ``delta / vmax``
    (the heatmap's scale), white text on dark cells."""
    if delta is None or (isinstance(delta, float) and math.isnan(delta)):
        return "#eeeeee", "#333"
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    x = max(-1.0, min(1.0, delta / vmax))
    return to_hex(colormaps["RdBu"](0.5 + x / 2)), ("#fff" if abs(x) > 0.6 else "#111")


def _vmax(values: list[float | None]) -> float:
    finite = [abs(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return max(0.05, math.ceil(max(finite, default=0.05) * 20) / 20)


def metric_order(runs: list[RunData]) -> dict[str, list[str]]:
    """Task -> its metrics, in config order, over all runs (first seen first)."""
    order: dict[str, list[str]] = {}
    for r in runs:
        for name, task in r.tasks.items():
            ms = order.setdefault(name, [])
            ms += [m.name for m in task.metrics if m.name not in ms]
    return order


def _findings(run: RunData) -> list[dict[str, Any]]:
    m = run.analysis.matrix
    out = []
    for d in run.analysis.drift.iter_rows(named=True):
        a = d["adapter"]
        on_cells = m.filter((pl.col("adapter") == a) & pl.col("on_target") & pl.col("drift_metric"))
        on_txt = "; ".join(
            f"{c['task']} {c['metric']} Δ {sgn(c['delta'])} {interval(c['ci_low'], c['ci_high'])} (q {pval(c['q_value'])})"
            for c in on_cells.iter_rows(named=True)
        )
        moved = m.filter((pl.col("adapter") == a) & ~pl.col("on_target").fill_null(False) & pl.col("significant").fill_null(False))
        moved_txt = [f"{c['task']} {c['metric']} Δ {sgn(c['delta'])} {interval(c['ci_low'], c['ci_high'])}"
                     for c in moved.iter_rows(named=True)]
        status = d["label_status"]
        flags = []
        if status == "not supported":
            flags.append("nominal label not supported")
        if moved_txt:
            flags.append(f"{len(moved_txt)} off-target cell(s) moved significantly")
        if d["drift"] is None:
            reading = "undefined (needs on- and off-target tasks)"
        elif d["drift_low"] is not None and d["drift_low"] > 0:
            reading = "it moved the other tasks more than its target (drift > 0 beyond chance)"
        elif d["drift_high"] is not None and d["drift_high"] < 0:
            reading = "its gains sit on its target (drift < 0 beyond chance)"
        else:
            reading = "no clear contrast between on- and off-target change (the interval includes 0)"
        out.append({
            "adapter": a, "label": d["label"] or "(none)", "status": status, "flags": flags, "reading": reading,
            "on_target": on_txt or "no on-target task in this run (set drift.targets for this label)",
            "moved": moved_txt, "drift": sgn(d["drift"]), "drift_ci": interval(d["drift_low"], d["drift_high"]),
        })
    return out


def _drift_rows(run: RunData) -> list[dict[str, Any]]:
    rows = []
    for d in run.analysis.drift.iter_rows(named=True):
        rows.append({
            "run": run.label, "adapter": d["adapter"], "label": d["label"] or "(none)",
            "on_tasks": ", ".join(d["on_target_tasks"]) or "–", "off_tasks": ", ".join(d["off_target_tasks"]) or "–",
            "on_gain": sgn(d["on_gain"]), "on_ci": interval(d["on_low"], d["on_high"]),
            "off_gain": sgn(d["off_gain"]), "off_ci": interval(d["off_low"], d["off_high"]),
            "drift": sgn(d["drift"]), "drift_ci": interval(d["drift_low"], d["drift_high"]),
            "off_abs": num(d["off_abs_change"]), "status": d["label_status"],
            "improved": f"{d['n_on_improved']}/{d['n_on_target']}", "n_moved": len(d["off_moved"]),
        })
    return rows


def _single_matrix(run: RunData) -> dict[str, Any]:
    m = run.analysis.matrix
    cells = {(r["adapter"], r["task"], r["metric"]): r for r in m.iter_rows(named=True)}
    rand = {(r["task"], r["metric"]): r["score"] for r in run.baselines.iter_rows(named=True)}
    adapters = [a for a in m["adapter"].unique(maintain_order=True).to_list() if a != BASE_NAME]
    suspect = set(m.filter(pl.col("suspect").fill_null(False))["adapter"].to_list()) if "suspect" in m.columns else set()
    suspect |= {a for a, g in run.guard.items() if g == "SUSPECT"}
    vmax = _vmax(m.filter(pl.col("adapter") != BASE_NAME)["delta"].to_list())
    rows = []
    for t, metrics in metric_order([run]).items():
        for met in metrics:
            b = cells.get((BASE_NAME, t, met))
            row = {"task": t, "metric": met, "base": num(b["score"]) if b else "–", "random": num(rand.get((t, met))),
                   "bold": False, "cells": []}
            for a in adapters:
                c = cells.get((a, t, met))
                if not c:
                    row["cells"].append(None)
                    continue
                row["bold"] = row["bold"] or bool(c["drift_metric"])
                bg, fg = cell_colors(c["delta"], vmax)
                row["cells"].append({
                    "main": f"{sgn(c['delta'])}{'*' if c['significant'] else ''}", "score": num(c["score"]),
                    "ci": interval(c["ci_low"], c["ci_high"]), "q": pval(c["q_value"]), "p": pval(c["p_value"]),
                    "test": c["test"], "n": c["n"], "sig": bool(c["significant"]), "on": bool(c["on_target"]),
                    "bg": bg, "fg": fg, "key": cell_key(a, t, met), "suspect": a in suspect,
                    "flips": (f"{c['n_adapter_only']} gained · {c['n_base_only']} lost"
                              if c.get("n_adapter_only") is not None else ""),
                    "mde": num(c.get("mde")),
                })
            rows.append(row)
    return {"columns": [{"name": a, "label": run.labels.get(a, ""), "guard": run.guard.get(a, "")} for a in adapters],
            "base_guard": run.guard.get(BASE_NAME, ""), "rows": rows}


def _off_moves(run: RunData) -> list[dict[str, Any]]:
    m = run.analysis.matrix.filter(
        (pl.col("adapter") != BASE_NAME) & ~pl.col("on_target").fill_null(False) & pl.col("significant").fill_null(False)
    )
    return [{"adapter": r["adapter"], "label": run.labels.get(r["adapter"], ""), "task": r["task"], "metric": r["metric"],
             "delta": sgn(r["delta"]), "ci": interval(r["ci_low"], r["ci_high"]), "q": pval(r["q_value"]), "test": r["test"]}
            for r in m.iter_rows(named=True)]


def _metadata(run: RunData) -> dict[str, Any]:
    man, cfg = run.manifest, run.config
    start, gen = man.get("engine_start_s"), man.get("generation_s")
    return {
        "label": run.label, "run_dir": str(run.run_dir), "run_id": man.get("run_id", "–"),
        "model": cfg.model.model_dump(),
        "adapters": [{"name": a.name, "label": a.label, "path": a.path,
                      "files": sorted(run.adapter_files.get(a.name, {}).items())} for a in cfg.adapters],
        "tasks": [{"name": n, "benchmark": t.benchmark, "version": t.version, "data": str(getattr(t, "path", ""))}
                  for n, t in run.tasks.items()],
        "engine": man.get("engine") or cfg.engine.model_dump(),
        "sampling": man.get("sampling") or cfg.sampling.model_dump(),
        "drift": cfg.drift.model_dump(mode="json"),
        "n_requests": man.get("n_requests", "–"),
        "engine_start_s": num(start, 1), "generation_s": num(gen, 1),
        "wall_s": num((start or 0) + (gen or 0), 1) if start is not None or gen is not None else "–",
        "output_tokens": man.get("output_tokens", "–"), "tokens_per_s": num(man.get("output_tokens_per_s"), 1),
        "versions": {k: v for k, v in (man.get("versions") or {}).items() if v},
        "host": man.get("host") or {},
    }


def _combined_sections(comb: Combined) -> dict[str, Any]:
    configs = comb.configurations.to_dicts()
    cc = {(r["config"], r["adapter"], r["task"], r["metric"]): r for r in comb.config_cells.iter_rows(named=True)}
    sp = {(r["adapter"], r["task"], r["metric"]): r for r in comb.spread.iter_rows(named=True)}
    adapters = [a for a in comb.config_cells["adapter"].unique(maintain_order=True).to_list() if a != BASE_NAME]
    config_names = [c["config"] for c in configs]
    labels = {a.name: a.label for r in comb.runs for a in r.config.adapters}
    rand = {}
    for r in comb.runs:
        rand.update({(b["task"], b["metric"]): b["score"] for b in r.baselines.iter_rows(named=True)})
    vmax = _vmax(comb.config_cells.filter(pl.col("adapter") != BASE_NAME)["delta_mean"].to_list())
    flip_key = "config_flip" if len(configs) > 1 else "seed_flip"
    rows = []
    for t, metrics in metric_order(comb.runs).items():
        for met in metrics:
            s_any = [sp.get((a, t, met)) for a in adapters]
            row = {"task": t, "metric": met, "bold": any(s and s["drift_metric"] for s in s_any),
                   "base": [num(cc[(c, BASE_NAME, t, met)]["score_mean"]) if (c, BASE_NAME, t, met) in cc else "–"
                            for c in config_names],
                   "random": num(rand.get((t, met))), "cells": []}
            for a in adapters:
                for c in config_names:
                    r = cc.get((c, a, t, met))
                    if not r:
                        row["cells"].append(None)
                        continue
                    bg, fg = cell_colors(r["delta_mean"], vmax)
                    flip = bool((sp.get((a, t, met)) or {}).get(flip_key))
                    row["cells"].append({
                        "main": f"{sgn(r['delta_mean'])}{'*' if r['n_significant'] == r['n_seeds'] else ''}",
                        "sd": num(r["delta_sd"]), "range": interval(r["delta_min"], r["delta_max"]),
                        "n": r["n_seeds"], "n_sig": r["n_significant"], "flip": flip, "bg": bg, "fg": fg,
                    })
            rows.append(row)
    flips = comb.spread.filter(pl.col("seed_flip") | pl.col("config_flip") | pl.col("significant_flip"))
    per_run = {(r["run"], r["adapter"], r["task"], r["metric"]): r for r in comb.cells.iter_rows(named=True)}
    run_labels = comb.run_info["run"].to_list()
    flip_rows = []
    for f in flips.sort(["significant_flip", "config_flip"], descending=True).iter_rows(named=True):
        kinds = [k for k, v in (("significant flip", f["significant_flip"]), ("configuration flip", f["config_flip"]),
                                ("seed flip", f["seed_flip"])) if v]
        flip_rows.append({
            "adapter": f["adapter"], "task": f["task"], "metric": f["metric"], "kinds": ", ".join(kinds),
            "deltas": [sgn(per_run[(r, f["adapter"], f["task"], f["metric"])]["delta"])
                       + ("*" if per_run[(r, f["adapter"], f["task"], f["metric"])]["significant"] else "")
                       if (r, f["adapter"], f["task"], f["metric"]) in per_run else "–" for r in run_labels],
        })
    summary = [{
        "config": d["config"], "adapter": d["adapter"], "label": d["label"] or "(none)", "n_runs": d["n_runs"],
        "drift": sgn(d["drift_mean"]), "drift_sd": num(d["drift_sd"]), "on_gain": sgn(d["on_gain_mean"]),
        "off_gain": sgn(d["off_gain_mean"]), "supported": f"{d['n_supported']}/{d['n_runs']}",
        "not_supported": f"{d['n_not_supported']}/{d['n_runs']}",
    } for d in comb.drift_summary.iter_rows(named=True)]
    n_cells = comb.spread.height
    return {
        "configs": configs, "varying": comb.varying, "run_info": comb.run_info.to_dicts(), "run_labels": run_labels,
        "columns": [{"name": a, "config": c, "label": labels.get(a, "")} for a in adapters for c in config_names],
        "config_names": config_names, "rows": rows, "flip_rows": flip_rows, "drift_summary": summary,
        "n_cells": n_cells, "n_seed_flips": int(comb.spread["seed_flip"].sum()),
        "n_config_flips": int(comb.spread["config_flip"].sum()), "n_sig_flips": int(comb.spread["significant_flip"].sum()),
        "flip_basis": "across configurations" if len(configs) > 1 else "across seeds",
    }


def _flip_rows(run: RunData) -> list[dict[str, Any]]:
    """One row per adapter cell: the McNemar table (binary metrics) and the minimum detectable effect, with
    a reading of a non-significant cell ("no effect this n could see" vs "too few items")."""
    m = run.analysis.matrix
    if "mde" not in m.columns:  # a folder written before the flip table
        return []
    rows = []
    for c in m.filter(pl.col("adapter") != BASE_NAME).iter_rows(named=True):
        if c["significant"]:
            reading = "significant"
        elif c["mde"] is None:
            reading = "–"
        else:
            reading = f"not significant; this n detects Δ of ±{num(c['mde'])} or more with 80% power"
        binary = c["n_adapter_only"] is not None
        rows.append({
            "adapter": c["adapter"], "task": c["task"], "metric": c["metric"], "delta": sgn(c["delta"]), "n": c["n"],
            "both": c["n_both"] if binary else "–", "adapter_only": c["n_adapter_only"] if binary else "–",
            "base_only": c["n_base_only"] if binary else "–", "neither": c["n_neither"] if binary else "–",
            "p": pval(c["p_value"]), "q": pval(c["q_value"]), "mde": num(c["mde"]), "test": c["test"] or "–",
            "reading": reading, "key": cell_key(c["adapter"], c["task"], c["metric"]),
        })
    return rows


def _breakdown_sections(table: pl.DataFrame, pngs: dict[str, tuple[str, Path]] | None = None,
                        vmax_floor: float = 0.05) -> list[dict[str, Any]]:
    """Per task x metric of a breakdown table: rows = groups (instruction types), columns = adapters (Δ with
    ``*`` when BH-significant across the table's rows), the base accuracy and the number of units."""
    out = []
    if table.height == 0:
        return out
    for (task, metric), sub in table.partition_by("task", "metric", as_dict=True, maintain_order=True).items():
        adapters = [a for a in sub["adapter"].unique(maintain_order=True).to_list() if a != BASE_NAME]
        cells = {(r["adapter"], r["group"]): r for r in sub.iter_rows(named=True)}
        vmax = max(vmax_floor, _vmax(sub.filter(pl.col("adapter") != BASE_NAME)["delta"].to_list()))
        rows = []
        for g in sorted(sub["group"].unique().to_list()):
            b = cells.get((BASE_NAME, g))
            row = {"group": g, "n": b["n"] if b else "–", "base": num(b["score"]) if b else "–", "cells": []}
            for a in adapters:
                c = cells.get((a, g))
                if not c:
                    row["cells"].append(None)
                    continue
                bg, fg = cell_colors(c["delta"], vmax)
                row["cells"].append({"main": f"{sgn(c['delta'])}{'*' if c['significant'] else ''}", "score": num(c["score"]),
                                     "p": pval(c["p_value"]), "q": pval(c["q_value"]), "bg": bg, "fg": fg,
                                     "flips": f"{c['n_adapter_only']} gained · {c['n_base_only']} lost"})
            rows.append(row)
        png = (pngs or {}).get(task)
        shown = png is not None and png[0] == metric
        out.append({"task": task, "metric": metric, "adapters": adapters, "rows": rows,
                    "png_name": png[1].name if shown else None,
                    "png_b64": base64.b64encode(png[1].read_bytes()).decode("ascii") if shown else None})
    return out


def _format_rows(fmt: pl.DataFrame) -> list[dict[str, Any]]:
    """The format-drift panel: per model x task, each signal with its change vs base."""
    rows = []
    for r in fmt.iter_rows(named=True):
        base = r["adapter"] == BASE_NAME
        pct = lambda v: "–" if v is None else f"{100 * v:.0f}%"  # noqa: E731
        dpct = lambda v: "" if v is None else f" ({100 * v + 0.0:+.0f} pt)"  # noqa: E731
        dnum = lambda v: "" if v is None else f" ({v + 0.0:+.0f})"  # noqa: E731
        rows.append({
            "adapter": r["adapter"], "task": r["task"], "n": r["n"], "base": base, "language": r["language"],
            "tokens": f"{num(r['tokens_median'], 0)}{dnum(r['d_tokens_median'])}",
            "p90": f"{num(r['tokens_p90'], 0)}{dnum(r['d_tokens_p90'])}",
            "truncated": pct(r["truncated"]) + dpct(r["d_truncated"]), "empty": pct(r["empty"]) + dpct(r["d_empty"]),
            "off_language": (pct(r["off_language"]) + dpct(r["d_off_language"]) + f" of {r['judged']}") if r["judged"] else "–",
            "stopped": pct(r["stopped"]) + dpct(r["d_stopped"]),
        })
    return rows


def _parity(run: RunData) -> dict[str, Any]:
    """The parity guard's verdict for the top of the report: from the per-model statuses of ``parity.json``
    (:func:`capdrift_fast.report.runs.parity_summary`: agreed, SUSPECT, not run, disabled, not checked) and
    the matrix's ``suspect`` column."""
    p = run.parity or {}
    m = run.analysis.matrix
    suspects = (m.filter(pl.col("suspect").fill_null(False))["adapter"].unique(maintain_order=True).to_list()
                if "suspect" in m.columns else [])
    suspects += [a for a, g in run.guard.items() if g == "SUSPECT" and a not in suspects]
    models = p.get("models") or {}
    agreed = [a for a, g in run.guard.items() if g == "agreed"]
    other = {a: g for a, g in run.guard.items() if g not in ("agreed", "SUSPECT")}
    if suspects:
        verdict, level = (f"SUSPECT: {', '.join(suspects)} — vLLM disagreed with transformers+peft on their canaries; "
                          "their cells are marked ⚠"), "bad"
    elif not run.guard:
        verdict, level = "unknown (no parity.json: the guard did not run for this folder)", "warn"
    elif other:
        verdict, level = (f"{len(agreed)} model(s) agree with transformers+peft; "
                          + ", ".join(f"{a} {g}" for a, g in other.items())
                          + (f" ({p['message']})" if p.get("message") else "")), "warn"
    else:
        verdict, level = (f"all {len(agreed)} models agree with transformers+peft ({p.get('mode', '?')} mode, "
                          f"{sum(v.get('checked', 0) for v in models.values())} canaries)"), "ok"
    return {"verdict": verdict, "level": level, "suspects": suspects}


def _comparability_row(c: dict[str, Any]) -> dict[str, str]:
    """One task's line of the "Comparing with lm-evaluation-harness" table, as strings."""
    dev = c["deviations"]
    why = "no lm-eval counterpart" if dev is None else ("lm-eval's task definition" if not dev else "; ".join(dev))
    cut = ", ".join(f"{m} {v:.0%}" for m, v in c["truncated"].items())
    return {"task": c["task"], "exported_as": c["exported_as"], "why": why, "truncated": cut or "–"}


def report_context(runs: list[RunData], combined: Combined | None, heatmap: Path, lm_eval_paths: list[Path],
                   out: Path, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything the templates show, as plain strings/lists (see ``templates/report.*.j2``)."""
    first = runs[0]
    drift_cfg = first.config.drift
    title = first.config.run_name if len(runs) == 1 else f"{len(runs)} runs combined"
    ctx: dict[str, Any] = {
        "title": title, "generated": time.strftime("%Y-%m-%d %H:%M:%S"), "multi": len(runs) > 1,
        "confidence_pct": round(drift_cfg.confidence * 100), "fdr": f"{drift_cfg.fdr:g}",
        "n_boot": drift_cfg.n_boot, "n_perm": drift_cfg.n_perm, "targets": {k: list(v) for k, v in drift_cfg.targets.items()},
        "heatmap_name": heatmap.name, "heatmap_b64": base64.b64encode(heatmap.read_bytes()).decode("ascii"),
        "runs": [_metadata(r) for r in runs],
        "per_run": [{"label": r.label, "findings": _findings(r), "drift_rows": _drift_rows(r), "off_moves": _off_moves(r)}
                    for r in runs],
        "notes": [n for r in runs for n in r.notes],
        "lm_eval": [str(p.relative_to(out)) if p.is_relative_to(out) else str(p) for p in lm_eval_paths],
        "comparability": [{"label": r.label, "rows": [_comparability_row(c) for c in comparability(r)]} for r in runs],
    }
    details = details or {}
    ctx["parity"] = [dict(_parity(r), label=r.label) for r in runs]
    ctx["browser"] = details.get("browser")
    ctx["readme_polars"] = READ_FULL_DATA
    if combined is None:
        ctx["matrix"] = _single_matrix(first)
        ctx["flips"] = _flip_rows(first)
        ctx["breakdown"] = (_breakdown_sections(details["breakdown"], details.get("breakdown_png"))
                            if details.get("breakdown") is not None else [])
        ctx["format_rows"] = _format_rows(details["format"]) if details.get("format") is not None else []
    else:
        ctx["combined"] = _combined_sections(combined)
    return ctx


def render(ctx: dict[str, Any], kind: str) -> str:
    """Render ``report.{kind}.j2`` (``kind`` = ``md`` or ``html``; HTML autoescaped)."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=(kind == "html"), undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    return env.get_template(f"report.{kind}.j2").render(**ctx)
