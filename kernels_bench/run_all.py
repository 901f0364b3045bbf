"""Every CPU benchmark, one command; JSON + PNG per benchmark in ``--out-dir`` and a markdown summary.

    python -m kernels_bench.run_all --quick     # smoke sizes, a few minutes
    python -m kernels_bench.run_all             # the default grids (see kernels_bench/README.md)

Writes ``lora_kernels_cpu``, ``e2e_cpu``, ``tune_cpu``, ``memory_cpu``, ``loglik_throughput_cpu`` (``.json`` + ``.png``; with
``--quick`` the names end in ``_quick``) and ``summary{_quick}.md`` (the tables of
:mod:`kernels_bench.report`). ``--only`` picks benchmarks; extra arguments for one benchmark go
after ``--e2e-args`` etc. as one quoted string.
"""

from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path

BENCHES = ("lora_kernels", "e2e", "tune", "memory", "loglik_throughput")
QUICK = {
    "lora_kernels": ["--quick"],
    "e2e": ["--quick"],
    "tune": ["--adapters", "4", "--reps", "1", "--only", "baseline,interleaved,max_loras=1,max_loras=1+interleaved"],
    "memory": ["--requests", "2000"],
    "loglik_throughput": ["--quick"],
}


def main(argv: list[str] | None = None) -> None:
    """Run the selected benchmarks in order, then write the markdown summary."""
    ap = argparse.ArgumentParser(description="Run every CPU benchmark.")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default=",".join(BENCHES))
    ap.add_argument("--out-dir", type=Path, default=Path("kernels_bench/results"))
    for b in BENCHES:
        ap.add_argument(f"--{b.replace('_', '-')}-args", default="", help=f"extra arguments for {b}")
    args = ap.parse_args(argv)
    from kernels_bench import e2e, loglik_throughput, lora_kernels, memory, report, tune

    mains = {"lora_kernels": lora_kernels.main, "e2e": e2e.main, "tune": tune.main, "memory": memory.main,
             "loglik_throughput": loglik_throughput.main}
    suffix = "_quick" if args.quick else ""
    for b in [b for b in args.only.split(",") if b]:
        out = args.out_dir / f"{b}_cpu{suffix}.json"
        extra = (QUICK[b] if args.quick else []) + shlex.split(getattr(args, f"{b}_args"))
        t0 = time.perf_counter()
        print(f"=== {b}: {' '.join(extra)} -> {out}", flush=True)
        mains[b]([*extra, "--out", str(out)])
        print(f"=== {b} done in {time.perf_counter() - t0:.0f} s", flush=True)
    md = report.render(args.out_dir, suffix)
    (args.out_dir / f"summary{suffix}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
