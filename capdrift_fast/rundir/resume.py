"""The run folder across crashes: its identity, the config check on resume, and shard recovery.

A run folder is created by the first start of ``capdrift run``: ``run.json`` holds the run id (kept by
every resume, so all shards carry one ``run_id``) and ``config.json`` the resolved config. Starting the
same command again *resumes*: :func:`open_run`

1. checks that the config is the one the run started with (``output`` may change) — a changed config
   is refused with the fields that differ, since mixing two configs' generations would be wrong;
2. checks that planned requests kept their prompts (data files unchanged for finished requests);
3. recovers ``generations/``: stray ``.shard-*.tmp`` files (a shard being written when the process
   died; never complete by construction) are removed; a shard that cannot be read in full (truncated
   by a non-atomic copy, a full disk) or whose requests are all already in earlier shards is moved to
   ``quarantine/`` (kept for inspection, out of the generations glob) and its requests are generated
   again; shards of another run, with unplanned requests, or partly doubling others stop the run with
   a message naming the file.

Every finished generation on disk is therefore used exactly once, and nothing is generated twice.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from pydantic import ValidationError

from capdrift_fast.config import RunConfig
from capdrift_fast.errors import RunDirError
from capdrift_fast.rundir.atomic import atomic_write, atomic_write_text
from capdrift_fast.rundir.folder import RunFolder
from capdrift_fast.rundir.paths import inside
from capdrift_fast.rundir.shards import SHARD_GLOB, TMP_GLOB, read_shard

RUN_FILE = "run.json"
CONFIG_FILE = "config.json"
PLAN_FILE = "plan.parquet"
QUARANTINE = "quarantine"
MUTABLE_SECTIONS = ("output",)
"""Config sections that may change between a run and its resume (they do not affect results)."""
MUTABLE_FIELD_RE = re.compile(r"^adapters\.\d+\.label$")
"""Descriptive fields (flattened names) that may change on resume: an adapter's nominal ``label`` (it
only names the adapter's on-target tasks in the analysis, which is recomputed from the scores)."""


@dataclass
class RunState:
    """Where a run folder stands when (re)starting.

    Attributes:
        run_dir: the folder (absolute).
        run_id: the run's id (from ``run.json``; new on first start).
        resumed: True when the folder already held this run.
        done: request ids that already have a generation on disk (in valid shards).
        n_shards: valid shards found.
        quarantined: ``"name: reason"`` for each shard moved to ``quarantine/``.
        removed_tmp: names of stray temporary shard files removed.
    """

    run_dir: Path
    run_id: str
    resumed: bool
    done: set[str] = field(default_factory=set)
    n_shards: int = 0
    quarantined: list[str] = field(default_factory=list)
    removed_tmp: list[str] = field(default_factory=list)
    shard: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary (recorded per session in the manifest)."""
        return {"resumed": self.resumed, "found_done": len(self.done), "found_shards": self.n_shards,
                "quarantined": self.quarantined, "removed_tmp": self.removed_tmp}


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, list):
        out = {f"{prefix}.length": len(value)}
        for i, v in enumerate(value):
            out.update(_flatten(v, f"{prefix}.{i}"))
        return out
    return {prefix: value}


def config_differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``"field a.b: was X, now Y"`` for every leaf that differs (``MUTABLE_SECTIONS`` ignored)."""
    a = _flatten({k: v for k, v in stored.items() if k not in MUTABLE_SECTIONS})
    b = _flatten({k: v for k, v in current.items() if k not in MUTABLE_SECTIONS})
    missing = object()

    def show(v: Any) -> str:
        return "(absent)" if v is missing else repr(v)

    return [f"field {k}: was {show(a.get(k, missing))}, now {show(b.get(k, missing))}"
            for k in sorted(set(a) | set(b))
            if a.get(k, missing) != b.get(k, missing) and not MUTABLE_FIELD_RE.match(k)]


def with_current_defaults(stored: dict[str, Any]) -> dict[str, Any]:
    """``stored`` (a run folder's ``config.json``) validated by this version's :class:`RunConfig`, so a
    field added since the run started compares as its default rather than as a change; ``stored``
    unchanged when it no longer validates (then every field it differs in is reported)."""
    try:
        return json.loads(RunConfig.model_validate(stored).model_dump_json())
    except ValidationError:
        return stored


def open_run(run_dir: str | Path, cfg: RunConfig, requests: pl.DataFrame,
             shard: dict[str, Any] | None = None) -> RunState:
    """Start or resume the run in ``run_dir`` for ``cfg`` (the user's resolved config) and its planned
    ``requests`` (``PLAN_SCHEMA`` rows); writes ``run.json``, ``config.json`` and ``plan.parquet``
    atomically and recovers the shards (see the module docstring).

    ``shard``: for a shard of a split run (``capdrift run --shard I/N``), its identity — ``index``,
    ``count``, ``assignment_sha256`` and summary fields — stored in ``run.json``; a resume must ask for
    the same shard of the same split.

    Raises:
        RunDirError: the folder holds another config's run, another shard (or an unsharded run when a
            shard is asked, and the reverse), generations without ``run.json``, changed prompts for
            finished requests, or shards that cannot be reconciled (the message names them and says what
            to do).
    """
    run_dir = Path(run_dir).resolve()
    gen_dir = inside(run_dir, "generations")
    inside(run_dir, QUARANTINE)
    run_file = run_dir / RUN_FILE
    current = json.loads(cfg.model_dump_json())
    if run_file.is_file():
        try:
            run_info = json.loads(run_file.read_text())
            run_id = run_info["run_id"]
            stored = json.loads((run_dir / CONFIG_FILE).read_text())
        except (OSError, ValueError, KeyError) as exc:
            raise RunDirError(f"{run_dir}: {RUN_FILE} or {CONFIG_FILE} is unreadable ({exc}); "
                              "use a new --out folder") from None
        diffs = config_differences(with_current_defaults(stored), current)
        if diffs:
            shown = "\n  ".join(diffs[:8]) + (f"\n  ... and {len(diffs) - 8} more" if len(diffs) > 8 else "")
            raise RunDirError(
                f"{run_dir} holds run {run_id} started with another config:\n  {shown}\n"
                "Resume with the config it started with, or use a new --out folder for the new config."
            )
        _check_shard(run_dir, run_info, shard)
        _check_plan(run_dir, requests)
        if with_current_defaults(stored) != current:  # only descriptive fields changed (a label): keep the new ones
            atomic_write_text(run_dir / CONFIG_FILE, json.dumps(current, indent=2))
        state = RunState(run_dir, run_id, resumed=True, shard=shard)
    else:
        if gen_dir.is_dir() and any(gen_dir.glob(SHARD_GLOB)):
            raise RunDirError(f"{run_dir} holds generations but no {RUN_FILE}, so it is no capdrift run folder "
                              "this version can resume; use a new --out folder")
        run_dir.mkdir(parents=True, exist_ok=True)
        run_id = f"{cfg.run_name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        atomic_write_text(run_dir / CONFIG_FILE, json.dumps(current, indent=2))
        info: dict[str, Any] = {"run_id": run_id, "created_at": time.time()}
        if shard is not None:
            info["shard"] = shard
        RunFolder(run_dir).write_run_info(info)  # with the run-folder format version
        state = RunState(run_dir, run_id, resumed=False, shard=shard)
    atomic_write(run_dir / PLAN_FILE, lambda tmp: requests.write_parquet(tmp))
    gen_dir.mkdir(parents=True, exist_ok=True)
    _recover_shards(state, gen_dir, set(requests.get_column("request_id").to_list()))
    return state


def _check_shard(run_dir: Path, run_info: dict[str, Any], shard: dict[str, Any] | None) -> None:
    if "merged_from" in run_info:
        raise RunDirError(f"{run_dir} holds a merge of shard folders, which is not resumed itself: resume the "
                          "unfinished shards (each with its own --out and --shard) and run `capdrift merge` again")
    old = run_info.get("shard")
    if old is None and shard is None:
        return
    if old is None:
        raise RunDirError(f"{run_dir} holds an unsharded run; --shard {shard['index']}/{shard['count']} needs "
                          "its own --out folder")
    if shard is None:
        raise RunDirError(f"{run_dir} holds shard {old.get('index')}/{old.get('count')} of a split run; resume it "
                          f"with --shard {old.get('index')}/{old.get('count')}, or use a new --out folder")
    if (old.get("index"), old.get("count")) != (shard["index"], shard["count"]):
        raise RunDirError(f"{run_dir} holds shard {old.get('index')}/{old.get('count')}, not "
                          f"{shard['index']}/{shard['count']}; give each shard its own --out folder")
    if old.get("assignment_sha256") != shard.get("assignment_sha256"):
        raise RunDirError(f"{run_dir}: shard {shard['index']}/{shard['count']} was split differently when it started "
                          "(the data, the tokenizer or the served adapters changed); restore them, or start all "
                          "shards again in new --out folders")


def _check_plan(run_dir: Path, requests: pl.DataFrame) -> None:
    path = run_dir / PLAN_FILE
    if not path.is_file():
        return
    old = pl.read_parquet(path).select("request_id", old_prompt="prompt", old_max="max_tokens")
    changed = requests.join(old, on="request_id", how="inner").filter(
        (pl.col("prompt") != pl.col("old_prompt")) | (pl.col("max_tokens") != pl.col("old_max")))
    if changed.height:
        raise RunDirError(
            f"{run_dir}: {changed.height} planned request(s) changed their prompt since the run started "
            f"(e.g. {changed['request_id'][0]!r}): the data files changed. Restore them, or use a new --out folder."
        )


def _quarantine(state: RunState, path: Path, reason: str) -> None:
    qdir = inside(state.run_dir, QUARANTINE)
    qdir.mkdir(exist_ok=True)
    os.replace(path, qdir / f"{path.name}.{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}")
    state.quarantined.append(f"{path.name}: {reason}")


def _recover_shards(state: RunState, gen_dir: Path, planned: set[str]) -> None:
    for tmp in sorted(gen_dir.glob(TMP_GLOB)):
        tmp.unlink()
        state.removed_tmp.append(tmp.name)
    for path in sorted(gen_dir.glob(SHARD_GLOB)):
        table, reason = read_shard(path)
        if table is None:
            _quarantine(state, path, f"{reason}; its requests are generated again")
            continue
        ids = table.column("request_id").to_pylist()
        runs = set(table.column("run_id").to_pylist())
        if runs - {state.run_id}:
            raise RunDirError(f"{path} holds generations of run {sorted(runs)[0]}, not of {state.run_id}; "
                              "move it out of the run folder")
        unplanned = [i for i in ids if i not in planned]
        if unplanned:
            raise RunDirError(f"{path} holds {len(unplanned)} request(s) this run does not plan (e.g. "
                              f"{unplanned[0]!r}); move it out of the run folder")
        seen = [i for i in ids if i in state.done]
        if len(set(ids)) != len(ids) or (seen and len(seen) < len(ids)):
            raise RunDirError(f"{path} repeats {len(ids) - len(set(ids)) + len(seen)} generation(s) of other "
                              "shards; move the copy out of the run folder")
        if seen:
            _quarantine(state, path, "every generation in it is already in earlier shards (a copy)")
            continue
        state.done.update(ids)
        state.n_shards += 1
