"""Registries: plugins through the entry-point groups, did-you-mean for unknown names."""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from capdrift_fast import registry
from capdrift_fast.errors import UnknownNameError

PLUGIN = '''
from pathlib import Path
from typing import Literal

import polars as pl

from capdrift_fast.benchmarks.base import Benchmark, MetricSpec, NoLabelSpace
from capdrift_fast.config import TaskConfigBase
from capdrift_fast.metrics.base import Metric


class EchoConfig(TaskConfigBase):
    benchmark: Literal["echo_bench"]
    words: int = 3


class EchoTask(NoLabelSpace):
    benchmark, version, stop, num_fewshot = "echo_bench", "0.1", (), 0
    metrics = (MetricSpec("echoed", "the response repeats the prompt's first word", primary=True),)

    def __init__(self, cfg):
        self.name, self.words = cfg.task_name(), cfg.words

    def samples(self):
        return pl.DataFrame({"sample_id": [str(i) for i in range(self.words)],
                             "prompt": [f"word{i}" for i in range(self.words)],
                             "target": [f"word{i}" for i in range(self.words)]})

    def score(self, generations):
        return generations.select("request_id", echoed=(pl.col("response").str.strip_chars() == pl.col("target"))
                                  .cast(pl.Float64))


class EchoBench(Benchmark):
    name, config_model, target_label = "echo_bench", EchoConfig, "echo"

    @classmethod
    def build(cls, cfg, data_dir, errors):
        return EchoTask(cfg)


class Shouts(Metric):
    description = "the response is upper case"

    def score(self, frame):
        return frame.select((pl.col("response") == pl.col("response").str.to_uppercase()).cast(pl.Float64)).to_series()
'''


@pytest.fixture
def plugin_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A separate package, ``capdrift_echo_plugin``, installed the way pip would leave it: its module and a
    dist-info with ``entry_points.txt`` on ``sys.path`` (no install step, works from a clean clone)."""
    (tmp_path / "capdrift_echo_plugin.py").write_text(textwrap.dedent(PLUGIN))
    info = tmp_path / "capdrift_echo_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: capdrift-echo-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[capdrift_fast.benchmarks]\necho_bench = capdrift_echo_plugin:EchoBench\n\n"
        "[capdrift_fast.metrics]\nshouts = capdrift_echo_plugin:Shouts\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    fresh_b = registry.Registry("benchmark", registry.BENCHMARK_GROUP)
    fresh_m = registry.Registry("metric", registry.METRIC_GROUP)
    fresh_b._items, fresh_m._items = dict(registry.benchmarks.items()), dict(registry.metrics.items())
    monkeypatch.setattr(registry, "benchmarks", fresh_b)
    monkeypatch.setattr(registry, "metrics", fresh_m)
    yield
    sys.modules.pop("capdrift_echo_plugin", None)


def test_entry_point_benchmark_and_metric_usable_by_name(plugin_on_path, tmp_path: Path):
    from capdrift_fast.benchmarks import build_task
    from capdrift_fast.config import default_targets, load_config

    assert "echo_bench" in registry.benchmarks.names() and "shouts" in registry.metrics.names()
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"model": {"path": str(tmp_path)},
                                    "tasks": [{"benchmark": "echo_bench", "words": 2}]}))
    cfg = load_config(path)
    task = build_task(cfg.tasks[0], tmp_path)
    assert task.name == "echo_bench" and task.samples().height == 2
    assert default_targets()["echo"] == ("echo_bench",)  # its declared target label
    shouts = registry.metrics.get("shouts")()
    import polars as pl

    assert shouts.score(pl.DataFrame({"response": ["AB", "ab"]})).to_list() == [1.0, 0.0]


def test_unknown_names_suggest():
    with pytest.raises(UnknownNameError, match=r"unknown benchmark 'gsm8'. Did you mean 'gsm8k'\?"):
        registry.benchmarks.get("gsm8")
    with pytest.raises(UnknownNameError, match=r"Did you mean 'rougeL'\?.*Available: .*exact_match"):
        registry.metrics.get("rougel")
