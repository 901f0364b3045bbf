"""Host memory vs number of requests: peak RSS of our streaming pass vs holding every output.

For R requests (base + ``--adapters`` adapters x R/(N+1) distinct GSM8K prompts, ``--max-tokens``
output tokens each, ``ignore_eos``), each measurement runs in a fresh Python process:

- ``streaming``: capdrift_fast's path: plan frame -> :meth:`VLLMEngine.generate` (bounded in-flight
  window) -> :class:`ShardWriter` (Arrow shards); the generations are never all in memory;
- ``hold_all``: ``LLM.generate`` on the full list of R prompts (each with its ``LoRARequest``), which
  returns every ``RequestOutput`` at once — what a script without streaming does.

Reported per (mode, R): RSS after engine start (``rss_after_boot_mib``), the process's peak RSS
(``peak_rss_mib``, ``VmHWM``), their difference (``peak_growth_mib``: what the requests cost),
RSS samples during generation (``rss_trace_mib``) and throughput.

Usage::

    python -m kernels_bench.memory [--requests 10000,100000] [--modes streaming,hold_all]
        [--out kernels_bench/results/memory_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from kernels_bench.common import configure_cpu_threads, host_info, loadavg, peak_rss_mib, wait_for_quiet


def _rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


class RssSampler:
    """Samples this process's RSS (MiB) every ``period_s`` in a background thread."""

    def __init__(self, period_s: float = 0.5) -> None:
        self.period_s, self.samples = period_s, []  # type: ignore[var-annotated]
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        t0 = time.perf_counter()
        while not self._stop.is_set():
            self.samples.append((round(time.perf_counter() - t0, 2), round(_rss_mib(), 1)))
            self._stop.wait(self.period_s)

    def __enter__(self) -> "RssSampler":
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


def worker(mode: str, n_requests: int, n_adapters: int, max_tokens: int, shape: str, assets: Path,
           max_num_seqs: int, prompt_chars: int = 160) -> dict[str, Any]:
    """One measurement in this process (call in a fresh process): ``n_requests`` requests (base +
    ``n_adapters`` adapters x distinct prompts: GSM8K questions cut to ``prompt_chars`` characters plus
    a request number). Returns the record (RSS in MiB, times in s)."""
    import polars as pl

    from capdrift_fast.config import AdapterConfig, EngineConfig, ModelConfig, SamplingConfig, default_data_dir
    from capdrift_fast.engines.vllm_engine import VLLMEngine, quiet_vllm_env
    from capdrift_fast.rundir import ShardWriter
    from capdrift_fast.pipeline.plan import PLAN_SCHEMA
    from kernels_bench.assets import SHAPES, build_adapters, ensure_model
    from kernels_bench.e2e import load_prompts

    quiet_vllm_env()
    model = ensure_model(assets, shape, "float32", "cpu", default_data_dir())
    paths = build_adapters(assets / f"adapters-{shape}-float32", SHAPES[shape], n_adapters, 8, str(model))
    per_model = -(-n_requests // (n_adapters + 1))
    questions = load_prompts(default_data_dir(), 1319)
    prompts = [questions[i % len(questions)][:prompt_chars] + f" ({i})" for i in range(per_model)]
    names = ["base"] + [p.name for p in paths]
    adapters = [AdapterConfig(name=p.name, path=str(p)) for p in paths]
    ecfg = EngineConfig(max_loras=n_adapters, max_lora_rank=8, max_num_seqs=max_num_seqs, dtype="float32",
                        max_model_len=1024, kv_cache_memory_gib=1.0)
    rss_start = _rss_mib()
    eng = VLLMEngine(ModelConfig(path=str(model), prompt_format="raw"), ecfg, adapters)
    rss_boot = _rss_mib()
    peak_boot = peak_rss_mib()
    tokens = done = 0
    t0 = time.perf_counter()
    with RssSampler() as sampler:
        if mode == "streaming":
            plan = pl.DataFrame({
                "request_id": [f"{names[m]}/gsm8k/{i}" for m in range(len(names)) for i in range(per_model)],
                "adapter": [names[m] for m in range(len(names)) for _ in range(per_model)],
                "lora_id": [m for m in range(len(names)) for _ in range(per_model)],
                "task": "gsm8k",
                "sample_id": [str(i) for _ in range(len(names)) for i in range(per_model)],
                "prompt": prompts * len(names),
                "max_tokens": max_tokens,
                "continuations": None,  # generation requests (no log-likelihood choices)
            }, schema=PLAN_SCHEMA).head(n_requests)
            sampling = SamplingConfig(temperature=0.0, max_tokens=max_tokens, ignore_eos=True)
            with tempfile.TemporaryDirectory() as tmp, ShardWriter(Path(tmp), "mem") as writer:
                for rec in eng.generate(plan, sampling):
                    writer.write(rec)
                    tokens += rec["output_tokens"]
                    done += 1
        elif mode == "hold_all":
            from vllm import SamplingParams

            sp = SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True)
            all_prompts = (prompts * len(names))[:n_requests]
            loras = [eng.lora_request(names[m]) for m in range(len(names)) for _ in range(per_model)][:n_requests]
            outs = eng.llm.generate(all_prompts, sp, lora_request=loras, use_tqdm=False)
            tokens = sum(len(o.outputs[0].token_ids) for o in outs)
            done = len(outs)
        else:
            raise ValueError(f"unknown mode {mode!r}")
    gen_s = time.perf_counter() - t0
    trace = sampler.samples
    step = max(1, len(trace) // 40)
    return {
        "mode": mode, "requests": n_requests, "completed": done, "output_tokens": tokens, "gen_s": gen_s,
        "tokens_per_s": tokens / gen_s, "requests_per_s": done / gen_s, "n_adapters": n_adapters,
        "max_tokens": max_tokens, "shape": shape, "max_num_seqs": max_num_seqs, "prompt_chars": prompt_chars,
        "max_inflight": 4 * max_num_seqs if mode == "streaming" else n_requests,
        "rss_before_boot_mib": rss_start, "rss_after_boot_mib": rss_boot, "peak_rss_after_boot_mib": peak_boot,
        "peak_rss_mib": peak_rss_mib(), "peak_growth_mib": peak_rss_mib() - max(rss_boot, peak_boot),
        "rss_end_mib": _rss_mib(), "rss_trace_mib": trace[::step],
    }


def plot(records: list[dict[str, Any]], path: Path) -> None:
    """RSS over generation time, one line per (mode, requests)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for r in records:
        if "rss_trace_mib" in r and r.get("rep", 0) == 0:
            t, rss = zip(*r["rss_trace_mib"])
            ax.plot(t, rss, label=f"{r['mode']} R={r['requests']:,}")
    ax.set_xlabel("seconds into generation")
    ax.set_ylabel("process RSS (MiB)")
    ax.set_title("Host memory during generation (CPU, vLLM in-process)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run every (mode, R) in a fresh subprocess; write ``--out`` JSON and a PNG beside it."""
    ap = argparse.ArgumentParser(description="Peak RSS of the streaming pass vs holding all outputs.")
    ap.add_argument("--requests", default="10000,100000")
    ap.add_argument("--modes", default="streaming,hold_all")
    ap.add_argument("--adapters", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=2)
    ap.add_argument("--shape", default="tiny")
    ap.add_argument("--prompt-chars", type=int, default=160, help="GSM8K questions cut to this many characters")
    ap.add_argument("--max-num-seqs", type=int, default=256)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--assets", type=Path, default=Path(os.environ.get(
        "CAPDRIFT_BENCH_ASSETS", Path.home() / ".cache" / "capdrift_fast" / "bench")))
    ap.add_argument("--max-load", type=float, default=2.5)
    ap.add_argument("--wait-timeout", type=float, default=300)
    ap.add_argument("--out", type=Path, default=Path("kernels_bench/results/memory_cpu.json"))
    ap.add_argument("--threads", type=int, default=1, help="CPU compute threads (0 = library defaults)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    configure_cpu_threads(args.threads)
    if args.worker:
        mode, n = args.worker.split(":")
        rec = worker(mode, int(n), args.adapters, args.max_tokens, args.shape, args.assets, args.max_num_seqs,
                     args.prompt_chars)
        print("RESULT " + json.dumps(rec), flush=True)
        return rec
    host0 = host_info()
    records = []
    for n in [int(v) for v in args.requests.split(",") if v]:
        for rep in range(args.reps):
            for mode in args.modes.split(","):
                before = wait_for_quiet(args.max_load, args.wait_timeout)
                cmd = [sys.executable, "-m", "kernels_bench.memory", "--worker", f"{mode}:{n}",
                       "--adapters", str(args.adapters), "--max-tokens", str(args.max_tokens), "--shape", args.shape,
                       "--max-num-seqs", str(args.max_num_seqs), "--assets", str(args.assets),
                       "--prompt-chars", str(args.prompt_chars), "--threads", str(args.threads)]
                env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path.cwd()), os.environ.get("PYTHONPATH", "")])}
                t0 = time.perf_counter()
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
                lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
                if proc.returncode != 0 or not lines:
                    rec = {"mode": mode, "requests": n, "error": (proc.stderr or proc.stdout)[-2000:]}
                else:
                    rec = json.loads(lines[-1][len("RESULT "):])
                rec.update(rep=rep, process_wall_s=time.perf_counter() - t0, loadavg_before=before,
                           loadavg_after=loadavg())
                records.append(rec)
                print(json.dumps({k: v for k, v in rec.items() if k != "rss_trace_mib"}), flush=True)
    result = {"benchmark": "memory", "device": "cpu", "args": {k: str(v) for k, v in vars(args).items()},
              "host_before": host0, "host_after": host_info(), "records": records}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    plot(records, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}", flush=True)
    return result


if __name__ == "__main__":
    main()
