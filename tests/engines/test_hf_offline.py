"""A container job with ``HF_HUB_OFFLINE=1`` and a mounted Hugging Face cache: the model and adapters given
as hub ids resolve from the cache alone — preflight, the vLLM engine and the transformers+peft parity
reference — and nothing reaches the network (``HF_ENDPOINT`` points at a closed port). One CLI subprocess
(~30 s: its own engine); a second command checks the message for an id missing from the cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from capdrift_fast.demo import DEMO_ADAPTERS, demo_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hf_cache import add_to_hub_cache  # noqa: E402

pytestmark = pytest.mark.engine
ROOT = Path(__file__).resolve().parents[2]


def _capdrift(args: list[str], hf_home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(hf_home), "HF_ENDPOINT": "http://127.0.0.1:9"}
    env.pop("HF_HUB_CACHE", None)
    return subprocess.run([sys.executable, "-m", "capdrift_fast", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)


def test_hub_ids_run_offline_from_a_mounted_cache(demo_assets, data_dir, tmp_path):
    hf_home = tmp_path / "hf"
    add_to_hub_cache(hf_home, "capdrift-demo/model", demo_assets / "model")
    raw = demo_config(demo_assets, data_dir, limit=2)
    for a in raw["adapters"]:
        add_to_hub_cache(hf_home, f"capdrift-demo/{a['name']}", Path(a["path"]))
        a["path"] = f"capdrift-demo/{a['name']}"
    raw["model"]["path"] = "capdrift-demo/model"
    raw["tasks"] = [dict(t, max_tokens=4) for t in raw["tasks"][:2]]
    cfg = tmp_path / "hub.yaml"
    cfg.write_text(yaml.safe_dump(raw))

    p = _capdrift(["run", str(cfg), "--out", str(tmp_path / "run"), "-q"], hf_home)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    parity = json.loads((tmp_path / "run" / "parity.json").read_text())
    assert parity["status"] == "ok" and all(m["checked"] and not m["suspect"] for m in parity["models"].values())
    man = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert man["config"]["model"]["path"] == "capdrift-demo/model" and man["n_requests"] == (1 + len(DEMO_ADAPTERS)) * 2 * 2
    assert all(str(hf_home) in a["path"] for a in man["adapters"])  # served from the cache's snapshots

    raw["adapters"][1]["path"] = "capdrift-demo/not-cached"
    cfg.write_text(yaml.safe_dump(raw))
    p = _capdrift(["validate", str(cfg), "--no-data"], hf_home)
    assert p.returncode == 2
    assert (f"'math-r16' (capdrift-demo/not-cached): not a local folder, and not in the Hugging Face cache "
            f"{hf_home / 'hub'} (revision main) while HF_HUB_OFFLINE=1") in p.stdout
