#!/usr/bin/env bash
# CPU rehearsal of the whole device procedure (no GPU here): every call device.sh would get, in order,
# each carrying one piece, with REHEARSAL=1 (pieces verified and unpacked into a throwaway $SITE, whose
# cp312 packages this Python 3.11 does not import) and DEVICE=cpu SHAPE=tiny. Writes
# kernels_bench/gpu/rehearsal_cpu.json (calls, each call's rc/seconds/files, the bench JSON).
#
#   PYTHON=/work/main/.venv/bin/python bash kernels_bench/gpu/rehearse_cpu.sh
set -uo pipefail
PY="${PYTHON:-python3}"
R="${REHEARSE_DIR:-/tmp/capdrift_rehearsal}"
rm -rf "$R" && mkdir -p "$R"
export STAGE="$R/stage" SITE="$R/site" REHEARSAL=1 PYTHON="$PY"
export DEVICE=cpu SHAPE=tiny DTYPE=float32 N="${N:-4}" RANK=16 P="${P:-4}" T="${T:-8}" KV=0.25 MAX_LORAS="${MAX_LORAS:-2}"
export CALL_LIMIT_S="${CALL_LIMIT_S:-600}"
calls=()
for piece in kernels_bench/gpu/.wheels/pieces/p[0-9]*; do
  k=$(basename "$piece")
  mkdir -p "$R/carry-$k" && ln -s "$PWD/$piece" "$R/carry-$k/$k"
  export CARRIED="$R/carry-$k" OUT="$R/out-$k"
  mkdir -p "$OUT"
  t0=$(date +%s%N)
  bash kernels_bench/gpu/device.sh go; rc=$?
  t1=$(date +%s%N)
  calls+=("{\"piece\": \"$k\", \"rc\": $rc, \"seconds\": $(( (t1 - t0) / 1000000 ))e-3, \"out\": \"$OUT\"}")
done
"$PY" - "$R" "${calls[@]}" <<'PYEOF'
import json, sys
from pathlib import Path
r, calls = Path(sys.argv[1]), [json.loads(c) for c in sys.argv[2:]]
for c in calls:
    c["files"] = sorted(p.name for p in Path(c["out"]).iterdir())
bench = json.loads((Path(calls[-1]["out"]) / "gpu_bench.json").read_text())
site_files = sum(1 for _ in (r / "site").rglob("*") if _.is_file())
doc = {"calls": len(calls), "call_logs": calls, "site_files_unpacked": site_files,
       "total_s": round(sum(c["seconds"] for c in calls), 1), "bench": bench}
Path("kernels_bench/gpu/rehearsal_cpu.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
print(json.dumps({k: v for k, v in doc.items() if k != "bench"}, indent=1))
print(json.dumps(bench["summary"], indent=1))
PYEOF
