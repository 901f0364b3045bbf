"""Gather here (networked) what the GPU machine's image lacks for the benchmark, install it as the device
will, check it, and pack it into pieces that each fit one device call.

The device machine has Python 3.12, torch 2.11.0+cu130 and ~200 packages (``image-packages.txt``, from
the device notes), no network, and takes at most 64 MiB per call (the working tree included). Steps:

1. ``pip download --no-deps`` of ``requirements-device.txt`` (vLLM 0.26.0 + what ``import vllm``, an
   offline ``vllm.LLM`` with LoRA and capdrift_fast import that the image lacks; ``trace_imports.py``
   found the list) for CPython 3.12 / manylinux x86_64 into ``DEST/dl``;
2. ``pip install --no-deps --no-compile --target DEST/site`` of those wheels for Python 3.12: the same
   unpacking the device would do, rehearsed here; then :data:`STRIP` removes what the benchmark never
   loads from vLLM's wheel (the FlashAttention-2 kernels, 291 MiB: Hopper runs FA3; the MoE kernels; the
   Rust frontend binary; MLA/FP4 kernels; Blackwell and DeepGEMM headers);
3. :func:`check_site` (a ``pip check`` against the image): every ``Requires-Dist`` of every carried
   distribution (markers evaluated for CPython 3.12 on Linux x86_64) must be met by the carried set or
   the image, at the image's version where the notes give one, except :data:`NEVER_IMPORTED`; one
   version per package; nothing carried that the image already has. Written to ``DEST/check.json``;
   exits 1 on a failure;
4. :func:`pack`: the site folder as xz-compressed tar *units* (the big kernel libraries alone, the
   rest in solid groups), plus the GSM8K prompts the benchmark needs (``data.tar.xz``), bin-packed into
   pieces ``DEST/pieces/pNN/`` of at most ``--piece-mib`` MiB (64 MiB minus the working tree minus a
   margin), each with ``manifest.json`` (sha256 of every unit). One device call carries one piece
   (``kernels_bench/gpu/README.md``).

``DEST`` (default ``kernels_bench/gpu/.wheels``) is git-ignored: never commit wheels.

Usage::

    python kernels_bench/gpu/gather_wheels.py [--dest kernels_bench/gpu/.wheels] [--piece-mib auto] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PYTHON_VERSION = "3.12"
PLATFORMS = [f"manylinux_2_{v}_x86_64" for v in (17, 24, 26, 27, 28, 31, 34, 35)] + ["manylinux2014_x86_64",
                                                                                    "linux_x86_64"]
CALL_MIB = 64  # the device tool's limit per call: working tree + carried paths
MARGIN_MIB = 1.5
# Left out of vLLM's wheel (paths under the site folder): never loaded for a dense Llama with LoRA on an
# H200. FA2 (Hopper uses FA3: vllm/v1/attention/backends/fa_utils.py), fused-MoE kernels (imported in a
# try/except; dense model), MLA / FP4 kernels (FlashMLA, QuTLASS: optional imports), the Rust frontend
# binary (VLLM_RUST_FRONTEND_PATH only), the Rust tool parser (serving), DeepGEMM's JIT headers (FP8) and
# the Blackwell FMHA sources, and DeepGEMM builds for other Pythons.
STRIP = ("vllm/vllm_flash_attn/_vllm_fa2_C.abi3.so", "vllm/_moe_C_stable_libtorch.abi3.so", "vllm/vllm-rs",
         "vllm/_flashmla_C.abi3.so", "vllm/_flashmla_extension_C.abi3.so", "vllm/_qutlass_C.abi3.so",
         "vllm/_rust_tool_parser.abi3.so", "vllm/third_party/deep_gemm/include", "vllm/third_party/fmha_sm100",
         *(f"vllm/third_party/deep_gemm/_C.cpython-3{v}-x86_64-linux-gnu.so" for v in (10, 11, 13, 14)),
         # data files of carried packages: country-name translations (pycountry, 22 MiB; only its
         # path is computed at import) and Mistral's tokenizer files (mistral_common, 36 MiB; a Llama
         # never loads them)
         "pycountry/locales", "mistral_common/data")
# Asked for by a carried distribution, neither carried nor on the image, and never imported by the
# benchmark (traced: vLLM imports them lazily, behind find_spec checks, or only for features not used:
# video/audio inputs, MoE/MLA/FP8/Blackwell kernels, the OpenAI server, structured-output backends other
# than the ones carried, the Rust frontend). torch* and triton are on the image.
NEVER_IMPORTED = frozenset({
    "torchcodec", "pynvvideocodec", "flashinfer-python", "tilelang", "nvidia-cudnn-frontend", "nvtx",
    "fastsafetensors", "nvidia-cutlass-dsl", "quack-kernels", "tokenspeed-mla", "humming-kernels",
    "lm-format-enforcer", "outlines-core", "lark", "compressed-tensors", "watchfiles",
    "python-json-logger", "ijson", "setproctitle", "anthropic", "model-hosting-container-standards", "mcp",
    "prometheus-fastapi-instrumentator", "numba", "blake3", "uvicorn", "fastapi-cli", "fastapi-cloud-cli",
    "httpx-sse", "sse-starlette", "pydantic-settings", "pyjwt", "jiter", "distro", "docstring-parser",
    "typing-inspect", "opentelemetry-exporter-otlp-proto-grpc", "importlib-metadata", "tzdata",
    "cryptography", "loguru", "semantic-version", "pyelftools", "z3-solver", "requests-toolbelt",
    "polars-runtime-64", "polars-runtime-compat", "pyarrow-hotfix", "websockets", "grpcio-status",
    "annotated-doc", "fastar", "rignore", "rich-toolkit", "sentry-sdk", "agent-detector", "detect-installer",
})
# (distribution, requirement) pairs whose version cap the image breaks, accepted with the reason.
ACCEPTED_CONFLICTS = {
    ("mistral-common", "numpy"): "every mistral-common release caps numpy<2.4; the image's numpy 2.5.2 is fixed "
    "(torch, jax, ... use it); vLLM only imports mistral_common's classes for a Llama; mistral-common 1.13.1 "
    "imported with numpy 2.4.6 here (above the cap); the device's import check runs first in the last call",
}
# Marker environment of the device's python3 (3.12.3, Linux x86_64).
DEVICE_ENV = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
              "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
              "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}
UNIT_GROUP_MIB = 48  # small top-level entries are packed together (solid xz) up to this raw size


def canon(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path) -> dict[str, str | None]:
    """``name[==version]`` lines (comments and blanks skipped) -> {canonical name: version or None}."""
    out: dict[str, str | None] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, _, version = line.partition("==")
        out[canon(name)] = version.strip() or None
    return out


def pip_target_args() -> list[str]:
    """pip options that select wheels for CPython 3.12 on manylinux x86_64."""
    args = ["--only-binary=:all:", "--python-version", PYTHON_VERSION, "--implementation", "cp"]
    for p in PLATFORMS:
        args += ["--platform", p]
    return args


def site_distributions(site: Path) -> dict[str, list[tuple[str, list[str]]]]:
    """{canonical name: [(version, Requires-Dist lines)]} of every ``*.dist-info`` under ``site``
    (a list: two versions of one package is an error :func:`check_site` reports)."""
    from email.parser import Parser

    out: dict[str, list[tuple[str, list[str]]]] = {}
    for meta in sorted(site.glob("*.dist-info/METADATA")):
        msg = Parser().parsestr(meta.read_text(encoding="utf-8", errors="replace"), headersonly=True)
        out.setdefault(canon(msg["Name"]), []).append((msg["Version"], msg.get_all("Requires-Dist") or []))
    return out


def check_site(site: Path, image: dict[str, str | None], never_imported: frozenset[str] = NEVER_IMPORTED,
               wanted: dict[str, str | None] | None = None,
               accepted: dict[tuple[str, str], str] | None = None) -> dict:
    """``pip check`` of the carried site folder against the image (see module doc, step 3).

    Returns:
        {"ok", "carried" (name -> version), "unmet" (requirements neither carried nor on the image nor
        in ``never_imported``), "left_out" (the never-imported ones that were asked for), "version_conflicts"
        (a requirement the carried/image version does not satisfy), "duplicates", "shadowing" (carried
        names the image has), "missing_wanted" (pinned in ``wanted`` but not installed)}.
    """
    from packaging.requirements import Requirement
    from packaging.version import Version

    accepted = ACCEPTED_CONFLICTS if accepted is None else accepted
    dists = site_distributions(site)
    carried = {n: v[0][0] for n, v in dists.items()}
    unmet, left_out, conflicts = set(), set(), []
    for name, versions in dists.items():
        for req_line in versions[0][1]:
            req = Requirement(req_line)
            if req.marker is not None and not req.marker.evaluate(DEVICE_ENV):
                continue
            dep = canon(req.name)
            have = carried.get(dep) or ((image[dep] or "?") if dep in image else None)
            if have is None:
                (left_out if dep in never_imported else unmet).add(dep)
            elif have != "?" and req.specifier and not req.specifier.contains(Version(have.split("+")[0]),
                                                                              prereleases=True):
                if dep not in never_imported and (name, dep) not in accepted:
                    conflicts.append(f"{name} needs {req.name}{req.specifier}, has {have}")
    wanted = wanted or {}
    report = {
        "carried": carried,
        "unmet": sorted(unmet),
        "left_out": sorted(left_out),
        "version_conflicts": sorted(set(conflicts)),
        "accepted_conflicts": {f"{a} -> {b}": why for (a, b), why in accepted.items() if a in carried},
        "duplicates": sorted(n for n, v in dists.items() if len(v) > 1),
        "shadowing": sorted(n for n in carried if n in image),
        "missing_wanted": sorted(n for n in wanted if n not in carried),
    }
    report["ok"] = not any(report[k] for k in ("unmet", "version_conflicts", "duplicates", "shadowing",
                                               "missing_wanted"))
    return report


def bin_pack(sizes: dict[str, int], cap: int, first: tuple[str, ...] = ()) -> list[list[str]]:
    """First-fit decreasing: unit names -> pieces whose sizes sum to at most ``cap``; ``first`` units go
    into piece 0 before the others.

    Raises:
        ValueError: a unit is larger than ``cap`` on its own.
    """
    big = [k for k, v in sizes.items() if v > cap]
    if big:
        raise ValueError(f"units larger than one piece ({cap / 2**20:.1f} MiB): {big}")
    pieces: list[list[str]] = [list(first)] if first else []
    loads = [sum(sizes[k] for k in first)] if first else []
    for name in sorted((k for k in sizes if k not in first), key=lambda k: -sizes[k]):
        for i, load in enumerate(loads):
            if load + sizes[name] <= cap:
                pieces[i].append(name)
                loads[i] += sizes[name]
                break
        else:
            pieces.append([name])
            loads.append(sizes[name])
    return pieces


def tree_mib(repo: Path = REPO) -> float:
    """What travels with every call besides the carried paths: tracked + untracked-not-ignored files."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                         capture_output=True, check=True).stdout.split(b"\0")
    return sum((repo / os.fsdecode(p)).stat().st_size for p in out if p and (repo / os.fsdecode(p)).is_file()) / 2**20


def _units(site: Path) -> list[tuple[str, list[str]]]:
    """(unit name, [paths relative to site]): each big kernel library alone, vLLM's rest, then the other
    top-level entries in solid groups of ~UNIT_GROUP_MIB raw."""
    def size(p: Path) -> int:
        return p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*") if f.is_file())

    alone = ["vllm/_C_stable_libtorch.abi3.so", "vllm/vllm_flash_attn/_vllm_fa3_C.abi3.so"]
    units: list[tuple[str, list[str]]] = [(Path(a).name.split(".")[0], [a]) for a in alone if (site / a).exists()]
    vllm_rest = [str(p.relative_to(site)) for p in sorted((site / "vllm").rglob("*"))
                 if p.is_file() and str(p.relative_to(site)) not in alone]
    units.append(("vllm_py", vllm_rest))
    group: list[str] = []
    load, k = 0, 0
    for entry in sorted(site.iterdir()):
        if entry.name in ("vllm", "bin"):
            continue
        s = size(entry)
        if s > UNIT_GROUP_MIB << 20:
            units.append((entry.name.split(".")[0], [entry.name]))
            continue
        if group and load + s > UNIT_GROUP_MIB << 20:
            units.append((f"deps{k}", group))
            group, load, k = [], 0, k + 1
        group.append(entry.name)
        load += s
    if group:
        units.append((f"deps{k}", group))
    return units


def unit_key(site: Path, paths: list[str]) -> str:
    """sha256 of a unit's file list and sizes: an unchanged unit is not compressed again."""
    h = hashlib.sha256()
    for p in paths:
        root = site / p
        for f in sorted([root] if root.is_file() else (x for x in root.rglob("*") if x.is_file())):
            h.update(f"{f.relative_to(site)}\0{f.stat().st_size}\n".encode())
    return h.hexdigest()


def _xz_tar(root: Path, paths: list[str], out: Path) -> None:
    """``tar`` of ``paths`` (relative to ``root``) compressed with xz -6 (the xz tool with 2 threads when
    present; else Python's lzma)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for p in paths:
            tf.add(root / p, arcname=p)
    if shutil.which("xz"):
        out.write_bytes(subprocess.run(["xz", "-6", "-T2", "-c"], input=buf.getvalue(), capture_output=True,
                                       check=True).stdout)
    else:  # pragma: no cover
        import lzma

        out.write_bytes(lzma.compress(buf.getvalue(), preset=6))


def pack(site: Path, data_dir: Path | None, dest: Path, piece_mib: float) -> dict:
    """Units -> ``dest/pieces/pNN/`` (see module doc, step 4). Returns the manifest."""
    units_dir = dest / "units"
    units_dir.mkdir(parents=True, exist_ok=True)
    sizes: dict[str, int] = {}
    raw: dict[str, int] = {}
    for name, paths in _units(site):
        t0 = time.time()
        key = unit_key(site, paths)
        key_file = units_dir / f"{name}.key"
        if not (key_file.is_file() and key_file.read_text() == key and (units_dir / f"{name}.tar.xz").is_file()):
            _xz_tar(site, paths, units_dir / f"{name}.tar.xz")
            key_file.write_text(key)
        sizes[f"{name}.tar.xz"] = (units_dir / f"{name}.tar.xz").stat().st_size
        raw[f"{name}.tar.xz"] = sum((site / p).stat().st_size if (site / p).is_file() else
                                    sum(f.stat().st_size for f in (site / p).rglob("*") if f.is_file()) for p in paths)
        print(f"unit {name}: {raw[f'{name}.tar.xz'] / 2**20:.1f} MiB -> {sizes[f'{name}.tar.xz'] / 2**20:.1f} MiB "
              f"({time.time() - t0:.0f} s)", flush=True)
    first: tuple[str, ...] = ()
    if data_dir is not None:  # the GSM8K prompts (tokenizer training text + benchmark prompts): first call
        stage = dest / "data-stage" / "gsm8k"
        stage.mkdir(parents=True, exist_ok=True)
        lines = (data_dir / "gsm8k" / "test.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)[:400]
        (stage / "test.jsonl").write_text("".join(lines), encoding="utf-8")
        _xz_tar(dest / "data-stage", ["gsm8k"], units_dir / "data.tar.xz")
        sizes["data.tar.xz"] = (units_dir / "data.tar.xz").stat().st_size
        raw["data.tar.xz"] = (stage / "test.jsonl").stat().st_size
        first = ("data.tar.xz",)
    pieces = bin_pack(sizes, int(piece_mib * 2**20), first)
    pieces_dir = dest / "pieces"
    shutil.rmtree(pieces_dir, ignore_errors=True)
    manifest = {"piece_mib_cap": piece_mib, "pieces": []}
    for i, names in enumerate(pieces):
        entry = {"dir": f"p{i:02d}", "units": []}
        for n in names:
            data = (units_dir / n).read_bytes()
            entry["units"].append({"file": n, "bytes": len(data), "raw_bytes": raw[n],
                                   "sha256": hashlib.sha256(data).hexdigest(),
                                   "into": "data" if n == "data.tar.xz" else "site"})
        entry["bytes"] = sum(u["bytes"] for u in entry["units"])
        manifest["pieces"].append(entry)
    manifest["total_bytes"] = sum(p["bytes"] for p in manifest["pieces"])
    manifest["total_raw_bytes"] = sum(raw.values())
    for entry in manifest["pieces"]:
        d = pieces_dir / entry["dir"]
        d.mkdir(parents=True)
        for u in entry["units"]:
            os.link(units_dir / u["file"], d / u["file"])
        (d / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def record(dest: Path) -> dict:
    """``carried.json`` (committed): the pieces, their sizes, the check and the budget, from ``dest``."""
    sys.path.insert(0, str(HERE))
    import budget

    manifest = json.loads(sorted((dest / "pieces").glob("p*/manifest.json"))[0].read_text())
    check = json.loads((dest / "check.json").read_text())
    tree = manifest.get("tree_mib") or round(tree_mib(), 2)
    sizes = [p["bytes"] / 2**20 for p in manifest["pieces"]]
    rec = {
        "calls": len(manifest["pieces"]),
        "carried_mib": round(sum(sizes), 2),
        "unpacked_mib": round(manifest["total_raw_bytes"] / 2**20, 1),
        "tree_mib": tree,
        "downloaded_wheels_mib": round(sum(w.stat().st_size for w in (dest / "dl").glob("*.whl")) / 2**20, 1),
        "pieces": [{"dir": p["dir"], "mib": round(p["bytes"] / 2**20, 2),
                    "units": {u["file"]: round(u["bytes"] / 2**20, 2) for u in p["units"]}} for p in manifest["pieces"]],
        "check": {k: check[k] for k in ("ok", "unmet", "left_out", "version_conflicts", "accepted_conflicts",
                                        "duplicates", "shadowing", "install_s", "stripped_mib", "site_mib")}
        | {"carried": len(check["carried"])},
        "budget": budget.plan(len(sizes), sizes, tree),
        "last_call_budget_s": budget.last_call_seconds(len(sizes)),
    }
    (HERE / "carried.json").write_text(json.dumps(rec, indent=1) + "\n")
    return rec


def main() -> None:
    """CLI (see module doc)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dest", type=Path, default=HERE / ".wheels")
    ap.add_argument("--piece-mib", default="auto", help="MiB per piece; auto = 64 - working tree - margin")
    ap.add_argument("--data-dir", type=Path, default=Path(os.environ.get("CAPDRIFT_DATA", "/work/shared/data")))
    ap.add_argument("--skip-download", action="store_true", help="reuse DEST/dl")
    ap.add_argument("--record-only", action="store_true", help="only rewrite carried.json from DEST")
    args = ap.parse_args()
    dest = args.dest
    dest.mkdir(parents=True, exist_ok=True)
    if args.record_only:
        print(json.dumps(record(dest), indent=1))
        return
    wanted = read_pins(HERE / "requirements-device.txt")
    image = read_pins(HERE / "image-packages.txt")
    dl = dest / "dl"
    if not args.skip_download:
        shutil.rmtree(dl, ignore_errors=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(dl), *pip_target_args(),
               "-r", str(HERE / "requirements-device.txt")]
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    wheels = sorted(dl.glob("*.whl"))
    print(f"{len(wheels)} wheels, {sum(w.stat().st_size for w in wheels) / 2**20:.1f} MiB downloaded", flush=True)
    site = dest / "site"
    shutil.rmtree(site, ignore_errors=True)
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "--no-index", "--quiet",
                    "--disable-pip-version-check", "--target", str(site), *pip_target_args(), *map(str, wheels)],
                   check=True)
    install_s = time.time() - t0
    stripped = 0
    for rel in STRIP:
        p = site / rel
        if p.is_dir():
            stripped += sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
            shutil.rmtree(p)
        elif p.is_file():
            stripped += p.stat().st_size
            p.unlink()
    report = check_site(site, image, wanted=wanted)
    report.update(install_s=round(install_s, 1), stripped_mib=round(stripped / 2**20, 1),
                  site_mib=round(sum(f.stat().st_size for f in site.rglob("*") if f.is_file()) / 2**20, 1))
    (dest / "check.json").write_text(json.dumps(report, indent=1))
    print(f"installed {len(report['carried'])} distributions into {site} in {install_s:.0f} s; stripped "
          f"{report['stripped_mib']} MiB; site {report['site_mib']} MiB; check ok={report['ok']} "
          f"(unmet {report['unmet']}, conflicts {report['version_conflicts']}, duplicates {report['duplicates']}, "
          f"shadowing {report['shadowing']})", flush=True)
    if not report["ok"]:
        raise SystemExit(1)
    tree = tree_mib()
    piece_mib = CALL_MIB - tree - MARGIN_MIB if args.piece_mib == "auto" else float(args.piece_mib)
    data_dir = args.data_dir if (args.data_dir / "gsm8k" / "test.jsonl").is_file() else None
    manifest = pack(site, data_dir, dest, piece_mib)
    manifest["tree_mib"] = round(tree, 2)
    for entry in manifest["pieces"]:
        (dest / "pieces" / entry["dir"] / "manifest.json").write_text(json.dumps(manifest, indent=1))
    print(f"{len(manifest['pieces'])} pieces (one device call each), {manifest['total_bytes'] / 2**20:.1f} MiB "
          f"carried ({manifest['total_raw_bytes'] / 2**20:.0f} MiB unpacked); working tree {tree:.1f} MiB; "
          f"cap {piece_mib:.1f} MiB per piece: " + ", ".join(f"{p['dir']} {p['bytes'] / 2**20:.1f} MiB"
                                                             for p in manifest["pieces"]), flush=True)
    rec = record(dest)
    print(f"budget: {json.dumps(rec['budget'])}", flush=True)


if __name__ == "__main__":
    main()
