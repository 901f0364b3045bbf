#!/usr/bin/env bash
# Install capdrift_fast from a source tree into a Python that already has torch (and, in the image,
# vLLM), changing none of the packages already there: everything installed is passed as a constraint,
# so capdrift_fast's requirements must fit around the image's vLLM stack or the install fails loudly.
#
# The Dockerfile runs this script at build time; .ci/run runs it (docker/check_install.sh) in a fresh
# virtual environment holding only torch, because no Docker engine runs in CI.
#
# Usage: docker/install.sh [SRC_DIR]      SRC_DIR: the capdrift_fast source (default: this script's repo)
# Env:   PYTHON  the interpreter to install into (default: python3 on PATH)
# Uses uv when it is on PATH (the vLLM image has it), else pip.
set -euo pipefail
src="${1:-$(cd "$(dirname "$0")/.." && pwd)}"
py="$(command -v "${PYTHON:-python3}")"
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT

"$py" - >"$constraints" <<'PY'
import importlib.metadata as md
pins = {}
for dist in md.distributions():
    name = dist.metadata["Name"]
    try:  # skip versions that are not PEP 440 (pip and uv would reject the whole file)
        from packaging.version import Version
        Version(dist.version)
    except ImportError:
        pass
    except Exception:
        continue
    if name:
        pins.setdefault(name.lower().replace("_", "-"), f"{name}=={dist.version}")
print("\n".join(sorted(pins.values())))
PY
echo "docker/install.sh: $(wc -l <"$constraints") installed package(s) of $py kept as they are"

if command -v uv >/dev/null 2>&1; then
  uv pip install --python "$py" --no-cache --constraint "$constraints" "$src"
else
  "$py" -m pip install --no-cache-dir --constraint "$constraints" "$src"
fi

# The CLI starts (its help imports no engine) and the package finds its templates.
"$py" -m capdrift_fast --help >/dev/null
"$py" -c "import capdrift_fast.report.render, capdrift_fast.runner, capdrift_fast.distributed.merge"
echo "docker/install.sh: capdrift_fast installed into $py"
