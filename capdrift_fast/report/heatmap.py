"""``heatmap.png``: the delta heatmap (rows task x metric, columns adapters), drawn with matplotlib.

Colour is ``delta`` on a diverging scale centred at 0 (blue = gain, red = loss); each cell shows the
delta with ``*`` when significant after Benjamini–Hochberg and, below, its confidence interval (one
run) or its spread across seeds (several runs). A black frame marks on-target cells (the task is a
target of the adapter's nominal label); hatching marks cells whose sign flips (across configurations,
or across seeds when there is one configuration). Grey columns on the left hold reference scores:
the base model and the random-guess baseline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import polars as pl

from capdrift_fast.config import BASE_NAME


@dataclass
class HeatmapData:
    """What :func:`draw_heatmap` draws; ``R`` rows, ``C`` main columns, ``P`` reference columns.

    Attributes:
        title, footer: text above and below.
        rows: ``R`` row labels; ``bold_rows``: ``R`` flags (the task's drift-score metric).
        ref_names: ``P`` reference column names; ``ref_values``: ``(R, P)`` scores (NaN = none).
        col_names: ``C`` column headers (may hold a second line).
        values: ``(R, C)`` deltas (NaN = none); ``texts``: ``R x C`` cell strings.
        boxes, hatches: ``(R, C)`` booleans (on-target frame; sign-flip hatching).
        col_footer: ``C`` strings under the columns (the adapter's drift score), or empty.
    """

    title: str
    footer: str
    rows: list[str]
    bold_rows: list[bool]
    ref_names: list[str]
    ref_values: np.ndarray
    col_names: list[str]
    values: np.ndarray
    texts: list[list[str]]
    boxes: np.ndarray
    hatches: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool))
    col_footer: list[str] = field(default_factory=list)


def _fmt(x: float | None, signed: bool = True) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    x = round(x, 2) + 0.0  # no "-0.00" for a tiny negative
    return f"{x:+.2f}" if signed else f"{x:.2f}"


def _row_keys(tasks_order: list[str], metric_order: dict[str, list[str]]) -> list[tuple[str, str]]:
    return [(t, m) for t in tasks_order for m in metric_order[t]]


def single_run_heatmap(matrix: pl.DataFrame, baselines: pl.DataFrame, metric_order: dict[str, list[str]],
                       labels: dict[str, str], confidence: float, fdr: float, title: str,
                       drift: pl.DataFrame | None = None) -> HeatmapData:
    """Heatmap data of one analysed run (``MATRIX_SCHEMA`` rows + random-guess baselines; ``drift``:
    ``DRIFT_SCHEMA`` rows shown under the columns)."""
    keys = _row_keys(list(metric_order), metric_order)
    adapters = [a for a in matrix["adapter"].unique(maintain_order=True).to_list() if a != BASE_NAME]
    cells = {(r["adapter"], r["task"], r["metric"]): r for r in matrix.iter_rows(named=True)}
    rand = {(r["task"], r["metric"]): r["score"] for r in baselines.iter_rows(named=True)}
    suspect = set(matrix.filter(pl.col("suspect").fill_null(False))["adapter"].to_list()) if "suspect" in matrix.columns else set()
    R, C = len(keys), len(adapters)
    values, boxes = np.full((R, C), np.nan), np.zeros((R, C), bool)
    texts = [["" for _ in range(C)] for _ in range(R)]
    ref = np.full((R, 2), np.nan)
    bold = []
    for i, (t, m) in enumerate(keys):
        b = cells.get((BASE_NAME, t, m))
        ref[i, 0] = b["score"] if b else np.nan
        ref[i, 1] = rand.get((t, m), np.nan)
        bold.append(any(cells.get((a, t, m), {}).get("drift_metric") for a in adapters))
        for j, a in enumerate(adapters):
            c = cells.get((a, t, m))
            if not c or c["delta"] is None:
                continue
            values[i, j] = c["delta"]
            star = "*" if c["significant"] else ""
            texts[i][j] = (f"{_fmt(c['delta'])}{star}\n[{_fmt(c['ci_low'])}, {_fmt(c['ci_high'])}]"
                           + ("\nSUSPECT" if a in suspect else ""))
            boxes[i, j] = bool(c["on_target"])
    pct = round(confidence * 100)
    return HeatmapData(
        title=title,
        footer=(f"cell: Δ = adapter − base, * = significant (Benjamini–Hochberg q ≤ {fdr:g}); below: {pct}% paired "
                f"bootstrap CI.  Black frame: on-target task of the adapter's label.  Bold row: metric used in the drift score."
                + ("  Hatched SUSPECT: the parity guard found vLLM disagreeing with transformers+peft." if suspect else "")),
        rows=[f"{t} · {m}" for t, m in keys], bold_rows=bold, ref_names=["base", "random\nguess"], ref_values=ref,
        col_names=[f"{a}{' SUSPECT' if a in suspect else ''}\n({labels.get(a, '')})" for a in adapters], values=values,
        texts=texts, boxes=boxes, hatches=np.array([[a in suspect for a in adapters]] * R, bool).reshape(R, C),
        col_footer=_drift_footer(drift, adapters),
    )


def _drift_footer(drift: pl.DataFrame | None, adapters: list[str]) -> list[str]:
    if drift is None:
        return []
    by = {r["adapter"]: r for r in drift.iter_rows(named=True)}
    out = []
    for a in adapters:
        d = by.get(a)
        if d is None or d["drift"] is None:
            out.append(f"drift –\n{d['label_status'] if d else ''}")
        else:
            out.append(f"drift {_fmt(d['drift'])}\n[{_fmt(d['drift_low'])}, {_fmt(d['drift_high'])}]\n{d['label_status']}")
    return out


def combined_heatmap(config_cells: pl.DataFrame, spread: pl.DataFrame, baselines: pl.DataFrame,
                     metric_order: dict[str, list[str]], labels: dict[str, str], n_configs: int, title: str,
                     drift_summary: pl.DataFrame | None = None) -> HeatmapData:
    """Heatmap data of several runs: one column per adapter x configuration (mean delta over its seeds;
    ``drift_summary`` rows of :class:`~capdrift_fast.report.combine.Combined` shown under the columns)."""
    keys = _row_keys(list(metric_order), metric_order)
    configs = config_cells["config"].unique(maintain_order=True).to_list()
    adapters = [a for a in config_cells["adapter"].unique(maintain_order=True).to_list() if a != BASE_NAME]
    cols = [(a, c) for a in adapters for c in configs]
    cc = {(r["config"], r["adapter"], r["task"], r["metric"]): r for r in config_cells.iter_rows(named=True)}
    sp = {(r["adapter"], r["task"], r["metric"]): r for r in spread.iter_rows(named=True)}
    rand = {(r["task"], r["metric"]): r["score"] for r in baselines.iter_rows(named=True)}
    R, C = len(keys), len(cols)
    values, hatches = np.full((R, C), np.nan), np.zeros((R, C), bool)
    texts = [["" for _ in range(C)] for _ in range(R)]
    ref = np.full((R, len(configs) + 1), np.nan)
    bold = []
    flip_key = "config_flip" if n_configs > 1 else "seed_flip"
    for i, (t, m) in enumerate(keys):
        for k, c in enumerate(configs):
            b = cc.get((c, BASE_NAME, t, m))
            ref[i, k] = b["score_mean"] if b else np.nan
        ref[i, -1] = rand.get((t, m), np.nan)
        bold.append(any(sp.get((a, t, m), {}).get("drift_metric") for a in adapters))
        for j, (a, c) in enumerate(cols):
            r = cc.get((c, a, t, m))
            if not r or r["delta_mean"] is None:
                continue
            values[i, j] = r["delta_mean"]
            star = "*" if r["n_significant"] == r["n_seeds"] and r["n_seeds"] > 0 else ""
            seeds = f"{r['n_seeds']} seed" + ("s" if r["n_seeds"] != 1 else "")
            sd = seeds if r["delta_sd"] is None else f"sd {r['delta_sd']:.2f} · {seeds}"
            texts[i][j] = f"{_fmt(r['delta_mean'])}{star}\n{sd}"
            hatches[i, j] = bool(sp.get((a, t, m), {}).get(flip_key))
    flip_text = "across configurations" if n_configs > 1 else "across seeds"
    return HeatmapData(
        title=title,
        footer=(f"cell: mean Δ over the configuration's seeds, * = significant in every seed; below: sd across seeds, "
                f"number of seeds.  Hatched: the sign of Δ flips {flip_text}.  Bold row: metric used in the drift score."),
        rows=[f"{t} · {m}" for t, m in keys], bold_rows=bold,
        ref_names=[f"base\n{c}" for c in configs] + ["random\nguess"], ref_values=ref,
        col_names=[f"{a}{' · ' + c if len(configs) > 1 else ''}\n({labels.get(a, '')})" for a, c in cols],
        values=values, texts=texts,
        boxes=np.zeros((R, C), bool), hatches=hatches, col_footer=_summary_footer(drift_summary, cols),
    )


def _summary_footer(summary: pl.DataFrame | None, cols: list[tuple[str, str]]) -> list[str]:
    if summary is None:
        return []
    by = {(r["adapter"], r["config"]): r for r in summary.iter_rows(named=True)}
    out = []
    for a, c in cols:
        d = by.get((a, c))
        if d is None:
            out.append("")
            continue
        sd = "" if d["drift_sd"] is None else f" (sd {d['drift_sd']:.2f})"
        out.append(f"drift {_fmt(d['drift_mean'])}{sd}\nsupported {d['n_supported']}/{d['n_runs']}")
    return out


def draw_heatmap(data: HeatmapData, path: str | Path, dpi: int = 130) -> Path:
    """Draw ``data`` to a PNG at ``path`` (matplotlib, Agg backend); return the path.

    The colour scale is symmetric: ``±max(|delta|)`` rounded up to 0.05 (at least ±0.05). Every string
    is drawn as plain text (``text.parse_math`` off): adapter names, labels and titles come from users, and
    a label such as ``$x^$`` would otherwise be parsed as mathtext (and fail to draw).
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
        return _draw(data, path, dpi)


def _draw(data: HeatmapData, path: str | Path, dpi: int) -> Path:
    import matplotlib
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    from matplotlib.patches import Rectangle

    R, C, P = len(data.rows), len(data.col_names), len(data.ref_names)
    if C == 0:  # a base-only run: one empty column instead of a zero-width axis
        data = replace(data, values=np.full((R, 1), np.nan), texts=[[""] for _ in range(R)],
                       boxes=np.zeros((R, 1), bool), hatches=np.zeros((R, 1), bool),
                       col_names=["(no adapters)"], col_footer=[])
        C = 1
    finite = np.abs(data.values[np.isfinite(data.values)])
    vmax = max(0.05, math.ceil((finite.max() if finite.size else 0.05) * 20) / 20)
    cell_w, cell_h = 1.25, 0.62
    head_lines = max([n.count("\n") + 1 for n in data.col_names + data.ref_names] or [1])
    foot_lines = max([f.count("\n") + 1 for f in data.col_footer] or [0])
    top_in = 0.65 + 0.2 * head_lines
    bottom_in = 0.75 + 0.19 * foot_lines
    label_in = 0.3 + 0.075 * max([len(r) for r in data.rows] or [10])
    fig_w = label_in + cell_w * (C + P * 0.75) + 1.3
    fig_h = top_in + cell_h * R + bottom_in
    fig = plt.figure(figsize=(fig_w, fig_h), dpi=dpi)
    left = label_in / fig_w
    ref_w = cell_w * P * 0.75 / fig_w
    main_w = cell_w * C / fig_w
    bottom, height = bottom_in / fig_h, cell_h * R / fig_h
    ax_ref = fig.add_axes((left, bottom, ref_w, height))
    ax = fig.add_axes((left + ref_w + 0.15 / fig_w, bottom, main_w, height))
    cax = fig.add_axes((left + ref_w + main_w + 0.35 / fig_w, bottom, 0.18 / fig_w, height))

    # reference scores (grey)
    ax_ref.imshow(np.full((R, P), 0.1), cmap="Greys", vmin=0, vmax=1, aspect="auto")
    for i in range(R):
        for k in range(P):
            v = data.ref_values[i, k]
            ax_ref.text(k, i, "–" if np.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=9, color="#333")
    ax_ref.set_xticks(range(P), data.ref_names, fontsize=8)
    ax_ref.xaxis.tick_top()
    ax_ref.set_yticks(range(R), data.rows, fontsize=9)
    for lbl, b in zip(ax_ref.get_yticklabels(), data.bold_rows):
        lbl.set_fontweight("bold" if b else "normal")
    ax_ref.set_xticks(np.arange(-0.5, P, 1), minor=True)
    ax_ref.set_yticks(np.arange(-0.5, R, 1), minor=True)
    ax_ref.grid(which="minor", color="white", linewidth=1.5)
    ax_ref.tick_params(which="minor", length=0)

    masked = np.ma.masked_invalid(data.values)
    cmap = plt.get_cmap("RdBu").with_extremes(bad="#eeeeee")
    im = ax.imshow(masked, cmap=cmap, norm=TwoSlopeNorm(0.0, -vmax, vmax), aspect="auto")
    for i in range(R):
        for j in range(C):
            v = data.values[i, j]
            if not data.texts[i][j]:
                continue
            dark = abs(v) > 0.6 * vmax
            head, _, tail = data.texts[i][j].partition("\n")
            ax.text(j, i - 0.13, head, ha="center", va="center", fontsize=9.5, fontweight="bold",
                    color="white" if dark else "#111")
            ax.text(j, i + 0.2, tail, ha="center", va="center", fontsize=7, color="white" if dark else "#333")
            if data.hatches.size and data.hatches[i, j]:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="//", edgecolor=(0, 0, 0, 0.28),
                                       linewidth=0))
                ax.text(j + 0.44, i - 0.4, "flip", ha="right", va="top", fontsize=6.5, fontstyle="italic",
                        color="white" if dark else "#222")
            if data.boxes[i, j]:
                ax.add_patch(Rectangle((j - 0.46, i - 0.46), 0.92, 0.92, fill=False, edgecolor="black", linewidth=2.2))
    ax.set_xticks(range(C), data.col_names, fontsize=8.5)
    ax.xaxis.tick_top()
    ax.set_yticks([])
    ax.set_xticks(np.arange(-0.5, C, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, R, 1), minor=True)
    ax.grid(which="minor", color="white", linewidth=1.5)
    ax.tick_params(which="minor", length=0)
    for j, text in enumerate(data.col_footer):
        ax.text(j, R - 0.5 + 0.12, text, ha="center", va="top", fontsize=8, color="#222", linespacing=1.3)
    cb = fig.colorbar(im, cax=cax)
    cb.set_label("Δ vs base (gain > 0)", fontsize=9)
    cb.ax.tick_params(labelsize=8)
    fig.suptitle(data.title, x=0.02, y=1 - 0.2 / fig_h, ha="left", va="top", fontsize=12, fontweight="bold")
    fig.text(0.02, 0.35 / fig_h, data.footer, fontsize=7.5, color="#444", ha="left", va="center", wrap=True)
    path = Path(path)
    with matplotlib.rc_context({"hatch.linewidth": 0.6}):  # read at draw time
        fig.savefig(path, dpi=dpi, format="png")
    plt.close(fig)
    return path


def breakdown_heatmap(table: pl.DataFrame, task: str, metric: str, title: str) -> HeatmapData:
    """Heatmap data of one task x metric of a per-group breakdown table
    (:data:`capdrift_fast.analysis.breakdown.TABLE_SCHEMA`): rows = groups (IFEval instruction types), columns =
    adapters, colour = Δ vs base over the group's units, ``*`` = BH-significant across the table's rows; the
    grey column holds the base accuracy; the row label ends with the group's unit count."""
    sub = table.filter((pl.col("task") == task) & (pl.col("metric") == metric))
    groups = sorted(sub["group"].unique().to_list())
    adapters = [a for a in sub["adapter"].unique(maintain_order=True).to_list() if a != BASE_NAME]
    cells = {(r["adapter"], r["group"]): r for r in sub.iter_rows(named=True)}
    R, C = len(groups), len(adapters)
    values = np.full((R, C), np.nan)
    texts = [["" for _ in range(C)] for _ in range(R)]
    ref = np.full((R, 1), np.nan)
    units = []
    for i, g in enumerate(groups):
        b = cells.get((BASE_NAME, g))
        units.append(b["n"] if b else 0)
        if b:
            ref[i, 0] = b["score"]
        for j, a in enumerate(adapters):
            c = cells.get((a, g))
            if c and c["delta"] is not None:
                values[i, j] = c["delta"]
                texts[i][j] = f"{_fmt(c['delta'])}{'*' if c['significant'] else ''}"
    return HeatmapData(
        title=title, footer="cell: Δ = adapter − base over the group's units; * = significant (exact McNemar per row, "
        "Benjamini–Hochberg across the rows)", rows=[f"{g} (n={u})" for g, u in zip(groups, units)],
        bold_rows=[False] * R, ref_names=["base"],
        ref_values=ref, col_names=adapters, values=values, texts=texts, boxes=np.zeros((R, C), bool),
        hatches=np.zeros((R, C), bool), col_footer=[],
    )
