"""Config loading: valid files, and errors that name the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from capdrift_fast.config import load_config, task_name
from capdrift_fast.errors import ConfigError

GOOD = {
    "model": {"path": "./model"},
    "adapters": [{"name": "a1", "path": "./ad/a1", "label": "numeric"}],
    "tasks": [{"benchmark": "gsm8k", "limit": 5}, {"benchmark": "superni", "data": "superni/task828_copa.json"}],
}


def write(tmp_path: Path, data: object) -> Path:
    p = tmp_path / "run.yaml"
    p.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return p


def test_valid_config_resolves_relative_paths(tmp_path):
    (tmp_path / "model").mkdir()
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.model.path == str((tmp_path / "model").resolve())
    assert cfg.adapters[0].path == str((tmp_path / "ad/a1").resolve())
    assert [task_name(t) for t in cfg.tasks] == ["gsm8k", "superni_task828"]
    assert cfg.engine.isolate_base is True


def test_hub_id_is_kept(tmp_path):
    cfg = load_config(write(tmp_path, {**GOOD, "model": {"path": "meta-llama/Llama-3.1-8B"}}))
    assert cfg.model.path == "meta-llama/Llama-3.1-8B"


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"engine": {"max_loras": 0}}, "field engine.max_loras"),
        ({"engine": {"max_lora_rank": 12}}, "field engine.max_lora_rank"),
        ({"sampling": {"temprature": 0.5}}, "field sampling.temprature"),
        ({"adapters": [{"name": "base", "path": "x"}]}, "reserved for the base model"),
        ({"adapters": [{"name": "../evil", "path": "x"}]}, "field adapters.0.name"),
        ({"adapters": [{"name": "a/b", "path": "x"}]}, "field adapters.0.name"),
        ({"adapters": [{"name": "..", "path": "x"}]}, "field adapters.0.name"),
        ({"adapters": [{"name": "a..b", "path": "x"}]}, "field adapters.0.name"),
        ({"adapters": [{"name": "/tmp/x", "path": "x"}]}, "field adapters.0.name"),
        ({"adapters": [{"name": ".hidden", "path": "x"}]}, "field adapters.0.name"),
        ({"adapters": [{"name": "a\\b", "path": "x"}]}, "field adapters.0.name"),
        ({"adapters": [{"name": "x" * 65, "path": "x"}]}, "field adapters.0.name"),
        ({"tasks": [{"benchmark": "gsm8k", "name": "../g"}]}, "field tasks.0.name"),
        ({"run_name": "../../etc"}, "field run_name"),
        ({"on_bad_adapter": "ignore"}, "field on_bad_adapter"),
        ({"data_errors": "drop"}, "field data_errors"),
        ({"parity": {"mode": "exact"}}, "field parity.mode"),
        ({"adapters": [{"name": "a", "path": "x"}, {"name": "a", "path": "y"}]}, "repeated: a"),
        ({"tasks": [{"benchmark": "gsm8kk"}]}, "did you mean 'gsm8k'"),
        ({"tasks": [{"benchmark": "superni"}]}, "superni tasks need `data`"),
        ({"tasks": []}, "field tasks"),
    ],
)
def test_errors_name_file_and_field(tmp_path, patch, needle):
    path = write(tmp_path, {**GOOD, **patch})
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    msg = str(exc.value)
    assert str(path) in msg
    assert needle.lower() in msg.lower(), msg


def test_missing_and_non_yaml_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "model: [unclosed"))
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_unknown_ablation_variant_names_field(tmp_path):
    path = write(tmp_path, {**GOOD, "tasks": [{"benchmark": "superni", "data": "x.json", "definition": "simple"}]})
    with pytest.raises(ConfigError, match=r"field tasks\.0\.definition") as exc:
        load_config(path)
    assert "'original', 'simplified' or 'empty'" in str(exc.value)
