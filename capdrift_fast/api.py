"""The Python API, beside the CLI: drive a run from a notebook or another tool.

>>> from capdrift_fast import evaluate, load_run
>>> result = evaluate("configs/demo.yaml", out="runs/demo")   # doctest: +SKIP
>>> result.matrix.filter(pl.col("adapter") != "base")          # doctest: +SKIP
>>> run = load_run("runs/demo")                                # doctest: +SKIP
>>> run.analysis.matrix, run.analysis.drift                    # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from capdrift_fast.config import RunConfig, load_config
from capdrift_fast.report.runs import RunData
from capdrift_fast.report.runs import load_run as _load_run
from capdrift_fast.runner import RunResult, run

__all__ = ["evaluate", "load_run", "RunResult", "RunData"]

log = logging.getLogger("capdrift_fast")


def evaluate(config: RunConfig | str | os.PathLike[str], out: str | os.PathLike[str], *,
             include_paths: list[str | os.PathLike[str]] | None = None, progress: bool = False,
             allow_pickle: bool = False, report: bool = True) -> RunResult:
    """Run (or resume) the main job: preflight, plan, one engine pass, parity guard, scores, matrix, report.

    Args:
        config: a :class:`RunConfig` or the path of a YAML run config.
        out: the run folder (created, or resumed when it holds this run).
        include_paths: folders of task YAMLs (as ``--include-path``), for a config given as a path.
        progress: show a progress bar; messages go to the ``capdrift_fast`` logger either way.
        allow_pickle: accept pickle-only adapters.
        report: write ``report.md``/``report.html``/``heatmap.png`` at the end.

    Returns:
        :class:`RunResult` (``matrix``: one row per model x task x metric; timings in seconds).

    Raises:
        ConfigError, DataError, PreflightError: bad config, data or adapters (before any engine starts).
        RunFolderError: ``out`` holds another run. EngineError: the engine failed.
    """
    cfg = config if isinstance(config, RunConfig) else load_config(config, include_paths)
    return run(cfg, Path(out), progress=progress, allow_pickle=allow_pickle, report=report, notify=log.info)


def load_run(path: str | os.PathLike[str]) -> RunData:
    """A finished run folder (this version's or 0.1.0's): config, manifest, tasks, matrix and drift scores
    (``analysis.matrix`` with the parity guard's ``suspect``), random-guess baselines.

    Raises:
        RunFolderError: not a finished run folder (names the missing file).
    """
    return _load_run(path)
