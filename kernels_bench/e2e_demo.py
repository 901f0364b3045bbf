"""End-to-end throughput of the demo pass on the local CPU engine; writes a JSON result.

Usage: python kernels_bench/e2e_demo.py [--limit 24] [--out kernels_bench/results/e2e_demo.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import yaml

from capdrift_fast.config import default_data_dir, load_config
from capdrift_fast.demo import build_demo_assets, demo_config
from capdrift_fast.runner import package_versions, run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=24)
    ap.add_argument("--out", type=Path, default=Path("kernels_bench/results/e2e_demo.json"))
    args = ap.parse_args()
    data = default_data_dir()
    assets = build_demo_assets(data)
    with tempfile.TemporaryDirectory() as tmp:
        cfg_path = Path(tmp) / "demo.yaml"
        cfg_path.write_text(yaml.safe_dump(demo_config(assets, data, args.limit)))
        t0 = time.perf_counter()
        res = run(load_config(cfg_path), Path(tmp) / "run", progress=False)
        wall = time.perf_counter() - t0
    out = {
        "benchmark": "e2e_demo", "limit": args.limit, "requests": res.n_requests,
        "output_tokens": res.output_tokens, "engine_start_s": res.engine_start_s,
        "generation_s": res.generation_s, "output_tokens_per_s": res.tokens_per_s, "wall_s": wall,
        "host": platform.node(), "versions": package_versions(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
