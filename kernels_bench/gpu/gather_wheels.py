"""Gather, on this (networked) machine, every wheel vLLM 0.26.0 needs on the GPU device machine, which
has torch 2.11.0+cu130 and no network; then cut them into pieces small enough to carry one per call.

Steps (each idempotent):

1. stub wheels for what the device image already has (``torch==2.11.0+cu130``) and for what the
   benchmark never uses (``torchvision``, ``torchaudio``, ``torchcodec``, ``PyNvVideoCodec``: video
   and audio inputs), so pip's resolver does not pull torch's CUDA 13 wheels (GBs) into the set;
2. ``pip install --dry-run --report`` of ``vllm==0.26.0`` for CPython 3.12 / manylinux x86_64 against
   PyPI + the stubs: the full dependency set, metadata only, nothing downloaded;
3. the set minus the stubs and minus :data:`EXCLUDE` (``triton``, the CUDA runtime and NVRTC wheels:
   the device's torch brings its own, which vLLM's extensions link) is written to
   ``kernels_bench/gpu/requirements-device.txt`` (committed: the exact versions);
4. ``pip download --no-deps --only-binary=:all:`` of that list into ``DEST/wheels`` (unless
   ``--resolve-only``), then one tar cut into ``--piece-mib`` pieces ``DEST/pieces/wheels.tar.NNN`` with
   ``DEST/pieces/manifest.json`` (sha256 of every piece and of the whole tar).

``DEST`` (default ``kernels_bench/gpu/.wheels``) is git-ignored: never commit wheels.

Usage::

    python kernels_bench/gpu/gather_wheels.py [--resolve-only] [--dest kernels_bench/gpu/.wheels] [--piece-mib 60]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
VLLM = "vllm==0.26.0"
PYTHON_VERSION = "3.12"
PLATFORMS = [f"manylinux_2_{v}_x86_64" for v in (17, 24, 27, 28, 31, 34, 35)] + ["manylinux2014_x86_64", "linux_x86_64"]
# On the device already (with torch 2.11.0+cu130), or never used by the benchmark (video/audio).
STUBS = {"torch": "2.11.0+cu130", "torchvision": "0.26.0+stub", "torchaudio": "2.11.0+stub",
         "torchcodec": "0.14.0+stub", "pynvvideocodec": "2.0.4+stub"}
# Left out although some dependency asks for them: the device's torch 2.11.0+cu130 brings its own
# (triton 3.6.0, the CUDA 13.0 runtime and NVRTC that vLLM's extensions link), and any image has setuptools.
# A newer triton or libcudart in front of torch's on the path would break torch.compile or the driver match.
EXCLUDE = {"triton", "nvidia-cuda-runtime", "nvidia-cuda-nvrtc", "setuptools"}
# vLLM asks for six only under ``python_version > "3.11"``; pip evaluates markers with *this* interpreter
# (3.11 here), so it is added explicitly. The others are what capdrift_fast and the benchmark import
# besides vLLM (the Arrow shards, the transformers+peft mode, the plot).
EXTRA_REQUIREMENTS = ["six>=1.16.0", "polars>=1.20", "pyarrow>=15", "peft>=0.13", "matplotlib"]


def canon(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pip_target_args() -> list[str]:
    """pip options that select wheels for CPython 3.12 on manylinux x86_64."""
    args = ["--only-binary=:all:", "--python-version", PYTHON_VERSION, "--implementation", "cp"]
    for p in PLATFORMS:
        args += ["--platform", p]
    return args


def make_stub_wheel(folder: Path, name: str, version: str) -> Path:
    """A minimal, dependency-free ``py3-none-any`` wheel for ``name==version`` (resolution only)."""
    folder.mkdir(parents=True, exist_ok=True)
    dist = f"{name.replace('-', '_')}-{version}"
    path = folder / f"{dist}-py3-none-any.whl"
    if path.is_file():
        return path
    files = {
        f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: capdrift-stub\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    with zipfile.ZipFile(path, "w") as zf:
        for fname, text in files.items():
            data = text.encode()
            zf.writestr(fname, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{fname},sha256={digest},{len(data)}")
        record.append(f"{dist}.dist-info/RECORD,,")
        zf.writestr(f"{dist}.dist-info/RECORD", "\n".join(record) + "\n")
    return path


def resolve(dest: Path) -> list[tuple[str, str, str]]:
    """The (name, version, url) of every wheel to carry, resolved by pip without downloading."""
    stubs = dest / "stubs"
    for name, version in STUBS.items():
        make_stub_wheel(stubs, name, version)
    report = dest / "report.json"
    constraints = dest / "constraints.txt"
    constraints.write_text("".join(f"{n}=={v}\n" for n, v in STUBS.items()))
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report),
           "--target", str(dest / "unused-target"), "--find-links", str(stubs), "-c", str(constraints),
           *pip_target_args(), VLLM, *EXTRA_REQUIREMENTS]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    items = json.loads(report.read_text())["install"]
    out = []
    for it in items:
        name, version = it["metadata"]["name"], it["metadata"]["version"]
        if canon(name) in STUBS or canon(name) in EXCLUDE:
            continue
        out.append((canon(name), version, it["download_info"]["url"]))
    return sorted(out)


def split(tar_path: Path, pieces_dir: Path, piece_mib: int) -> dict:
    """Cut ``tar_path`` into ``piece_mib`` MiB pieces; return the manifest (sha256 per piece and whole)."""
    pieces_dir.mkdir(parents=True, exist_ok=True)
    for old in pieces_dir.glob("wheels.tar.*"):
        old.unlink()
    whole = hashlib.sha256()
    pieces = []
    with tar_path.open("rb") as f:
        i = 0
        while chunk := f.read(piece_mib << 20):
            whole.update(chunk)
            p = pieces_dir / f"wheels.tar.{i:03d}"
            p.write_bytes(chunk)
            pieces.append({"file": p.name, "bytes": len(chunk), "sha256": hashlib.sha256(chunk).hexdigest()})
            i += 1
    manifest = {"tar_sha256": whole.hexdigest(), "tar_bytes": tar_path.stat().st_size, "pieces": pieces}
    (pieces_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def main() -> None:
    """CLI (see module doc)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dest", type=Path, default=HERE / ".wheels")
    ap.add_argument("--piece-mib", type=int, default=60)
    ap.add_argument("--resolve-only", action="store_true", help="write requirements-device.txt; download nothing")
    args = ap.parse_args()
    args.dest.mkdir(parents=True, exist_ok=True)
    wanted = resolve(args.dest)
    req = HERE / "requirements-device.txt"
    req.write_text(f"# resolved by gather_wheels.py for CPython {PYTHON_VERSION} manylinux x86_64, torch 2.11.0+cu130 "
                   "on the device\n" + "".join(f"{n}=={v}\n" for n, v, _ in wanted))
    print(f"{len(wanted)} wheels -> {req}", flush=True)
    if args.resolve_only:
        return
    wheels = args.dest / "wheels"
    wheels.mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheels), *pip_target_args(),
           "-r", str(req)]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    tar_path = args.dest / "wheels.tar"
    with tarfile.open(tar_path, "w") as tf:
        for w in sorted(wheels.glob("*.whl")):
            tf.add(w, arcname=f"wheels/{w.name}")
    manifest = split(tar_path, args.dest / "pieces", args.piece_mib)
    tar_path.unlink()
    total = sum(p["bytes"] for p in manifest["pieces"]) / 2**20
    print(f"{len(manifest['pieces'])} pieces, {total:.0f} MiB in {args.dest / 'pieces'}; carry one per device call "
          "(see kernels_bench/gpu/README.md)", flush=True)


if __name__ == "__main__":
    main()
