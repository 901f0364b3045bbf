"""The main job as a short list of named stages (:mod:`capdrift_fast.pipeline`): preflight -> plan -> split ->
open the run folder -> manifest -> generate (one engine pass, Arrow shards) -> parity guard -> score (scores,
matrix, drift) -> manifest -> report. Killed at any point, the same command resumes it
(:mod:`capdrift_fast.rundir.resume`). ``capdrift merge`` reuses the score, manifest and report stages.

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
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from capdrift_fast.analysis.drift import check_drift_config
from capdrift_fast.config import RunConfig
from capdrift_fast.engines.base import Engine
from capdrift_fast.logs import forward_to, get_logger
from capdrift_fast.pipeline.generate import Generated, generate, remaining_requests
from capdrift_fast.pipeline.manifest import file_hashes, finish_manifest, package_versions, start_manifest
from capdrift_fast.pipeline.parity import ParityResult, run_parity
from capdrift_fast.pipeline.plan import Plan, build_plan
from capdrift_fast.pipeline.preflight import PreflightReport, preflight
from capdrift_fast.pipeline.score import check_coverage, coverage_gaps, score_run
from capdrift_fast.pipeline.split import ShardSpec, shard_plan
from capdrift_fast.prompt_checks import check_prompt_lengths, model_max_len
from capdrift_fast.report import write_report
from capdrift_fast.rundir import faults
from capdrift_fast.rundir.folder import RunFolder
from capdrift_fast.rundir.lock import run_folder_lock
from capdrift_fast.rundir.resume import RunState, open_run

if TYPE_CHECKING:
    from capdrift_fast.engines.hf_reference import HFReference

__all__ = ["RunResult", "run", "score_run", "check_coverage", "coverage_gaps", "package_versions", "shard_plan",
           "write_json", "write_parquet", "data_errors_json", "report_or_warn"]

log = get_logger(__name__)


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


def write_parquet(frame: pl.DataFrame, path: Path) -> None:
    """Write ``frame`` to ``path`` atomically (:meth:`RunFolder.write_parquet` for a run folder's artefacts)."""
    RunFolder(path.parent).write_parquet(path.name, frame)


def write_json(obj: Any, path: Path) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    RunFolder(path.parent).write_json(path.name, obj)


def run(
    cfg: RunConfig,
    run_dir: Path,
    progress: bool = True,
    engine: Engine | None = None,
    allow_pickle: bool = False,
    reference: "HFReference | None" = None,
    notify: Callable[[str], None] | None = None,
    report: bool = True,
    shard: ShardSpec | None = None,
) -> RunResult:
    """Execute (or resume) the main job for ``cfg`` into ``run_dir``.

    A folder that already holds this run is resumed: finished generations are kept, the rest is
    generated, then everything is scored. Bad adapters stop the run, or are left out when
    ``on_bad_adapter: skip``; malformed data rows likewise with ``data_errors``. Progress goes to the
    ``capdrift_fast`` loggers (:mod:`capdrift_fast.logs`).

    Args:
        engine: an already started engine serving ``cfg``'s model and (served) adapters in order (the tests
            share one); by default one is started here, only if something is left to generate.
        allow_pickle: accept pickle-only adapters (``adapter_model.bin``).
        reference: an already loaded transformers+peft reference for the parity guard (tests share one).
        notify: also called with each progress message (one line), e.g. the CLI's echo.
        report: end by writing the report into ``run_dir`` (:func:`capdrift_fast.report.write_report`).
        shard: run only this shard of the plan (:mod:`capdrift_fast.pipeline.split`): ``run_dir`` becomes
            a resumable run folder of the shard's requests with generations and ``parity.json``; scores,
            matrix and report come from ``capdrift merge`` over all shard folders.

    Raises:
        ConfigError / DataError / PreflightError: bad config, data or adapters (before any engine starts).
        RunFolderError: the folder holds another run or shards that cannot be reconciled, or another capdrift
            process is writing to it (:mod:`capdrift_fast.rundir.lock`).
        EngineError: vLLM could not start or serve, or the generations do not cover the plan.
    """
    with forward_to(notify), ExitStack() as held:
        started = time.time()
        pre, served = _preflight(cfg, allow_pickle)
        plan = _plan(served, pre, engine)
        plan, shard_info = _split(served, plan, shard, engine)
        held.enter_context(run_folder_lock(run_dir, "capdrift run"))  # one writer per run folder, until the end
        folder, state = _open(run_dir, cfg, plan, shard_info, pre)
        manifest = start_manifest(folder, state, cfg, served, pre, plan, file_hashes(served, pre), started)
        gen = _generate(served, plan, folder, state, engine, progress, shard, manifest)
        faults.maybe_kill("before-scoring")
        generations = folder.scan_generations().collect()
        check_coverage(plan, generations)
        parity = _parity(served, plan, generations, gen.dtype or (pre.base.dtype if pre.base else None), reference,
                         folder)
        matrix = pl.DataFrame()
        if shard_info is None:
            matrix = score_run(folder, plan, generations, parity.suspect, served.drift,
                               {a.name: a.label for a in served.adapters},
                               {m: v["guard"] for m, v in parity.to_json()["models"].items()})
        result = RunResult(folder.path, state.run_id, matrix, plan.requests.height, gen.engine_start_s,
                           gen.generation_s, gen.output_tokens, gen.n_generated, state, pre, parity, plan.skipped_rows,
                           shard=shard_info)
        finish_manifest(folder, manifest, n_generated=gen.n_generated, engine_start_s=gen.engine_start_s,
                        generation_s=gen.generation_s, output_tokens=gen.output_tokens, parity_status=parity.status,
                        suspects=parity.suspects, generations=generations)
        if report and shard_info is None:
            report_or_warn(folder.path, log.warning, samples=plan.samples)
        return result


def _preflight(cfg: RunConfig, allow_pickle: bool) -> tuple[PreflightReport, RunConfig]:
    """Preflight stage: check model and adapters (no engine); the config as served (bad adapters left out
    with ``on_bad_adapter: skip``)."""
    pre = preflight(cfg, allow_pickle)
    served = pre.apply(cfg)
    for name in pre.bad_adapters:
        log.warning(f"skipping adapter {name!r} (on_bad_adapter: skip): "
                    + "; ".join(p.message for c in pre.checks if c.adapter.name == name for p in c.problems))
    for p in pre.problems:
        if p.level == "warning":
            log.warning(str(p))
    return pre, served


def _plan(served: RunConfig, pre: PreflightReport, engine: Engine | None) -> Plan:
    """Plan stage: every task's samples x base + adapters; drift settings checked against the tasks; prompt
    lengths checked against the model's context (:mod:`capdrift_fast.prompt_checks`)."""
    plan = build_plan(served)
    check_drift_config(served.drift, plan.tasks)
    plan = check_prompt_lengths(served, plan, model_max_len(served, pre.base.local_dir if pre.base else None), engine)
    for err in plan.skipped_rows:
        log.warning(f"skipped data row: {err}")
    for err in plan.warnings:
        log.warning(f"warning: data: {err}")
    return plan


def _split(served: RunConfig, plan: Plan, shard: ShardSpec | None, engine: Engine | None
           ) -> tuple[Plan, dict[str, Any] | None]:
    """Split stage: this shard's part of the plan (the whole plan without ``--shard``)."""
    if shard is None:
        return plan, None
    plan, info = shard_plan(served, plan, shard, engine)
    log.info(f"{shard.label}: {plan.requests.height} of {info['n_plan']} requests, "
             f"{info['expected_tokens']} expected tokens (prompt + max_tokens)")
    return plan, info


def _open(run_dir: Path, cfg: RunConfig, plan: Plan, shard_info: dict[str, Any] | None, pre: PreflightReport
          ) -> tuple[RunFolder, RunState]:
    """Open (or resume) the run folder; write ``preflight.json`` and ``data_errors.json``."""
    state = open_run(run_dir, cfg, plan.requests, shard=shard_info)
    folder = RunFolder(state.run_dir)
    if state.resumed:
        log.info(f"resuming run {state.run_id}: {len(state.done)} of {plan.requests.height} generations already done")
    for q in state.quarantined:
        log.warning(f"set aside shard {q} (moved to {folder.file(folder.QUARANTINE)})")
    for t in state.removed_tmp:
        log.info(f"removed partial shard {t}")
    folder.write_json(folder.PREFLIGHT, pre.to_json())
    folder.write_json(folder.DATA_ERRORS, data_errors_json(cfg.data_errors, plan))
    return folder, state


def data_errors_json(policy: str, plan: Plan) -> dict[str, Any]:
    """``data_errors.json``: the rows left out (file, line, message; for over-long prompts also task and
    sample_id, which ``capdrift merge`` leaves out of the full plan likewise) and the warnings."""
    def entry(e: Any) -> dict[str, Any]:
        extra = {"task": e.task, "sample_id": e.sample_id} if getattr(e, "sample_id", None) is not None else {}
        return {"file": e.path, "line": e.line, "message": str(e), **extra}

    return {"policy": policy, "skipped": [entry(e) for e in plan.skipped_rows],
            "warnings": [entry(e) for e in plan.warnings]}


def _generate(served: RunConfig, plan: Plan, folder: RunFolder, state: RunState, engine: Engine | None,
              progress: bool, shard: ShardSpec | None, manifest: dict[str, Any]) -> Generated:
    """Generate stage: the requests not on disk yet, through one engine; after each shard the session's
    progress goes into ``manifest.json`` (a killed session still counts its generation time)."""
    remaining = remaining_requests(plan, state.done)
    session = manifest["sessions"][-1]

    def record_progress(generation_s: float, generated: int) -> None:
        session.update(generation_s=round(generation_s, 3), generated=generated)
        folder.write_json(folder.MANIFEST, manifest)

    if remaining.height:
        return generate(served, plan, folder, state.run_id, remaining, engine, progress, on_flush=record_progress)
    if plan.requests.height == 0:
        log.info(f"{shard.label if shard else 'this run'} has no requests (more shards than samples); no engine started")
    else:
        log.info("every planned generation is already on disk; no engine started")
    return Generated()


def _parity(served: RunConfig, plan: Plan, generations: pl.DataFrame, dtype: str | None,
            reference: "HFReference | None", folder: RunFolder) -> ParityResult:
    """Parity stage: canaries re-checked with transformers+peft; ``parity.json``."""
    parity = run_parity(served, plan, generations, model_dtype=dtype, reference=reference)
    folder.write_json(folder.PARITY, parity.to_json())
    if parity.status == "error":
        log.warning(f"PARITY GUARD NOT RUN ({parity.message}): no result of this run is confirmed or marked suspect; "
                    f"see {folder.file(folder.PARITY)}")
    for m in parity.suspects:
        log.warning(f"SUSPECT: vLLM disagreed with transformers+peft on {m!r}'s canaries; its results are marked suspect")
    return parity


def report_or_warn(run_dir: Path, say: Callable[[str], None], samples: dict[str, pl.DataFrame] | None = None) -> bool:
    """Report stage: write the report into ``run_dir``; a failure does not fail the run (its scores and matrix
    are on disk): it is reported through ``say``, recorded as ``report_error`` in ``manifest.json``, and
    ``capdrift report RUN_DIR`` redoes it. Returns whether the report was written."""
    folder = RunFolder(run_dir)
    path = folder.file(folder.MANIFEST)
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
            folder.write_json(folder.MANIFEST, {**manifest, "report_error": reason})
        return False
    return True  # (write_report clears an earlier report_error itself)
