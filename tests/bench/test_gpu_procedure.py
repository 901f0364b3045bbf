"""The GPU procedure's pieces that can be checked without a GPU or network (kernels_bench/gpu/).

The carried set and the budget are checked on what ``gather_wheels.py`` recorded in
``kernels_bench/gpu/carried.json`` (committed; the wheels themselves are git-ignored); the CPU
rehearsal's output on ``kernels_bench/gpu/rehearsal_cpu.json``.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from kernels_bench.gpu import bench_gpu, budget, gather_wheels, pieces

GPU = Path(__file__).resolve().parents[2] / "kernels_bench" / "gpu"


# ------------------------------------------------------------------------------------- the carried set
def test_requirements_pin_one_version_each_and_shadow_nothing_on_the_image():
    lines = [ln.split("#")[0].strip() for ln in (GPU / "requirements-device.txt").read_text().splitlines()]
    names = [gather_wheels.canon(ln.split("==")[0]) for ln in lines if ln]
    assert len(names) == len(set(names)), "a package pinned twice"
    assert all("==" in ln for ln in lines if ln), "every carried package pinned to one version"
    pins = gather_wheels.read_pins(GPU / "requirements-device.txt")
    image = gather_wheels.read_pins(GPU / "image-packages.txt")
    assert pins["vllm"] == "0.26.0" and image["torch"] == "2.11.0"
    assert not set(pins) & set(image), f"carried but on the image (would shadow it): {set(pins) & set(image)}"
    # what the benchmark imports besides vLLM, from the image or carried
    for name in ("polars", "pydantic", "pyarrow", "peft", "transformers", "safetensors", "tokenizers"):
        assert name in pins or name in image, name


BENCH_MODULES = ("capdrift_fast.engines.vllm_engine", "capdrift_fast.engines.hf_reference", "capdrift_fast.rundir",
                 "capdrift_fast.pipeline.plan", "capdrift_fast.benchmarks", "capdrift_fast.config", "capdrift_fast.pipeline.parity",
                 "kernels_bench.e2e", "kernels_bench.assets", "kernels_bench.gpu.bench_gpu")


def test_what_the_bench_imports_of_capdrift_fast_is_on_the_image_or_carried():
    """The package's import surface on the bench's path (besides vLLM, imported lazily) must be met on
    the device: a new module-level dependency of capdrift_fast fails here, not after a GPU call."""
    code = ("import sys, json, importlib, importlib.metadata as md\n"
            "before = {m.split('.')[0] for m in sys.modules}\n"
            f"for m in {BENCH_MODULES!r}: importlib.import_module(m)\n"
            "tops = {m.split('.')[0] for m in sys.modules} - before - set(sys.stdlib_module_names)\n"
            "p2d = md.packages_distributions()\n"
            "print(json.dumps(sorted({d for t in tops if not t.startswith('_') for d in p2d.get(t, [])})))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=GPU.parents[1]).stdout
    dists = {gather_wheels.canon(d) for d in json.loads(out.strip().splitlines()[-1])} - {"capdrift-fast"}
    assert "polars" in dists and "pydantic" in dists  # the check sees the package's real imports
    on_device = set(gather_wheels.read_pins(GPU / "image-packages.txt")) | set(
        gather_wheels.read_pins(GPU / "requirements-device.txt"))
    assert not dists - on_device, f"imported by the bench, neither on the image nor carried: {dists - on_device}"


def test_carried_set_fits_the_calls_and_the_budget():
    rec = json.loads((GPU / "carried.json").read_text())
    assert rec["check"]["ok"] and not rec["check"]["unmet"] and not rec["check"]["duplicates"]
    sizes = [p["mib"] for p in rec["pieces"]]
    assert len(sizes) == rec["calls"] <= 3
    assert all(s + rec["tree_mib"] <= budget.CALL_MIB for s in sizes)
    assert abs(sum(sizes) - rec["carried_mib"]) < 0.5
    plan = budget.plan(rec["calls"], sizes, rec["tree_mib"])
    assert plan["fits"], plan["problems"]
    assert plan["total_s"] <= budget.BUDGET_S <= budget.DEVICE_BUDGET_S
    assert all(c["seconds"] <= budget.CALL_LIMIT_S + budget.START_S for c in plan["calls"])
    assert plan["bench_s"] >= sum(bench_gpu.ESTIMATE_S[s] for s in ("ours", "base_only", "parity"))


def test_budget_refuses_the_old_nineteen_piece_procedure_and_oversized_pieces():
    old = budget.plan(19, [60.0] * 19, 2.4)
    assert not old["fits"] and old["bench_s"] < 0
    big = budget.plan(2, [63.0, 20.0], 2.4)
    assert not big["fits"] and any("carries" in p for p in big["problems"])


def test_bin_pack_respects_the_cap_and_puts_first_units_in_piece_zero():
    sizes = {"a": 50, "b": 30, "c": 20, "d": 9, "data": 1}
    out = gather_wheels.bin_pack(sizes, 60, first=("data",))
    assert out[0][0] == "data"
    assert sorted(u for p in out for u in p) == sorted(sizes)
    assert all(sum(sizes[u] for u in p) <= 60 for p in out)
    assert len(out) == 2
    with pytest.raises(ValueError, match="larger than one piece"):
        gather_wheels.bin_pack({"huge": 61}, 60)


def _dist(site: Path, name: str, version: str, requires: list[str]) -> None:
    d = site / f"{name.replace('-', '_')}-{version}.dist-info"
    d.mkdir(parents=True)
    meta = [f"Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"] + [f"Requires-Dist: {r}" for r in requires]
    (d / "METADATA").write_text("\n".join(meta) + "\n")


def test_check_site_finds_unmet_conflicting_duplicate_and_shadowing(tmp_path):
    site = tmp_path / "site"
    _dist(site, "alpha", "1.0", ["numpy>=2", "beta", "gamma", "delta; python_version < '3.10'", "eps; extra == 'x'"])
    _dist(site, "beta", "2.0", ["numpy<2.4"])
    image = {"numpy": "2.5.2", "torch": "2.11.0", "zeta": None}
    rep = gather_wheels.check_site(site, image, never_imported=frozenset(), wanted={"alpha": "1.0"}, accepted={})
    assert rep["unmet"] == ["gamma"]  # delta and eps are excluded by their markers on the device
    assert rep["version_conflicts"] == ["beta needs numpy<2.4, has 2.5.2"]
    assert not rep["ok"]
    ok = gather_wheels.check_site(site, image, never_imported=frozenset({"gamma"}), wanted={"alpha": "1.0"},
                                  accepted={("beta", "numpy"): "tested"})
    assert ok["ok"] and ok["left_out"] == ["gamma"]
    _dist(site, "beta", "2.1", [])
    _dist(site, "zeta", "1.0", [])
    rep = gather_wheels.check_site(site, image, never_imported=frozenset({"gamma"}), accepted={("beta", "numpy"): "t"},
                                   wanted={"alpha": "1.0", "omega": "1"})
    assert rep["duplicates"] == ["beta"] and rep["shadowing"] == ["zeta"] and rep["missing_wanted"] == ["omega"]
    assert not rep["ok"]


# ------------------------------------------------------------------------------------- receiving pieces
def _unit(path: Path, files: dict[str, bytes]) -> dict:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    path.write_bytes(buf.getvalue())
    return {"file": path.name, "bytes": path.stat().st_size, "raw_bytes": 0,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "into": "site"}


def test_pieces_are_verified_unpacked_and_counted(tmp_path):
    src = tmp_path / "src"
    (src / "p00").mkdir(parents=True)
    (src / "p01").mkdir()
    u0 = _unit(src / "p00" / "a.tar.xz", {"pkg_a/__init__.py": b"A = 1\n"})
    u1 = _unit(src / "p01" / "b.tar.xz", {"pkg_b/__init__.py": b"B = 2\n"})
    manifest = {"pieces": [{"dir": "p00", "units": [u0], "bytes": u0["bytes"]},
                           {"dir": "p01", "units": [u1], "bytes": u1["bytes"]}]}
    for p in ("p00", "p01"):
        (src / p / "manifest.json").write_text(json.dumps(manifest))
    stage, site = tmp_path / "stage", tmp_path / "site"
    call1, call2 = tmp_path / "call1", tmp_path / "call2"
    (call1).mkdir()
    (src / "p00").rename(call1 / "p00")
    assert pieces.receive(call1, stage, site) == 3  # p01 still missing
    assert (site / "pkg_a" / "__init__.py").read_text() == "A = 1\n"
    call2.mkdir()
    (src / "p01").rename(call2 / "p01")
    (call2 / "p01" / "b.tar.xz").write_bytes(b"corrupt")
    assert pieces.receive(call2, stage, site) == 4
    _unit(call2 / "p01" / "b.tar.xz", {"pkg_b/__init__.py": b"B = 2\n"})
    assert pieces.receive(call2, stage, site) == 0
    assert (site / "pkg_b" / "__init__.py").is_file()
    assert pieces.receive(call2, stage, site) == 0  # a piece left on the warm machine is not unpacked twice


# ------------------------------------------------------------------------------------- the bench driver
def test_guard_plans_steps_in_priority_order_within_the_deadline():
    est = bench_gpu.ESTIMATE_S
    assert bench_gpu.plan_steps(bench_gpu.STEPS, 0, 10_000, est) == list(bench_gpu.STEPS)
    assert bench_gpu.plan_steps(bench_gpu.STEPS, 0, est["ours"] + est["base_only"], est) == ["ours", "base_only"]
    # a step that does not fit is skipped and the next ones are tried
    assert bench_gpu.plan_steps(bench_gpu.STEPS, 0, est["base_only"] + est["parity"], est) == ["base_only", "parity"]
    assert bench_gpu.STEPS[:3] == ("ours", "base_only", "parity")


def test_summary_ratios_and_modelled_boot_per_adapter():
    steps = {
        "ours": {"cold_boot_s": 80.0, "ours": {"tok_s": 20_000.0, "ttft_median_s": 0.5, "ttft_p90_s": 1.0},
                 "generate_per_adapter": {"tok_s": 5_000.0, "gen_s": 50.0, "output_tokens": 250_000},
                 "gpu_mem_peak_mib": 120_000},
        "base_only": {"base_only": {"tok_s": 25_000.0}},
        "ours_eager": {"ours": {"tok_s": 10_000.0}},
        "boot": {"boot_s": 40.0},
    }
    s = bench_gpu.summarize(steps, n=32)
    assert s["ours_over_base_only"] == pytest.approx(0.8)
    assert s["ours_over_generate_per_adapter"] == pytest.approx(4.0)
    assert s["cuda_graphs_on_over_off"] == pytest.approx(2.0)
    assert s["boot_per_adapter"]["wall_s"] == pytest.approx(33 * 40.0 + 50.0)
    assert s["boot_per_adapter"]["boot_source"].startswith("boot step")
    del steps["boot"]
    s = bench_gpu.summarize(steps, n=32)
    assert s["boot_per_adapter"]["wall_s"] == pytest.approx(33 * 80.0 + 50.0)  # falls back to ours' cold boot
    assert s["parity_verdict"] is None and s["ours_over_boot_per_adapter_modelled"] > 1


def test_cpu_rehearsal_output_has_every_step_and_the_summary():
    doc = json.loads((GPU / "rehearsal_cpu.json").read_text())
    bench = doc["bench"]
    assert set(bench_gpu.SCHEMA_KEYS) <= set(bench)
    assert [k for k in bench["steps"]] == list(bench_gpu.STEPS)
    assert all(v["status"] == "ok" for v in bench["steps"].values()), {k: v["status"] for k, v in bench["steps"].items()}
    summ = bench["summary"]
    for key in ("ours", "ours_eager", "base_only", "generate_per_adapter", "boot_per_adapter_modelled"):
        assert summ["tok_s"][key] > 0, key
    assert bench["steps"]["base_only"]["base_only"]["prefix_caching"] is False
    par = bench["steps"]["parity"]["parity"]
    assert par["mode"] == "logprob" and par["isolate_base"] is False
    assert set(par["models"]) == {"base", *[f"a{i:03d}-r{bench['config']['rank']}" for i in range(par["max_loras"])]}
    assert summ["parity_verdict"]
    assert doc["calls"] == len(doc["call_logs"]) and all(c["rc"] == 0 for c in doc["call_logs"])


def test_device_script_parses():
    subprocess.run(["bash", "-n", str(GPU / "device.sh")], check=True)
