"""The parity guard's reference in its own Python process, out of reach of the vLLM engine's process.

Why: once a vLLM engine has served a model through vLLM's Transformers backend (GPT-NeoX, OLMo 2 in
vLLM 0.32), vLLM's ``support_torch_compile`` has patched that transformers model class's ``__init__`` in
the process, and building the transformers+peft reference there fails ("Current vLLM config is not
set"). A fresh interpreter (``python -m capdrift_fast.parity_process JOB_DIR``), which never imports vLLM,
builds the reference as a user's own script would.

The job folder (a temporary directory) holds:

- ``job.json``: the served run config (``config``), ``mode``, ``tolerance`` (nats or null), ``device``,
  ``dtype``;
- ``canaries.parquet``: the canary plan rows joined with their generations (see
  :func:`capdrift_fast.parity.run_parity`);

and the child writes ``rows.json``: one record per canary (:func:`capdrift_fast.parity.check_canaries`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import polars as pl

from capdrift_fast.config import RunConfig
from capdrift_fast.errors import EngineError
from capdrift_fast.io.atomic import atomic_write, atomic_write_text


class ParityProcessError(EngineError):
    """The reference process failed; the message carries its last error line and exit code."""


def check_in_subprocess(cfg: RunConfig, canaries: pl.DataFrame, mode: str, tolerance: float | None,
                        device: str, dtype: str) -> list[dict[str, Any]]:
    """Run :func:`capdrift_fast.parity.check_canaries` with a freshly built reference
    (:class:`~capdrift_fast.engine.hf_reference.HFReference` of ``cfg.model`` and ``cfg.adapters`` on
    ``device`` in ``dtype``) in a new Python process; returns its canary records.

    Raises:
        ParityProcessError: the process exited non-zero or wrote no result (the message names its last
            stderr line, e.g. the transformers/peft error).
    """
    with tempfile.TemporaryDirectory(prefix="capdrift-parity-") as tmp:
        job = Path(tmp)
        atomic_write(job / "canaries.parquet", lambda tmp_path: canaries.write_parquet(tmp_path))
        atomic_write_text(job / "job.json", json.dumps({"config": cfg.model_dump(mode="json"), "mode": mode,
                                                         "tolerance": tolerance, "device": device, "dtype": dtype}))
        env = dict(os.environ)
        # the child must import this very package (an editable checkout or PYTHONPATH alike)
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
        proc = subprocess.run([sys.executable, "-m", "capdrift_fast.parity_process", str(job)],
                              capture_output=True, text=True, env=env)
        out = job / "rows.json"
        if proc.returncode != 0 or not out.is_file():
            lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
            raise ParityProcessError(f"the parity reference process exited with code {proc.returncode}: "
                                     f"{lines[-1] if lines else 'no error output'}")
        return json.loads(out.read_text())


def main(job_dir: str) -> None:
    """The child's side: read the job folder, build the reference, check the canaries, write ``rows.json``."""
    from capdrift_fast.engine.hf_reference import HFReference
    from capdrift_fast.parity import check_canaries

    job = Path(job_dir)
    spec = json.loads((job / "job.json").read_text())
    cfg = RunConfig.model_validate(spec["config"])
    canaries = pl.read_parquet(job / "canaries.parquet")
    ref = HFReference(cfg.model, cfg.adapters, device=spec["device"], dtype=spec["dtype"])
    rows = check_canaries(ref, canaries, cfg, spec["mode"], spec["tolerance"])
    atomic_write_text(job / "rows.json", json.dumps(rows))


if __name__ == "__main__":
    main(sys.argv[1])
