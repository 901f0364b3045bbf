"""The ``capdrift`` command line. Heavy imports (vLLM, torch, polars) happen inside commands, so
``capdrift --help`` is instant."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="What did a LoRA adapter really change? Drift matrices over benchmarks, one vLLM pass.")

OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Run folder to create (generations, scores, matrix).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _report(result, cfg) -> None:  # type: ignore[no-untyped-def]
    import polars as pl
    from rich.console import Console

    from capdrift_fast.display import drift_table, matrix_table
    from capdrift_fast.plan import build_plan

    console = Console(width=None if sys.stdout.isatty() else 160)
    tasks = build_plan(cfg).tasks
    labels = {a.name: a.label for a in cfg.adapters}
    console.print(matrix_table(result.matrix, tasks, labels))
    drift_path = result.run_dir / "drift.parquet"
    if drift_path.is_file():
        console.print(drift_table(pl.read_parquet(drift_path)))
    console.print(
        f"{result.n_requests} requests, {result.output_tokens} output tokens in {result.generation_s:.1f} s "
        f"({result.tokens_per_s:.1f} tokens/s; engine start {result.engine_start_s:.1f} s). Run folder: {result.run_dir}"
    )
    if (result.run_dir / "report.html").is_file():
        console.print(f"Report: {result.run_dir / 'report.md'}, {result.run_dir / 'report.html'}, {result.run_dir / 'heatmap.png'}")


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="Run config (YAML); see configs/.")],
    out: OutOpt,
    quiet: QuietOpt = False,
) -> None:
    """Run base + every adapter over every task in one vLLM pass; write shards, scores and the matrix."""
    from capdrift_fast.config import load_config
    from capdrift_fast.errors import CapdriftError
    from capdrift_fast.runner import run as run_job

    try:
        cfg = load_config(config)
        result = run_job(cfg, out, progress=not quiet)
    except CapdriftError as exc:
        _fail(exc)
    _report(result, cfg)


@app.command()
def demo(
    out: OutOpt,
    data_dir: Annotated[Optional[Path], typer.Option(help="Benchmark data root (default: $CAPDRIFT_DATA_DIR or ../shared/data).")] = None,
    limit: Annotated[int, typer.Option(help="Samples per task.")] = 24,
    seed: Annotated[int, typer.Option(help="Sampling seed (sampling.seed); matters when --temperature > 0.")] = 0,
    temperature: Annotated[float, typer.Option(min=0.0, help="Sampling temperature (0 = greedy).")] = 0.0,
    cache_dir: Annotated[Optional[Path], typer.Option(help="Where the tiny model and adapters are cached.")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Build (once) a tiny random Llama + 3 random LoRA adapters locally, then run the main job on the shared data."""
    import yaml

    from capdrift_fast.config import default_data_dir, load_config
    from capdrift_fast.demo import build_demo_assets, demo_config
    from capdrift_fast.errors import CapdriftError, DataError
    from capdrift_fast.runner import run as run_job

    try:
        data = (data_dir or default_data_dir()).resolve()
        if not data.is_dir():
            raise DataError(f"{data}: benchmark data folder not found; pass --data-dir or set CAPDRIFT_DATA_DIR")
        assets = build_demo_assets(data, cache_dir)
        out.mkdir(parents=True, exist_ok=True)
        cfg_path = out / "demo_config.yaml"
        raw = demo_config(assets, data, limit, seed=seed, temperature=temperature)
        cfg_path.write_text(yaml.safe_dump(raw, sort_keys=False))
        typer.echo(f"demo assets: {assets}\nconfig: {cfg_path}")
        cfg = load_config(cfg_path)
        result = run_job(cfg, out, progress=not quiet)
    except CapdriftError as exc:
        _fail(exc)
    _report(result, cfg)


@app.command()
def report(
    run_dirs: Annotated[list[Path], typer.Argument(help="One or more run folders (from `capdrift run` / `capdrift demo`).")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Report folder (default: the run folder; required for several runs).")] = None,
) -> None:
    """Write report.md, report.html and heatmap.png for one run, or combine several runs (seeds, base models,
    LoRA settings): spread per cell across seeds and sign flips across configurations."""
    from capdrift_fast.errors import CapdriftError
    from capdrift_fast.report import write_report

    try:
        files = write_report(list(run_dirs), out)
    except CapdriftError as exc:
        _fail(exc)
    if files.combined is not None:
        c = files.combined
        typer.echo(f"{len(files.runs)} runs in {c.configurations.height} configuration(s); "
                   f"{int(c.spread['config_flip'].sum())} cell(s) flip sign across configurations, "
                   f"{int(c.spread['seed_flip'].sum())} across seeds")
    typer.echo(f"Report: {files.markdown}\n        {files.html}\n        {files.heatmap}")


def main() -> None:  # pragma: no cover - console script
    """Entry point of the ``capdrift`` console script."""
    app(prog_name="capdrift")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
