"""capdrift_fast: what a LoRA adapter really changed, across tasks, in one batched vLLM pass.

The flow, as packages (imports point down): ``config`` -> ``benchmarks`` (plugins; ``template`` = tasks in
YAML) over ``metrics`` -> ``pipeline`` (preflight, plan, split, parity, score) -> ``engines`` (one vLLM pass;
transformers+peft oracle) -> ``rundir`` (Arrow shards, run folder, resume) -> ``analysis`` (drift matrix,
statistics) -> ``report``; ``runner`` runs the stages, ``distributed`` merges shards, ``api`` and ``cli`` on top.

Python API: :func:`evaluate` and :func:`load_run` (:mod:`capdrift_fast.api`, imported on first use).
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["evaluate", "load_run", "__version__"]


def __getattr__(name: str) -> Any:  # the API pulls in polars & co.; `import capdrift_fast` stays light
    if name in ("evaluate", "load_run"):
        from capdrift_fast import api

        return getattr(api, name)
    raise AttributeError(f"module 'capdrift_fast' has no attribute {name!r}")
