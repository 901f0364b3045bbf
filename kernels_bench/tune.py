"""Our pass's knobs, one at a time around a baseline: ``max_loras``, ``max_num_seqs``, request order
(grouped vs interleaved), the in-flight window (``max_inflight``: chunked submission for streaming),
``enforce_eager`` (on a GPU: CUDA graphs on/off) and, on CPU, ``cpu_lora_ops`` (grouped vs vLLM's).

The request set is the e2e one (base + N adapters x P GSM8K prompts x T tokens, ``ignore_eos``).
Engines are started once per distinct engine setting; settings that only change how requests are
handed over (order, window) reuse the engine. Each variant is run ``--reps`` times (variants
interleaved) and the median generation time, output tokens/s and median time-to-first-token
(queueing included) are reported; boots are reported separately (``boot_s``).

Usage::

    python -m kernels_bench.tune [--adapters 16] [--rank 16] [--prompts 8] [--max-tokens 32] [--reps 3]
        [--out kernels_bench/results/tune_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from kernels_bench.common import configure_cpu_threads, host_info, loadavg, median, wait_for_quiet


def variants(n: int, base_seqs: int, gpu: bool) -> list[dict[str, Any]]:
    """The sweep: a baseline (``max_loras=N``, ``max_num_seqs=base_seqs``, grouped, window 4 x seqs,
    compiled) and one-knob changes from it. Each variant: ``name``, ``engine`` (EngineConfig fields
    that need a fresh engine) and ``run`` (fields that do not)."""
    base_engine = {"max_loras": n, "max_num_seqs": base_seqs, "enforce_eager": False}
    out = [{"name": "baseline", "engine": base_engine, "run": {}}]
    for ml in sorted({1, 2, 4, 8, n} - {n}):
        if ml < n:
            out.append({"name": f"max_loras={ml}", "engine": {**base_engine, "max_loras": ml}, "run": {}})
            out.append({"name": f"max_loras={ml}+interleaved", "engine": {**base_engine, "max_loras": ml},
                        "run": {"request_order": "interleaved"}})
    out.append({"name": "interleaved", "engine": base_engine, "run": {"request_order": "interleaved"}})
    for seqs in (16, 64, 128, 256):
        if seqs != base_seqs:
            out.append({"name": f"max_num_seqs={seqs}", "engine": {**base_engine, "max_num_seqs": seqs}, "run": {}})
    for mult in (0.25, 1, 16):
        w = max(1, int(mult * base_seqs))
        out.append({"name": f"max_inflight={w}", "engine": base_engine, "run": {"max_inflight": w}})
    out.append({"name": "enforce_eager" + (" (no CUDA graphs)" if gpu else ""),
                "engine": {**base_engine, "enforce_eager": True}, "run": {}})
    if not gpu:
        out.append({"name": "cpu_lora_ops=vllm", "engine": {**base_engine, "cpu_lora_ops": "vllm"}, "run": {}})
    return out


def run_engine(job: dict[str, Any]) -> list[dict[str, Any]]:
    """Start one engine (``job["engine"]`` fields), run each of ``job["variants"]`` ``reps`` times
    (interleaved) and return one record per run."""
    import polars as pl

    from capdrift_fast.config import AdapterConfig, EngineConfig, ModelConfig, SamplingConfig
    from capdrift_fast.engines.vllm_engine import VLLMEngine, quiet_vllm_env
    from capdrift_fast.rundir import ShardWriter
    from capdrift_fast.pipeline.plan import PLAN_SCHEMA

    quiet_vllm_env()
    a = job["args"]
    paths = [Path(p) for p in job["paths"]]
    names = ["base"] + [p.name for p in paths]
    plan = pl.DataFrame(
        [{"request_id": f"{names[m]}/gsm8k/{i}", "adapter": names[m], "lora_id": m, "task": "gsm8k",
          "sample_id": str(i), "prompt": p, "max_tokens": a["max_tokens"]}
         for m in range(len(names)) for i, p in enumerate(job["prompts"])], schema=PLAN_SCHEMA)
    adapters = [AdapterConfig(name=p.name, path=str(p)) for p in paths]
    sampling = SamplingConfig(temperature=0.0, max_tokens=a["max_tokens"], ignore_eos=True)
    eng_fields = job["engine"]
    ecfg = EngineConfig(max_lora_rank=max(a["rank"], 8), dtype=a["dtype"], max_model_len=a["max_model_len"],
                        kv_cache_memory_gib=a["kv_cache_gib"] or None, **eng_fields)
    wait_for_quiet(a["max_load"], a["wait_timeout"])
    t0 = time.perf_counter()
    eng = VLLMEngine(ModelConfig(path=job["model"], prompt_format="raw"), ecfg, adapters)
    boot = time.perf_counter() - t0
    list(eng.generate(plan.head(4), sampling))  # warm-up: first-step costs are not the knob's
    records = []
    for rep in range(a["reps"]):
        for v in job["variants"]:
            eng.settings = ecfg.model_copy(update=v["run"])
            before = wait_for_quiet(a["max_load"], a["wait_timeout"])
            tokens, ttft, first_done = 0, [], None
            with tempfile.TemporaryDirectory() as tmp, ShardWriter(Path(tmp), "tune") as writer:
                t0 = time.perf_counter()
                for rec in eng.generate(plan, sampling):
                    writer.write(rec)
                    tokens += rec["output_tokens"]
                    first_done = first_done or time.perf_counter() - t0
                    if rec["ttft_s"] is not None:
                        ttft.append(rec["ttft_s"])
                writer.flush()
                gen = time.perf_counter() - t0
            rec = {"variant": v["name"], "engine": eng_fields, "run": v["run"], "rep": rep, "boot_s": boot,
                   "gen_s": gen, "output_tokens": tokens, "tokens_per_s": tokens / gen,
                   "ttft_median_s": median(ttft), "first_result_s": first_done,
                   "loadavg_before": before, "loadavg_after": loadavg()}
            records.append(rec)
            print(json.dumps({k: (round(x, 3) if isinstance(x, float) else x) for k, x in rec.items()}), flush=True)
    eng.close()
    return records


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the sweep; write ``--out`` JSON and a PNG beside it."""
    ap = argparse.ArgumentParser(description="Sweep our pass's engine knobs.")
    ap.add_argument("--adapters", type=int, default=16)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--max-num-seqs", type=int, default=256, help="baseline max_num_seqs")
    ap.add_argument("--only", default="", help="comma-separated variant names (default: all)")
    ap.add_argument("--shape", default="small")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--max-model-len", type=int, default=1024)
    ap.add_argument("--kv-cache-gib", type=float, default=1.0, help="0 = vLLM's own sizing (GPU)")
    ap.add_argument("--assets", type=Path, default=Path(os.environ.get(
        "CAPDRIFT_BENCH_ASSETS", Path.home() / ".cache" / "capdrift_fast" / "bench")))
    ap.add_argument("--max-load", type=float, default=2.5)
    ap.add_argument("--wait-timeout", type=float, default=300)
    ap.add_argument("--isolate", action="store_true", help="one fresh process per engine (use on a GPU)")
    ap.add_argument("--threads", type=int, default=1, help="CPU compute threads (0 = library defaults)")
    ap.add_argument("--out", type=Path, default=Path("kernels_bench/results/tune_cpu.json"))
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.device == "cpu":
        configure_cpu_threads(args.threads)
    if args.worker:
        recs = run_engine(json.loads(args.worker))
        print("RESULT " + json.dumps(recs), flush=True)
        return {"records": recs}

    from capdrift_fast.config import default_data_dir
    from capdrift_fast.engines.vllm_engine import quiet_vllm_env
    from kernels_bench.assets import SHAPES, build_adapters, ensure_model
    from kernels_bench.e2e import load_prompts

    quiet_vllm_env()
    data_dir = default_data_dir()
    model = ensure_model(args.assets, args.shape, args.dtype, args.device, data_dir)
    paths = build_adapters(args.assets / f"adapters-{args.shape}-{args.dtype}", SHAPES[args.shape], args.adapters,
                           args.rank, str(model), dtype=args.dtype)
    prompts = load_prompts(data_dir, args.prompts)
    gpu = args.device == "cuda"
    todo = variants(args.adapters, args.max_num_seqs, gpu)
    if args.only:
        keep = set(args.only.split(","))
        todo = [v for v in todo if v["name"] in keep]
    by_engine: dict[str, list[dict[str, Any]]] = {}
    for v in todo:
        by_engine.setdefault(json.dumps(v["engine"], sort_keys=True), []).append(v)

    host0 = host_info()
    records: list[dict[str, Any]] = []
    for key, vs in by_engine.items():
        job = {"engine": json.loads(key), "variants": vs, "model": str(model), "paths": [str(p) for p in paths],
               "prompts": prompts, "args": {k: (str(x) if isinstance(x, Path) else x) for k, x in vars(args).items()}}
        if args.isolate:  # a fresh process per engine: on a GPU, memory is only really freed at exit
            import subprocess
            import sys

            proc = subprocess.run([sys.executable, "-m", "kernels_bench.tune", "--worker", json.dumps(job)],
                                  capture_output=True, text=True)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                records += [{"variant": v["name"], "error": (proc.stderr or proc.stdout)[-1500:]} for v in vs]
                continue
            records += json.loads(lines[-1][len("RESULT "):])
        else:
            records += run_engine(job)

    summary = []
    for v in todo:
        rs = [r for r in records if r["variant"] == v["name"]]
        summary.append({"variant": v["name"], "engine": v["engine"], "run": v["run"], "reps": len(rs),
                        "boot_s": rs[0]["boot_s"], "gen_s": median(r["gen_s"] for r in rs),
                        "tokens_per_s": median(r["tokens_per_s"] for r in rs),
                        "ttft_median_s": median(r["ttft_median_s"] for r in rs),
                        "first_result_s": median(r["first_result_s"] for r in rs)})
    base = next((s for s in summary if s["variant"] == "baseline"), None)
    if base:
        for s in summary:
            s["vs_baseline_tokens_per_s"] = s["tokens_per_s"] / base["tokens_per_s"]
    result = {"benchmark": "tune", "device": args.device, "shape": args.shape,
              "request_set": {"adapters": args.adapters, "rank": args.rank, "prompts": args.prompts,
                              "max_tokens": args.max_tokens, "requests": (args.adapters + 1) * args.prompts},
              "args": {k: str(x) for k, x in vars(args).items()}, "host_before": host0, "host_after": host_info(),
              "records": records, "summary": summary}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    _plot(summary, args.out.with_suffix(".png"), result["request_set"])
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}", flush=True)
    return result


def _plot(summary: list[dict[str, Any]], path: Path, rs: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.35 * len(summary) + 1.2))
    names = [s["variant"] for s in summary]
    ax.barh(names, [s["tokens_per_s"] for s in summary], color=["C1" if n == "baseline" else "C0" for n in names])
    ax.invert_yaxis()
    ax.set_xlabel("output tokens/s (generation)")
    ax.set_title(f"our pass, base + {rs['adapters']} adapters (rank {rs['rank']}) x {rs['prompts']} prompts "
                 f"x {rs['max_tokens']} tokens", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
