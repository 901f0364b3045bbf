"""Export per model (base, each adapter) in lm-evaluation-harness's results JSON shape.

lm-eval writes ``OUTPUT/<model>/results_<date>.json`` (``lm_eval/loggers/evaluation_tracker.py``,
``save_results_aggregated``) holding ``results`` (task -> ``"<metric>,<filter>"`` value and
``"<metric>_stderr,<filter>"``), ``group_subtasks``, ``configs``, ``versions``, ``n-shot``,
``higher_is_better``, ``n-samples``, ``config`` (model, model_args, seeds, ...), ``date`` and the
tracker's ``model_source``/``model_name``/``model_name_sanitized``/timing fields. We write the same
keys to ``RUN_DIR/lm_eval/<model>/results_<date>.json`` (``<model>`` = ``base`` or the adapter name),
naming metrics as lm-eval's own tasks do where one exists (gsm8k ``exact_match,strict-match`` and
``exact_match,flexible-extract``; ifeval ``prompt_level_strict_acc,none``, ``inst_level_strict_acc,none``,
...), else ``<metric>,none``. Standard errors follow lm-eval's ``mean_stderr`` (sample sd with ddof 1
over sqrt(n)); for the instruction-level micro-averages lm-eval reports ``"N/A"`` and so do we.
Our own additions (run id, label, delta vs base with CI and q) sit under a ``capdrift`` key.
"""

from __future__ import annotations

import json
import math
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from capdrift_fast.benchmarks.base import MetricSpec
from capdrift_fast.config import BASE_NAME, task_name
from capdrift_fast.rundir.atomic import atomic_write_text
from capdrift_fast.report.runs import RunData

def lm_eval_key(spec: MetricSpec | None, metric: str) -> str:
    """lm-eval's ``"metric,filter"`` name of our ``metric`` (its :class:`MetricSpec`'s ``lm_eval`` when the
    benchmark declares one, else ``<metric>,none``)."""
    return spec.lm_eval if spec is not None and spec.lm_eval else f"{metric},none"


def sanitize_model_name(name: str) -> str:
    """lm-eval's ``sanitize_model_name``: path separators and other unsafe characters -> ``__``."""
    return re.sub(r"[\"<>:/|\\?*\[\]]+", "__", name)


def _stderr(values: pl.Series) -> float | None:
    n = values.len()
    if n < 2:
        return None
    sd = values.std(ddof=1)
    return None if sd is None else float(sd) / math.sqrt(n)


def _date_id(run: RunData) -> str:
    m = re.search(r"(\d{8})-(\d{6})", str(run.manifest.get("run_id", "")))
    if m:
        dt = datetime.strptime(m.group(1) + m.group(2), "%Y%m%d%H%M%S")
    else:
        dt = datetime.fromtimestamp((run.run_dir / "scores.parquet").stat().st_mtime)
    return dt.isoformat().replace(":", "-")


def lm_eval_results(run: RunData, model: str, scores: pl.DataFrame) -> dict[str, Any]:
    """The lm-eval-shaped results dict of one model (``base`` or an adapter name) of ``run``."""
    cfg = run.config
    matrix = run.analysis.matrix.filter(pl.col("adapter") == model)
    adapter = next((a for a in cfg.adapters if a.name == model), None)
    model_name = adapter.path if adapter else cfg.model.path
    model_args = f"pretrained={cfg.model.path}" + (f",lora_local_path={adapter.path}" if adapter else "")
    model_args += f",dtype={cfg.engine.dtype},max_model_len={cfg.engine.max_model_len},max_lora_rank={cfg.engine.max_lora_rank}"
    results: dict[str, dict[str, Any]] = {}
    extra: dict[str, dict[str, Any]] = {}
    configs, versions, nshot, hib, nsamples = {}, {}, {}, {}, {}
    tcfgs = {task_name(t): t for t in cfg.tasks}
    for tname, task in run.tasks.items():
        rows = matrix.filter(pl.col("task") == tname)
        if rows.height == 0:
            continue
        sub = scores.filter((pl.col("adapter") == model) & (pl.col("task") == tname))
        entry: dict[str, Any] = {"alias": tname}
        specs = {m.name: m for m in task.metrics}
        for r in rows.iter_rows(named=True):
            spec = specs.get(r["metric"])
            key = lm_eval_key(spec, r["metric"])
            name, _, filt = key.partition(",")
            entry[key] = r["score"]
            se = None if spec is None or spec.weight else _stderr(sub.get_column(r["metric"]).drop_nulls())
            entry[f"{name}_stderr,{filt}"] = "N/A" if se is None else se
            hib.setdefault(tname, {})[name] = True
            if model != BASE_NAME:
                extra.setdefault(tname, {})[key] = {
                    "delta_vs_base": r["delta"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
                    "test": r["test"], "p_value": r["p_value"], "q_value": r["q_value"], "significant": r["significant"],
                }
        results[tname] = entry
        tcfg = tcfgs.get(tname)
        shots = task.num_fewshot
        n = int(rows["n"].max())
        configs[tname] = {
            "task": tname, "dataset_path": str(getattr(task, "path", "")), "output_type": "generate_until",
            "num_fewshot": shots, "generation_kwargs": {
                "until": list(task.stop), "max_gen_toks": cfg.task_max_tokens(tcfg) if tcfg else cfg.sampling.max_tokens,
                "temperature": cfg.sampling.temperature, "top_p": cfg.sampling.top_p,
            },
            "metric_list": [{"metric": lm_eval_key(m, m.name).split(",")[0], "higher_is_better": True}
                            for m in task.metrics],
            "metadata": {"version": task.version},
        }
        versions[tname] = task.version
        nshot[tname] = shots
        nsamples[tname] = {"original": n, "effective": n}
    man = run.manifest
    total = (man.get("engine_start_s") or 0) + (man.get("generation_s") or 0)
    return {
        "results": results,
        "group_subtasks": {t: [] for t in results},
        "configs": configs,
        "versions": versions,
        "n-shot": nshot,
        "higher_is_better": hib,
        "n-samples": nsamples,
        "config": {
            "model": "vllm", "model_args": model_args, "batch_size": cfg.engine.max_num_seqs, "batch_sizes": [],
            "device": None, "use_cache": None, "limit": None, "bootstrap_iters": 0,
            "gen_kwargs": {"temperature": cfg.sampling.temperature, "top_p": cfg.sampling.top_p},
            "random_seed": cfg.sampling.seed, "numpy_seed": cfg.sampling.seed, "torch_seed": cfg.sampling.seed,
            "fewshot_seed": cfg.sampling.seed,
        },
        "git_hash": None,
        "date": (run.run_dir / "scores.parquet").stat().st_mtime,
        "transformers_version": (man.get("versions") or {}).get("transformers"),
        "task_hashes": {},
        "model_source": "vllm",
        "model_name": model_name,
        "model_name_sanitized": sanitize_model_name(model_name),
        "start_time": None,
        "end_time": None,
        "total_evaluation_time_seconds": str(round(total, 3)),
        "capdrift": {
            "run_id": man.get("run_id"), "model": model, "base_model": cfg.model.path,
            "adapter": model if adapter else None, "label": adapter.label if adapter else None,
            "adapter_files_sha256": run.adapter_files.get(model, {}) if adapter else {},
            "deltas_vs_base": extra, "exported_at": time.time(),
        },
    }


def export_lm_eval(run: RunData, out: str | Path) -> list[Path]:
    """Write one ``out/<model>/results_<date>.json`` per model of ``run`` (base first); return the paths.

    Earlier exports of the same run (same file name) are replaced atomically. The model names come from
    ``scores.parquet``; each must be ``base`` or an adapter of the run's config (whose names are validated
    as plain file names), and every path is checked to stay inside ``out`` (no symlinks on the way).

    Raises:
        RunFolderError: ``scores.parquet`` names a model the run's config does not have.
        RunDirError: a folder on the way is a symbolic link or leads outside ``out``.
    """
    from capdrift_fast.config import BASE_NAME
    from capdrift_fast.errors import RunFolderError
    from capdrift_fast.rundir.paths import inside

    out = Path(out)
    scores = pl.read_parquet(run.run_dir / "scores.parquet")
    stamp = _date_id(run)
    known = {BASE_NAME, *(a.name for a in run.config.adapters)}
    models = run.analysis.matrix["adapter"].unique(maintain_order=True).to_list()
    for model in models:  # every name checked before anything is written
        if model not in known:
            raise RunFolderError(f"{run.run_dir / 'scores.parquet'} names model {str(model)[:80]!r}, which is neither "
                                 f"{BASE_NAME!r} nor an adapter of the run's config.json; the file does not belong to "
                                 "this run (restore it, or rerun the run)")
    paths = []
    for model in models:
        path = inside(out, model, f"results_{stamp}.json", what="model name")
        atomic_write_text(path, json.dumps(lm_eval_results(run, model, scores), indent=2, default=str))
        paths.append(path)
    return paths
