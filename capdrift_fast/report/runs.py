"""Reading run folders back for a report: config, manifest, scores -> analysed matrix and metadata."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from pydantic import ValidationError

from capdrift_fast.config import RunConfig
from capdrift_fast.analysis.drift import DriftAnalysis, analyze
from capdrift_fast.errors import CapdriftError, RunFolderError
from capdrift_fast.analysis.breakdown import LONG_SCHEMA, item_breakdown
from capdrift_fast.analysis.format_drift import format_drift
from capdrift_fast.rundir.folder import RunFolder
from capdrift_fast.rundir.hashing import hash_folder
from capdrift_fast.benchmarks import Task, build_tasks

BASELINE_SCHEMA = {"task": pl.Utf8, "metric": pl.Utf8, "score": pl.Float64}


@dataclass
class RunData:
    """One run folder, read and analysed.

    Attributes:
        run_dir: the folder (absolute).
        label: its short name in combined reports (the folder name, made unique).
        config: the resolved run config (``config.json``).
        manifest: ``manifest.json`` (``{}`` when absent).
        tasks: the run's tasks by name (built from the config; data is read only for baselines).
        analysis: matrix, drift scores and bootstrap replicates recomputed from ``scores.parquet``.
        baselines: random-guess expectations, long (task, metric, score); empty where undefined.
        notes: things the report should say it could not do (e.g. data missing for baselines).
        adapter_files: adapter name -> {file: sha256} (from the manifest when it has them).
        guard: model -> the parity guard's status (``parity.json``: agreed, SUSPECT, not run, disabled,
            not checked); empty when the folder has no ``parity.json``.
        scores: ``scores.parquet`` (one row per generation with its metric values).
        samples: the tasks' samples frames by name (those whose data could be read).
        parity: ``parity.json`` (``{}`` when absent).
    """

    run_dir: Path
    label: str
    config: RunConfig
    manifest: dict[str, Any]
    tasks: dict[str, Task]
    analysis: DriftAnalysis
    baselines: pl.DataFrame
    notes: list[str] = field(default_factory=list)
    adapter_files: dict[str, dict[str, str]] = field(default_factory=dict)
    guard: dict[str, str] = field(default_factory=dict)
    scores: pl.DataFrame | None = None
    samples: dict[str, pl.DataFrame] = field(default_factory=dict)
    parity: dict[str, Any] = field(default_factory=dict)

    @property
    def folder(self) -> RunFolder:
        """The run folder's artefacts."""
        return RunFolder(self.run_dir)

    def generations(self) -> pl.DataFrame | None:
        """The run's generations (``adapter, task, sample_id, prompt, response, output_tokens, finish_reason``, and
        ``choice_logprobs``/``choice_greedy`` when the shards have them), or None when the folder has no shards
        (a report-only copy)."""
        if not self.folder.generations_dir.is_dir() or not any(self.folder.generations_dir.glob("*.arrow")):
            return None
        lazy = self.folder.scan_generations()
        choices = [c for c in ("choice_logprobs", "choice_greedy") if c in lazy.collect_schema().names()]
        return (lazy.select("adapter", "task", "sample_id", "request_id", "prompt", "response", "output_tokens",
                            "finish_reason", *choices)
                .collect())

    def breakdown(self, generations: pl.DataFrame | None = None) -> pl.DataFrame:
        """``breakdown.parquet`` (units of tasks that declare a breakdown), computed from the generations when
        the folder predates it; empty when neither is there."""
        if self.folder.has(RunFolder.BREAKDOWN):
            return self.folder.read_parquet(RunFolder.BREAKDOWN)
        gens = generations if generations is not None else self.generations()
        if gens is None:
            return pl.DataFrame(schema=LONG_SCHEMA)
        return item_breakdown(gens, self.tasks, self.samples)

    def format_drift(self, generations: pl.DataFrame | None = None) -> pl.DataFrame | None:
        """``format.parquet``, computed from the generations when the folder predates it (None without either)."""
        if self.folder.has(RunFolder.FORMAT):
            return self.folder.read_parquet(RunFolder.FORMAT)
        gens = generations if generations is not None else self.generations()
        return None if gens is None else format_drift(gens, self.tasks)

    @property
    def labels(self) -> dict[str, str]:
        """Adapter name -> nominal label."""
        return {a.name: a.label for a in self.config.adapters}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RunFolderError(f"{path}: cannot read ({exc}); is this a finished capdrift run folder?") from None


def adapter_hashes(manifest: dict[str, Any], config: RunConfig) -> dict[str, dict[str, str]]:
    """Adapter name -> ``{file: sha256}``: from ``manifest.json`` when it records them (the runner's
    ``files.adapters.<name>.sha256``, an ``adapter_hashes`` mapping, or ``files``/``sha256`` mappings on its
    ``adapters`` entries), else
    hashed now from each adapter's local folder (``{}`` for a hub id)."""
    out: dict[str, dict[str, str]] = {}
    files = (manifest.get("files") or {}).get("adapters") or {}  # the runner's manifest: files.adapters.<name>.sha256
    out.update({k: v["sha256"] for k, v in files.items() if isinstance(v, dict) and isinstance(v.get("sha256"), dict)})
    recorded = manifest.get("adapter_hashes")
    if isinstance(recorded, dict):
        out.update({k: v for k, v in recorded.items() if isinstance(v, dict)})
    for entry in manifest.get("adapters") or []:
        if isinstance(entry, dict) and entry.get("name") not in out:
            for key in ("files", "sha256", "hashes"):
                if isinstance(entry.get(key), dict):
                    out[entry["name"]] = entry[key]
                    break
    for a in config.adapters:
        if a.name not in out:
            out[a.name] = hash_folder(a.path)
    return out


def read_samples(tasks: dict[str, Task], samples: dict[str, pl.DataFrame] | None = None) -> tuple[dict[str, pl.DataFrame], list[str]]:
    """Every task's samples frame (``samples`` from a plan first, else read from the data), and a note for
    each task whose data could not be read."""
    out, notes = {}, []
    for name, task in tasks.items():
        if samples and name in samples:
            out[name] = samples[name]
            continue
        try:
            out[name] = task.samples()
        except CapdriftError as exc:
            notes.append(f"samples of {name} unavailable (no references in the sample browser, no random-guess row): {exc}")
    return out, notes


def random_baselines(tasks: dict[str, Task], samples: dict[str, pl.DataFrame] | None = None) -> tuple[pl.DataFrame, list[str]]:
    """Random-guess expectations of every task that has a label space (long: task, metric, score),
    and notes for tasks whose data could not be read. ``samples`` (from a plan) avoids re-reading."""
    rows, notes = [], []
    for name, task in tasks.items():
        if not task.has_label_space:  # no data read for tasks without a baseline
            continue
        try:
            frame = samples[name] if samples and name in samples else task.samples()
        except CapdriftError as exc:
            notes.append(f"random-guess row for {name} unavailable: {exc}")
            continue
        rows += [{"task": name, "metric": m, "score": v} for m, v in task.random_baseline(frame).items()]
    return pl.DataFrame(rows, schema=BASELINE_SCHEMA), notes


def check_scores(run_dir: Path, config: RunConfig, scores: pl.DataFrame) -> None:
    """``scores.parquet`` belongs to the run's config: its columns ``adapter`` and ``task`` exist, every
    model is ``base`` or a configured adapter (their names become file names of the lm-eval export), the
    base model is there, and every task is a configured one.

    Raises:
        RunFolderError: naming the file and the first foreign value.
    """
    from capdrift_fast.config import BASE_NAME, task_name

    path = run_dir / "scores.parquet"
    missing = [c for c in ("adapter", "task", "request_id") if c not in scores.columns]
    if missing:
        raise RunFolderError(f"{path}: column {missing[0]!r} missing; not the scores of a capdrift run")
    models = scores.get_column("adapter").unique(maintain_order=True).to_list()
    known = {BASE_NAME, *(a.name for a in config.adapters)}
    foreign = [m for m in models if m not in known]
    if foreign:
        raise RunFolderError(f"{path} names model {str(foreign[0])[:80]!r}, which is neither {BASE_NAME!r} nor an "
                             "adapter of the run's config.json; the file does not belong to this run (restore it, "
                             "or rerun the run)")
    if BASE_NAME not in models:
        raise RunFolderError(f"{path} has no rows of the base model; the file is incomplete (restore it, or rerun)")
    tasks = {task_name(t) for t in config.tasks}
    odd = [t for t in scores.get_column("task").unique(maintain_order=True).to_list() if t not in tasks]
    if odd:
        raise RunFolderError(f"{path} names task {str(odd[0])[:80]!r}, which the run's config.json does not have; "
                             "the file does not belong to this run")


def load_run(run_dir: str | Path, label: str | None = None, samples: dict[str, pl.DataFrame] | None = None) -> RunData:
    """Read a run folder (``config.json``, ``scores.parquet``, ``matrix.parquet``, ``drift.parquet``,
    ``manifest.json``) for a report.

    The matrix and drift scores are the run's own ``matrix.parquet`` and ``drift.parquet`` (with the parity
    guard's ``suspect`` marks, which become notes of the report); a folder without them is analysed from
    ``scores.parquet`` with the run's ``drift`` settings (same seed -> same numbers).

    Raises:
        RunFolderError: the folder or a required file is missing or unreadable, or its drift
            settings name a metric its tasks lack.
    """
    run_dir = Path(run_dir).expanduser().resolve()
    if not run_dir.is_dir():
        raise RunFolderError(f"{run_dir}: run folder not found")
    for name in ("config.json", "scores.parquet"):
        if not (run_dir / name).is_file():
            raise RunFolderError(f"{run_dir / name}: missing; is {run_dir} a finished capdrift run folder?")
    try:
        config = RunConfig.model_validate(_read_json(run_dir / "config.json"))
    except ValidationError as exc:
        raise RunFolderError(f"{run_dir / 'config.json'}: not a capdrift run config ({exc.error_count()} problem(s): "
                             f"{exc.errors()[0]['msg']})") from None
    manifest = _read_json(run_dir / "manifest.json") if (run_dir / "manifest.json").is_file() else {}
    tasks = build_tasks(config)
    try:
        scores = pl.read_parquet(run_dir / "scores.parquet")
    except Exception as exc:  # polars raises several types for a damaged file
        raise RunFolderError(f"{run_dir / 'scores.parquet'}: cannot read ({exc})") from None
    check_scores(run_dir, config, scores)
    analysis = _stored_analysis(run_dir)
    if analysis is None:  # a folder without matrix.parquet / drift.parquet: recompute (same seed, same numbers)
        labels = {a.name: a.label for a in config.adapters}
        try:
            analysis = analyze(scores, tasks, config.drift, labels)
        except CapdriftError as exc:
            raise RunFolderError(f"{run_dir / 'config.json'}: {exc}") from None
    if "mde" not in analysis.matrix.columns:  # a folder from before the flip table: add it from the scores
        labels = {a.name: a.label for a in config.adapters}
        fresh = analyze(scores, tasks, config.drift, labels).matrix.select(
            "adapter", "task", "metric", "n_both", "n_adapter_only", "n_base_only", "n_neither", "mde")
        analysis = DriftAnalysis(analysis.matrix.join(fresh, on=["adapter", "task", "metric"], how="left",
                                                      maintain_order="left"), analysis.drift, analysis.replicates)
    all_samples, notes = read_samples(tasks, samples)
    baselines, _ = random_baselines(tasks, all_samples)
    parity = _read_json(run_dir / "parity.json") if (run_dir / "parity.json").is_file() else {}
    if not manifest:
        notes.append(f"{run_dir / 'manifest.json'} missing: timings and versions unknown")
    guard, guard_notes = parity_summary(run_dir)
    return RunData(run_dir, label or run_dir.name, config, manifest, tasks, analysis, baselines,
                   notes + guard_notes, adapter_hashes(manifest, config), guard, scores, all_samples, parity)


def parity_summary(run_dir: Path) -> tuple[dict[str, str], list[str]]:
    """The parity guard's per-model status from ``run_dir/parity.json`` and the notes a report must carry:
    one when the guard could not run (with its reason), one naming suspect models. ``({}, [note])`` when
    the file is missing."""
    from capdrift_fast.records import guard_status

    path = run_dir / "parity.json"
    if not path.is_file():
        return {}, [f"{path} missing: the parity guard's verdict is unknown"]
    parity = _read_json(path)
    status = parity.get("status")
    models = parity.get("models") or {}
    guard = {m: v.get("guard") or guard_status(status, v.get("suspect")) for m, v in models.items()}
    notes = []
    if status in ("error", "partial") and any(g == "not run" for g in guard.values()):
        notes.append(f"PARITY GUARD NOT RUN ({parity.get('message') or 'no reason recorded'}): these results are "
                     "neither confirmed nor marked suspect against transformers+peft")
    bad = [m for m, g in guard.items() if g == "SUSPECT"]
    if bad:
        notes.append(f"SUSPECT (vLLM disagreed with transformers+peft on their canaries): {', '.join(bad)}")
    return guard, notes


def _stored_analysis(run_dir: Path) -> DriftAnalysis | None:
    """The run's ``matrix.parquet`` and ``drift.parquet`` (no bootstrap replicates), or None when either is absent.

    Raises:
        RunFolderError: a file is there but unreadable.
    """
    paths = [run_dir / "matrix.parquet", run_dir / "drift.parquet"]
    if not all(p.is_file() for p in paths):
        return None
    frames = []
    for p in paths:
        try:
            frames.append(pl.read_parquet(p))
        except Exception as exc:  # polars raises several types for a damaged file
            raise RunFolderError(f"{p}: cannot read ({exc})") from None
    return DriftAnalysis(frames[0], frames[1], {})
