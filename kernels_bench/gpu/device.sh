#!/usr/bin/env bash
# Runs ON the GPU device machine (python3 3.12 + torch 2.11.0+cu130 from the image, no network), from the
# repository root. ONE command for every call; only the carried piece changes (kernels_bench/gpu/README.md):
#
#   bash kernels_bench/gpu/device.sh go     carry: ["kernels_bench/gpu/.wheels/pieces/pNN"]
#
# Each call: (1) verify + unpack the carried piece into $SITE (pieces.py); (2) if the assets are not built
# yet and the GSM8K prompts are in (piece p00), build the random 8B-shape model + N adapters on the GPU
# (bench_gpu.py assets: torch/safetensors/tokenizers from the image); (3) once every piece is in: import
# check, then the benchmark (bench_gpu.py bench) with a deadline inside this call's limit. Everything is
# logged to $OUT/device.log; results: $OUT/gpu_bench.json (rewritten after every step), assets.json,
# install_check.txt, nvidia_smi.csv, gpu_bench.png (<= 8 files, none deeper than $OUT/).
#
# Knobs (defaults): BUDGET_LEFT_S (unset: only the call limit bounds the benchmark) STAGE=/tmp/capdrift_gpu SITE=/tmp/site PYTHON=python3 CALL_LIMIT_S=600 MARGIN_S=45
# N=32 RANK=16 P=64 T=128 MAX_LORAS=8 SHAPE=llama8b DTYPE=bfloat16 DEVICE=cuda STEPS=ours,base_only,parity,ours_eager,boot
# REHEARSAL=1 (CPU here: unpack into $SITE but import from this environment, whose Python is not 3.12).
set -uo pipefail
T_CALL=$(date +%s)
STEP="${1:?usage: device.sh go}"
export STAGE="${STAGE:-/tmp/capdrift_gpu}" SITE="${SITE:-/tmp/site}"
PY="${PYTHON:-python3}"
export OUT="${OUT:-$STAGE/out}"
CALL_LIMIT_S="${CALL_LIMIT_S:-600}"; MARGIN_S="${MARGIN_S:-45}"
# BUDGET_LEFT_S: the device tool's status.budget_left_s just before this call (900 at the start). The
# benchmark's deadline keeps the whole procedure inside 12 of the 15 minutes (budget.py's constants):
# 180 s kept back, 20 s for this call's transfers, 10 s to give the machine back.
CALL_S=$(( CALL_LIMIT_S - MARGIN_S ))
if [ -n "${BUDGET_LEFT_S:-}" ]; then B=$(( BUDGET_LEFT_S - 180 - 20 - 10 )); [ "$B" -lt "$CALL_S" ] && CALL_S=$B; fi
export DEADLINE=$(( T_CALL + CALL_S ))
export DEVICE="${DEVICE:-cuda}" SHAPE="${SHAPE:-llama8b}" DTYPE="${DTYPE:-bfloat16}" N="${N:-32}" RANK="${RANK:-16}"
export DATA_DIR="$STAGE/data" VLLM_ENABLE_V1_MULTIPROCESSING=0 VLLM_LOGGING_LEVEL="${VLLM_LOGGING_LEVEL:-WARNING}"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$STAGE" "$OUT"
LOG="$OUT/device.log"
[ "$STEP" = go ] || { echo "unknown step $STEP" >&2; exit 2; }
if [ -n "${REHEARSAL:-}" ]; then export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"; else export PYTHONPATH="$SITE:$PWD"; fi
{
  echo "== call at $(date -u +%FT%TZ), deadline in $(( DEADLINE - T_CALL )) s"
  nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv > "$OUT/nvidia_smi.csv" 2>&1 || true
  "$PY" kernels_bench/gpu/pieces.py receive "${CARRIED:-kernels_bench/gpu/.wheels/pieces}" "$STAGE" "$SITE"; rc=$?
  [ "$rc" = 4 ] && { echo "a carried unit failed its checksum: carry that piece again"; exit 4; }
  df -h /tmp | tail -1
  if [ -f "$DATA_DIR/gsm8k/test.jsonl" ] && [ ! -f "$STAGE/assets.done" ]; then
    echo "== assets ($SHAPE, $DTYPE, N=$N rank $RANK on $DEVICE)"
    "$PY" -m kernels_bench.gpu.bench_gpu assets --out "$OUT/gpu_bench.json" && touch "$STAGE/assets.done"
  fi
  if [ "$rc" = 0 ] && [ -f "$STAGE/assets.done" ]; then
    echo "== import check ($(( $(date +%s) - T_CALL )) s into the call)"
    "$PY" - <<'PYEOF' 2>&1 | tee "$OUT/install_check.txt"
import time; t0 = time.time()
import torch, vllm, polars, pyarrow, peft, transformers, pydantic
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")
print("vllm", vllm.__version__, "from", vllm.__file__)
print("polars", polars.__version__, "peft", peft.__version__, "transformers", transformers.__version__, "pydantic", pydantic.__version__)
if torch.cuda.is_available():
    import vllm._C_stable_libtorch  # noqa: F401  (links libcudart.so.13 / libnvrtc.so.13 from torch's CUDA)
    from vllm.vllm_flash_attn.flash_attn_interface import FA3_AVAILABLE, FA3_UNAVAILABLE_REASON
    print("vllm._C_stable_libtorch ok; FA3", FA3_AVAILABLE, FA3_UNAVAILABLE_REASON or "")
import capdrift_fast.engines.vllm_engine  # noqa: F401
print(f"import check ok in {time.time() - t0:.1f} s")
PYEOF
    echo "== bench ($(( DEADLINE - $(date +%s) )) s to the deadline)"
    "$PY" -m kernels_bench.gpu.bench_gpu bench --out "$OUT/gpu_bench.json"
    "$PY" -m kernels_bench.gpu.plot_gpu "$OUT/gpu_bench.json" "$OUT/gpu_bench.png" || true
  else
    echo "== not all pieces in yet (or no assets): next call carries the next piece"
  fi
  echo "== call done in $(( $(date +%s) - T_CALL )) s"
} 2>&1 | tee -a "$LOG" | grep -v -E "^(INFO|DEBUG)"
