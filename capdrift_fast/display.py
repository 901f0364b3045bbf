"""Terminal display (rich): the drift matrix (rows task x primary metric, one column per model) and
the per-adapter drift scores."""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from capdrift_fast.config import BASE_NAME
from capdrift_fast.benchmarks.base import Task


def matrix_table(matrix: pl.DataFrame, tasks: Mapping[str, Task], labels: Mapping[str, str] | None = None):  # type: ignore[no-untyped-def]
    """A ``rich.table.Table`` of the primary metrics: the base column shows the score, each adapter
    column ``score (gain vs base)``, green for a gain and red for a loss, ``*`` when the gain is
    significant (``significant`` column, Benjamini–Hochberg); a model the parity guard marked
    ``suspect`` says so in its header. Only the display pivots; ``matrix`` (long, see
    :mod:`capdrift_fast.analysis.drift`) is unchanged."""
    from rich.markup import escape
    from rich.table import Table

    labels = labels or {}
    models = matrix.get_column("adapter").unique(maintain_order=True).to_list()
    table = Table(title="Drift matrix: score (gain vs base), * = significant (BH)")
    table.add_column("task", no_wrap=True)
    table.add_column("metric", no_wrap=True)
    suspect = set()
    if "suspect" in matrix.columns:
        suspect = set(matrix.filter(pl.col("suspect").fill_null(False)).get_column("adapter").to_list())
    guard: dict[str, str] = {}
    if "guard" in matrix.columns:
        guard = dict(matrix.select("adapter", "guard").unique(subset="adapter", maintain_order=True).iter_rows())
    for m in models:
        head = m if m == BASE_NAME else f"{m}\n[dim]{escape(labels.get(m, ''))}[/dim]"  # user text, not markup
        if m in suspect:
            head += "\n[bold red]SUSPECT[/bold red]"
        elif guard.get(m) not in (None, "agreed"):
            head += f"\n[yellow]guard: {guard[m]}[/yellow]"
        table.add_column(head, justify="right", no_wrap=True)
    cells = {(r["adapter"], r["task"], r["metric"]): r for r in matrix.iter_rows(named=True)}
    for task in tasks.values():
        for metric in (m for m in task.metrics if m.primary):
            row = [task.name, metric.name]
            for m in models:
                c = cells.get((m, task.name, metric.name))
                if c is None or c["score"] is None:
                    row.append("-")
                elif m == BASE_NAME or c["delta"] is None:
                    row.append(f"{c['score']:.3f}")
                else:
                    d = c["delta"]
                    style = "green" if d > 0 else "red" if d < 0 else "dim"
                    star = "*" if c.get("significant") else ""
                    row.append(f"{c['score']:.3f} [{style}]{d:+.3f}{star}[/{style}]")
            table.add_row(*row)
    return table


def drift_table(drift: pl.DataFrame):  # type: ignore[no-untyped-def]
    """A ``rich.table.Table`` of ``drift.parquet`` (``DRIFT_SCHEMA``): per adapter its label, on- and
    off-target gain, drift score with its interval, and the label verdict (red when not supported)."""
    from rich.markup import escape
    from rich.table import Table

    def f(x: float | None) -> str:
        return "-" if x is None else f"{x:+.3f}"

    table = Table(title="Drift score = off-target gain - on-target gain")
    for col in ("adapter", "label", "on-target gain", "off-target gain", "drift [CI]", "verdict", "off-target moves"):
        table.add_column(col, justify="right" if "gain" in col or "drift" in col else "left")
    for d in drift.iter_rows(named=True):
        verdict = d["label_status"]
        style = {"supported": "green", "not supported": "red", "partly supported": "yellow"}.get(verdict, "dim")
        table.add_row(
            d["adapter"], escape(d["label"]), f(d["on_gain"]), f(d["off_gain"]),
            f"{f(d['drift'])} [{f(d['drift_low'])}, {f(d['drift_high'])}]", f"[{style}]{verdict}[/{style}]",
            str(len(d["off_moved"])),
        )
    return table
