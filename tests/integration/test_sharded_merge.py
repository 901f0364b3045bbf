"""Sharded runs merged equal an unsharded run, on the real CPU engine and data: the demo config (6 samples
per task, base + every demo adapter) run as 3 shards through the session engine, merged, against the session's
unsharded run (``demo_run``): same request ids, tokens and responses, same scores, same matrix and drift
scores. Then everything merge must refuse: a missing shard, a doubled shard, another config, an
unfinished shard, and an output folder holding another run."""

from __future__ import annotations

import json
import shutil

import polars as pl
import pytest
from typer.testing import CliRunner

from capdrift_fast.cli import app
from capdrift_fast.distributed.merge import check_union, merge, read_shard_folder
from capdrift_fast.pipeline.split import ShardSpec
from capdrift_fast.errors import RunDirError
from capdrift_fast.rundir import read_generations

pytestmark = pytest.mark.engine
N = 3


@pytest.fixture(scope="module")
def shard_runs(demo_cfg, engine, hf_reference, tmp_path_factory):
    from capdrift_fast.runner import run

    root = tmp_path_factory.mktemp("sharded")
    results = [run(demo_cfg, root / f"shard-{i}", progress=False, engine=engine, reference=hf_reference,
                   shard=ShardSpec(i, N), report=False) for i in range(N)]
    return root, results


@pytest.fixture(scope="module")
def merged(shard_runs):
    root, results = shard_runs
    return merge([r.run_dir for r in reversed(results)], root / "merged")  # any order


def test_each_shard_is_a_run_folder_of_its_own_requests(shard_runs, demo_run):
    _, results = shard_runs
    ids = []
    for i, r in enumerate(results):
        info = json.loads((r.run_dir / "run.json").read_text())["shard"]
        assert (info["index"], info["count"]) == (i, N) and info["n_plan"] == demo_run.n_requests
        gens = read_generations(r.run_dir / "generations").collect()
        assert sorted(gens["request_id"]) == sorted(pl.read_parquet(r.run_dir / "plan.parquet")["request_id"])
        assert gens.height == info["requests"] == r.n_requests > 0
        assert not (r.run_dir / "matrix.parquet").exists()  # scoring is the merge's
        assert json.loads((r.run_dir / "manifest.json").read_text())["shard"]["index"] == i
        ids += gens["request_id"].to_list()
    assert sorted(ids) == sorted(pl.read_parquet(demo_run.run_dir / "plan.parquet")["request_id"])
    # the split is balanced by expected tokens: no shard above the mean by more than one sample group
    loads = [r.shard["expected_tokens"] for r in results]
    assert max(loads) - min(loads) < max(loads) / N


def test_merged_shards_equal_the_unsharded_run(merged, demo_run):
    key = ["request_id"]
    got = read_generations(merged.run_dir / "generations").collect().sort(key)
    want = read_generations(demo_run.run_dir / "generations").collect().sort(key)
    assert got.height == want.height == demo_run.n_requests
    for col in ("request_id", "adapter", "task", "sample_id", "prompt", "prompt_tokens", "output_token_ids",
                "response", "finish_reason", "output_tokens"):
        assert got[col].to_list() == want[col].to_list(), col

    s_got = pl.read_parquet(merged.run_dir / "scores.parquet")
    s_want = pl.read_parquet(demo_run.run_dir / "scores.parquet")
    metric_cols = [c for c in s_want.columns if c not in ("ttft_s", "finished_at", "run_id")]
    assert s_got.select(metric_cols).sort(key).equals(s_want.select(metric_cols).sort(key))

    order = ["adapter", "task", "metric"]
    m_got = pl.read_parquet(merged.run_dir / "matrix.parquet").sort(order)
    m_want = pl.read_parquet(demo_run.run_dir / "matrix.parquet").sort(order)
    assert m_got.equals(m_want)  # scores, intervals, tests, q-values and suspect flags
    assert not m_got["suspect"].any() and m_got["suspect"].null_count() == 0  # every model checked in some shard
    d_got = pl.read_parquet(merged.run_dir / "drift.parquet").sort("adapter")
    assert d_got.equals(pl.read_parquet(demo_run.run_dir / "drift.parquet").sort("adapter"))
    for name in ("report.md", "report.html", "heatmap.png"):
        assert (merged.run_dir / name).is_file()

    parity = json.loads((merged.run_dir / "parity.json").read_text())
    want_parity = json.loads((demo_run.run_dir / "parity.json").read_text())
    assert parity["status"] == "ok"
    assert {m: v["checked"] for m, v in parity["models"].items()} == \
        {m: v["checked"] for m, v in want_parity["models"].items()}
    man = json.loads((merged.run_dir / "manifest.json").read_text())
    assert man["merged"] and len(man["shards"]) == N and man["output_tokens"] == int(want["output_tokens"].sum())


def test_merge_again_redoes_it(shard_runs, merged):
    root, results = shard_runs
    again = merge([r.run_dir for r in results], root / "merged")
    assert again.run_id != merged.run_id
    assert read_generations(again.run_dir / "generations").collect().height == merged.n_requests


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_merge_refuses_missing_doubled_and_foreign_shards(shard_runs, demo_run, tmp_path):
    root, results = shard_runs
    dirs = [r.run_dir for r in results]
    with pytest.raises(RunDirError, match=r"missing shard\(s\) 2/3"):
        merge(dirs[:2], tmp_path / "m1")
    twin = _copy(dirs[1], tmp_path / "twin")
    with pytest.raises(RunDirError, match=r"shard 1/3 given 2 times: .*shard-1, .*twin"):
        merge([*dirs, twin], tmp_path / "m2")
    with pytest.raises(RunDirError, match="given more than once"):
        merge([*dirs, dirs[0]], tmp_path / "m3")
    with pytest.raises(RunDirError, match="holds an unsharded run"):
        merge([*dirs, demo_run.run_dir], tmp_path / "m4")
    # another config: sampling.max_tokens changed in one shard's config.json
    other = _copy(dirs[2], tmp_path / "other")
    cfg = json.loads((other / "config.json").read_text())
    cfg["sampling"]["max_tokens"] = 7
    (other / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(RunDirError, match=r"another config .*\n  field sampling.max_tokens: was 64, now 7"):
        merge([dirs[0], dirs[1], other], tmp_path / "m5")
    # an unfinished shard: killed before its manifest said complete
    running = _copy(dirs[2], tmp_path / "running")
    man = json.loads((running / "manifest.json").read_text())
    (running / "manifest.json").write_text(json.dumps({**man, "status": "running"}))
    with pytest.raises(RunDirError, match=r"has not finished .* --shard 2/3` again"):
        merge([dirs[0], dirs[1], running], tmp_path / "m6")
    # a shard whose generation file went missing
    lost = _copy(dirs[0], tmp_path / "lost")
    next((lost / "generations").glob("shard-*.arrow")).unlink()
    with pytest.raises(RunDirError, match=r"shard 0/3 .* do not cover its \d+ planned requests exactly once: \d+ missing"):
        merge([lost, dirs[1], dirs[2]], tmp_path / "m7")
    # the merged folder must not be another run
    with pytest.raises(RunDirError, match="not a merge"):
        merge(dirs, demo_run.run_dir)
    assert not (tmp_path / "m1").exists()  # nothing written by a refused merge


def test_union_check_names_doubled_and_missing_requests(shard_runs):
    _, results = shard_runs
    shards = [read_shard_folder(r.run_dir) for r in results]
    full = pl.concat([s.plan for s in shards])
    doubled = shards[1].plan.vstack(shards[0].plan.head(2))
    shards[1].plan = doubled
    with pytest.raises(RunDirError, match=r"2 request\(s\) are planned by more than one shard, e\.g\. '.*' in shards 0, 1"):
        check_union(shards, full)
    shards[1].plan = doubled.head(doubled.height - 5)
    shards[0].plan = shards[0].plan.tail(shards[0].plan.height - 2)
    with pytest.raises(RunDirError, match=r"\d+ planned request\(s\) in no shard"):
        check_union(shards, full)


def test_cli_merge_errors_without_traceback(shard_runs, tmp_path):
    _, results = shard_runs
    out = CliRunner().invoke(app, ["merge", str(results[0].run_dir), "--out", str(tmp_path / "m")])
    assert out.exit_code == 2 and "missing shard(s) 1/3, 2/3" in out.output and "Traceback" not in out.output


def test_resuming_a_shard_folder_as_another_shard_is_refused(shard_runs, merged, demo_cfg, engine, hf_reference):
    from capdrift_fast.runner import run

    _, results = shard_runs
    with pytest.raises(RunDirError, match="holds shard 0/3, not 1/3"):
        run(demo_cfg, results[0].run_dir, progress=False, engine=engine, shard=ShardSpec(1, N))
    with pytest.raises(RunDirError, match="resume it with --shard 0/3"):
        run(demo_cfg, results[0].run_dir, progress=False, engine=engine)
    root = results[0].run_dir.parent
    with pytest.raises(RunDirError, match="holds a merge of shard folders"):
        run(demo_cfg, root / "merged", progress=False, engine=engine)
    # the same shard again: everything is on disk, nothing is generated
    again = run(demo_cfg, results[0].run_dir, progress=False, engine=engine, reference=hf_reference,
                shard=ShardSpec(0, N), report=False)
    assert again.n_generated == 0 and again.state.resumed


def test_merge_refuses_a_folder_in_use(shard_runs, tmp_path):
    """One writer per run folder: a merge into a folder another process holds is refused at once,
    naming that process; once it is gone the merge goes through."""
    import subprocess
    import sys

    _, results = shard_runs
    out = tmp_path / "merged"
    hold = ("import sys, time\nfrom capdrift_fast.rundir.lock import run_folder_lock\n"
            "with run_folder_lock(sys.argv[1], 'capdrift merge'):\n    print('held', flush=True)\n    time.sleep(120)\n")
    p = subprocess.Popen([sys.executable, "-c", hold, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "held"
        with pytest.raises(RunDirError, match=rf"in use by another capdrift process \(pid {p.pid} .*`capdrift merge`"):
            merge([r.run_dir for r in results], out, report=False)
        assert not (out / "generations").exists()
    finally:
        p.kill()
        p.wait()
    assert merge([r.run_dir for r in results], out, report=False).n_requests > 0
