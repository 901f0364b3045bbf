"""``capdrift merge SHARD_DIR... --out RUN_DIR``: the shard folders of a split run become one run folder.

Before anything is written, every check that could make the merged result wrong stops the merge with a
message naming the shard folder and what to do:

1. each folder is a finished shard (``run.json`` with a ``shard`` entry; ``manifest.json`` status
   ``complete``) — an unfinished one is resumed by re-running its own ``capdrift run ... --shard I/N``;
2. the shards were started with the same config (every differing field is named) and split the same
   way (same shard count and ``assignment_sha256``), served the same adapters and model files (SHA-256);
3. the shard indices are exactly ``0..N-1``, each once (missing and doubled indices are listed);
4. each shard's generations cover its own planned requests exactly once (readable shard files of its
   run id; missing / doubled / unplanned counts with examples);
5. together the shards cover the full plan — rebuilt from the config and the data — exactly once, with
   the prompts the shards ran (missing / doubled requests listed with the shards that hold them).

Then the generation files are hard-linked (copied across file systems) into ``RUN_DIR/generations/``, the
parity guard's verdicts are combined (a model is ``suspect`` when any shard flagged it, checked when any
shard checked it), and ``RUN_DIR`` is scored and reported exactly as an unsharded run
(:func:`capdrift_fast.pipeline.score.score_run`, :func:`capdrift_fast.report.write_report`). Merging again into
the same ``RUN_DIR`` redoes it (e.g. after resuming a shard).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from capdrift_fast.config import RunConfig
from capdrift_fast.errors import RunDirError
from capdrift_fast.rundir.atomic import atomic_write
from capdrift_fast.rundir.hashing import changed_files
from capdrift_fast.rundir.lock import run_folder_lock
from capdrift_fast.rundir.paths import inside
from capdrift_fast.rundir.resume import CONFIG_FILE, PLAN_FILE, RUN_FILE, config_differences
from capdrift_fast.rundir.shards import SHARD_GLOB, read_generations, read_shard
from capdrift_fast.logs import forward_to, get_logger
from capdrift_fast.pipeline.parity import ParityResult
from capdrift_fast.records import guard_status
from capdrift_fast.pipeline.plan import Plan, build_plan, with_plan_columns
from capdrift_fast.pipeline.score import coverage_gaps, score_run
from capdrift_fast.rundir.folder import RunFolder
from capdrift_fast.runner import RunResult, report_or_warn

log = get_logger(__name__)

MERGE_KEY = "merged_from"
"""``run.json`` key of a merged run folder: one entry per shard (index, folder, run id, files)."""


@dataclass
class ShardFolder:
    """One shard run folder as read by :func:`read_shard_folder`.

    Attributes:
        path: the folder (absolute).
        run: ``run.json``; ``shard``: its ``shard`` entry (index, count, assignment_sha256, ...).
        config: ``config.json`` (the resolved config, as stored).
        manifest: ``manifest.json``; ``parity``: ``parity.json``.
        plan: the shard's planned requests (``PLAN_SCHEMA``).
        files: its generation files (``generations/shard-*.arrow``), in name order.
    """

    path: Path
    run: dict[str, Any]
    shard: dict[str, Any]
    config: dict[str, Any]
    manifest: dict[str, Any]
    parity: dict[str, Any]
    plan: pl.DataFrame
    files: list[Path]

    @property
    def label(self) -> str:
        """``shard I/N (folder)`` for messages."""
        return f"shard {self.shard.get('index')}/{self.shard.get('count')} ({self.path})"


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunDirError(f"{path}: missing; is {path.parent} a shard folder written by "
                          f"`capdrift run ... --shard I/N`? ({what})") from None
    except (OSError, ValueError) as exc:
        raise RunDirError(f"{path}: unreadable ({exc}); resume that shard with its own `capdrift run ... --shard I/N`"
                          " command to rewrite it") from None


def read_shard_folder(path: str | Path) -> ShardFolder:
    """Read one shard run folder.

    Raises:
        RunDirError: not a run folder, an unsharded run, or an unfinished shard (the message says how to
            finish it).
    """
    path = Path(path).expanduser().resolve()
    if not path.is_dir():
        raise RunDirError(f"{path}: shard folder not found")
    run = _read_json(path / RUN_FILE, "the run id and shard")
    shard = run.get("shard")
    if not isinstance(shard, dict):
        raise RunDirError(f"{path} holds an unsharded run, not a shard; merge takes the folders written by "
                          "`capdrift run CONFIG --out DIR --shard I/N`")
    config = _read_json(path / CONFIG_FILE, "the config")
    manifest = _read_json(path / "manifest.json", "the manifest")
    label = f"shard {shard.get('index')}/{shard.get('count')} ({path})"
    if manifest.get("status") != "complete":
        raise RunDirError(f"{label} has not finished (manifest status {manifest.get('status')!r}); run its "
                          f"`capdrift run CONFIG --out {path} --shard {shard.get('index')}/{shard.get('count')}` "
                          "again: it resumes and generates only what is missing")
    parity = _read_json(path / "parity.json", "the parity guard's verdict")
    try:
        plan = pl.read_parquet(path / PLAN_FILE)
    except Exception as exc:  # polars raises several kinds for a missing or broken file
        raise RunDirError(f"{path / PLAN_FILE}: unreadable ({exc}); resume {label} to rewrite it") from None
    files = sorted((path / "generations").glob(SHARD_GLOB))
    return ShardFolder(path, run, shard, config, manifest, parity, plan, files)


def _examples(items: list[str], k: int = 3) -> str:
    return ", ".join(repr(i) for i in items[:k]) + (", ..." if len(items) > k else "")


def check_shard_set(shards: list[ShardFolder]) -> None:
    """Checks 2 and 3 of the module docstring: same config, split, adapters and files; indices 0..N-1
    each exactly once.

    Raises:
        RunDirError: naming the shard folders and fields that disagree, and the missing/doubled indices.
    """
    first = shards[0]
    for s in shards[1:]:
        diffs = config_differences(first.config, s.config)
        if diffs:
            shown = "\n  ".join(diffs[:8]) + (f"\n  ... and {len(diffs) - 8} more" if len(diffs) > 8 else "")
            raise RunDirError(f"{s.label} was run with another config than {first.label}:\n  {shown}\n"
                              "Merge only the shards of one config (re-run the odd shard with the same config).")
    counts = {s.shard.get("count") for s in shards}
    if len(counts) > 1:
        raise RunDirError("the shards come from splits into different numbers of shards: "
                          + "; ".join(f"{s.label}" for s in shards))
    for s in shards[1:]:
        if s.shard.get("assignment_sha256") != first.shard.get("assignment_sha256"):
            raise RunDirError(f"{s.label} split the requests differently from {first.label} (different data, "
                              "tokenizer or served adapters); re-run the odd shard where the others ran")
        served_a = (first.manifest.get("served") or {}).get("adapters")
        served_b = (s.manifest.get("served") or {}).get("adapters")
        if served_a != served_b:
            raise RunDirError(f"{s.label} served adapters {served_b} while {first.label} served {served_a} "
                              "(on_bad_adapter: skip left one out on one node; see each folder's preflight.json)")
        _check_files(first, s)
    count = int(first.shard["count"])
    by_index: dict[int, list[ShardFolder]] = {}
    for s in shards:
        by_index.setdefault(int(s.shard["index"]), []).append(s)
    missing = [i for i in range(count) if i not in by_index]
    doubled = {i: v for i, v in by_index.items() if len(v) > 1}
    if missing or doubled:
        parts = []
        if missing:
            parts.append(f"missing shard(s) {', '.join(f'{i}/{count}' for i in missing)} (run them with "
                         f"`capdrift run CONFIG --out DIR --shard I/{count}` and pass their folders)")
        for i, folders in sorted(doubled.items()):
            parts.append(f"shard {i}/{count} given {len(folders)} times: {', '.join(str(f.path) for f in folders)}")
        raise RunDirError("the shard folders do not cover every shard exactly once: " + "; ".join(parts))


def _check_files(a: ShardFolder, b: ShardFolder) -> None:
    diff = changed_files(a.manifest.get("files") or {}, b.manifest.get("files") or {})
    if diff is not None:
        name, changed = diff
        what = "the base model" if name is None else f"adapter {name!r}"
        raise RunDirError(f"{b.label} ran {what} with other files than {a.label} ({', '.join(changed[:3])} differ); "
                          "every shard must see the same model and adapter files")


def read_shard_generations(s: ShardFolder) -> pl.DataFrame:
    """Every generation of shard ``s``, checked (check 4): readable files of its own run id covering its
    planned requests exactly once.

    Raises:
        RunDirError: an unreadable file, another run's file, or missing / doubled / unplanned requests.
    """
    tables = []
    for path in s.files:
        table, reason = read_shard(path)
        if table is None:
            raise RunDirError(f"{path}: {reason}; run {s.label}'s `capdrift run ... --shard "
                              f"{s.shard['index']}/{s.shard['count']}` again: it sets the file aside and "
                              "generates its requests again")
        runs = set(table.column("run_id").to_pylist())
        if runs - {s.run.get("run_id")}:
            raise RunDirError(f"{path} holds generations of run {sorted(runs)[0]}, not of {s.label}'s run "
                              f"{s.run.get('run_id')}; move it out of the folder")
        tables.append(pl.from_arrow(table))
    gens = pl.concat(tables) if tables else read_generations(s.path / "generations").collect()
    planned = s.plan.get_column("request_id")
    missing, doubled, extra = coverage_gaps(planned, gens)
    if missing or doubled or extra:
        raise RunDirError(
            f"{s.label}: its generations do not cover its {planned.len()} planned requests exactly once: "
            f"{len(missing)} missing (e.g. {_examples(missing)}), {len(doubled)} doubled (e.g. {_examples(doubled)}), "
            f"{len(extra)} unplanned (e.g. {_examples(extra)}). Run its `capdrift run ... --shard "
            f"{s.shard['index']}/{s.shard['count']}` again to finish or repair it."
        )
    return gens


def check_union(shards: list[ShardFolder], full: pl.DataFrame) -> None:
    """Check 5: the shards' plans together are ``full`` (the plan rebuilt from config and data) exactly
    once, with the same prompts and max_tokens.

    Raises:
        RunDirError: doubled requests (with the shards holding them), requests no shard planned, requests
            the config does not plan, or changed prompts (data changed since the shards ran).
    """
    union = pl.concat([with_plan_columns(s.plan).with_columns(_shard=pl.lit(str(s.shard["index"])))
                       for s in shards])
    dup = union.group_by("request_id").agg(pl.col("_shard").sort()).filter(pl.col("_shard").list.len() > 1)
    if dup.height:
        ex = dup.head(3).iter_rows()
        raise RunDirError(f"{dup.height} request(s) are planned by more than one shard, e.g. "
                          + "; ".join(f"{rid!r} in shards {', '.join(sh)}" for rid, sh in ex))
    ids = full.get_column("request_id")
    have = union.get_column("request_id")
    missing = ids.filter(~ids.is_in(have)).to_list()
    extra = union.filter(~pl.col("request_id").is_in(ids))
    if missing or extra.height:
        raise RunDirError(
            f"the shards do not cover the planned requests exactly once: {len(missing)} planned request(s) in no "
            f"shard (e.g. {_examples(missing)}), {extra.height} shard request(s) the config does not plan (e.g. "
            + "; ".join(f"{r!r} in shard {sh}" for r, sh in extra.select("request_id", "_shard").head(3).iter_rows())
            + "). Were the shards split from this config and data?")
    changed = union.join(full.select("request_id", p2="prompt", m2="max_tokens"), on="request_id").filter(
        (pl.col("prompt") != pl.col("p2")) | (pl.col("max_tokens") != pl.col("m2")))
    if changed.height:
        r = changed.row(0, named=True)
        raise RunDirError(f"{changed.height} request(s) ran with another prompt than the data now gives (e.g. "
                          f"{r['request_id']!r} in shard {r['_shard']}): the data files changed since the shards ran; "
                          "restore them (or pass --data-dir with the data the shards used)")


def combine_parity(shards: list[ShardFolder], models: list[str]) -> dict[str, Any]:
    """One ``parity.json`` from the shards': per model, canaries checked and disagreeing summed over the
    shards; ``suspect`` True if any shard flagged the model, False if it was checked and never flagged,
    None if no shard checked it. ``status``: the shards' common status, or ``partial`` (with each
    shard's message) when some could not run the guard."""
    statuses = [s.parity.get("status") for s in shards]
    per: dict[str, dict[str, Any]] = {m: {"suspect": None, "checked": 0, "disagreed": 0} for m in models}
    canaries: list[dict[str, Any]] = []
    for s in shards:
        for m, v in (s.parity.get("models") or {}).items():
            entry = per.setdefault(m, {"suspect": None, "checked": 0, "disagreed": 0})
            entry["checked"] += int(v.get("checked") or 0)
            entry["disagreed"] += int(v.get("disagreed") or 0)
        canaries += [{**c, "shard": s.shard["index"]} for c in s.parity.get("canaries") or []]
    for m, entry in per.items():
        flagged = [bool((s.parity.get("models") or {}).get(m, {}).get("suspect")) for s in shards]
        entry["suspect"] = True if any(flagged) or entry["disagreed"] else (False if entry["checked"] else None)
        # a shard whose guard could not run leaves its part unchecked: only a disagreement overrides that
        entry["guard"] = ("SUSPECT" if entry["suspect"] else "not run" if "error" in statuses
                          else guard_status(statuses[0] if len(set(statuses)) == 1 else "ok", entry["suspect"]))
    status = statuses[0] if len(set(statuses)) == 1 else "partial"
    messages = [f"shard {s.shard['index']}: {s.parity.get('message')}" for s in shards if s.parity.get("message")]
    first = shards[0].parity
    return {"status": status, "mode": first.get("mode"), "device": first.get("device"),
            "tolerance": first.get("tolerance"), "message": "; ".join(messages), "models": per,
            "canaries": canaries, "shards": {str(s.shard["index"]): s.parity.get("status") for s in shards}}


def check_merge_target(out: Path) -> None:
    """``out`` can receive a merge: new, empty, or a previous merge.

    Raises:
        RunDirError: ``out`` holds an unmerged run, or generations without ``run.json``.
    """
    run_file = out / RUN_FILE
    if run_file.is_file():
        try:
            info = json.loads(run_file.read_text())
        except ValueError:
            info = {}
        if MERGE_KEY not in info:
            raise RunDirError(f"{out} holds a run that is not a merge; merge into a new --out folder")
    elif (out / "generations").is_dir() and any((out / "generations").iterdir()):
        raise RunDirError(f"{out} holds generations but no {RUN_FILE}; merge into a new --out folder")


def _check_out(out: Path, shards: list[ShardFolder]) -> None:
    for s in shards:
        if out == s.path or s.path in out.parents:
            raise RunDirError(f"--out {out} lies inside {s.label}; merge into a folder of its own")
    check_merge_target(out)


def _prepare_out(out: Path, shards: list[ShardFolder]) -> None:
    _check_out(out, shards)  # again, under the lock
    run_file = out / RUN_FILE
    gen_dir = inside(out, "generations")
    if run_file.is_file():
        for old in gen_dir.glob(SHARD_GLOB):  # links/copies of a previous merge: redone below
            old.unlink()
    gen_dir.mkdir(parents=True, exist_ok=True)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system (or no hard links): copy atomically
        atomic_write(dst, lambda tmp: shutil.copyfile(src, tmp))


def merge(
    shard_dirs: list[str | Path],
    out: str | Path,
    data_dir: str | Path | None = None,
    notify: Callable[[str], None] | None = None,
    report: bool = True,
) -> RunResult:
    """Merge the shard folders of one split run into the run folder ``out`` and score it.

    Args:
        shard_dirs: every shard folder (``capdrift run ... --shard I/N``), in any order.
        out: the merged run folder (created; a previous merge there is redone).
        data_dir: benchmark data root for scoring when it sits elsewhere than where the shards ran
            (default: the config's ``data_dir``); prompts must still equal those the shards ran.
        notify: also called with each progress message (they go to the ``capdrift_fast`` loggers).
        report: end by writing the report into ``out``.

    Returns:
        :class:`capdrift_fast.runner.RunResult` of the merged run (``n_generated`` 0; times and tokens
        summed over the shards; ``shard`` None).

    Raises:
        RunDirError: a check of the module docstring failed (the message names the shard folder).
        DataError: the data cannot be read for the full plan.
    """
    with forward_to(notify), ExitStack() as held:  # the folder's lock, taken after the checks (rundir.lock)
        return _merge(shard_dirs, out, data_dir, report, held)


def _merge(shard_dirs: list[str | Path], out: str | Path, data_dir: str | Path | None, report: bool,
           held: ExitStack) -> RunResult:
    if not shard_dirs:
        raise RunDirError("no shard folder given; pass every shard folder of the split run")
    paths = [Path(d).expanduser().resolve() for d in shard_dirs]
    dup = sorted({str(p) for p in paths if paths.count(p) > 1})
    if dup:
        raise RunDirError(f"shard folder given more than once: {', '.join(dup)}")
    shards = sorted((read_shard_folder(p) for p in paths), key=lambda s: int(s.shard.get("index", -1)))
    check_shard_set(shards)
    gens = [read_shard_generations(s) for s in shards]

    cfg = RunConfig.model_validate(shards[0].config)
    served_names = (shards[0].manifest.get("served") or {}).get("adapters")
    served = cfg if served_names is None else cfg.model_copy(
        update={"adapters": [a for a in cfg.adapters if a.name in set(served_names)]})
    if data_dir is not None:
        served = served.model_copy(update={"data_dir": str(Path(data_dir).expanduser().resolve())})
    plan: Plan = build_plan(served)
    errors_json = shards[0].path / "data_errors.json"
    if errors_json.is_file():  # prompts the shards left out for their length (capdrift_fast.prompt_checks)
        from capdrift_fast.prompt_checks import drop_samples

        plan = drop_samples(plan, (_read_json(errors_json, "data_errors.json") or {}).get("skipped", []))
    check_union(shards, plan.requests)
    count = int(shards[0].shard["count"])
    log.info(f"{count} shard(s) cover the {plan.requests.height} planned requests exactly once")

    out = Path(out).expanduser().resolve()
    _check_out(out, shards)  # refused merges write nothing
    held.enter_context(run_folder_lock(out, "capdrift merge"))  # one writer per run folder, until the end
    _prepare_out(out, shards)
    merged_from, n = [], 0
    for s in shards:
        names = []
        for src in s.files:
            dst = out / "generations" / f"shard-{n:05d}.arrow"
            _link_or_copy(src, dst)
            names.append({"from": src.name, "to": dst.name})
            n += 1
        merged_from.append({"index": s.shard["index"], "count": count, "dir": str(s.path),
                            "run_id": s.run.get("run_id"), "requests": s.plan.height, "files": names})
    run_id = f"{cfg.run_name}-merged-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    folder = RunFolder(out)
    folder.write_json(folder.CONFIG, shards[0].config)
    folder.write_run_info({"run_id": run_id, "created_at": time.time(),
                           "assignment_sha256": shards[0].shard.get("assignment_sha256"), MERGE_KEY: merged_from})
    folder.write_parquet(folder.PLAN, plan.requests)
    for name in ("preflight.json", "data_errors.json"):
        if (shards[0].path / name).is_file():
            shutil.copyfile(shards[0].path / name, out / name)
    parity_json = combine_parity(shards, plan.adapters)
    folder.write_json(folder.PARITY, parity_json)
    suspect = {m: v["suspect"] for m, v in parity_json["models"].items()}
    for m in (m for m, v in suspect.items() if v):
        log.warning(f"SUSPECT: vLLM disagreed with transformers+peft on {m!r}'s canaries in a shard; its results are marked suspect")

    generations = pl.concat(gens) if gens else pl.DataFrame()
    matrix = score_run(folder, plan, generations, suspect, served.drift, {a.name: a.label for a in served.adapters},
                       {m: v["guard"] for m, v in parity_json["models"].items()})
    manifest = _merged_manifest(shards, run_id, plan, generations, parity_json)
    folder.write_json(folder.MANIFEST, manifest)
    parity = ParityResult(parity_json["status"], parity_json["mode"] or "-", suspect, parity_json["canaries"],  # type: ignore[arg-type]
                          message=parity_json["message"])
    result = RunResult(out, run_id, matrix, plan.requests.height, manifest["engine_start_s"], manifest["generation_s"],
                       manifest["output_tokens"], 0, None, None, parity, plan.skipped_rows, merged_shards=len(shards))
    if report:
        report_or_warn(out, log.warning, samples=plan.samples)
    return result


def _merged_manifest(shards: list[ShardFolder], run_id: str, plan: Plan, generations: pl.DataFrame,
                     parity: dict[str, Any]) -> dict[str, Any]:
    first = shards[0].manifest
    per = []
    for s in shards:
        m = s.manifest
        per.append({"index": s.shard["index"], "dir": str(s.path), "run_id": s.run.get("run_id"),
                    "requests": s.plan.height, "expected_tokens": s.shard.get("expected_tokens"),
                    "engine_start_s": m.get("engine_start_s"), "generation_s": m.get("generation_s"),
                    "output_tokens": m.get("output_tokens"), "host": m.get("host"), "versions": m.get("versions")})
    gen_s = [float(p["generation_s"] or 0.0) for p in per]
    total = int(generations.get_column("output_tokens").sum()) if generations.height else 0
    return {
        "run_id": run_id, "status": "complete", "merged": True, "n_requests": plan.requests.height,
        "config": shards[0].config, "served": first.get("served"), "adapters": first.get("adapters"),
        "model": first.get("model"), "engine": first.get("engine"), "sampling": first.get("sampling"),
        "files": first.get("files"), "versions": first.get("versions"), "host": first.get("host"),
        "shards": per,
        "engine_start_s": max((float(p["engine_start_s"] or 0.0) for p in per), default=0.0),
        # engine-seconds over all shards: tokens/s per engine, comparable with an unsharded run
        "generation_s": round(sum(gen_s), 3),
        "output_tokens": total,
        "output_tokens_per_s": round(total / sum(gen_s), 2) if sum(gen_s) > 0 else None,
        # if the shards ran at the same time: the slowest shard's generation time, and tokens/s over it
        "wall_generation_s": round(max(gen_s, default=0.0), 3),
        "aggregate_output_tokens_per_s": round(total / max(gen_s), 2) if gen_s and max(gen_s) > 0 else None,
        "parity": {"status": parity["status"], "suspect": [m for m, v in parity["models"].items() if v["suspect"]]},
        "sessions": [{**sess, "shard": s.shard["index"]} for s in shards for sess in s.manifest.get("sessions", [])],
    }
