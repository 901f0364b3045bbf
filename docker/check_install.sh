#!/usr/bin/env bash
# CI check of the Dockerfile's install step without a Docker engine: a fresh virtual environment stands in
# for the vLLM image's Python (torch 2.13.0 stands in for the image's torch; uv, as in the image), then
# docker/install.sh installs capdrift_fast into it exactly as the image build does, and the installed
# package is exercised from outside the source tree: `capdrift --help`, a dependency check, and
# `capdrift validate` of the tiny demo model built with the installed transformers/peft (reads the
# safetensors headers, every adapter and every data row; vLLM itself is not installed here, so no engine).
# Usage: bash docker/check_install.sh        (needs the benchmark data: $CAPDRIFT_DATA_DIR or ../shared/data)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/capdrift-install-check.XXXXXX")"
trap 'rm -rf "$work"' EXIT
data="${CAPDRIFT_DATA_DIR:-$(cd "$repo/.." && pwd)/shared/data}"

python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q torch==2.13.0 uv
"$work/venv/bin/python" -m pip list --format=freeze 2>/dev/null | sort >"$work/before.txt"
PATH="$work/venv/bin:$PATH" PYTHON="$work/venv/bin/python" bash "$repo/docker/install.sh" "$repo"
"$work/venv/bin/uv" pip check --python "$work/venv/bin/python"
"$work/venv/bin/python" -m pip list --format=freeze 2>/dev/null | sort >"$work/after.txt"
changed="$(comm -23 "$work/before.txt" "$work/after.txt")"
if [[ -n "$changed" ]]; then
  echo "docker/install.sh changed packages that were already installed (the image's vLLM stack):" >&2
  echo "$changed" >&2
  exit 1
fi

cd "$work"  # away from the checkout: the installed package is the one imported
"$work/venv/bin/capdrift" --help >/dev/null
"$work/venv/bin/python" - "$work" "$data" <<'PY'
import sys
from pathlib import Path

import capdrift_fast, yaml
from capdrift_fast.demo import build_demo_assets, demo_config

work, data = Path(sys.argv[1]), Path(sys.argv[2])
assert str(work) in capdrift_fast.__file__, f"imported {capdrift_fast.__file__}, not the installed package"
assets = build_demo_assets(data, work / "assets")
(work / "demo.yaml").write_text(yaml.safe_dump(demo_config(assets, data, limit=4)))
PY
"$work/venv/bin/capdrift" validate "$work/demo.yaml"
echo "docker/check_install.sh: the Dockerfile's install step works in a fresh environment"
