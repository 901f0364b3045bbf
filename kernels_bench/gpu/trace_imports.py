"""Which top-level modules do vLLM's engine modules import? (how requirements-device.txt was found)

Runs here (no GPU): puts an unpacked vLLM wheel's Python tree (``.so`` files left out) in front of
``sys.path``, answers vLLM's compiled extensions with stubs, imports :data:`TARGETS` (what
``vllm.LLM(enable_lora=True)`` loads on a CUDA machine: platform, V1 engine core, GPU worker and
model runner, Llama, Punica LoRA, FlashAttention backend, sampler, compilation) and prints the new
top-level modules, mapped to distributions of this environment, minus the standard library. Packages
this environment lacks stay unimported, as they would on the device (vLLM imports its optional kernel
packages behind ``find_spec`` checks), so the list is what must be on the device.

    python kernels_bench/gpu/trace_imports.py UNPACKED_VLLM_DIR [--image kernels_bench/gpu/image-packages.txt]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.abc
import importlib.machinery
import json
import re
import sys
import types
from pathlib import Path

TARGETS = ("vllm", "vllm.entrypoints.llm", "vllm.lora.request", "vllm.platforms.cuda", "vllm.v1.engine.core",
           "vllm.v1.engine.llm_engine", "vllm.v1.worker.gpu_worker", "vllm.v1.worker.gpu_model_runner",
           "vllm.model_executor.models.llama", "vllm.lora.punica_wrapper.punica_gpu",
           "vllm.v1.attention.backends.flash_attn", "vllm.v1.sample.sampler", "vllm.lora.ops.triton_ops",
           "vllm.compilation.backends", "vllm.v1.executor.uniproc_executor", "vllm.v1.executor.multiproc_executor")
EXTENSIONS = ("_C_stable_libtorch", "_moe_C_stable_libtorch", "_qutlass_C", "_C", "_flashmla_C",
              "_flashmla_extension_C", "_rust_tool_parser")


class _Stub(types.ModuleType):
    def __getattr__(self, k: str) -> "_Stub":
        if k.startswith("__"):
            raise AttributeError(k)
        return _Stub(f"{self.__name__}.{k}")


class _ExtensionStubs(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):  # noqa: ANN001, ANN201
        parts = name.split(".")
        if (len(parts) == 2 and parts[0] == "vllm" and parts[1] in EXTENSIONS) or name.startswith(
                "vllm.vllm_flash_attn._vllm"):
            return importlib.machinery.ModuleSpec(name, self)
        return None

    def create_module(self, spec):  # noqa: ANN001, ANN201
        return _Stub(spec.name)

    def exec_module(self, module):  # noqa: ANN001, ANN201
        return None


def canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("tree", type=Path)
    ap.add_argument("--image", type=Path, default=Path(__file__).with_name("image-packages.txt"))
    args = ap.parse_args()
    import importlib.metadata as md

    sys.path.insert(0, str(args.tree))
    sys.meta_path.insert(0, _ExtensionStubs())
    before = {m.split(".")[0] for m in sys.modules}
    errors = {}
    for t in TARGETS:
        try:
            importlib.import_module(t)
        except BaseException as exc:  # noqa: BLE001 - report every failure
            errors[t] = f"{type(exc).__name__}: {exc}"[:300]
    tops = {m.split(".")[0] for m in sys.modules} - before
    p2d = md.packages_distributions()
    dists = sorted({canon(d) for t in tops if t not in sys.stdlib_module_names and not t.startswith("_")
                    and t != "vllm" for d in p2d.get(t, ())})
    image = {canon(ln.split("==")[0]) for ln in args.image.read_text().splitlines() if ln and not ln.startswith("#")}
    print(json.dumps({"imported_distributions": dists, "missing_on_image": [d for d in dists if d not in image],
                      "errors": errors}, indent=1))


if __name__ == "__main__":
    main()
