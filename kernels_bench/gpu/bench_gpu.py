"""The GPU benchmark in one process tree, inside one device call's time, partial results as it goes.

``python -m kernels_bench.gpu.bench_gpu assets``: build the random model (``--shape``, on ``--device``)
and ``N`` rank-``R`` adapters under ``--stage/assets`` (the first device call; torch, safetensors and
tokenizers are on the GPU image, nothing carried is needed).

``python -m kernels_bench.gpu.bench_gpu bench``: one parent process runs :data:`STEPS` in order, each
in a fresh child process (GPU memory is freed when a child exits), and rewrites ``--out`` (JSON) after
every step, so whatever finished comes back even if the call is cut short:

1. ``ours``: capdrift_fast's pass (:class:`VLLMEngine`, CUDA graphs on, ``max_loras``) over the base
   + N adapters x P prompts x T tokens; its cold start (process start + ``import vllm`` + engine start)
   is the *measured boot*; on the same engine then the **mis-serving probe** (base + ``max_loras``
   adapters, ``K`` prompts each, in one batch with ``isolate_base`` off, greedy) and
   ``generate_per_adapter`` (one ``LLM.generate`` call per adapter and the base; this engine has
   ``max_loras`` slots, not 1: one boot less, noted in the JSON);
2. ``base_only``: the base model without LoRA on the same (N+1) x P requests, **prefix caching off**
   (otherwise N+1 copies of each prompt hit the cache and inflate the ceiling);
3. ``parity``: transformers+peft in the run's dtype on the device, teacher-forcing each probe output
   (the parity guard's log-prob mode, :meth:`HFReference.token_gaps`); a model is *suspect* when a
   token lies more than ``ParityConfig().logprob_tolerance`` nats below the reference's choice;
4. ``ours_eager``: ``ours`` with ``enforce_eager`` (no CUDA graphs, no torch.compile);
5. ``boot``: a fresh process that only starts ``vllm.LLM(enable_lora=True, max_loras=1)``, as each
   lm-eval run would (warm compile cache); the modelled ``boot_per_adapter`` uses it when present,
   else ``ours``'s cold boot.

Time guard: ``--deadline`` (unix seconds; the device call's end minus a margin). A step starts only when
its :data:`ESTIMATE_S` fits before the deadline; its child is killed at the deadline. GPU memory: the
peak of ``nvidia-smi``'s ``memory.used`` during each step (None without nvidia-smi).

Rehearsal on CPU (what was checked without a GPU): ``DEVICE=cpu SHAPE=tiny`` through ``device.sh``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

# Estimated seconds of each step at N=32, P=64, T=128 on an H200 (8B bf16): engine start ~60-90 s cold
# (weights from page cache, torch.compile, CUDA-graph capture), generation from ~20k output tok/s.
ESTIMATE_S: dict[str, float] = {"ours": 150, "base_only": 70, "parity": 45, "ours_eager": 60, "boot": 60}
# In order of priority: the guard skips a step that no longer fits and tries the next.
STEPS = ("ours", "base_only", "parity", "ours_eager", "boot")
# Estimate of the asset build (first call): 16 GB of safetensors + 32 adapters written.
ASSETS_ESTIMATE_S = 120
SCHEMA_KEYS = ("config", "steps", "summary", "started_at", "finished_at", "deadline")


def _now() -> float:
    return time.time()


# --------------------------------------------------------------------------------------------- children
def _setup(job: dict[str, Any]):  # noqa: ANN202
    from kernels_bench.e2e import Setup

    return Setup(model=Path(job["model"]), adapters=[Path(a) for a in job["adapters"]], prompts=job["prompts"],
                 max_tokens=job["T"], rank=job["rank"], dtype=job["dtype"], device=job["device"],
                 max_num_seqs=job["max_num_seqs"], max_loras=job["max_loras"], max_model_len=job["max_model_len"],
                 kv_cache_gib=job["kv_gib"] or None, enforce_eager=job.get("enforce_eager", False), reps=1)


def _engine(job: dict[str, Any], enforce_eager: bool):  # noqa: ANN202
    from capdrift_fast.config import AdapterConfig, EngineConfig, ModelConfig
    from capdrift_fast.engines.vllm_engine import VLLMEngine

    ecfg = EngineConfig(max_loras=job["max_loras"], max_lora_rank=max(job["rank"], 8), max_num_seqs=job["max_num_seqs"],
                        dtype=job["dtype"], max_model_len=job["max_model_len"], kv_cache_memory_gib=job["kv_gib"] or None,
                        enforce_eager=enforce_eager, gpu_memory_utilization=job["gpu_mem"])
    adapters = [AdapterConfig(name=Path(p).name, path=p) for p in job["adapters"]]
    return VLLMEngine(ModelConfig(path=job["model"], prompt_format="raw"), ecfg, adapters)


def _plan(names: list[str], prompts: list[str], max_tokens: int, tag: str = "gsm8k"):  # noqa: ANN202
    import polars as pl

    from capdrift_fast.pipeline.plan import PLAN_SCHEMA

    return pl.DataFrame([{"request_id": f"{names[m]}/{tag}/{i}", "adapter": names[m], "lora_id": m, "task": tag,
                          "sample_id": str(i), "prompt": p, "max_tokens": max_tokens}
                         for m in range(len(names)) for i, p in enumerate(prompts)], schema=PLAN_SCHEMA)


def _ours_pass(eng: Any, job: dict[str, Any], rep: int) -> dict[str, Any]:
    """One pass of capdrift_fast's engine over all requests, streamed to Arrow shards."""
    import tempfile

    from capdrift_fast.config import SamplingConfig
    from capdrift_fast.rundir import ShardWriter
    from kernels_bench.common import median

    paths = [Path(a) for a in job["adapters"]]
    names = ["base"] + [p.name for p in paths]
    eng.reload_adapters()  # fresh ids: adapters load from disk
    sampling = SamplingConfig(temperature=0.0, max_tokens=job["T"], ignore_eos=True)
    tokens, ttft = 0, []
    with tempfile.TemporaryDirectory() as tmp, ShardWriter(Path(tmp) / "generations", "bench") as writer:
        t1 = time.perf_counter()
        for rec in eng.generate(_plan(names, job["prompts"], job["T"]), sampling):
            writer.write(rec)
            tokens += rec["output_tokens"]
            if rec["ttft_s"] is not None:
                ttft.append(rec["ttft_s"])
        writer.flush()
        gen = time.perf_counter() - t1
    ttft.sort()
    return {"gen_s": gen, "output_tokens": tokens, "tok_s": tokens / gen, "requests": len(names) * len(job["prompts"]),
            "ttft_median_s": median(ttft) if ttft else None,
            "ttft_p90_s": ttft[int(0.9 * (len(ttft) - 1))] if ttft else None, "ttft_min_s": ttft[0] if ttft else None}


def _probe(eng: Any, job: dict[str, Any]) -> dict[str, Any]:
    """Base + ``max_loras`` adapters, ``K`` prompts each, one batch, isolate_base off: the output tokens."""
    from capdrift_fast.config import SamplingConfig

    paths = [Path(a) for a in job["adapters"]][: job["max_loras"]]
    names = ["base"] + [p.name for p in paths]
    eng.reload_adapters()
    prompts = job["prompts"][: job["probe_k"]]
    plan = _plan(names, prompts, job["probe_tokens"], tag="probe")
    out = {r["request_id"]: r for r in eng.generate(plan, SamplingConfig(temperature=0.0, max_tokens=job["probe_tokens"],
                                                                          ignore_eos=True), isolate_base=False)}
    return {"models": names, "isolate_base": False, "max_loras": job["max_loras"],
            "canaries": [{"request_id": k, "adapter": v["adapter"], "prompt": v["prompt"],
                          "tokens": list(v["output_token_ids"])} for k, v in out.items()]}


def _gpa(eng: Any, job: dict[str, Any]) -> dict[str, Any]:
    """generate_per_adapter on this engine: one LLM.generate per adapter + one for the base."""
    from kernels_bench.e2e import _count, _lora, _sampling

    s = _setup(job)
    sp = _sampling(s)
    t0 = time.perf_counter()
    tokens = _count(eng.llm.generate(s.prompts, sp, use_tqdm=False))
    for i, p in enumerate(s.adapters):
        tokens += _count(eng.llm.generate(s.prompts, sp, lora_request=_lora(i, p, 1), use_tqdm=False))
    gen = time.perf_counter() - t0
    return {"gen_s": gen, "output_tokens": tokens, "tok_s": tokens / gen,
            "engine": f"shared with ours (max_loras={job['max_loras']}, not 1: one boot less)"}


def child(step: str, job: dict[str, Any], t_process: float) -> dict[str, Any]:
    """Run one step in this (fresh) process; ``t_process``: when the parent started it (unix s)."""
    res: dict[str, Any] = {}
    if step in ("ours", "ours_eager"):
        t0 = time.perf_counter()
        import vllm  # noqa: F401

        res["import_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        eng = _engine(job, enforce_eager=step == "ours_eager")
        res["engine_boot_s"] = time.perf_counter() - t1
        res["cold_boot_s"] = _now() - t_process  # process start + import + engine start
        res["ours"] = _ours_pass(eng, job, rep=0)
        if step == "ours":
            probe = _probe(eng, job)
            Path(job["probe_path"]).write_text(json.dumps(probe))
            res["probe"] = {"requests": len(probe["canaries"]), "path": job["probe_path"]}
            res["generate_per_adapter"] = _gpa(eng, job)
        eng.close()
    elif step == "base_only":
        from vllm import LLM

        from kernels_bench.e2e import _count, _engine_kwargs, _sampling

        s = _setup(job)
        kw = _engine_kwargs(s, lora=False, max_loras=1)
        kw.update(enable_prefix_caching=False)
        if job["device"] != "cpu":
            kw["gpu_memory_utilization"] = job["gpu_mem"]
        t1 = time.perf_counter()
        llm = LLM(**kw)
        res["engine_boot_s"] = time.perf_counter() - t1
        prompts = s.prompts * (len(s.adapters) + 1)
        t2 = time.perf_counter()
        tokens = _count(llm.generate(prompts, _sampling(s), use_tqdm=False))
        gen = time.perf_counter() - t2
        res["base_only"] = {"gen_s": gen, "output_tokens": tokens, "tok_s": tokens / gen, "prefix_caching": False,
                            "requests": len(prompts)}
    elif step == "boot":
        from vllm import LLM

        from kernels_bench.e2e import _engine_kwargs

        s = _setup(job)
        kw = _engine_kwargs(s, lora=True, max_loras=1)
        if job["device"] != "cpu":
            kw["gpu_memory_utilization"] = job["gpu_mem"]
        t1 = time.perf_counter()
        llm = LLM(**kw)
        res["engine_boot_s"] = time.perf_counter() - t1
        res["boot_s"] = _now() - t_process
        del llm
    elif step == "parity":
        from capdrift_fast.config import AdapterConfig, ModelConfig, ParityConfig
        from capdrift_fast.engines.hf_reference import HFReference

        probe = json.loads(Path(job["probe_path"]).read_text())
        names = probe["models"][1:]
        adapters = [AdapterConfig(name=Path(p).name, path=p) for p in job["adapters"] if Path(p).name in names]
        t1 = time.perf_counter()
        dtype = {"float": "float32", "half": "float16"}.get(job["dtype"], job["dtype"])
        ref = HFReference(ModelConfig(path=job["model"], prompt_format="raw"), adapters, device=job["device"], dtype=dtype)
        res["load_s"] = time.perf_counter() - t1
        tol = ParityConfig().logprob_tolerance
        per: dict[str, dict[str, Any]] = {}
        for c in probe["canaries"]:
            gaps = ref.token_gaps(c["adapter"], c["prompt"], c["tokens"][: job["parity_tokens"]])
            m = per.setdefault(c["adapter"], {"checked": 0, "disagreed": 0, "max_gap": 0.0})
            m["checked"] += 1
            m["max_gap"] = round(max([m["max_gap"], *gaps]), 4)
            m["disagreed"] += any(g > tol for g in gaps)
        suspects = sorted(k for k, v in per.items() if v["disagreed"])
        res["parity"] = {"mode": "logprob", "dtype": dtype, "tolerance_nats": tol, "models": per, "suspects": suspects,
                         "verdict": "mis-served: " + ", ".join(suspects) if suspects else "all served as transformers+peft",
                         "cuda_graphs": job["device"] != "cpu", "isolate_base": False, "max_loras": probe["max_loras"]}
    return res


# --------------------------------------------------------------------------------------------- parent
class _GpuMemory:
    """Peak of nvidia-smi's memory.used (MiB) while a step runs; None without nvidia-smi."""

    def __init__(self) -> None:
        self.peak: int | None = None
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=5).stdout.split()
                if out:
                    self.peak = max(self.peak or 0, int(out[0]))
            except (OSError, subprocess.SubprocessError, ValueError):
                return
            self._stop.wait(1.0)

    def __enter__(self) -> "_GpuMemory":
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join(timeout=6)


def plan_steps(steps: tuple[str, ...], now: float, deadline: float, estimate: dict[str, float]) -> list[str]:
    """The steps that fit, in order, if each takes its estimate (what the guard will try)."""
    out, t = [], now
    for s in steps:
        if t + estimate[s] <= deadline:
            out.append(s)
            t += estimate[s]
    return out


def summarize(steps: dict[str, Any], n: int) -> dict[str, Any]:
    """Output tokens/s of each mode and the ratios the issue asks for (None where a step is missing)."""
    ours = (steps.get("ours") or {}).get("ours")
    eager = (steps.get("ours_eager") or {}).get("ours")
    base = (steps.get("base_only") or {}).get("base_only")
    gpa = (steps.get("ours") or {}).get("generate_per_adapter")
    boot = (steps.get("boot") or {}).get("boot_s") or (steps.get("ours") or {}).get("cold_boot_s")
    boot_src = "boot step (fresh process, max_loras=1)" if (steps.get("boot") or {}).get("boot_s") else "ours' cold boot"
    bpa = None
    if boot and gpa:
        wall = (n + 1) * boot + gpa["gen_s"]
        bpa = {"modelled": True, "boot_s": boot, "boot_source": boot_src, "wall_s": wall,
               "tok_s": gpa["output_tokens"] / wall}
    ratio = lambda a, b: None if not a or not b else a["tok_s"] / b["tok_s"]  # noqa: E731
    mem = {k: v.get("gpu_mem_peak_mib") for k, v in steps.items() if isinstance(v, dict)}
    return {
        "tok_s": {"ours": ours and ours["tok_s"], "ours_eager": eager and eager["tok_s"],
                  "base_only": base and base["tok_s"], "generate_per_adapter": gpa and gpa["tok_s"],
                  "boot_per_adapter_modelled": bpa and bpa["tok_s"]},
        "ours_over_base_only": ratio(ours, base),
        "ours_over_generate_per_adapter": ratio(ours, gpa),
        "ours_over_boot_per_adapter_modelled": ratio(ours, bpa),
        "cuda_graphs_on_over_off": ratio(ours, eager),
        "boot_per_adapter": bpa,
        "ttft_median_s": ours and ours["ttft_median_s"],
        "ttft_p90_s": ours and ours["ttft_p90_s"],
        "gpu_mem_peak_mib": mem,
        "parity_verdict": (steps.get("parity") or {}).get("parity", {}).get("verdict"),
    }


def _write(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str))
    os.replace(tmp, path)


def _log(msg: str) -> None:
    print(f"[bench_gpu {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    """Parent: the steps in order under the deadline; ``args.out`` rewritten after each."""
    from kernels_bench.assets import SHAPES
    from kernels_bench.e2e import load_prompts

    assets = Path(args.stage) / "assets"
    model = assets / f"model-{args.shape}-{args.dtype}"
    adapters = sorted(str(p) for p in (assets / f"adapters-{args.shape}").glob(f"a*-r{args.rank}"))[: args.n]
    if len(adapters) < args.n or not (model / "config.json").is_file():
        raise SystemExit(f"assets missing under {assets}: run `bench_gpu assets` first")
    job = {"model": str(model), "adapters": adapters, "prompts": load_prompts(Path(args.data_dir), args.prompts),
           "T": args.max_tokens, "rank": args.rank, "dtype": args.dtype, "device": args.device,
           "max_num_seqs": args.max_num_seqs, "max_loras": min(args.max_loras, args.n),
           "max_model_len": args.max_model_len, "kv_gib": args.kv_cache_gib, "gpu_mem": args.gpu_mem,
           "probe_k": args.probe_k, "probe_tokens": args.probe_tokens, "parity_tokens": args.parity_tokens,
           "probe_path": str(Path(args.stage) / "probe.json")}
    out = Path(args.out)
    doc: dict[str, Any] = {"config": {k: v for k, v in job.items() if k not in ("prompts", "adapters")} |
                           {"N": args.n, "P": args.prompts, "shape": args.shape, "shape_dims": vars(SHAPES[args.shape])},
                           "steps": {}, "summary": {}, "started_at": _now(), "finished_at": None,
                           "deadline": args.deadline, "planned": plan_steps(STEPS, _now(), args.deadline, ESTIMATE_S)}
    _write(out, doc)
    estimate = ESTIMATE_S if args.device != "cpu" else {k: 0.0 for k in ESTIMATE_S}
    for step in args.steps.split(","):
        left = args.deadline - _now()
        if left < estimate[step] or left < 5:
            doc["steps"][step] = {"status": "skipped", "reason": f"{left:.0f} s left, estimate {estimate[step]:.0f} s"}
            _log(f"{step}: skipped ({left:.0f} s left)")
            _write(out, doc)
            continue
        if step == "parity" and not Path(job["probe_path"]).is_file():
            doc["steps"][step] = {"status": "skipped", "reason": "no probe outputs (ours did not finish)"}
            continue
        _log(f"{step}: start ({left:.0f} s left)")
        t0 = _now()
        cmd = [sys.executable, "-m", "kernels_bench.gpu.bench_gpu", "child", "--step", step, "--t-process", str(t0)]
        with _GpuMemory() as mem:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, start_new_session=True)
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(job))
            proc.stdin.close()
            lines: list[str] = []
            timer = threading.Timer(max(1.0, args.deadline - _now()), lambda: os.killpg(proc.pid, signal.SIGKILL))
            timer.start()
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                if args.verbose or line.startswith(("RESULT", "Traceback")) or "Error" in line:
                    print(line, end="", flush=True)
            rc = proc.wait()
            timer.cancel()
        results = [ln for ln in lines if ln.startswith("RESULT ")]
        rec: dict[str, Any] = json.loads(results[-1][7:]) if results and rc == 0 else {}
        rec.update(status="ok" if rec else ("timed_out" if rc == -signal.SIGKILL else "failed"), rc=rc,
                   wall_s=round(_now() - t0, 2), gpu_mem_peak_mib=mem.peak)
        if not rec.get("status") == "ok":
            rec["log_tail"] = "".join(lines[-40:])[-4000:]
        doc["steps"][step] = rec
        doc["summary"] = summarize(doc["steps"], args.n)
        _write(out, doc)
        _log(f"{step}: {rec['status']} in {rec['wall_s']:.0f} s")
    doc["finished_at"] = _now()
    doc["summary"] = summarize(doc["steps"], args.n)
    _write(out, doc)
    print(json.dumps(doc["summary"], indent=1, default=str), flush=True)
    return doc


def build_assets(args: argparse.Namespace) -> dict[str, Any]:
    """Model + adapters under ``stage/assets`` (see module doc); returns timings."""
    from kernels_bench.assets import SHAPES, build_adapters, ensure_model

    assets = Path(args.stage) / "assets"
    t0 = time.perf_counter()
    model = ensure_model(assets, args.shape, dtype=args.dtype, device=args.device, data_dir=Path(args.data_dir))
    t1 = time.perf_counter()
    build_adapters(assets / f"adapters-{args.shape}", SHAPES[args.shape], args.n, args.rank, str(model),
                   dtype=args.dtype)
    t2 = time.perf_counter()
    res = {"model_s": round(t1 - t0, 1), "adapters_s": round(t2 - t1, 1), "model": str(model),
           "model_gib": round(sum(f.stat().st_size for f in model.glob("*")) / 2**30, 2)}
    _log(f"assets: {res}")
    return res


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """CLI; every option has an environment default (device.sh's knobs)."""
    e = os.environ.get
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["assets", "bench", "child"])
    ap.add_argument("--stage", default=e("STAGE", "/tmp/capdrift_gpu"))
    ap.add_argument("--data-dir", default=e("DATA_DIR", str(Path(e("STAGE", "/tmp/capdrift_gpu")) / "data")))
    ap.add_argument("--out", default=str(Path(e("OUT", "/tmp/capdrift_gpu/out")) / "gpu_bench.json"))
    ap.add_argument("--device", default=e("DEVICE", "cuda"))
    ap.add_argument("--shape", default=e("SHAPE", "llama8b"))
    ap.add_argument("--dtype", default=e("DTYPE", "bfloat16"))
    ap.add_argument("--n", type=int, default=int(e("N", "32")))
    ap.add_argument("--rank", type=int, default=int(e("RANK", "16")))
    ap.add_argument("--prompts", type=int, default=int(e("P", "64")))
    ap.add_argument("--max-tokens", type=int, default=int(e("T", "128")))
    ap.add_argument("--max-loras", type=int, default=int(e("MAX_LORAS", "8")), help="capdrift_fast's default: 8")
    ap.add_argument("--max-num-seqs", type=int, default=int(e("MAX_NUM_SEQS", "256")))
    ap.add_argument("--max-model-len", type=int, default=int(e("MAX_MODEL_LEN", "1024")))
    ap.add_argument("--kv-cache-gib", type=float, default=float(e("KV", "0")), help="0 = vLLM's sizing (GPU)")
    ap.add_argument("--gpu-mem", type=float, default=float(e("GPU_MEM", "0.85")))
    ap.add_argument("--probe-k", type=int, default=int(e("PROBE_K", "2")))
    ap.add_argument("--probe-tokens", type=int, default=int(e("PROBE_TOKENS", "16")))
    ap.add_argument("--parity-tokens", type=int, default=int(e("PARITY_TOKENS", "16")))
    ap.add_argument("--steps", default=e("STEPS", ",".join(STEPS)))
    ap.add_argument("--deadline", type=float, default=float(e("DEADLINE", str(time.time() + 540))))
    ap.add_argument("--verbose", action="store_true", default=bool(e("VERBOSE")))
    ap.add_argument("--step", default=None)
    ap.add_argument("--t-process", type=float, default=None)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """CLI (see module doc)."""
    args = parse_args(argv)
    if args.what == "assets":
        res = build_assets(args)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).with_name("assets.json").write_text(json.dumps(res, indent=1))
    elif args.what == "bench":
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        run_bench(args)
    else:
        job = json.loads(sys.stdin.read())
        if args.device == "cpu" or job["device"] == "cpu":
            from kernels_bench.common import configure_cpu_threads

            configure_cpu_threads(1)
        res = child(args.step, job, args.t_process or _now())
        print("RESULT " + json.dumps(res, default=str), flush=True)


if __name__ == "__main__":
    main()
