"""A task written only as YAML, in a folder outside the package, runs end to end through the real CPU engine
(base + the demo adapters) and appears in the matrix and the report."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import yaml

from capdrift_fast.config import load_config
from capdrift_fast.runner import run

pytestmark = pytest.mark.engine

TASK = """
benchmark: template
name: capitals
data: capitals.jsonl
prompt: "Q: What is the capital of {{ country }}?\\nA:"
target: capital
stop: ["\\n"]
max_tokens: 6
metrics: [exact_match, {metric: contains, ignore_case: true}]
"""


def test_yaml_task_end_to_end(tmp_path: Path, demo_cfg, engine, hf_reference):
    tasks = tmp_path / "my_tasks"
    tasks.mkdir()
    rows = [{"country": f"country{i}", "capital": f"city{i}"} for i in range(20)]
    (tasks / "capitals.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tasks / "capitals.yaml").write_text(TASK)
    raw = json.loads(demo_cfg.model_dump_json())
    raw.update(run_name="yaml", task_paths=[str(tasks)], tasks=["capitals"])
    cfg_path = tmp_path / "run.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    cfg = load_config(cfg_path)

    result = run(cfg, tmp_path / "out", progress=False, engine=engine, reference=hf_reference)
    matrix = pl.read_parquet(result.run_dir / "matrix.parquet")
    models = ["base"] + [a.name for a in cfg.adapters]
    assert len(models) >= 3  # base + at least 2 adapters
    cells = matrix.filter(pl.col("task") == "capitals")
    assert sorted(cells["adapter"].unique().to_list()) == sorted(models)
    assert set(cells["metric"]) == {"exact_match", "contains"} and set(cells["n"]) == {20}
    scores = pl.read_parquet(result.run_dir / "scores.parquet")
    assert scores.height == 20 * len(models)
    report = (result.run_dir / "report.md").read_text()
    assert "capitals" in report and "contains" in report

    broken = TASK.replace("[exact_match,", "[exact_mach,")
    (tasks / "capitals.yaml").write_text(broken)
    from capdrift_fast.errors import ConfigError

    with pytest.raises(ConfigError, match="Did you mean 'exact_match'"):
        load_config(cfg_path)  # refused while loading the config: no engine is involved
