"""The parity guard's reference in its own Python process, out of reach of the vLLM engine's process.

Why: once a vLLM engine has served a model through vLLM's Transformers backend (GPT-NeoX, OLMo 2 in
vLLM 0.32), vLLM's ``support_torch_compile`` has patched that transformers model class's ``__init__`` in
the process, and building the transformers+peft reference there fails ("Current vLLM config is not
set"). A fresh interpreter (``python -m capdrift_fast.parity_process JOB_DIR``), which never imports vLLM,
builds the reference as a user's own script would. This module is that child's entry point only; the
parent's side is :func:`capdrift_fast.pipeline.parity.check_in_subprocess`.

The job folder (a temporary directory) holds:

- ``job.json``: the served run config (``config``), ``mode``, ``tolerance`` (nats or null), ``device``,
  ``dtype``, ``loglik_tolerance`` (nats per choice of a log-likelihood canary), ``letters`` (task -> answer
  letters of the letter-choice tasks);
- ``canaries.parquet``: the canary plan rows joined with their generations (see
  :func:`capdrift_fast.pipeline.parity.run_parity`);

and the child writes ``rows.json``: one record per canary (:func:`capdrift_fast.pipeline.parity.check_canaries`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import polars as pl

from capdrift_fast.config import RunConfig
from capdrift_fast.engines.hf_reference import HFReference
from capdrift_fast.pipeline.parity import check_canaries
from capdrift_fast.rundir.atomic import atomic_write_text


def main(job_dir: str) -> None:
    """The child's side: read the job folder, build the reference, check the canaries, write ``rows.json``."""
    job = Path(job_dir)
    spec = json.loads((job / "job.json").read_text())
    cfg = RunConfig.model_validate(spec["config"])
    canaries = pl.read_parquet(job / "canaries.parquet")
    ref = HFReference(cfg.model, cfg.adapters, device=spec["device"], dtype=spec["dtype"])
    rows = check_canaries(ref, canaries, cfg, spec["mode"], spec["tolerance"],
                          loglik_tolerance=spec.get("loglik_tolerance", 1e-3), letters=spec.get("letters"))
    atomic_write_text(job / "rows.json", json.dumps(rows))


if __name__ == "__main__":
    main(sys.argv[1])
