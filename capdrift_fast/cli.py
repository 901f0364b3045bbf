"""The ``capdrift`` command line. Heavy imports (vLLM, torch, polars) happen inside commands, so
``capdrift --help`` is instant."""

from __future__ import annotations

import errno
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="What did a LoRA adapter really change? Drift matrices over benchmarks, one vLLM pass.")

OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Run folder to create, or to resume (same config).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
PickleOpt = Annotated[bool, typer.Option("--allow-pickle", help="Accept pickle-only adapters (adapter_model.bin); "
                                         "loading pickle can run code, so only for sources you trust.")]
ConfigArg = Annotated[Path, typer.Argument(help="Run config (YAML); see configs/.")]
IncludeOpt = Annotated[Optional[list[Path]], typer.Option(
    "--include-path", help="A folder of task YAMLs (searched after the config's task_paths:); may be repeated.")]


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


@contextmanager
def _guard(out: Optional[Path] = None) -> Iterator[None]:
    """Run a command body with SIGTERM handled like Ctrl-C, and the environment's errors as one line.

    - :class:`~capdrift_fast.errors.CapdriftError` (bad input): its message, exit 2;
    - Ctrl-C / SIGTERM: where the finished work is and how to resume, exit 130 / 143 (the shard writer
      has flushed its buffer on the way out);
    - an ``OSError`` (disk full, read-only folder, permission): the file and what to do, exit 2;
    - a ``UnicodeDecodeError`` escaping the loaders: which file is not UTF-8, exit 2.
    """
    from capdrift_fast.errors import CapdriftError
    from capdrift_fast.rundir.paths import os_reason
    from capdrift_fast.signals import Terminated, exit_code, sigterm_as_interrupt

    try:
        with sigterm_as_interrupt():
            yield
    except CapdriftError as exc:
        _fail(exc)
    except KeyboardInterrupt as exc:
        what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        where = f"; finished generations are saved in {out}. Run the same command to resume" if out else ""
        typer.secho(f"{what}{where}.", fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(exit_code(exc)) from None
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        resume = "" if out is None or exc.errno not in (errno.ENOSPC, errno.EDQUOT) else \
            f" (finished generations are kept in {out})"
        typer.secho(f"error: {where}{os_reason(exc)}{resume}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    except UnicodeDecodeError as exc:
        typer.secho(f"error: a file is not UTF-8 text ({exc}); save it as UTF-8", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


def _say(msg: str) -> None:
    typer.echo(msg)


def _report(result, cfg) -> None:  # type: ignore[no-untyped-def]
    import polars as pl
    from rich.console import Console

    from capdrift_fast.display import drift_table, matrix_table
    from capdrift_fast.benchmarks import build_tasks

    console = Console(width=None if sys.stdout.isatty() else 160)
    tasks = build_tasks(cfg)
    labels = {a.name: a.label for a in cfg.adapters}
    console.print(matrix_table(result.matrix, tasks, labels))
    drift_path = result.run_dir / "drift.parquet"
    if drift_path.is_file():
        console.print(drift_table(pl.read_parquet(drift_path)))
    tps = f"{result.tokens_per_s:.1f} tokens/s; " if result.generation_s > 0 else ""
    if result.merged_shards:
        console.print(
            f"{result.n_requests} requests merged from {result.merged_shards} shards, {result.output_tokens} output tokens "
            f"in {result.generation_s:.1f} engine-seconds ({tps.rstrip('; ')} per engine). Run folder: {result.run_dir}")
    else:
        console.print(
            f"{result.n_requests} requests ({result.n_generated} generated now), {result.output_tokens} output tokens "
            f"in {result.generation_s:.1f} s ({tps}engine start {result.engine_start_s:.1f} s). Run folder: {result.run_dir}"
        )
    if (result.run_dir / "report.html").is_file():
        console.print(f"Report: {result.run_dir / 'report.md'}, {result.run_dir / 'report.html'}, {result.run_dir / 'heatmap.png'}")
    if result.skipped_rows:
        console.print(f"[yellow]{len(result.skipped_rows)} malformed data row(s) left out; see "
                      f"{result.run_dir / 'data_errors.json'}[/yellow]")
    if result.preflight and result.preflight.bad_adapters:
        console.print(f"[yellow]adapters left out by the preflight: {', '.join(result.preflight.bad_adapters)} "
                      f"(see {result.run_dir / 'preflight.json'})[/yellow]")
    if result.parity and result.parity.status == "error":
        console.print(f"[bold yellow]PARITY GUARD NOT RUN: no result is confirmed or marked suspect "
                      f"({result.parity.message}); see {result.run_dir / 'parity.json'}[/bold yellow]")
    if result.parity and result.parity.suspects:
        console.print(f"[bold red]SUSPECT results (vLLM disagreed with transformers+peft): "
                      f"{', '.join(result.parity.suspects)}; see {result.run_dir / 'parity.json'}[/bold red]")


def _report_shard(result, merge_hint: bool = True) -> None:  # type: ignore[no-untyped-def]
    info = result.shard
    tps = f" ({result.tokens_per_s:.1f} tokens/s)" if result.generation_s > 0 else ""
    typer.echo(
        f"shard {info['index']}/{info['count']}: {result.n_requests} of {info['n_plan']} requests "
        f"({result.n_generated} generated now, {info['expected_tokens']} expected tokens), {result.output_tokens} output "
        f"tokens in {result.generation_s:.1f} s{tps}. Shard folder: {result.run_dir}"
    )
    if result.parity and result.parity.status == "error":
        typer.secho(f"PARITY GUARD NOT RUN in this shard ({result.parity.message}); see "
                    f"{result.run_dir / 'parity.json'}", fg=typer.colors.YELLOW)
    if result.parity and result.parity.suspects:
        typer.secho(f"SUSPECT in this shard (vLLM disagreed with transformers+peft): {', '.join(result.parity.suspects)}; "
                    f"see {result.run_dir / 'parity.json'}", fg=typer.colors.RED)
    if merge_hint:
        typer.echo(f"When all {info['count']} shards are done: capdrift merge SHARD_DIR... --out RUN_DIR "
                   "(scores, matrix and report)")


def _run(cfg, out: Path, quiet: bool, allow_pickle: bool, shard=None):  # type: ignore[no-untyped-def]
    from capdrift_fast.runner import run as run_job

    return run_job(cfg, out, progress=not quiet, allow_pickle=allow_pickle, notify=_say, shard=shard)


@app.command()
def run(
    config: ConfigArg,
    out: OutOpt,
    quiet: QuietOpt = False,
    allow_pickle: PickleOpt = False,
    shard: Annotated[Optional[str], typer.Option(
        "--shard", metavar="I/N",
        help="Run only shard I of N, 0-based (0/4 .. 3/4): a deterministic split balanced by expected tokens, for "
        "array jobs (Kubernetes: $JOB_COMPLETION_INDEX; Slurm: --array=0-3, $SLURM_ARRAY_TASK_ID). Each shard gets its "
        "own --out; then `capdrift merge`.")] = None,
    dp_replica: Annotated[bool, typer.Option("--dp-replica", hidden=True)] = False,
    include_path: IncludeOpt = None,
) -> None:
    """Run base + every adapter over every task in one vLLM pass; write shards, scores and the matrix.

    The adapters are checked first (as `capdrift validate` does). If OUT already holds this run (killed,
    preempted, out of memory), it resumes: finished generations are kept and only the rest is generated.
    With engine.data_parallel_size D > 1, D engine replicas run on this node (OUT/replicas/) and are merged.
    """
    from capdrift_fast.config import load_config
    from capdrift_fast.errors import ConfigError

    with _guard(out):
        cfg = load_config(config, include_path)
        spec = None
        if shard is not None:
            from capdrift_fast.pipeline.split import ShardSpec

            spec = ShardSpec.parse(shard)
        dp = cfg.engine.data_parallel_size
        if dp > 1 and not dp_replica:
            if spec is not None:
                raise ConfigError(f"{config}: --shard with engine.data_parallel_size {dp}: an array job runs one engine "
                                  "per task, so set data_parallel_size: 1 for sharded runs (or drop --shard to run "
                                  f"{dp} replicas on this node)")
            result = _run_data_parallel(config, cfg, out, allow_pickle)
        else:
            result = _run(cfg, out, quiet, allow_pickle, spec)
        if result.shard is not None:
            _report_shard(result, merge_hint=not dp_replica)
        else:
            _report(result, cfg)


def _run_data_parallel(config: Path, cfg, out: Path, allow_pickle: bool):  # type: ignore[no-untyped-def]
    from capdrift_fast.distributed.data_parallel import run_replicas
    from capdrift_fast.distributed.merge import check_merge_target, merge
    from capdrift_fast.rundir.lock import run_folder_lock

    with run_folder_lock(out, "capdrift run (data parallel)"):  # the replicas lock their own folders
        check_merge_target(out.resolve())
        size = cfg.engine.data_parallel_size
        typer.echo(f"engine.data_parallel_size {size}: {size} engine replicas, each on its share of the requests")
        dirs = run_replicas(config.resolve(), out, size, cfg.engine.tensor_parallel_size, allow_pickle, notify=_say)
        return merge(dirs, out, notify=_say)


@app.command("merge")
def merge_cmd(
    shard_dirs: Annotated[list[Path], typer.Argument(help="Every shard folder of one split run (`capdrift run ... --shard I/N`).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The merged run folder (a previous merge there is redone).")],
    data_dir: Annotated[Optional[Path], typer.Option(help="Benchmark data root, if not where the shards read it.")] = None,
) -> None:
    """Merge the shard folders of a split run into one run folder, then score and report it like a normal run.

    Checks first that every shard finished, that they share one config and split, and that together they
    cover every planned request exactly once (missing or doubled shards and requests are named).
    """
    from capdrift_fast.config import RunConfig
    from capdrift_fast.distributed.merge import merge

    with _guard():
        result = merge(list(shard_dirs), out, data_dir=data_dir, notify=_say)
        cfg = RunConfig.model_validate_json((result.run_dir / "config.json").read_text())
        _report(result, cfg)


@app.command()
def validate(
    config: ConfigArg,
    adapters_dir: Annotated[Optional[Path], typer.Option("--adapters-dir", help="Also check every subfolder of DIR as "
                                                         "an adapter (named after the folder) against the config's base model.")] = None,
    allow_pickle: PickleOpt = False,
    data: Annotated[bool, typer.Option("--data/--no-data", help="Also check every data row of the tasks.")] = True,
    include_path: IncludeOpt = None,
) -> None:
    """Check a run config, its base model, every adapter and the task data, without starting any engine.

    Prints one line per problem (naming the adapter or file and what to do); exit code 2 when any is an error.
    """
    from capdrift_fast.pipeline.preflight import adapters_in_dir, preflight
    from capdrift_fast.config import load_config
    from capdrift_fast.errors import CapdriftError

    with _guard():
        cfg = load_config(config, include_path)
        extra, problems = adapters_in_dir(adapters_dir) if adapters_dir else ([], [])
        known = {a.name for a in cfg.adapters}
        clash = [a for a in extra if a.name in known]
        extra = [a for a in extra if a.name not in known]
        report = preflight(cfg, allow_pickle, extra)
    lines = [*map(str, problems), *map(str, report.problems)]
    lines += [f"error: adapter folder {a.name!r} ({a.path}): the config already has an adapter of this name; "
              "rename the folder" for a in clash]
    for line in lines:
        typer.echo(line)
    n_err = sum(line.startswith("error") for line in lines)
    checked = len(report.checks)
    typer.echo(f"adapters: {checked - len(report.bad_adapters)} of {checked} OK"
               + (f" (max_lora_rank raised to {report.max_lora_rank})" if report.max_lora_rank != cfg.engine.max_lora_rank else ""))
    if data:
        from capdrift_fast.pipeline.plan import build_plan

        from capdrift_fast.prompt_checks import check_prompt_lengths, model_max_len

        try:
            plan = build_plan(cfg, data_errors="skip")
            max_len = model_max_len(cfg, report.base.local_dir if report.base else None)
            plan = check_prompt_lengths(cfg, plan, max_len, policy="skip")  # prompts that do not fit the engine
        except CapdriftError as exc:
            typer.echo(f"error: data: {exc}")
            n_err += 1
        else:
            for err in plan.skipped_rows:
                typer.echo(f"{'error' if cfg.data_errors == 'fail' else 'warning'}: data: {err}")
            for err in plan.warnings:
                typer.echo(f"warning: data: {err}")
            n_err += len(plan.skipped_rows) if cfg.data_errors == "fail" else 0
            typer.echo(f"data: {plan.requests.height // len(plan.adapters)} samples in {len(plan.tasks)} tasks, "
                       f"{len(plan.skipped_rows)} malformed or over-long row(s), {len(plan.warnings)} warning(s)")
    if n_err:
        typer.secho(f"{n_err} error(s); no engine was started.", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    typer.echo("OK: ready to run.")


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
    """Build (once) a tiny random Llama and LoRA adapters trained with planted behaviours (plus a null control) locally, then run the main job on the shared data (README, "What the demo finds")."""
    import yaml

    from capdrift_fast.config import default_data_dir, load_config
    from capdrift_fast.demo import build_demo_assets, demo_config
    from capdrift_fast.errors import DataError
    from capdrift_fast.rundir import atomic_write_text
    from capdrift_fast.rundir.paths import ensure_dir

    with _guard(out):
        data = (data_dir or default_data_dir()).resolve()
        if not data.is_dir():
            raise DataError(f"{data}: benchmark data folder not found; pass --data-dir or set CAPDRIFT_DATA_DIR")
        assets = build_demo_assets(data, cache_dir)
        ensure_dir(out, "--out")
        cfg_path = out / "demo_config.yaml"
        raw = demo_config(assets, data, limit, seed=seed, temperature=temperature)
        atomic_write_text(cfg_path, yaml.safe_dump(raw, sort_keys=False))
        typer.echo(f"demo assets: {assets}\nconfig: {cfg_path}")
        cfg = load_config(cfg_path)
        result = _run(cfg, out, quiet, False)
        _report(result, cfg)


@app.command()
def report(
    run_dirs: Annotated[list[Path], typer.Argument(help="One or more run folders (from `capdrift run` / `capdrift demo`).")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Report folder (default: the run folder; required for several runs).")] = None,
    max_items: Annotated[Optional[int], typer.Option(
        "--max-items", min=0,
        help="Items embedded per cell in report.html's sample browser, flips first (default 60); the rest stays in the run's files.")] = None,
) -> None:
    """Write report.md, report.html and heatmap.png for one run, or combine several runs (seeds, base models,
    LoRA settings): spread per cell across seeds and sign flips across configurations."""
    from capdrift_fast.report import write_report

    with _guard():
        files = write_report(list(run_dirs), out, max_items=max_items)
    if files.combined is not None:
        c = files.combined
        typer.echo(f"{len(files.runs)} runs in {c.configurations.height} configuration(s); "
                   f"{int(c.spread['config_flip'].sum())} cell(s) flip sign across configurations, "
                   f"{int(c.spread['seed_flip'].sum())} across seeds")
    typer.echo(f"Report: {files.markdown}\n        {files.html}\n        {files.heatmap}")


@app.command("score-file")
def score_file(
    benchmark: Annotated[str, typer.Argument(help="A registered benchmark with a score-file reader (the built-ins; see README).")],
    data: Annotated[Path, typer.Option(
        "--data", help="The benchmark's data file (formats in the README, \"Scoring responses produced elsewhere\").")],
    responses: Annotated[Path, typer.Option(
        "--responses",
        help="JSON lines, one response per data item, joined as the benchmark's reader says (README).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Parquet file to write, one row per scored item.")],
    skip_missing: Annotated[bool, typer.Option(help="Score only the data items that have a response.")] = False,
    skip_extra: Annotated[bool, typer.Option(help="Ignore responses that match no data item.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of SuperNI's random-guess baseline.")] = 0,
) -> None:
    """Score responses produced elsewhere; write SCORES.parquet and print the benchmark's accuracies."""
    from capdrift_fast.benchmarks.score_file import score_file as run_scoring
    from capdrift_fast.rundir.atomic import atomic_write

    with _guard():
        result = run_scoring(benchmark, data, responses, skip_missing=skip_missing, skip_extra=skip_extra, seed=seed)
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
