"""Benchmark bookkeeping without engines: cells, records, ratios, the boot model, wheel pieces, stubs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kernels_bench.e2e import (Setup, cells, finish_record, load_prompts, merge, model_boot_per_adapter, parse_args,
                               summarize)


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


def test_merge_combines_runs_and_recomputes_ratios_across_them(tmp_path):
    meta = {"benchmark": "e2e", "shape": "tiny", "dtype": "float32", "device": "cpu",
            "request_set": {"prompts": 2, "max_tokens": 4}, "host_before": {}, "host_after": {}}
    first = tmp_path / "a.json"
    second = tmp_path / "b.json"
    first.write_text(json.dumps(meta | {"records": [rec("ours", 4, 16, [2.0], boot=2.0),
                                                    rec("base_only", 4, "none", [1.0], boot=1.0)]}))
    second.write_text(json.dumps(meta | {"records": [rec("ours_vllm_ops", 4, 16, [6.0], boot=2.0),
                                                     rec("base_only", 4, "none", [0.5], boot=1.0)]}))
    out = tmp_path / "merged.json"
    merged = merge([first, second], out)
    assert json.loads(out.read_text())["summary"] == merged["summary"] and out.with_suffix(".png").is_file()
    by = {r["mode"]: r for r in merged["summary"]}
    assert set(by) == {"ours", "base_only", "ours_vllm_ops"}
    assert by["ours_vllm_ops"]["ours_speedup_gen"] == 3.0  # ours from the other file
    assert by["base_only"]["gen_s"] == 0.5 and len(merged["records"]) == 3  # the later re-run replaces
    assert by["ours"]["fraction_of_base_ceiling_gen"] == 0.25
    assert [m["file"] for m in merged["merged_from"]] == [str(first), str(second)]


def test_merge_remodels_boot_per_adapter_from_all_measured_boots(tmp_path):
    meta = {"benchmark": "e2e", "shape": "tiny", "dtype": "float32", "device": "cpu",
            "request_set": {"prompts": 2, "max_tokens": 4}, "host_before": {}, "host_after": {}}
    gpa = rec("generate_per_adapter", 16, 16, [10.0], boot=1.0)
    old = model_boot_per_adapter([rec("boot_per_adapter", 1, 16, [1.0], boot=8.0, each_boot_s=[8.0, 8.0]), gpa])
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps(meta | {"records": [gpa, *old]}))
    second.write_text(json.dumps(meta | {"records": [
        rec("boot_per_adapter", 4, 8, [1.0], boot=2.0, each_boot_s=[2.0] * 5)]}))
    merged = merge([first, second], tmp_path / "m.json")
    (m,) = [r for r in merged["records"] if r.get("modelled")]
    assert m["boot_s"] == 17 * 2.0  # median of the second file's boots, not the first file's stale model


def test_setup_json_roundtrip(tmp_path):
    s = Setup(model=tmp_path / "m", adapters=[tmp_path / "a"], prompts=["p"], max_tokens=4, rank=8, dtype="float32",
              device="cpu", max_num_seqs=8, max_loras=1, max_model_len=64, kv_cache_gib=None, enforce_eager=True)
    assert Setup.from_json(s.to_json()) == s
    assert s.n_requests == 2


def test_load_prompts_reads_gsm8k(data_dir):
    ps = load_prompts(data_dir, 3)
    assert len(ps) == 3 and all(p.startswith("Question: ") and p.endswith("\nAnswer:") for p in ps)


def test_peak_rss_is_the_workers_own_not_the_parents(tmp_path):
    """Workers are measured in fresh processes; Linux's ru_maxrss carries a large parent's peak over
    fork + exec, so the benchmark reads VmHWM (kernels_bench/memory.py under run_all)."""
    from kernels_bench.common import peak_rss_mib

    ballast = bytearray(400 * 2**20)  # touched: 400 MiB resident in this (parent) process
    ballast[:: 4096] = b"x" * len(ballast[:: 4096])
    code = "import resource; from kernels_bench.common import peak_rss_mib; " \
           "print(peak_rss_mib(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2]).stdout.split()
    child_peak, child_ru_maxrss = float(out[0]), float(out[1])
    assert peak_rss_mib() > 400
    assert child_peak < 200, (child_peak, child_ru_maxrss)
    del ballast
