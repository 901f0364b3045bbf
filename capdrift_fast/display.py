"""Terminal display of the drift matrix (rich): one row per task x primary metric, one column per model."""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from capdrift_fast.config import BASE_NAME
from capdrift_fast.tasks.base import Task


def matrix_table(matrix: pl.DataFrame, tasks: Mapping[str, Task], labels: Mapping[str, str] | None = None):  # type: ignore[no-untyped-def]
    """A ``rich.table.Table`` of the primary metrics: the base column shows the score, each adapter
    column ``score (gain vs base)``, green for a gain and red for a loss; a model the parity guard marked
    ``suspect`` says so in its header. Only the display pivots; ``matrix`` (long, see
    :mod:`capdrift_fast.drift`) is unchanged."""
    from rich.table import Table

    labels = labels or {}
    models = matrix.get_column("adapter").unique(maintain_order=True).to_list()
    table = Table(title="Drift matrix: score (gain vs base)")
    table.add_column("task")
    table.add_column("metric")
    suspect = set()
    if "suspect" in matrix.columns:
        suspect = set(matrix.filter(pl.col("suspect").fill_null(False)).get_column("adapter").to_list())
    for m in models:
        head = m if m == BASE_NAME else f"{m}\n[dim]{labels.get(m, '')}[/dim]"
        if m in suspect:
            head += "\n[bold red]SUSPECT[/bold red]"
        table.add_column(head, justify="right")
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
                    row.append(f"{c['score']:.3f} [{style}]({d:+.3f})[/{style}]")
            table.add_row(*row)
    return table
