"""Tasks declared in YAML (the ``template`` benchmark): the shipped configs/tasks re-express built-in tasks
exactly, metric options behave as lm-eval's, and bad YAML is refused before any engine starts."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import yaml
from polars.testing import assert_frame_equal

from capdrift_fast.benchmarks import build_task
from capdrift_fast.benchmarks.gsm8k import GSM8KTaskConfig
from capdrift_fast.benchmarks.superni import SuperNITaskConfig
from capdrift_fast.benchmarks.template import TemplateTaskConfig
from capdrift_fast.config import expand_task, load_config
from capdrift_fast.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[2]
TASKS = REPO / "configs" / "tasks"
FIXTURE = REPO / "tests" / "fixtures" / "run_0_1_0"


def _template(name: str, **overrides) -> TemplateTaskConfig:
    raw = expand_task({"include": name, **overrides}, [TASKS], TASKS)
    return TemplateTaskConfig.model_validate(raw)


def _responses(task: str) -> pl.DataFrame:
    """The demo run's real generations (committed 0.1.0 fixture) of one task, every model."""
    gens = pl.read_ipc(next((FIXTURE / "generations").glob("*.arrow")))
    for f in sorted((FIXTURE / "generations").glob("*.arrow"))[1:]:
        gens = pl.concat([gens, pl.read_ipc(f)])
    return gens.filter(pl.col("task") == task).select("request_id", "sample_id", "response")


def _score(task, samples: pl.DataFrame, gens: pl.DataFrame) -> pl.DataFrame:
    return task.score(gens.join(samples.drop("prompt"), on="sample_id", how="left")).sort("request_id")


def test_superni_template_equals_builtin(data_dir: Path):
    builtin = build_task(SuperNITaskConfig(benchmark="superni", data="superni/task828_copa_commonsense_cause_effect.json",
                                           limit=24), data_dir)
    tpl = build_task(_template("superni_task828_template.yaml", limit=24), data_dir)
    a, b = builtin.samples(), tpl.samples()
    assert_frame_equal(a, b)  # same ids, prompts, targets and label space
    gens = _responses("superni_task828")
    assert gens.height == 4 * 24
    assert_frame_equal(_score(builtin, a, gens), _score(tpl, b, gens))
    assert builtin.random_baseline(a) == tpl.random_baseline(b) and tpl.has_label_space
    assert [m.name for m in tpl.metrics] == [m.name for m in builtin.metrics]
    assert [m.binary for m in tpl.metrics] == [m.binary for m in builtin.metrics]


def test_gsm8k_template_equals_builtin(data_dir: Path, tmp_path: Path):
    builtin = build_task(GSM8KTaskConfig(benchmark="gsm8k", limit=24), data_dir)
    tpl = build_task(_template("gsm8k_template.yaml", limit=24), data_dir)
    a, b = builtin.samples(), tpl.samples()
    assert_frame_equal(a.select("sample_id", "prompt"), b.select("sample_id", "prompt"))
    gens = _responses("gsm8k")
    assert_frame_equal(_score(builtin, a, gens), _score(tpl, b, gens))
    # the builtin's first_n few-shot from a train file is the template's first_n sampler over that file
    train = tmp_path / "train.jsonl"
    lines = (data_dir / "gsm8k" / "test.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    train.write_text("".join(lines[200:205]), encoding="utf-8")
    shots = build_task(GSM8KTaskConfig(benchmark="gsm8k", limit=3, num_fewshot=2, fewshot_data=str(train),
                                       fewshot_sampler="first_n", fewshot_as_multiturn=False), data_dir).samples()
    tshots = build_task(_template("gsm8k_template.yaml", limit=3, num_fewshot=2,
                                  fewshot={"sampler": "first_n", "data": str(train)}), data_dir).samples()
    assert_frame_equal(shots.select("sample_id", "prompt"), tshots.select("sample_id", "prompt"))


def test_gsm8k_variant_draws_seeded_shots(data_dir: Path):
    one = build_task(_template("gsm8k_5shot.yaml", limit=4), data_dir).samples()
    again = build_task(_template("gsm8k_5shot.yaml", limit=4), data_dir).samples()
    other = build_task(_template("gsm8k_5shot.yaml", limit=4, fewshot={"seed": 7}), data_dir).samples()
    assert_frame_equal(one, again)
    assert one["prompt"][0] != other["prompt"][0]
    assert one["prompt"][0].count("Question:") == 6 and one["prompt"][0].endswith("Answer:")


def _frame(response: list[str], target: list[list[str]]) -> pl.DataFrame:
    return pl.DataFrame({"request_id": [str(i) for i in range(len(response))], "response": response, "target": target},
                        schema={"request_id": pl.Utf8, "response": pl.Utf8, "target": pl.List(pl.Utf8)})


@pytest.mark.parametrize("options, response, target, expected", [
    ({}, "Paris", ["Paris"], 1.0),
    ({}, "paris", ["Paris"], 0.0),
    ({"ignore_case": True}, "paris", ["Paris"], 1.0),
    ({"ignore_punctuation": True}, "Paris.", ["Paris"], 1.0),
    ({"ignore_case": True}, "Paris.", ["Paris"], 0.0),
    ({"regexes_to_ignore": [",", r"\$"]}, "$1,000", ["1000"], 1.0),
    ({}, "b", ["a", "b"], 1.0),  # any acceptable target
    ({"ignore_case": True}, "İ", ["i̇"], 1.0),  # Python's str.lower (U+0130 -> i + combining dot)
])
def test_exact_match_options_as_lm_eval(options, response, target, expected):
    from capdrift_fast.registry import metrics

    metric = metrics.get("exact_match").model_validate(options)
    assert metric.score(_frame([response], [target])).to_list() == [expected]


def test_regex_contains_numeric():
    from capdrift_fast.registry import metrics

    rx = metrics.get("regex_match").model_validate({"pattern": r"answer is (\w+)", "ignore_case": True})
    assert rx.score(_frame(["The answer is YES.", "no idea"], [["yes"], ["no"]])).to_list() == [1.0, 0.0]
    assert metrics.get("contains").model_validate({}).score(_frame(["it is Paris"], [["Paris"]])).to_list() == [1.0]
    num = metrics.get("numeric_match").model_validate({"extract": "strict"})
    assert num.score(_frame(["so #### 1,000", "1000"], [["x #### 1000"], ["#### 1000"]])).to_list() == [1.0, 0.0]


def _run_config(tmp_path: Path, task: dict | str, **extra) -> Path:
    cfg = {"model": {"path": str(tmp_path)}, "tasks": [task], **extra}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_typo_in_metric_is_refused_with_did_you_mean(tmp_path: Path):
    (tmp_path / "qa.jsonl").write_text('{"q": "a", "a": "b"}\n')
    task = {"benchmark": "template", "name": "qa", "data": str(tmp_path / "qa.jsonl"), "prompt": "{{ q }}",
            "target": "a", "metrics": ["exact_mach"]}
    with pytest.raises(ConfigError) as exc:
        load_config(_run_config(tmp_path, task))
    msg = str(exc.value)
    assert "field tasks.0.metrics" in msg and "Did you mean 'exact_match'" in msg and "Available:" in msg


def test_unknown_benchmark_and_bad_template_are_config_errors(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"field tasks\.0\.benchmark: unknown benchmark 'templat'\. Did you mean 'template'"):
        load_config(_run_config(tmp_path, {"benchmark": "templat"}))
    bad = {"benchmark": "template", "name": "qa", "data": "x.jsonl", "prompt": "{{ q", "target": "a",
           "metrics": ["exact_match"]}
    with pytest.raises(ConfigError, match="prompt is not a valid Jinja2 template"):
        load_config(_run_config(tmp_path, bad))
    needs = {**bad, "prompt": "{{ q }}", "metrics": ["format_correct"]}
    with pytest.raises(ConfigError, match="needs a label space: set `choices:`"):
        load_config(_run_config(tmp_path, needs))


def test_task_paths_and_include_overrides(tmp_path: Path, data_dir: Path):
    cfg = load_config(_run_config(tmp_path, {"include": "my_qa", "limit": 3}, task_paths=[str(TASKS)]))
    task = cfg.tasks[0]
    assert task.task_name() == "my_qa" and task.limit == 3
    assert Path(task.data) == TASKS / "my_qa" / "test.jsonl"  # resolved beside the task file
    samples = build_task(task, data_dir).samples()
    assert samples["target"].to_list() == [["Paris"], ["Tokyo"], ["8"]]
    by_name = load_config(_run_config(tmp_path, "my_qa"), include_paths=[TASKS])
    assert by_name.tasks[0].task_name() == "my_qa"
    by_file = load_config(_run_config(tmp_path, {"include": "gsm8k_5shot.yaml", "limit": 2}), include_paths=[TASKS])
    assert by_file.tasks[0].task_name() == "gsm8k_5shot_tpl" and by_file.tasks[0].num_fewshot == 5
    with pytest.raises(ConfigError, match="Did you mean 'my_qa'"):
        load_config(_run_config(tmp_path, "my_q"), include_paths=[TASKS])


def test_missing_field_names_file_and_line(tmp_path: Path):
    (tmp_path / "qa.jsonl").write_text('{"q": "a", "a": "b"}\n{"x": 1, "a": "c"}\n')
    cfg = TemplateTaskConfig.model_validate({"benchmark": "template", "name": "qa", "data": str(tmp_path / "qa.jsonl"),
                                             "prompt": "{{ q }}", "target": "a", "metrics": ["exact_match"]})
    with pytest.raises(DataError, match=r"qa\.jsonl:2: prompt of task 'qa': 'q' is undefined"):
        build_task(cfg, tmp_path).samples()


def test_lm_eval_gsm8k_filters_equal_builtin_strict_match(data_dir: Path):
    """lm-eval's gsm8k.yaml strict-match as filters + exact_match options (regex filter, then exact match with
    ignore_case and regexes_to_ignore) scores the demo's real generations as the built-in task does."""
    builtin = build_task(GSM8KTaskConfig(benchmark="gsm8k", limit=24), data_dir)
    tpl = build_task(_template("gsm8k_template.yaml", limit=24, metrics=[
        {"metric": "exact_match", "name": "strict", "filters": [{"filter": "regex", "pattern": r"#### (\-?[0-9\.\,]+)"}],
         "ignore_case": True, "regexes_to_ignore": [",", r"\$", r"(?s).*#### ", r"\.$"]},
        {"metric": "exact_match", "name": "flexible", "ignore_case": True,
         "filters": [{"filter": "regex", "pattern": r"(-?[$0-9.,]{2,})|(-?[0-9]+)", "group": 0, "select": "last"}],
         "regexes_to_ignore": [",", r"\$", r"(?s).*#### ", r"\.$"]},
    ]), data_dir)
    gens = _responses("gsm8k")
    a = _score(builtin, builtin.samples(), gens)
    b = _score(tpl, tpl.samples(), gens)
    assert a["numeric_match_strict"].to_list() == b["strict"].to_list()
    assert a["numeric_match_flexible"].to_list() == b["flexible"].to_list()


def test_filters_compose_and_unknown_filter_is_refused(tmp_path: Path):
    from capdrift_fast.registry import filters

    frame = pl.DataFrame({"r": ["  The Answer: YES\nmore", None]})
    chain = [filters.get("first_line")(), filters.get("regex")(pattern=r"answer: (\w+)", fallback="none"),
             filters.get("lowercase")(), filters.get("strip")()]
    expr = pl.col("r")
    for f in chain:
        expr = f.apply(expr)
    assert frame.select(expr).to_series().to_list() == ["none", "none"]  # case-sensitive pattern: no match
    ci = filters.get("regex")(pattern=r"(?i)answer: (\w+)")
    assert frame.select(filters.get("lowercase")().apply(ci.apply(pl.col("r")))).to_series().to_list() == ["yes", "[invalid]"]
    task = {"benchmark": "template", "name": "qa", "data": "x.jsonl", "prompt": "{{ q }}", "target": "a",
            "metrics": ["exact_match"], "filters": ["strp"]}
    with pytest.raises(ConfigError, match="Did you mean 'strip'"):
        load_config(_run_config(tmp_path, task))
