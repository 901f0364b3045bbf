"""The device-time budget of the GPU procedure (stdlib only; the numbers ``kernels_bench/gpu/README.md``
quotes and ``tests/bench/test_gpu_procedure.py`` checks).

A task lent the GPU machine has 15 minutes of device time for everything (start, every call, idle
waits); the issue allows 12 of them, so that a mishap still leaves time to give the machine back.
Each call carries at most 64 MiB (working tree included) and runs at most 600 s. The procedure makes
``n`` calls back to back (the machine goes back after 30 s idle), one piece each; the first also builds
the assets, the last runs the benchmark until a deadline derived from what is left.

    python kernels_bench/gpu/budget.py MANIFEST.json     # the plan for a gathered set of pieces
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

BUDGET_S = 720  # the 12 minutes of GPU-machine time, all calls included
DEVICE_BUDGET_S = 900  # the device tool's 15 minutes per session
CALL_LIMIT_S = 600  # one command
CALL_MIB = 64  # carried + working tree, per call
START_S = 120  # a fresh machine's start (1-2 min, counted)
CALL_OVERHEAD_S = 20  # per call: copying <= 64 MiB there, $OUT back, the tool's own latency
GAP_S = 15  # between two calls, while the session issues the next one (must stay under the 30 s idle release)
UNPACK_S = 15  # per piece: sha256 + xz decode of ~60 MiB into ~200 MiB of packages
ASSETS_S = 120  # first call: 8B-shape bf16 model (16 GB of safetensors) + 32 rank-16 adapters
IMPORT_CHECK_S = 30  # last call: import torch, vllm (+ its CUDA extension), polars, peft, capdrift_fast
GIVE_BACK_S = 10  # the session gives the machine back right after the last call
MARGIN_S = 30  # inside the last call: the bench's deadline stops this much before the budget ends


def plan(n_pieces: int, piece_mib: list[float], tree_mib: float) -> dict:
    """Seconds of each call, the total, and the time the last call leaves for the benchmark.

    Returns:
        {"calls": [{"carry_mib", "seconds", "does"}], "bench_s", "total_s", "fits": bool, "problems": [...]}
    """
    problems = []
    for i, mib in enumerate(piece_mib):
        if mib + tree_mib > CALL_MIB:
            problems.append(f"call {i + 1} carries {mib + tree_mib:.1f} MiB > {CALL_MIB}")
    fixed = START_S + n_pieces * (CALL_OVERHEAD_S + UNPACK_S) + (n_pieces - 1) * GAP_S + ASSETS_S + IMPORT_CHECK_S \
        + GIVE_BACK_S + MARGIN_S
    bench_s = BUDGET_S - fixed
    calls = []
    for i in range(n_pieces):
        secs = CALL_OVERHEAD_S + UNPACK_S
        does = [f"carry p{i:02d} ({piece_mib[i]:.1f} MiB) and unpack it"]
        if i == 0:
            secs += START_S + ASSETS_S
            does.insert(0, "machine start")
            does.append("build the assets on the GPU")
        if i == n_pieces - 1:
            secs += IMPORT_CHECK_S + max(bench_s, 0)
            does += ["import check", f"benchmark until the deadline ({max(bench_s, 0)} s)"]
        calls.append({"carry_mib": round(piece_mib[i] + tree_mib, 1), "seconds": secs, "does": does})
    in_call = [c["seconds"] - (START_S if i == 0 else 0) for i, c in enumerate(calls)]
    if any(s > CALL_LIMIT_S for s in in_call):
        problems.append(f"a call runs past {CALL_LIMIT_S} s: {in_call}")
    total = sum(c["seconds"] for c in calls) + (n_pieces - 1) * GAP_S + GIVE_BACK_S + MARGIN_S
    if bench_s < 240:
        problems.append(f"only {bench_s} s left for the benchmark")
    if total > BUDGET_S:
        problems.append(f"{total} s > {BUDGET_S} s")
    return {"calls": calls, "bench_s": bench_s, "total_s": total, "budget_s": BUDGET_S, "fits": not problems,
            "problems": problems, "gaps_s": (n_pieces - 1) * GAP_S}


def last_call_seconds(n_pieces: int) -> int:
    """``CALL_BUDGET_S`` for the last call's command: its unpack + import check + benchmark."""
    p = plan(n_pieces, [0.0] * n_pieces, 0.0)
    return UNPACK_S + IMPORT_CHECK_S + p["bench_s"]


def main() -> None:
    """CLI (see module doc)."""
    m = json.loads(Path(sys.argv[1]).read_text())
    p = plan(len(m["pieces"]), [x["bytes"] / 2**20 for x in m["pieces"]], m.get("tree_mib", 2.5))
    print(json.dumps(p, indent=1))
    print(f"last call: CALL_BUDGET_S={last_call_seconds(len(m['pieces']))}")


if __name__ == "__main__":
    main()
