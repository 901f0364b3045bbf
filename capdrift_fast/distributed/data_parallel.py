"""``engine.data_parallel_size: D`` — D engine replicas on one node, as vLLM's offline data-parallel recipe
runs them: one process per replica, each with its own GPUs and its own slice of the requests.

vLLM's ``LLM`` class refuses ``data_parallel_size > 1`` in a single process (vLLM 0.32: "not supported
for single-process usage ... use the explicit multi-process data-parallel example"); that example starts
one process per rank and hands each a slice of the prompts. Here each replica is a ``capdrift run CONFIG
--out RUN_DIR/replicas/replica-R-of-D --shard R/D`` process (the token-balanced split of
:mod:`.shard`, ``CUDA_VISIBLE_DEVICES`` set to its ``tensor_parallel_size`` GPUs), and ``RUN_DIR`` is
their merge (:mod:`.merge`). Each replica folder resumes on its own, so re-running the same command
after a crash finishes only what is missing and merges again.

The replicas are independent engines: right for dense models. (vLLM's data-parallel groups exist for
mixture-of-experts models with expert parallelism, whose ranks must step together; that mode is not used.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from capdrift_fast.errors import ConfigError, EngineError
from capdrift_fast.logs import forward_to, get_logger

log = get_logger(__name__)

REPLICAS_DIR = "replicas"


def replica_dir(run_dir: Path, rank: int, size: int) -> Path:
    """``RUN_DIR/replicas/replica-R-of-D``: the run folder of replica ``rank`` (0-based) of ``size``."""
    from capdrift_fast.rundir.paths import inside

    return inside(run_dir, REPLICAS_DIR, f"replica-{rank}-of-{size}")


def visible_gpus() -> list[str] | None:
    """The GPU ids this process may use: ``$CUDA_VISIBLE_DEVICES`` when set (``[]`` when empty), else
    ``0..n-1`` for the n CUDA devices torch sees; None when there is no CUDA (e.g. vLLM on CPU)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip()]
    try:
        import torch

        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # pragma: no cover - no torch / broken driver: no GPUs to assign
        n = 0
    return [str(i) for i in range(n)] or None


def replica_devices(gpus: Sequence[str] | None, size: int, tensor_parallel: int) -> list[str | None]:
    """``CUDA_VISIBLE_DEVICES`` of each of ``size`` replicas: consecutive groups of ``tensor_parallel``
    ids from ``gpus``; all None when ``gpus`` is None (no CUDA: replicas share the CPU).

    Raises:
        ConfigError: fewer GPUs than ``size * tensor_parallel`` (names both numbers).
    """
    if gpus is None:
        return [None] * size
    need = size * tensor_parallel
    if len(gpus) < need:
        raise ConfigError(
            f"field engine.data_parallel_size: {size} replicas x tensor_parallel_size {tensor_parallel} need {need} "
            f"GPUs, {len(gpus)} visible ({','.join(gpus) or 'none'}); lower data_parallel_size, or request more GPUs"
        )
    return [",".join(gpus[r * tensor_parallel:(r + 1) * tensor_parallel]) for r in range(size)]


def run_replicas(config: Path, run_dir: Path, size: int, tensor_parallel: int, allow_pickle: bool = False,
                 notify: Callable[[str], None] | None = None) -> list[Path]:
    """Start ``size`` replica processes (``capdrift run CONFIG --out replica_dir --shard R/size --quiet``),
    wait for all, and return their folders. The replicas write to this process's stdout/stderr (their
    lines name their shard), so a container's log holds them all.

    Raises:
        ConfigError: not enough GPUs.
        EngineError: a replica failed (its exit code; its own error message is in the output above; the
            other replicas' work is kept, and running the same command again resumes every replica).
    """
    with forward_to(notify):
        return _run_replicas(config, run_dir, size, tensor_parallel, allow_pickle)


def _run_replicas(config: Path, run_dir: Path, size: int, tensor_parallel: int, allow_pickle: bool) -> list[Path]:
    devices = replica_devices(visible_gpus(), size, tensor_parallel)
    run_dir = Path(run_dir).resolve()
    procs = []
    for rank, dev in enumerate(devices):
        out = replica_dir(run_dir, rank, size)
        out.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "capdrift_fast", "run", str(config), "--out", str(out),
               "--shard", f"{rank}/{size}", "--quiet", "--dp-replica"] + (["--allow-pickle"] if allow_pickle else [])
        env = dict(os.environ)
        if dev is not None:
            env["CUDA_VISIBLE_DEVICES"] = dev
        log.info(f"replica {rank}/{size}: {'GPUs ' + dev if dev is not None else 'CPU'}, folder {out}")
        procs.append((rank, out, subprocess.Popen(cmd, env=env)))
    failed = []
    try:
        for rank, out, proc in procs:
            code = proc.wait()
            if code != 0:
                failed.append(f"replica {rank}/{size} ({out}) exited with {code}; its messages are above")
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: each replica flushes its buffered generations, then this exits
        for *_, proc in procs:
            proc.terminate()
        for *_, proc in procs:
            proc.wait()
        raise
    if failed:
        raise EngineError("\n".join(failed) + "\nFinished generations are kept; run the same command again to resume "
                          "every replica and merge.")
    return [out for _, out, _ in procs]
