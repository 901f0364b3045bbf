"""Benchmark bookkeeping without engines: cells, records, ratios, the boot model, wheel pieces, stubs."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from kernels_bench.e2e import Setup, cells, finish_record, load_prompts, model_boot_per_adapter, parse_args, summarize


def rec(mode, n, rank, gens, boot, tokens=100, **kw):
    return finish_record({"mode": mode, "n_adapters": n, "rank": rank, "requests": 10, "gen_s_reps": gens,
                          "boot_s": boot, "boots": 1, "output_tokens": tokens, "loadavg_before": [1.0, 1.0, 1.0], **kw})


def test_default_cells_cross_n_with_rank16_and_sweep_ranks_at_16():
    got = cells(parse_args([]))
    assert got == sorted([(n, 16) for n in (1, 4, 16, 32, 64)] + [(16, 8), (16, 64)])
    full = cells(parse_args(["--full"]))
    assert len(full) == 15 and (64, 64) in full and (1, 8) in full
    assert cells(parse_args(["--quick"])) == [(1, 16), (4, 16)]


def test_finish_record_uses_median_and_boot():
    r = rec("ours", 4, 16, [3.0, 1.0, 2.0], boot=5.0, tokens=140)
    assert r["gen_s"] == 2.0 and r["wall_s"] == 7.0 and r["reps"] == 3
    assert r["tokens_per_s_gen"] == 70.0 and r["tokens_per_s_wall"] == 20.0
    measured = rec("boot_per_adapter", 1, 16, [2.0], boot=9.0, wall_s_reps=[12.0])
    assert measured["wall_s"] == 12.0


def test_summary_ratios_against_ours_and_base_ceiling():
    rows = summarize([
        rec("ours", 4, 16, [2.0], boot=2.0), rec("generate_per_adapter", 4, 16, [8.0], boot=2.0),
        rec("base_only", 4, "none", [1.0], boot=1.0),
    ])
    by = {r["mode"]: r for r in rows}
    assert by["generate_per_adapter"]["ours_speedup_gen"] == 4.0
    assert by["generate_per_adapter"]["ours_speedup_wall"] == 2.5
    assert by["ours"]["fraction_of_base_ceiling_gen"] == 0.5
    assert by["ours"]["fraction_of_base_ceiling_wall"] == pytest.approx(2.0 / 4.0)
    assert "ours_speedup_wall" not in by["base_only"]


def test_boot_per_adapter_is_modelled_from_measured_boots():
    measured = rec("boot_per_adapter", 1, 16, [2.0], boot=10.0, wall_s_reps=[12.0], each_boot_s=[4.0, 6.0])
    gpa = rec("generate_per_adapter", 32, 16, [30.0], boot=5.0)
    (m,) = model_boot_per_adapter([measured, gpa, rec("generate_per_adapter", 1, 16, [2.0], boot=5.0)])
    assert m["modelled"] and m["n_adapters"] == 32
    assert m["boot_s"] == 33 * 5.0 and m["gen_s"] == 30.0 and m["wall_s"] == 33 * 5.0 + 30.0
    assert model_boot_per_adapter([gpa]) == []


def test_setup_json_roundtrip(tmp_path):
    s = Setup(model=tmp_path / "m", adapters=[tmp_path / "a"], prompts=["p"], max_tokens=4, rank=8, dtype="float32",
              device="cpu", max_num_seqs=8, max_loras=1, max_model_len=64, kv_cache_gib=None, enforce_eager=True)
    assert Setup.from_json(s.to_json()) == s
    assert s.n_requests == 2


def test_load_prompts_reads_gsm8k(data_dir):
    ps = load_prompts(data_dir, 3)
    assert len(ps) == 3 and all(p.startswith("Question: ") and p.endswith("\nAnswer:") for p in ps)


def test_pieces_split_check_join_roundtrip(tmp_path):
    from kernels_bench.gpu.gather_wheels import split

    tar = tmp_path / "w.tar"
    tar.write_bytes(bytes(range(256)) * 9000)  # ~2.2 MiB
    stage = tmp_path / "pieces"
    manifest = split(tar, stage, piece_mib=1)
    assert len(manifest["pieces"]) == 3
    script = Path(__file__).resolve().parents[2] / "kernels_bench" / "gpu" / "pieces.py"
    ok = subprocess.run([sys.executable, str(script), "check", str(stage)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout
    joined = tmp_path / "joined.tar"
    subprocess.run([sys.executable, str(script), "join", str(stage), str(joined)], check=True, capture_output=True)
    assert joined.read_bytes() == tar.read_bytes()
    (stage / "wheels.tar.001").write_bytes(b"corrupt")
    bad = subprocess.run([sys.executable, str(script), "check", str(stage)], capture_output=True, text=True)
    assert bad.returncode == 4
    (stage / "wheels.tar.001").unlink()
    missing = subprocess.run([sys.executable, str(script), "join", str(stage), str(joined)], capture_output=True)
    assert missing.returncode == 3


def test_stub_wheel_is_a_valid_dependency_free_wheel(tmp_path):
    from kernels_bench.gpu.gather_wheels import make_stub_wheel

    path = make_stub_wheel(tmp_path, "torch", "2.11.0+cu130")
    assert path.name == "torch-2.11.0+cu130-py3-none-any.whl"
    with zipfile.ZipFile(path) as zf:
        meta = zf.read("torch-2.11.0+cu130.dist-info/METADATA").decode()
        assert "Name: torch" in meta and "Requires-Dist" not in meta
        assert "torch-2.11.0+cu130.dist-info/RECORD" in zf.namelist()


def test_requirements_device_pins_vllm_and_leaves_out_torch():
    req = (Path(__file__).resolve().parents[2] / "kernels_bench" / "gpu" / "requirements-device.txt").read_text()
    names = {line.split("==")[0] for line in req.splitlines() if "==" in line}
    assert "vllm" in names and "flashinfer-python" in names and "xgrammar" in names and "polars" in names
    assert not names & {"torch", "triton", "nvidia-cuda-runtime", "nvidia-cuda-nvrtc"}
    assert json.dumps(sorted(names))  # plain names
