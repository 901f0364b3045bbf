#!/usr/bin/env bash
# Runs ON the GPU device machine (torch 2.11.0+cu130, no vLLM, no network), from the repository root.
#
#   bash kernels_bench/gpu/device.sh receive   # move carried pieces to $STAGE, verify them (call once per piece)
#   bash kernels_bench/gpu/device.sh install   # join + verify + pip install --no-deps --target $SITE; import check
#   bash kernels_bench/gpu/device.sh bench     # 8B-shape random Llama + 32 rank-16 adapters; e2e + CUDA-graph check
#
# Results go to $OUT (the device tool's return folder). Environment knobs (defaults): STAGE=/tmp/capdrift_gpu,
# SITE=/tmp/site, PYTHON=python3, P=64 prompts, T=128 output tokens, N=32 adapters, RANK=16,
# BOOT_N=1 (adapters of the measured boot-per-adapter run; the N=32 total is modelled from its boots),
# REPS=1, MODES=ours,boot_per_adapter,generate_per_adapter,hf_peft,base_only, SHAPE=llama8b, DTYPE=bfloat16,
# DEVICE=cuda, TUNE_ONLY (tune variants). `bash device.sh bench` with DEVICE=cpu SHAPE=tiny DTYPE=float32 KV=1
# runs the same flow on a CPU (how it was checked without a GPU).
set -euo pipefail
STEP="${1:?usage: device.sh receive|install|bench}"
STAGE="${STAGE:-/tmp/capdrift_gpu}"
SITE="${SITE:-/tmp/site}"
PY="${PYTHON:-python3}"
OUT="${OUT:-$STAGE/out}"
CARRIED=kernels_bench/gpu/.wheels/pieces
mkdir -p "$STAGE/pieces" "$OUT"

case "$STEP" in
  receive)
    [ -f "$CARRIED/manifest.json" ] && cp -f "$CARRIED/manifest.json" "$STAGE/pieces/"
    for f in "$CARRIED"/wheels.tar.[0-9]*; do [ -e "$f" ] && mv -f "$f" "$STAGE/pieces/"; done
    "$PY" kernels_bench/gpu/pieces.py check "$STAGE/pieces" || true
    df -h /tmp | tail -1
    ;;
  install)
    t0=$(date +%s)
    "$PY" kernels_bench/gpu/pieces.py join "$STAGE/pieces" "$STAGE/wheels.tar"
    rm -rf "$STAGE/wheels" && tar -xf "$STAGE/wheels.tar" -C "$STAGE" && rm -f "$STAGE/wheels.tar"
    "$PY" -m pip install --no-deps --no-index --disable-pip-version-check --quiet --target "$SITE" "$STAGE"/wheels/*.whl
    echo "installed $(ls "$STAGE"/wheels/*.whl | wc -l) wheels into $SITE in $(( $(date +%s) - t0 )) s"
    PYTHONPATH="$SITE:$PWD" "$PY" - <<'PYEOF' 2>&1 | tee "$OUT/install_check.txt"
import torch, vllm, polars, pyarrow, peft
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))
print("vllm", vllm.__version__, "polars", polars.__version__, "peft", peft.__version__)
from vllm import _C  # noqa: F401  (the compiled extension: libcudart.so.13 / libnvrtc.so.13)
print("vllm._C ok")
PYEOF
    ;;
  bench)
    export PYTHONPATH="$SITE:$PWD" VLLM_LOGGING_LEVEL="${VLLM_LOGGING_LEVEL:-WARNING}"
    export CAPDRIFT_BENCH_ASSETS="${CAPDRIFT_BENCH_ASSETS:-$STAGE/assets}"
    SHAPE="${SHAPE:-llama8b}"; DTYPE="${DTYPE:-bfloat16}"; DEVICE="${DEVICE:-cuda}"
    N="${N:-32}"; RANK="${RANK:-16}"; P="${P:-64}"; T="${T:-128}"; BOOT_N="${BOOT_N:-1}"; REPS="${REPS:-1}"
    MODES="${MODES:-ours,boot_per_adapter,generate_per_adapter,hf_peft,base_only}"
    KV="${KV:-0}"   # 0 = vLLM sizes the KV cache from gpu_memory_utilization
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/nvidia_smi.csv" 2>&1 || true
    # 1. the five modes on N adapters; each mode in a fresh process (GPU memory is freed at exit).
    #    boot_per_adapter: measured on BOOT_N adapters + base (each boot a fresh process, as separate
    #    lm-eval runs), modelled for N from those boots + generate_per_adapter's generation time.
    "$PY" -m kernels_bench.e2e --device "$DEVICE" --shape "$SHAPE" --dtype "$DTYPE" --adapters "$N" --ranks "$RANK" \
      --rank-sweep "" --prompts "$P" --max-tokens "$T" --kv-cache-gib "$KV" --max-model-len 2048 --reps "$REPS" \
      --max-load 0 --threads 0 --modes "$MODES" --boot-max-n 0 --boot-probe-n "$BOOT_N" --out "$OUT/e2e_gpu.json" \
      2>&1 | grep -v -E "^(INFO|DEBUG)" | tail -40
    # 2. knobs of our pass on the GPU: CUDA graphs (enforce_eager), request order, max_loras
    "$PY" -m kernels_bench.tune --device "$DEVICE" --shape "$SHAPE" --dtype "$DTYPE" --adapters "$N" --rank "$RANK" \
      --prompts "$P" --max-tokens "$T" --kv-cache-gib "$KV" --max-model-len 2048 --reps "$REPS" --max-load 0 \
      --threads 0 --isolate --only "${TUNE_ONLY:-baseline,enforce_eager (no CUDA graphs),interleaved,max_loras=8}" \
      --out "$OUT/tune_gpu.json" 2>&1 | grep -v -E "^(INFO|DEBUG)" | tail -20
    ;;
  *) echo "unknown step $STEP" >&2; exit 2 ;;
esac
