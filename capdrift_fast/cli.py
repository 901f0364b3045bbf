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
    from rich.console import Console

    from capdrift_fast.display import matrix_table
    from capdrift_fast.plan import build_plan

    console = Console(width=None if sys.stdout.isatty() else 160)
    tasks = build_plan(cfg).tasks
    console.print(matrix_table(result.matrix, tasks, {a.name: a.label for a in cfg.adapters}))
    console.print(
        f"{result.n_requests} requests, {result.output_tokens} output tokens in {result.generation_s:.1f} s "
        f"({result.tokens_per_s:.1f} tokens/s; engine start {result.engine_start_s:.1f} s). Run folder: {result.run_dir}"
    )


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
        cfg_path.write_text(yaml.safe_dump(demo_config(assets, data, limit), sort_keys=False))
        typer.echo(f"demo assets: {assets}\nconfig: {cfg_path}")
        cfg = load_config(cfg_path)
        result = run_job(cfg, out, progress=not quiet)
    except CapdriftError as exc:
        _fail(exc)
    _report(result, cfg)


@app.command("score-file")
def score_file(
    benchmark: Annotated[str, typer.Argument(help="ifeval, gsm8k or superni.")],
    data: Annotated[Path, typer.Option(
        "--data", help="Benchmark data: IFEval input_data.jsonl, GSM8K test.jsonl, or a SuperNI task .json.")],
    responses: Annotated[Path, typer.Option(
        "--responses",
        help="JSON lines: ifeval {prompt, response}; gsm8k {index or question, response}; superni {id, response}.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Parquet file to write, one row per scored item.")],
    skip_missing: Annotated[bool, typer.Option(help="Score only the data items that have a response.")] = False,
    skip_extra: Annotated[bool, typer.Option(help="Ignore responses that match no data item.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of SuperNI's random-guess baseline.")] = 0,
) -> None:
    """Score responses produced elsewhere; write SCORES.parquet and print the benchmark's accuracies."""
    from capdrift_fast.errors import CapdriftError
    from capdrift_fast.io.atomic import atomic_write
    from capdrift_fast.scoring.external import score_file as run_scoring

    try:
        result = run_scoring(benchmark, data, responses, skip_missing=skip_missing, skip_extra=skip_extra, seed=seed)
    except CapdriftError as exc:
        _fail(exc)
    atomic_write(out, lambda tmp: result.scores.write_parquet(tmp))
    for note in result.notes:
        typer.secho(f"note: {note}", fg=typer.colors.YELLOW, err=True)
    typer.echo(f"{result.benchmark}: {result.scores.height} scored -> {out}")
    for acc in result.accuracies + ([result.baseline] if result.baseline else []):
        count = f"({acc.hits}/{acc.total})" if acc.hits is not None else f"(n={acc.total})"
        typer.echo(f"{acc.name:<26} {acc.value:.4f}  {count}" + (f"  {acc.note}" if acc.note else ""))


def main() -> None:  # pragma: no cover - console script
    """Entry point of the ``capdrift`` console script."""
    app(prog_name="capdrift")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
