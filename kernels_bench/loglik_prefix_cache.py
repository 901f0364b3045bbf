"""Log-likelihood requests with and without vLLM's prefix cache (``engine.loglik_prefix_cache``).

A multiple-choice sample sends one request per choice with the same context; vLLM skips its prefix cache
for ``prompt_logprobs`` requests unless told otherwise. This runs the same multiple-choice pass (the demo
model + its adapters, a SuperNI task as multiple choice) in fresh processes with the setting off and on,
alternating, and records log-likelihood requests/s (one per choice) and the largest per-choice difference
of the log-likelihoods between the two settings.

    python -m kernels_bench.loglik_prefix_cache --limit 50 --repeats 2   # writes results/loglik_prefix_cache_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

TASK = "superni/task1612_sick_label_classification.json"


def one_pass(cache: bool, limit: int, out: Path) -> None:
    """Child: start the engine, run the pass, write the timing and the log-likelihoods to ``out``."""
    from capdrift_fast.config import RunConfig, default_data_dir
    from capdrift_fast.demo import build_demo_assets, demo_config
    from capdrift_fast.engines.vllm_engine import VLLMEngine
    from capdrift_fast.pipeline.plan import build_plan

    data = default_data_dir()
    raw = demo_config(build_demo_assets(data), data, limit=limit)
    raw["tasks"] = [{"benchmark": "superni", "data": TASK, "output_type": "multiple_choice", "limit": limit}]
    raw["engine"]["loglik_prefix_cache"] = cache
    cfg = RunConfig.model_validate(raw)
    plan = build_plan(cfg)
    engine = VLLMEngine(cfg.model, cfg.engine, cfg.adapters)
    t0 = time.perf_counter()
    recs = list(engine.generate(plan.requests, cfg.sampling))
    dt = time.perf_counter() - t0
    n = sum(len(r["choice_logprobs"]) for r in recs)
    out.write_text(json.dumps({
        "cache": cache, "seconds": dt, "loglik_requests": n, "requests_per_s": n / dt,
        "prefix_caching_enabled": bool(engine.llm.llm_engine.vllm_config.cache_config.enable_prefix_caching),
        "context_tokens_mean": sum(r["prompt_tokens"] for r in recs) / len(recs),
        "lls": {r["request_id"]: r["choice_logprobs"] for r in recs},
    }))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--limit", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--child", choices=["on", "off"])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "loglik_prefix_cache_cpu.json")
    args = ap.parse_args()
    if args.child:
        one_pass(args.child == "on", args.limit, args.out)
        return
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    runs = []
    tmp = args.out.with_suffix(".part.json")
    for _ in range(args.repeats):
        for mode in ("off", "on"):
            subprocess.run([sys.executable, "-m", "kernels_bench.loglik_prefix_cache", "--child", mode,
                            "--limit", str(args.limit), "--out", str(tmp)], check=True, env=env)
            runs.append(json.loads(tmp.read_text()))
    tmp.unlink()
    off = [r for r in runs if not r["cache"]]
    on = [r for r in runs if r["cache"]]
    diff = max(abs(a - b) for k, v in off[0]["lls"].items() for a, b in zip(v, on[0]["lls"][k]))
    result = {
        "task": TASK, "limit": args.limit, "models": "base + demo adapters",
        "loglik_requests": off[0]["loglik_requests"], "context_tokens_mean": off[0]["context_tokens_mean"],
        "prefix_caching_enabled": on[0]["prefix_caching_enabled"],
        "requests_per_s_off": [r["requests_per_s"] for r in off], "requests_per_s_on": [r["requests_per_s"] for r in on],
        "speedup_best": max(r["requests_per_s"] for r in on) / max(r["requests_per_s"] for r in off),
        "max_abs_loglik_diff": diff, "host_cores": os.cpu_count(), "load_avg": os.getloadavg(),
    }
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
