"""Cost of the preflight's non-finite scan (capdrift_fast.pipeline.tensor_scan) on an 8B-shaped LoRA adapter.

Writes one rank-16 adapter for ``--layers`` layers of a Llama-3-8B-shaped model (hidden 4096, kv 1024,
intermediate 14336; q,k,v,o,gate,up,down), scans it ``--repeat`` times from the page cache and once after
dropping it from the cache (``posix_fadvise DONTNEED``; a cold read where the kernel honours it), and
extrapolates to ``--adapters`` adapters of 32 layers: ``python -m kernels_bench.preflight_scan``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

HIDDEN, KV, INTER, RANK = 4096, 1024, 14336, 16
MODULES = {"self_attn.q_proj": (HIDDEN, HIDDEN), "self_attn.k_proj": (HIDDEN, KV), "self_attn.v_proj": (HIDDEN, KV),
           "self_attn.o_proj": (HIDDEN, HIDDEN), "mlp.gate_proj": (HIDDEN, INTER), "mlp.up_proj": (HIDDEN, INTER),
           "mlp.down_proj": (INTER, HIDDEN)}


def write_adapter(path: Path, layers: int, dtype: str) -> int:
    import torch
    from safetensors.torch import save_file

    tdt = {"bf16": torch.bfloat16, "f32": torch.float32}[dtype]
    tensors = {}
    for i in range(layers):
        for mod, (in_f, out_f) in MODULES.items():
            p = f"base_model.model.model.layers.{i}.{mod}"
            tensors[f"{p}.lora_A.weight"] = torch.randn(RANK, in_f).to(tdt)
            tensors[f"{p}.lora_B.weight"] = torch.randn(out_f, RANK).to(tdt)
    save_file(tensors, str(path))
    return sum(t.numel() for t in tensors.values())


def main() -> None:
    from capdrift_fast.pipeline.tensor_scan import nonfinite_tensors

    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--adapters", type=int, default=32)
    args = ap.parse_args()
    for dtype in ("bf16", "f32"):
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "adapter_model.safetensors"
            n = write_adapter(path, args.layers, dtype)
            size = path.stat().st_size
            times = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                assert nonfinite_tensors(path) == []
                times.append(time.perf_counter() - t0)
            fd = os.open(path, os.O_RDONLY)
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)
            t0 = time.perf_counter()
            nonfinite_tensors(path)
            cold = time.perf_counter() - t0
            warm = min(times)
            per_adapter = warm * 32 / args.layers
            print(f"{dtype}: {args.layers} layers, {n / 1e6:.1f} M params, {size / 1e6:.1f} MB: warm {warm * 1e3:.1f} ms "
                  f"({size / warm / 1e9:.2f} GB/s), cold {cold * 1e3:.1f} ms ({size / cold / 1e9:.2f} GB/s); "
                  f"32 layers: {per_adapter * 1e3:.0f} ms warm, {cold * 32 / args.layers * 1e3:.0f} ms cold per adapter; "
                  f"{args.adapters} adapters: {per_adapter * args.adapters:.1f} s warm, "
                  f"{cold * 32 / args.layers * args.adapters:.1f} s cold")


if __name__ == "__main__":
    main()
