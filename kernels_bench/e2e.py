"""End to end: the same request set run five ways; output tokens/s and wall time.

Request set: the base model and ``N`` adapters (LoRA rank ``r`` on all 7 linear modules of every
layer) x ``P`` GSM8K questions x exactly ``T`` output tokens (``ignore_eos``, greedy): ``(N+1)·P``
requests and ``(N+1)·P·T`` output tokens in every mode.

- ``ours``: capdrift_fast's pass: one :class:`VLLMEngine` with multi-LoRA (``max_loras``,
  ``max_num_seqs``, grouped order, bounded in-flight window), every request streamed through
  ``add_request``/``step`` and written to Arrow shards as it finishes;
- ``boot_per_adapter``: a fresh ``vllm.LLM(enable_lora=True, max_loras=1)`` + ``generate`` per adapter,
  plus one base boot: what lm-evaluation-harness's vLLM backend does (one ``lora_local_path`` per
  run). Engines are created in this process and deleted + garbage-collected in between (or, with
  ``--boot-subprocess``, each in a fresh process as separate lm-eval runs would be);
- ``generate_per_adapter``: one engine (``max_loras=1``), one ``LLM.generate`` call per adapter + base;
- ``hf_peft``: transformers + peft, every adapter loaded (``load_adapter``), one batched, left-padded
  ``generate`` of the ``P`` prompts per adapter (``set_adapter``) and for the base (``disable_adapter``);
- ``base_only``: the base model alone, no LoRA, on the same number of requests and tokens: the
  ceiling (rank-independent: measured once per ``N``). On vLLM's CPU backend a LoRA engine always
  runs the model eagerly (vLLM sets ``CompilationMode.NONE`` when LoRA is on), the base-only engine
  compiled, so on CPU part of the gap to the ceiling is compilation;
- ``ours_vllm_ops`` (CPU, optional): our pass with ``engine.cpu_lora_ops: vllm`` (vLLM's own CPU LoRA
  ops, which the other vLLM modes use), to separate the gain of the single pass from that of the
  grouped CPU LoRA ops;
- ``base_only_eager`` (CPU, optional): ``base_only`` with ``enforce_eager``, the ceiling at the LoRA
  engines' compilation level (none on CPU).

Timing: each (mode, cell) runs in a fresh Python process (as a real run does; ``--in-process`` to
share one), which imports its stack (``import_s``), starts its engine or loads its model once
(``boot_s``, cold), then runs the whole request set ``--reps`` times (``gen_s``: the median;
``hf_peft``: ``--hf-reps``, default 1, its generation being N+1 sequential loops already). Every
repetition uses fresh LoRA ids, so adapters are loaded from disk again, as in a real pass.
``wall_s = import_s + boot_s + gen_s``. ``boot_per_adapter`` runs each of its N+1 boots in a fresh
process (``--boot-in-process`` to share one) and is measured directly, its wall taken from outside, for
``N <= --boot-max-n``; above that it is *modelled* as ``(N+1) x median measured boot (process start +
import + engine start) + gen_s of generate_per_adapter`` (the same generate calls), flagged
``modelled: true``.

CPU threads: by default every process computes on 1 thread with vLLM's OpenMP thread binding off
(``VLLM_CPU_OMP_THREADS_BIND=nobind``): on these 2 shared cores, the default binding of 2 threads
was 3x slower and far noisier under other jobs' load (README). Before each cell the run waits (up to
``--wait-timeout``) for the 1-minute load average to fall to ``--max-load`` and records the load.

Usage::

    python -m kernels_bench.e2e [--quick | --full] [--out kernels_bench/results/e2e_cpu.json]
    python -m kernels_bench.e2e --merge a.json b.json --out merged.json   # combine partial runs

Default cells: N in {1,4,16,32,64} at rank 16, plus ranks 8 and 64 at N=16. ``--full``: every N x
every rank in {8,16,64}. On a GPU (``kernels_bench/gpu/README.md``): ``--device cuda --shape llama8b
--dtype bfloat16 --kv-cache-gib 0 --isolate``.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from kernels_bench.common import configure_cpu_threads, host_info, loadavg, median, wait_for_quiet

MODES = ("ours", "boot_per_adapter", "generate_per_adapter", "hf_peft", "base_only", "ours_vllm_ops", "base_only_eager")
BASE_MODES = ("base_only", "base_only_eager")  # no LoRA: rank-independent, run once per N
DEFAULT_MODES = MODES[:5]  # the five; ours_vllm_ops (CPU) splits our gain into one-pass vs CPU LoRA ops


@dataclass
class Setup:
    """One (N, rank) cell: model folder, adapter folders, prompts, sizes, engine knobs, repetitions."""

    model: Path
    adapters: list[Path]
    prompts: list[str]
    max_tokens: int
    rank: int
    dtype: str
    device: str
    max_num_seqs: int
    max_loras: int
    max_model_len: int
    kv_cache_gib: float | None
    enforce_eager: bool
    reps: int = 3
    boot_subprocess: bool = False
    cpu_lora_ops: str = "grouped"

    @property
    def n_requests(self) -> int:
        """(N + 1) x P."""
        return (len(self.adapters) + 1) * len(self.prompts)

    def to_json(self) -> str:
        """This setup as JSON (paths as strings), for a worker process."""
        d = dict(self.__dict__)
        d["model"], d["adapters"] = str(self.model), [str(a) for a in self.adapters]
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> "Setup":
        """Inverse of :meth:`to_json`."""
        d = json.loads(text)
        d["model"], d["adapters"] = Path(d["model"]), [Path(a) for a in d["adapters"]]
        return cls(**d)


def _engine_kwargs(s: Setup, lora: bool, max_loras: int) -> dict[str, Any]:
    kw: dict[str, Any] = dict(model=str(s.model), dtype=s.dtype, seed=0, max_num_seqs=s.max_num_seqs,
                              max_model_len=s.max_model_len, enforce_eager=s.enforce_eager, enable_lora=lora)
    if lora:
        kw.update(max_loras=max_loras, max_lora_rank=max(s.rank, 8))
    if s.kv_cache_gib:
        kw["kv_cache_memory_bytes"] = int(s.kv_cache_gib * 2**30)
    return kw


def _sampling(s: Setup):  # noqa: ANN202
    from vllm import SamplingParams

    return SamplingParams(temperature=0.0, max_tokens=s.max_tokens, ignore_eos=True, seed=0)


def _lora(i: int, path: Path, rep: int = 0):  # noqa: ANN202
    """LoRARequest for adapter ``i`` (0-based); a new id per repetition, so vLLM loads it afresh."""
    from vllm.lora.request import LoRARequest

    return LoRARequest(lora_name=f"{path.name}-rep{rep}", lora_int_id=rep * 10_000 + i + 1, lora_path=str(path))


def _count(outputs: list) -> int:
    return sum(len(o.outputs[0].token_ids) for o in outputs)


def _free() -> None:
    """Collect garbage (after the caller dropped its engine) and return cached GPU memory."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # pragma: no cover
        pass


def run_ours(s: Setup) -> dict[str, Any]:
    """capdrift_fast's engine: one boot, then ``reps`` passes over all requests, streamed to Arrow shards."""
    import polars as pl

    from capdrift_fast.config import AdapterConfig, EngineConfig, ModelConfig, SamplingConfig
    from capdrift_fast.engines.vllm_engine import VLLMEngine
    from capdrift_fast.rundir import ShardWriter
    from capdrift_fast.pipeline.plan import PLAN_SCHEMA

    names = ["base"] + [p.name for p in s.adapters]
    plan = pl.DataFrame(
        [{"request_id": f"{names[m]}/gsm8k/{i}", "adapter": names[m], "lora_id": m, "task": "gsm8k",
          "sample_id": str(i), "prompt": p, "max_tokens": s.max_tokens}
         for m in range(len(names)) for i, p in enumerate(s.prompts)], schema=PLAN_SCHEMA)
    ecfg = EngineConfig(max_loras=s.max_loras, max_lora_rank=max(s.rank, 8), max_num_seqs=s.max_num_seqs,
                        dtype=s.dtype, max_model_len=s.max_model_len, kv_cache_memory_gib=s.kv_cache_gib,
                        enforce_eager=s.enforce_eager,
                        cpu_lora_ops=s.cpu_lora_ops)
    adapters = [AdapterConfig(name=p.name, path=str(p)) for p in s.adapters]
    sampling = SamplingConfig(temperature=0.0, max_tokens=s.max_tokens, ignore_eos=True)
    t0 = time.perf_counter()
    eng = VLLMEngine(ModelConfig(path=str(s.model), prompt_format="raw"), ecfg, adapters)
    boot = time.perf_counter() - t0
    gens, ttfts, tokens = [], [], 0
    for rep in range(s.reps):
        if rep:
            eng.reload_adapters()  # cold adapters every rep
        tokens, ttft = 0, []
        with tempfile.TemporaryDirectory() as tmp, ShardWriter(Path(tmp) / "generations", "bench") as writer:
            t1 = time.perf_counter()
            for rec in eng.generate(plan, sampling):
                writer.write(rec)
                tokens += rec["output_tokens"]
                if rec["ttft_s"] is not None:
                    ttft.append(rec["ttft_s"])
            writer.flush()
            gens.append(time.perf_counter() - t1)
        ttfts.append(median(ttft) if ttft else None)
    eng.close()
    return {"boot_s": boot, "boots": 1, "gen_s_reps": gens, "output_tokens": tokens, "ttft_median_s_reps": ttfts}


def one_boot(s: Setup, i: int) -> dict[str, Any]:
    """Boot an engine (``max_loras=1``; no LoRA for ``i == -1``), generate the prompts with adapter
    ``i``, drop the engine. Returns boot_s, gen_s, output_tokens."""
    from vllm import LLM

    path = s.adapters[i] if i >= 0 else None
    tb = time.perf_counter()
    llm = LLM(**_engine_kwargs(s, lora=path is not None, max_loras=1))
    tg = time.perf_counter()
    outs = llm.generate(s.prompts, _sampling(s), lora_request=_lora(i, path) if path else None, use_tqdm=False)
    te = time.perf_counter()
    tokens = _count(outs)
    del llm, outs
    _free()
    return {"boot_s": tg - tb, "gen_s": te - tg, "output_tokens": tokens}


def import_stack(mode: str) -> float:
    """Import what ``mode`` runs on (transformers + peft for ``hf_peft``, else vLLM); return seconds.
    In a fresh process this is the start-up cost every separate run pays."""
    t0 = time.perf_counter()
    import importlib

    for name in (("transformers", "peft") if mode == "hf_peft" else ("vllm",)):
        importlib.import_module(name)
    if mode != "hf_peft":
        getattr(importlib.import_module("vllm"), "LLM")  # vLLM imports its engine lazily
    return time.perf_counter() - t0


def _in_subprocess(flag: str, payload: str) -> Any:
    """Run ``python -m kernels_bench.e2e FLAG PAYLOAD`` and return its ``RESULT`` JSON line.

    Raises:
        RuntimeError: the child failed (its stderr tail in the message).
    """
    import subprocess

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in [str(Path.cwd()), os.environ.get("PYTHONPATH")] if p)}
    proc = subprocess.run([sys.executable, "-m", "kernels_bench.e2e", flag, payload], capture_output=True, text=True,
                          env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{flag} child failed (rc {proc.returncode}): {(proc.stderr or proc.stdout)[-1500:]}")
    return json.loads(lines[-1][len("RESULT "):])


def run_boot_per_adapter(s: Setup) -> dict[str, Any]:
    """A fresh engine per adapter (max_loras=1) and one for the base, one after the other, ``reps``
    times: in this process (engine deleted and garbage-collected in between) or, with
    ``boot_subprocess``, each in a fresh Python process (its start and ``import vllm`` counted as boot)."""
    walls, boots_all, engine_boots, gens_all, tokens = [], [], [], [], 0
    for _ in range(s.reps):
        t0 = time.perf_counter()
        boot = gen = 0.0
        tokens = 0
        for i in range(-1, len(s.adapters)):
            if s.boot_subprocess:
                tp = time.perf_counter()
                r = _in_subprocess("--one-boot", json.dumps({"setup": json.loads(s.to_json()), "i": i}))
                r["engine_boot_s"] = r["boot_s"]
                r["boot_s"] = time.perf_counter() - tp - r["gen_s"]  # process start + import + engine boot
            else:
                r = one_boot(s, i)
            boot += r["boot_s"]
            gen += r["gen_s"]
            tokens += r["output_tokens"]
            boots_all.append(r["boot_s"])
            engine_boots.append(r.get("engine_boot_s", r["boot_s"]))
        walls.append(time.perf_counter() - t0)
        gens_all.append(gen)
    return {"boot_s": median(w - g for w, g in zip(walls, gens_all)), "boots": len(s.adapters) + 1,
            "gen_s_reps": gens_all, "wall_s_reps": walls, "output_tokens": tokens, "each_boot_s": boots_all,
            "each_engine_boot_s": engine_boots,
            "boot_in_subprocess": s.boot_subprocess}


def _one_engine(s: Setup, lora: bool, one_rep: Callable[[Any, Any, int], int]) -> dict[str, Any]:
    """Start one ``vllm.LLM`` (``max_loras=1`` if ``lora``), then time ``one_rep(llm, sampling, rep)``
    (returns output tokens) ``s.reps`` times. Returns boot_s, boots, gen_s_reps, output_tokens."""
    from vllm import LLM

    sp = _sampling(s)
    t0 = time.perf_counter()
    llm = LLM(**_engine_kwargs(s, lora=lora, max_loras=1))
    boot = time.perf_counter() - t0
    gens, tokens = [], 0
    for rep in range(s.reps):
        t1 = time.perf_counter()
        tokens = one_rep(llm, sp, rep)
        gens.append(time.perf_counter() - t1)
    del llm
    _free()
    return {"boot_s": boot, "boots": 1, "gen_s_reps": gens, "output_tokens": tokens}


def run_generate_per_adapter(s: Setup) -> dict[str, Any]:
    """One engine (max_loras=1); per repetition one generate call for the base and one per adapter."""
    def one_rep(llm: Any, sp: Any, rep: int) -> int:
        tokens = _count(llm.generate(s.prompts, sp, use_tqdm=False))
        for i, path in enumerate(s.adapters):
            tokens += _count(llm.generate(s.prompts, sp, lora_request=_lora(i, path, rep), use_tqdm=False))
        return tokens

    return _one_engine(s, True, one_rep)


def run_base_only(s: Setup) -> dict[str, Any]:
    """The base model without LoRA on (N+1) x P requests: the throughput ceiling."""
    return _one_engine(s, False, lambda llm, sp, rep: _count(
        llm.generate(s.prompts * (len(s.adapters) + 1), sp, use_tqdm=False)))


def run_hf_peft(s: Setup) -> dict[str, Any]:
    """transformers + peft: load base + every adapter (boot), then per repetition one batched generate
    per adapter and one for the base."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = getattr(torch, s.dtype)
    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(s.model)
    tok.padding_side = "left"
    base = AutoModelForCausalLM.from_pretrained(s.model, dtype=dtype).to(s.device).eval()
    model = PeftModel.from_pretrained(base, str(s.adapters[0]), adapter_name="a0")
    for i, path in enumerate(s.adapters[1:], start=1):
        model.load_adapter(str(path), adapter_name=f"a{i}")
    model.eval()
    boot = time.perf_counter() - t0
    enc = tok(s.prompts, return_tensors="pt", padding=True).to(s.device)
    kw = dict(max_new_tokens=s.max_tokens, min_new_tokens=s.max_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
    n_in = enc["input_ids"].shape[1]
    gens, tokens = [], 0
    with torch.inference_mode():
        for _ in range(s.reps):
            t1 = time.perf_counter()
            with model.disable_adapter():
                tokens = model.generate(**enc, **kw)[:, n_in:].numel()
            for i in range(len(s.adapters)):
                model.set_adapter(f"a{i}")
                tokens += model.generate(**enc, **kw)[:, n_in:].numel()
            gens.append(time.perf_counter() - t1)
    del model, base
    _free()
    return {"boot_s": boot, "boots": 1, "gen_s_reps": gens, "output_tokens": tokens}


def run_base_only_eager(s: Setup) -> dict[str, Any]:
    """:func:`run_base_only` with ``enforce_eager`` (no torch.compile, no CUDA graphs): on vLLM's CPU
    backend every LoRA engine runs so, hence the LoRA-free ceiling at the same compilation level."""
    return run_base_only(dataclasses.replace(s, enforce_eager=True))


def run_ours_vllm_ops(s: Setup) -> dict[str, Any]:
    """:func:`run_ours` with vLLM's own CPU LoRA ops (``engine.cpu_lora_ops: vllm``)."""
    return run_ours(dataclasses.replace(s, cpu_lora_ops="vllm"))


RUNNERS: dict[str, Callable[[Setup], dict[str, Any]]] = {
    "ours": run_ours, "boot_per_adapter": run_boot_per_adapter, "generate_per_adapter": run_generate_per_adapter,
    "hf_peft": run_hf_peft, "base_only": run_base_only, "ours_vllm_ops": run_ours_vllm_ops,
    "base_only_eager": run_base_only_eager,
}


def load_prompts(data_dir: Path, n: int) -> list[str]:
    """The first ``n`` GSM8K test questions from ``data_dir/gsm8k/test.jsonl`` as capdrift_fast's GSM8K
    task prompts them (zero-shot: ``"Question: ...\nAnswer:"``).

    Raises:
        DataError: the data file is missing or malformed (the message names it).
    """
    from capdrift_fast.benchmarks.gsm8k import GSM8KTask

    return GSM8KTask("gsm8k", data_dir / "gsm8k" / "test.jsonl", limit=n).samples().get_column("prompt").to_list()


def finish_record(rec: dict[str, Any]) -> dict[str, Any]:
    """Add medians and rates to a runner's record: ``gen_s`` (median of ``gen_s_reps``), ``wall_s``
    (median of ``wall_s_reps`` if measured, else ``import_s + boot_s + gen_s``: one process that imports
    its stack, starts its engine and generates), tokens/s on wall and generation."""
    rec["gen_s"] = median(rec["gen_s_reps"])
    if rec.get("wall_s_reps"):
        rec["wall_s"] = median(rec["wall_s_reps"])
    else:
        rec["wall_s"] = rec.get("import_s", 0.0) + rec["boot_s"] + rec["gen_s"]
    rec["tokens_per_s_wall"] = rec["output_tokens"] / rec["wall_s"]
    rec["tokens_per_s_gen"] = rec["output_tokens"] / rec["gen_s"]
    rec["reps"] = len(rec["gen_s_reps"])
    return rec


def model_boot_per_adapter(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``boot_per_adapter`` records for cells where it was not measured: ``(N+1) x`` the median single
    boot measured in ``boot_per_adapter`` runs + that cell's ``generate_per_adapter`` gen_s, flagged
    ``modelled``. Empty when no boot was measured."""
    boots = [b for r in records if r["mode"] == "boot_per_adapter" and not r.get("modelled")
             for b in r.get("each_boot_s", [])]
    if not boots:
        return []
    per_boot = median(boots)
    have = {(r["n_adapters"], r["rank"]) for r in records if r["mode"] == "boot_per_adapter"}
    out = []
    for r in records:
        if r["mode"] == "generate_per_adapter" and (r["n_adapters"], r["rank"]) not in have:
            n = r["n_adapters"]
            rec = {"mode": "boot_per_adapter", "n_adapters": n, "rank": r["rank"], "requests": r["requests"],
                   "modelled": True, "model": f"(N+1) x median measured boot {per_boot:.2f} s (of {len(boots)}; "
                                               f"process start + import + engine start when boots ran in "
                                               f"subprocesses) + generate_per_adapter gen_s",
                   "boot_s": (n + 1) * per_boot, "boots": n + 1, "gen_s_reps": [r["gen_s"]],
                   "output_tokens": r["output_tokens"], "loadavg_before": r["loadavg_before"]}
            out.append(finish_record(rec))
    return out


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (mode, N, rank), with our pass's speed-up over the mode (``ours_speedup_wall`` /
    ``_gen``: the mode's time / ours; > 1 means ours is faster) and the fraction of the base-only
    ceiling's tokens/s reached (``fraction_of_base_ceiling_wall`` / ``_gen``; and of the eager base,
    ``fraction_of_eager_base_gen``, where ``base_only_eager`` ran)."""
    keys = ("mode", "n_adapters", "rank", "reps", "requests", "output_tokens", "boots", "import_s", "boot_s", "gen_s",
            "wall_s",
            "tokens_per_s_wall", "tokens_per_s_gen", "modelled", "ttft_median_s_reps")
    rows = [{k: r.get(k) for k in keys} | {"loadavg_1m": r["loadavg_before"][0]} for r in records if "gen_s" in r]
    rows.sort(key=lambda r: (r["n_adapters"], str(r["rank"]), MODES.index(r["mode"])))
    ours = {(r["n_adapters"], r["rank"]): r for r in rows if r["mode"] == "ours"}
    base = {r["n_adapters"]: r for r in rows if r["mode"] == "base_only"}
    eager = {r["n_adapters"]: r for r in rows if r["mode"] == "base_only_eager"}
    for r in rows:
        if r["mode"] in BASE_MODES:
            continue
        o = ours.get((r["n_adapters"], r["rank"]))
        if o is not None:
            r["ours_speedup_wall"] = r["wall_s"] / o["wall_s"]
            r["ours_speedup_gen"] = r["gen_s"] / o["gen_s"]
        b = base.get(r["n_adapters"])
        if b is not None:
            r["fraction_of_base_ceiling_wall"] = r["tokens_per_s_wall"] / b["tokens_per_s_wall"]
            r["fraction_of_base_ceiling_gen"] = r["tokens_per_s_gen"] / b["tokens_per_s_gen"]
        e = eager.get(r["n_adapters"])
        if e is not None:
            r["fraction_of_eager_base_gen"] = r["tokens_per_s_gen"] / e["tokens_per_s_gen"]
    return rows


def merge(paths: list[Path], out: Path) -> dict[str, Any]:
    """Combine the records of several e2e JSONs (e.g. one run per mode set, or a cell re-run on a quieter
    machine) into ``out`` (first file's metadata, ``merged_from``) and its PNG. A later file's measured
    record replaces an earlier one of the same (mode, N, rank); modelled ``boot_per_adapter`` records are
    recomputed from every measured boot of the merged set; the summary is recomputed."""
    results = [json.loads(Path(p).read_text()) for p in paths]
    merged = dict(results[0])
    measured: dict[tuple[str, int, Any], dict[str, Any]] = {}
    for res in results:
        for r in res["records"]:
            if not r.get("modelled"):
                measured.pop((r["mode"], r["n_adapters"], r["rank"]), None)  # keep the later one's position last
                measured[(r["mode"], r["n_adapters"], r["rank"])] = r
    merged["records"] = list(measured.values())
    merged["records"] += model_boot_per_adapter(merged["records"])
    merged["summary"] = summarize(merged["records"])
    merged["merged_from"] = [{"file": str(p), "host_before": r["host_before"], "host_after": r["host_after"],
                              "bench_wall_s": r.get("bench_wall_s")} for p, r in zip(paths, results)]
    out.write_text(json.dumps(merged, indent=2))
    plot(merged["summary"], out.with_suffix(".png"), f"{merged['shape']} Llama ({merged['dtype']}, {merged['device']}): "
         f"base + N adapters x P={merged['request_set']['prompts']} prompts x T={merged['request_set']['max_tokens']} "
         "tokens; hollow = modelled")
    return merged


def plot(summary: list[dict[str, Any]], path: Path, title: str) -> None:
    """Output tokens/s vs N, wall (boots included, left) and generation only (right); one row per LoRA
    rank measured at two or more N (else the most common rank), one line per mode, the base-only
    ceiling dashed, modelled points hollow."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ours = [r for r in summary if r["mode"] == "ours"]
    ranks = sorted({r["rank"] for r in ours if sum(o["rank"] == r["rank"] for o in ours) >= 2})
    if not ranks:
        common = [r["rank"] for r in ours]
        ranks = [max(set(common), key=common.count)] if common else [None]
    fig, axes = plt.subplots(len(ranks), 2, figsize=(11, 3.9 * len(ranks)), sharey=True, squeeze=False)
    for row, rank in zip(axes, ranks):
        for ax, key, label in ((row[0], "tokens_per_s_wall", "wall (boots/loads included)"),
                               (row[1], "tokens_per_s_gen", "generation only")):
            for j, mode in enumerate(MODES):
                pts = sorted((r["n_adapters"], r[key], bool(r.get("modelled"))) for r in summary
                             if r["mode"] == mode and (r["rank"] == rank or mode in BASE_MODES))
                if not pts:
                    continue
                xs, ys, mod = zip(*pts)
                ax.plot(xs, ys, color=f"C{j}", linestyle="--" if mode in BASE_MODES else "-", label=mode)
                ax.scatter([x for x, m in zip(xs, mod) if not m], [y for y, m in zip(ys, mod) if not m],
                           color=f"C{j}")
                ax.scatter([x for x, m in zip(xs, mod) if m], [y for y, m in zip(ys, mod) if m], facecolors="none",
                           edgecolors=f"C{j}")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("adapters N")
            ax.set_title(f"LoRA rank {rank}: output tokens/s, {label}", fontsize=9)
            ax.grid(alpha=0.3)
        row[0].set_ylabel("output tokens/s")
        if row[1].get_legend_handles_labels()[0]:
            row[1].legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The CLI (see module doc)."""
    ap = argparse.ArgumentParser(description="End-to-end multi-LoRA throughput: our pass vs alternatives.")
    ap.add_argument("--quick", action="store_true", help="smoke: N 1,4 at rank 16, 1 repetition")
    ap.add_argument("--full", action="store_true", help="every N x every rank in 8,16,64; boot_per_adapter up to N=16")
    ap.add_argument("--adapters", default="1,4,16,32,64", help="N values")
    ap.add_argument("--ranks", default="16", help="ranks crossed with every N")
    ap.add_argument("--rank-sweep", default="8,64", help="extra ranks, run at N = --rank-sweep-n only")
    ap.add_argument("--rank-sweep-n", type=int, default=16)
    ap.add_argument("--modes", default=",".join(DEFAULT_MODES), help=f"from {', '.join(MODES)}")
    ap.add_argument("--prompts", type=int, default=8, help="P: prompts per model")
    ap.add_argument("--max-tokens", type=int, default=32, help="T: output tokens per request (ignore_eos)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions of each generation phase (median)")
    ap.add_argument("--boot-max-n", type=int, default=4,
                    help="boot_per_adapter measured up to this N (N+1 boots each); modelled above")
    ap.add_argument("--boot-reps", type=int, default=1, help="repetitions of a measured boot_per_adapter run")
    ap.add_argument("--hf-reps", type=int, default=1,
                    help="repetitions of hf_peft's generation (each is already N+1 generate loops; slowest mode)")
    ap.add_argument("--boot-probe-n", type=int, default=0,
                    help="also measure boot_per_adapter once at this N (for the model when no cell has N <= "
                         "--boot-max-n; e.g. 1 on a GPU)")
    ap.add_argument("--shape", default="small", help="model shape (kernels_bench.assets.SHAPES)")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--device", default="cpu", help="cpu | cuda (where assets are built and HF runs)")
    ap.add_argument("--max-num-seqs", type=int, default=256)
    ap.add_argument("--max-loras", type=int, default=0,
                    help="our pass's max_loras (0 = capdrift_fast's default, engine.max_loras, clamped to N)")
    ap.add_argument("--max-model-len", type=int, default=1024)
    ap.add_argument("--kv-cache-gib", type=float, default=1.0, help="0 = vLLM's own sizing (GPU)")
    ap.add_argument("--enforce-eager", action="store_true")
    ap.add_argument("--threads", type=int, default=1, help="CPU compute threads per process (0 = library defaults)")
    ap.add_argument("--assets", type=Path, default=Path(os.environ.get(
        "CAPDRIFT_BENCH_ASSETS", Path.home() / ".cache" / "capdrift_fast" / "bench")))
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--max-load", type=float, default=2.5, help="wait for 1-min load <= this (0 = never wait)")
    ap.add_argument("--wait-timeout", type=float, default=180)
    ap.add_argument("--in-process", dest="isolate", action="store_false",
                    help="run every (mode, cell) in this process (default: each in a fresh process, so engine "
                         "start-up is cold as in a real run, and GPU memory is freed)")
    ap.add_argument("--boot-in-process", dest="boot_subprocess", action="store_false",
                    help="boot_per_adapter: boot engines in one process (default: each boot in a fresh process, "
                         "as separate lm-eval runs, its start + import counted)")
    ap.add_argument("--out", type=Path, default=Path("kernels_bench/results/e2e_cpu.json"))
    ap.add_argument("--merge", type=Path, nargs="+", default=None, metavar="JSON",
                    help="run nothing: merge these e2e JSONs into --out (a later file's cell replaces an earlier "
                         "one's; see merge())")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--one-boot", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:
        args.adapters, args.ranks, args.rank_sweep, args.reps, args.max_load = "1,4", "16", "", 1, 0
    if args.full:
        args.ranks, args.rank_sweep, args.boot_max_n = "8,16,64", "", max(args.boot_max_n, 16)
    return args


def cells(args: argparse.Namespace) -> list[tuple[int, int]]:
    """(N, rank) cells: every N x ``--ranks``, plus ``--rank-sweep`` ranks at ``--rank-sweep-n``."""
    ints = lambda s: [int(v) for v in s.split(",") if v]  # noqa: E731
    out = [(n, r) for n in ints(args.adapters) for r in ints(args.ranks)]
    out += [(args.rank_sweep_n, r) for r in ints(args.rank_sweep) if (args.rank_sweep_n, r) not in out]
    return sorted(out)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the cells; write ``--out`` (JSON: args, host, records, summary) and a PNG beside it."""
    args = parse_args(argv)
    if args.merge:
        merged = merge(args.merge, args.out)
        print(f"merged {len(args.merge)} files, {len(merged['records'])} records -> {args.out}", flush=True)
        return merged
    if args.device == "cpu":
        configure_cpu_threads(args.threads)
    if args.worker or args.one_boot:
        from capdrift_fast.engines.vllm_engine import quiet_vllm_env

        quiet_vllm_env()
        job = json.loads(args.worker or args.one_boot)
        setup = Setup.from_json(json.dumps(job["setup"]))
        mode = job.get("mode", "one_boot")
        # boot_per_adapter's own boots import vLLM in their processes; this parent needs nothing
        import_s = 0.0 if mode == "boot_per_adapter" and setup.boot_subprocess else import_stack(mode)
        res = RUNNERS[job["mode"]](setup) if args.worker else one_boot(setup, job["i"])
        res["import_s"] = import_s
        print("RESULT " + json.dumps(res), flush=True)
        return res
    from capdrift_fast.config import EngineConfig, default_data_dir
    from capdrift_fast.engines.vllm_engine import quiet_vllm_env
    from kernels_bench.assets import SHAPES, build_adapters, ensure_model

    quiet_vllm_env()
    default_max_loras = EngineConfig().max_loras
    modes = [m for m in args.modes.split(",") if m]
    unknown = set(modes) - set(MODES)
    if unknown:
        raise SystemExit(f"unknown modes {sorted(unknown)}; choose from {MODES}")
    grid = cells(args)
    data_dir = args.data_dir or default_data_dir()
    prompts = load_prompts(data_dir, args.prompts)
    host0 = host_info()
    t_assets = time.perf_counter()
    model = ensure_model(args.assets, args.shape, args.dtype, args.device, data_dir)
    max_n = max(n for n, _ in grid)
    adapter_sets = {r: build_adapters(args.assets / f"adapters-{args.shape}-{args.dtype}", SHAPES[args.shape],
                                      max_n, r, str(model), dtype=args.dtype) for r in sorted({r for _, r in grid})}
    assets_s = time.perf_counter() - t_assets
    _free()
    records: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    base_done: set[tuple[str, int]] = set()
    jobs = [(n, rank, mode) for n, rank in grid for mode in modes]
    if args.boot_probe_n and "boot_per_adapter" in modes:
        jobs.insert(0, (args.boot_probe_n, grid[0][1], "boot_per_adapter"))
        adapter_sets = {r: a if len(a) >= args.boot_probe_n else build_adapters(
            args.assets / f"adapters-{args.shape}-{args.dtype}", SHAPES[args.shape], args.boot_probe_n, r, str(model),
            dtype=args.dtype) for r, a in adapter_sets.items()}
    for n, rank, mode in jobs:
        if mode in BASE_MODES and (mode, n) in base_done:
            continue  # rank-independent: once per N
        if mode == "boot_per_adapter" and n > max(args.boot_max_n, args.boot_probe_n):
            continue  # modelled below
        setup = Setup(model=model, adapters=adapter_sets[rank][:n], prompts=prompts, max_tokens=args.max_tokens,
                      rank=rank, dtype=args.dtype, device=args.device, max_num_seqs=args.max_num_seqs,
                      max_loras=min(n, args.max_loras or default_max_loras), max_model_len=args.max_model_len,
                      kv_cache_gib=args.kv_cache_gib or None, enforce_eager=args.enforce_eager,
                      reps={"boot_per_adapter": args.boot_reps, "hf_peft": args.hf_reps}.get(mode, args.reps),
                      boot_subprocess=args.boot_subprocess)
        before = wait_for_quiet(args.max_load, args.wait_timeout)
        try:
            if args.isolate:
                res = _in_subprocess("--worker", json.dumps({"mode": mode, "setup": json.loads(setup.to_json())}))
            else:
                res = RUNNERS[mode](setup)
        except Exception as exc:  # record and go on: one failing mode must not lose the grid
            res = {"error": f"{type(exc).__name__}: {exc}"[:1500]}
        rec = {"mode": mode, "n_adapters": n, "rank": "none" if mode in BASE_MODES else rank,
               "requests": setup.n_requests, **res, "loadavg_before": before, "loadavg_after": loadavg()}
        if mode in BASE_MODES:
            base_done.add((mode, n))
        if "gen_s_reps" in rec:
            finish_record(rec)
        records.append(rec)
        print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in rec.items()
                          if not k.startswith("each_")}), flush=True)
    if "boot_per_adapter" in modes and "generate_per_adapter" in modes:
        records += model_boot_per_adapter(records)
    summary = summarize(records)
    result = {
        "benchmark": "e2e", "device": args.device, "shape": args.shape, "model_shape": SHAPES[args.shape].__dict__,
        "dtype": args.dtype,
        "request_set": {"cells": grid, "prompts": args.prompts, "max_tokens": args.max_tokens, "ignore_eos": True,
                        "greedy": True, "lora_targets": "q,k,v,o,gate,up,down", "prompt_source": "gsm8k test"},
        "our_engine": {"max_loras": f"min(N, {args.max_loras or default_max_loras})", "max_num_seqs": args.max_num_seqs,
                       "request_order": "grouped", "max_inflight": "4 x max_num_seqs",
                       "kv_cache_gib": args.kv_cache_gib, "enforce_eager": args.enforce_eager},
        "cpu_threads": args.threads if args.device == "cpu" else None,
        "isolated_processes": args.isolate, "boot_per_adapter_in_subprocess": args.boot_subprocess,
        "args": {k: str(v) for k, v in vars(args).items()},
        "host_before": host0, "host_after": host_info(), "assets_build_s": assets_s,
        "bench_wall_s": time.perf_counter() - t_start, "records": records, "summary": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    title = (f"{args.shape} Llama ({args.dtype}, {args.device}): base + N adapters x P={args.prompts} prompts x "
             f"T={args.max_tokens} tokens; hollow = modelled")
    plot(summary, args.out.with_suffix(".png"), title)
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}", flush=True)
    return result


if __name__ == "__main__":
    main()
