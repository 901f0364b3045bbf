"""Report size and time at scale: a synthetic run of 32 adapters x 4 tasks x 200 items (the issue's size),
scored by the real scorers and reported at several sample-browser caps.

    python -m kernels_bench.report_size [--adapters 32] [--items 200] [--caps 20,60,100,200] [--out DIR]

The prompts and references are the real data's (IFEval, GSM8K, two SuperNI tasks, ``$CAPDRIFT_DATA_DIR`` or
``../shared/data``); the responses are synthetic: words drawn from the task's own prompts (IFEval ~150-400
words, GSM8K ~60-150 words ending in ``#### N``, right with a per-adapter probability; SuperNI one label,
right with a per-adapter probability), so scores, flips, breakdowns and the format panel are all non-trivial.
Output tokens are counted as words. No engine starts. Writes ``results/report_size.json``: per cap the
``report.html`` size and the time of ``write_report`` (which reads the folder, runs the per-item analyses and
renders), and the time of the score stage (scores, matrix with bootstrap and tests, drift, breakdown).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from capdrift_fast.config import BASE_NAME, RunConfig
from capdrift_fast.pipeline.plan import build_plan
from capdrift_fast.pipeline.score import score_run
from capdrift_fast.report import write_report
from capdrift_fast.rundir.folder import RunFolder
from capdrift_fast.rundir.shards import ShardWriter

LABELS = ("instruction", "numeric", "classification")


def synthetic_run(root: Path, data_dir: Path, n_adapters: int, n_items: int, seed: int = 0) -> tuple[Path, float]:
    """Write a scored run folder; return it and the score stage's seconds."""
    cfg = RunConfig.model_validate({
        "run_name": "report-size", "data_dir": str(data_dir), "model": {"path": "synthetic/base"},
        "adapters": [{"name": f"a{i:02d}", "path": f"synthetic/a{i:02d}", "label": LABELS[i % 3]} for i in range(n_adapters)],
        "tasks": [{"benchmark": "ifeval", "limit": n_items}, {"benchmark": "gsm8k", "limit": n_items},
                  {"benchmark": "superni", "data": "superni/task828_copa_commonsense_cause_effect.json", "limit": n_items},
                  {"benchmark": "superni", "data": "superni/task363_sst2_polarity_classification.json", "limit": n_items}],
    })
    plan = build_plan(cfg)
    folder = RunFolder(root / "run")
    folder.path.mkdir(parents=True)
    folder.write_json(folder.CONFIG, cfg.model_dump(mode="json"))
    folder.write_run_info({"run_id": "report-size"})
    folder.write_parquet(folder.PLAN, plan.requests)
    rng = np.random.default_rng(seed)
    skill = {a: rng.uniform(0.2, 0.8) for a in [BASE_NAME] + [a.name for a in cfg.adapters]}
    words = {t: " ".join(s["prompt"].to_list()).split() for t, s in plan.samples.items()}
    gold = {}
    for t, s in plan.samples.items():
        if "target" in s.columns:
            col = s["target"]
            vals = col.to_list()
            gold[t] = {sid: (v[0] if isinstance(v, list) else v.split("####")[-1].strip()) for sid, v in zip(s["sample_id"], vals)}
    labels = {t: s["labels"].to_list()[0] for t, s in plan.samples.items() if "labels" in s.columns}
    with ShardWriter(folder.generations_dir, "report-size", rows_per_shard=4096) as w:
        for r in plan.requests.iter_rows(named=True):
            t, right = r["task"], rng.random() < skill[r["adapter"]]
            if t in labels:
                text = gold[t][r["sample_id"]] if right else str(rng.choice(labels[t]))
                k = 1
            else:
                k = int(rng.integers(150, 400) if t == "ifeval" else rng.integers(60, 150))
                text = " ".join(rng.choice(words[t], size=k))
                if t in gold:
                    text += f"\n#### {gold[t][r['sample_id']] if right else rng.integers(0, 1000)}"
            w.write({"request_id": r["request_id"], "adapter": r["adapter"], "lora_id": r["lora_id"], "task": t,
                     "sample_id": r["sample_id"], "prompt": r["prompt"], "response": text, "prompt_tokens": 0,
                     "output_tokens": k, "output_token_ids": [], "finish_reason": "length" if k >= 380 else "stop",
                     "ttft_s": None, "finished_at": time.time()})
    t0 = time.perf_counter()
    score_run(folder, plan, drift=cfg.drift, labels={a.name: a.label for a in cfg.adapters})
    return folder.path, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--adapters", type=int, default=32)
    ap.add_argument("--items", type=int, default=200)
    ap.add_argument("--caps", default="20,60,100,200")
    ap.add_argument("--data-dir", default=os.environ.get("CAPDRIFT_DATA_DIR",
                                                         str(Path(__file__).resolve().parents[1].parent / "shared" / "data")))
    ap.add_argument("--out", default=str(Path(__file__).with_name("results") / "report_size.json"))
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="report_size_"))
    try:
        run, score_s = synthetic_run(tmp, Path(args.data_dir), args.adapters, args.items)
        n_gen = pl.scan_ipc(str(run / "generations" / "*.arrow")).select(pl.len()).collect().item()
        rows = []
        for cap in [int(c) for c in args.caps.split(",")]:
            t0 = time.perf_counter()
            files = write_report([run], max_items=cap)
            rows.append({"cap": cap, "seconds": round(time.perf_counter() - t0, 1),
                         "html_mb": round(files.html.stat().st_size / 1e6, 2),
                         "md_kb": round(files.markdown.stat().st_size / 1e3, 1)})
            print(rows[-1], flush=True)
        res = {"adapters": args.adapters, "tasks": 4, "items": args.items, "generations": n_gen,
               "score_stage_s": round(score_s, 1), "reports": rows,
               "host": {"cpus": os.cpu_count(), "load_avg": os.getloadavg(), "python": platform.python_version()}}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=2))
        print(json.dumps(res, indent=2))
        return res
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
