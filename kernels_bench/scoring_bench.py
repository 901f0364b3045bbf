"""Scoring throughput and peak memory: capdrift_fast's Polars scorers vs the reference implementations.

Usage (one command; ~1 h on 2 busy CPU cores with the defaults):

    python kernels_bench/scoring_bench.py --out kernels_bench/results/scoring_bench.json --plot

Workloads (built once per size from the real data in ``$CAPDRIFT_DATA_DIR`` / ``../shared/data``, cached
as parquet under ``--workdir``, seeded):

- ``ifeval``: the 1082 released GPT-4 and text-bison responses with their prompts' instructions,
  resampled to N rows; each row then gets two of its spaces doubled (positions from the row number)
  so that rows are distinct texts, as real generations are (our scorer memoises repeated
  (instruction, text) checks; verbatim copies would flatter it).
- ``gsm8k``: the 1319 test questions resampled; responses: the gold solution (40 %), ``"The answer is
  $N."`` (20 %), another question's solution (20 %), an off-by-one number (10 %), no number (10 %).
- ``superni``: the 800 instances of the 4 task files resampled; responses: the gold label as written
  (40 %), ``"LABEL."`` upper-cased (15 %), ``"The answer is label"`` (10 %), another label (25 %), the
  first line of a real IFEval response (10 %); exact match, format correctness and ROUGE-L.

Implementations, each run in its own subprocess per repeat (responses/s = rows / scoring wall time,
data loading and imports excluded, after a 64-row warm-up). Peak memory: the child's ``VmHWM`` (peak
resident set of its own address space, ``/proc/self/status``), and the child's ``ru_maxrss`` as
``os.wait4`` returns it (``getrusage(RUSAGE_CHILDREN)`` of that one child). ``ru_maxrss`` also counts the
parent's resident set at spawn (Linux records the old address space's peak at ``exec``), so the parent
stays small: it imports no Polars and builds the workloads in subprocesses too.

- ``capdrift``: ``score_ifeval`` + ``ifeval_accuracies``; ``score_numeric``; ``score_classification`` +
  ``score_rouge_l``.
- ``reference``: lm-eval 0.4.13's IFEval ``test_instruction_following_strict`` and ``_loose`` per row;
  lm-eval's gsm8k filters (``build_filter_ensemble`` from gsm8k.yaml over ``Instance`` objects) and its
  ``exact_match`` per row as ``process_results`` calls it; SuperNI's ``evaluation.py`` functions
  (``normalize_answer``/``exact_match``, format correctness, ``rouge_scorer.RougeScorer(['rougeL'],
  use_stemmer=True)``, max over gold outputs) -- lm-eval has no SuperNI task. The reference is timed on
  the first ``--ref-rows`` rows of the same workload and extrapolated linearly to N (marked
  ``extrapolated`` in the JSON): at ~150 IFEval rows/s, 1M rows would take ~2 h per repeat.

Repeats of ours and the reference are interleaved so both see similar load; the 1-minute load average
is recorded before every child, and scoring CPU time (``time.process_time``) is kept beside wall time
(less sensitive to other users on a shared machine). The JSON keeps every repeat and the medians.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import statistics
import string
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only; the functions import polars where they use it
    import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: the package and kernels_bench from this checkout

from kernels_bench.common import peak_rss_mib  # noqa: E402  (stdlib only: the parent stays small)
BENCHMARKS = ("ifeval", "gsm8k", "superni")
DEFAULT_REF_ROWS = {"ifeval": 3000, "gsm8k": 100_000, "superni": 50_000}
IFEVAL_PAIRS = (
    ("input_data_v20231127_066e1ed.jsonl", "input_response_data_gpt4_20231107_145030.jsonl"),
    ("input_data_v20231114_e4c89b6_repeat_patched.jsonl", "input_response_data_text_bison.jsonl"),
)
SUPERNI_FILES = ("task828_copa_commonsense_cause_effect", "task363_sst2_polarity_classification",
                 "task199_mnli_classification", "task1612_sick_label_classification")


def data_dir() -> Path:
    from capdrift_fast.config import default_data_dir

    return default_data_dir()


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# --- workloads -----------------------------------------------------------------------------------------

def _double_spaces(text: str, row: int) -> str:
    """Double two of ``text``'s spaces, chosen from the row number (makes resampled rows distinct)."""
    parts = text.split(" ")
    n = len(parts) - 1
    if n < 2:
        return text + " " * (1 + row % 3)
    a, b = row % n, (row // n) % n
    for k in sorted({a, b}, reverse=True):
        parts[k] += " "
    return " ".join(parts)


def build_ifeval(n: int, seed: int, data: Path):  # type: ignore[no-untyped-def]
    import numpy as np
    import polars as pl

    base = []
    for inputs, responses in IFEVAL_PAIRS:
        resp = {r["prompt"]: r["response"] for r in _jsonl(data / "ifeval" / responses)}
        base += [{"key": r["key"], "prompt": r["prompt"], "response": resp[r["prompt"]],
                  "instruction_id_list": r["instruction_id_list"], "kwargs": json.dumps(r["kwargs"])}
                 for r in _jsonl(data / "ifeval" / inputs)]
    pick = np.random.default_rng(seed).integers(0, len(base), n)
    rows = [base[i] for i in pick]
    return pl.DataFrame({
        "key": [r["key"] for r in rows], "prompt": [r["prompt"] for r in rows],
        "response": [_double_spaces(r["response"], j) for j, r in enumerate(rows)],
        "instruction_id_list": [r["instruction_id_list"] for r in rows], "kwargs": [r["kwargs"] for r in rows],
    }, schema={"key": pl.Int64, "prompt": pl.Utf8, "response": pl.Utf8, "instruction_id_list": pl.List(pl.Utf8),
               "kwargs": pl.Utf8})


def build_gsm8k(n: int, seed: int, data: Path):  # type: ignore[no-untyped-def]
    import numpy as np
    import polars as pl

    base = _jsonl(data / "gsm8k" / "test.jsonl")
    rng = np.random.default_rng(seed)
    pick, kind, other = rng.integers(0, len(base), n), rng.random(n), rng.integers(0, len(base), n)
    responses, targets = [], []
    for i, k, o in zip(pick.tolist(), kind.tolist(), other.tolist(), strict=True):
        answer = base[i]["answer"]
        final = answer.split("#### ")[-1]
        plain = final.replace(",", "")
        if k < 0.4:
            text = answer
        elif k < 0.6:
            text = f"The answer is ${final}."
        elif k < 0.8:
            text = base[o]["answer"]
        elif k < 0.9:
            text = f"I think it is {int(plain) + 1 if plain.lstrip('-').isdigit() else 0}."
        else:
            text = "I cannot solve this problem."
        responses.append(text)
        targets.append(answer)
    return pl.DataFrame({"response": responses, "target": targets})


def build_superni(n: int, seed: int, data: Path):  # type: ignore[no-untyped-def]
    import numpy as np
    import polars as pl

    base = []
    for name in SUPERNI_FILES:
        task = json.loads((data / "superni" / f"{name}.json").read_text(encoding="utf-8"))
        labels = sorted({o for inst in task["Instances"] for o in inst["output"]})
        base += [(inst["output"], labels) for inst in task["Instances"]]
    free = [r["response"].split("\n")[0][:200] for r in _jsonl(data / "ifeval" / IFEVAL_PAIRS[0][1])]
    rng = np.random.default_rng(seed)
    pick, kind, aux = rng.integers(0, len(base), n), rng.random(n), rng.integers(0, 1 << 30, n)
    responses, targets, spaces = [], [], []
    for i, k, a in zip(pick.tolist(), kind.tolist(), aux.tolist(), strict=True):
        gold, labels = base[i]
        others = [l for l in labels if l not in gold] or labels
        if k < 0.4:
            text = gold[0]
        elif k < 0.55:
            text = gold[0].upper() + "."
        elif k < 0.65:
            text = f"The answer is {gold[0].lower()}"
        elif k < 0.9:
            text = others[a % len(others)]
        else:
            text = free[a % len(free)]
        responses.append(text)
        targets.append(gold)
        spaces.append(labels)
    return pl.DataFrame({"response": responses, "target": targets, "labels": spaces},
                        schema={"response": pl.Utf8, "target": pl.List(pl.Utf8), "labels": pl.List(pl.Utf8)})


BUILDERS = {"ifeval": build_ifeval, "gsm8k": build_gsm8k, "superni": build_superni}


def workload(bench: str, n: int, seed: int, workdir: Path) -> Path:
    """The cached workload parquet, built in a subprocess (keeps this process small, see docstring)."""
    path = workdir / f"{bench}-{n}-seed{seed}.parquet"
    if not path.exists():
        t0 = time.perf_counter()
        subprocess.run([sys.executable, str(Path(__file__).resolve()), "_build", "--bench", bench, "--rows", str(n),
                        "--seed", str(seed), "--data", str(path)], check=True)
        print(f"  built {path.name} in {time.perf_counter() - t0:.1f} s", flush=True)
    return path


# --- the scorers ---------------------------------------------------------------------------------------

def _lm_eval_dir() -> Path:
    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("lm-eval is not installed: pip install --no-deps lm-eval==0.4.13 (see scripts/install.sh)")
    return Path(next(iter(spec.submodule_search_locations)))


def _lm_eval_ifeval_utils() -> types.ModuleType:
    """lm-eval's ``lm_eval.tasks.ifeval.utils`` without importing ``lm_eval.tasks`` (needs ``datasets``)."""
    try:
        return importlib.import_module("lm_eval.tasks.ifeval.utils")
    except ImportError:
        stub = types.ModuleType("lm_eval.tasks")
        stub.__path__ = [str(_lm_eval_dir() / "tasks")]
        sys.modules["lm_eval.tasks"] = stub
        return importlib.import_module("lm_eval.tasks.ifeval.utils")


def _lm_eval_metrics() -> None:
    try:
        importlib.import_module("lm_eval.api.metrics")
    except ModuleNotFoundError as exc:
        if exc.name != "sacrebleu":
            raise
        sys.modules["sacrebleu"] = types.ModuleType("sacrebleu")  # used only by BLEU/chrF/TER
        importlib.import_module("lm_eval.api.metrics")
        del sys.modules["sacrebleu"]


def ours(bench: str):  # type: ignore[no-untyped-def]
    if bench == "ifeval":
        from capdrift_fast.metrics.ifeval import ifeval_accuracies, score_ifeval

        return lambda f: ifeval_accuracies(score_ifeval(f.select("response", "instruction_id_list", "kwargs")))
    if bench == "gsm8k":
        from capdrift_fast.metrics.numeric import numeric_accuracies, score_numeric

        return lambda f: numeric_accuracies(score_numeric(f))
    from capdrift_fast.metrics.classification import score_classification
    from capdrift_fast.metrics.rouge import score_rouge_l

    def superni(f: pl.DataFrame) -> dict:
        scored = score_classification(f)
        rouge = score_rouge_l(scored)
        return {"exact_match": scored["exact_match"].mean(), "format_correct": scored["format_correct"].mean(),
                "rougeL": rouge.mean()}

    return superni


def reference(bench: str):  # type: ignore[no-untyped-def]
    if bench == "ifeval":
        import langdetect

        from capdrift_fast.metrics.ifeval import configure_nltk_data

        configure_nltk_data(None)  # offline punkt_tab before lm-eval's import-time nltk lookups
        utils = _lm_eval_ifeval_utils()
        langdetect.DetectorFactory.seed = 0

        def ifeval(f: pl.DataFrame) -> dict:
            strict = loose = 0
            for row in f.iter_rows(named=True):
                inp = utils.InputExample(key=row["key"], instruction_id_list=row["instruction_id_list"],
                                         prompt=row["prompt"], kwargs=json.loads(row["kwargs"]))
                strict += all(utils.test_instruction_following_strict(inp, row["response"]).follow_instruction_list)
                loose += all(utils.test_instruction_following_loose(inp, row["response"]).follow_instruction_list)
            return {"prompt_level_strict_acc": strict / f.height, "prompt_level_loose_acc": loose / f.height}

        return ifeval
    if bench == "gsm8k":
        import yaml

        config = yaml.safe_load((_lm_eval_dir() / "tasks" / "gsm8k" / "gsm8k.yaml").read_text())
        _lm_eval_metrics()
        from lm_eval.api.instance import Instance
        from lm_eval.api.registry import get_metric
        from lm_eval.filters import build_filter_ensemble

        ensembles = [build_filter_ensemble(fc["name"], [[f["function"], {k: v for k, v in f.items() if k != "function"}]
                                                        for f in fc["filter"]]) for fc in config["filter_list"]]
        (mc,) = config["metric_list"]
        metric = get_metric(mc["metric"])
        kwargs = {k: v for k, v in mc.items() if k not in ("metric", "aggregation", "higher_is_better", "hf_evaluate")}

        def gsm8k(f: pl.DataFrame) -> dict:
            targets = f["target"].to_list()
            instances = [Instance("generate_until", {"answer": t}, ("", {}), i, resps=[r])
                         for i, (r, t) in enumerate(zip(f["response"].to_list(), targets, strict=True))]
            out = {}
            for ens in ensembles:
                ens.apply(instances)
                out[ens.name] = sum(metric(references=[t], predictions=[inst.filtered_resps[ens.name]], **kwargs)
                                    ["exact_match"] for inst, t in zip(instances, targets, strict=True)) / f.height
            return out

        return gsm8k
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)  # SuperNI's default_rouge_scorer

    def normalize_answer(s: str) -> str:  # SuperNI eval/automatic/evaluation.py
        def white_space_fix(text: str) -> str:
            return " ".join(text.split())

        def remove_punc(text: str) -> str:
            exclude = set(string.punctuation)
            return "".join(ch for ch in text if ch not in exclude)

        return white_space_fix(remove_punc(s.lower()))

    def superni(f: pl.DataFrame) -> dict:
        em = fc = rl = 0.0
        for pred, gold, labels in f.select("response", "target", "labels").iter_rows():
            em += max(normalize_answer(pred) == normalize_answer(g) for g in gold)
            fc += normalize_answer(pred) in {normalize_answer(l) for l in labels}
            rl += max(scorer.score(prediction=pred, target=g)["rougeL"].fmeasure for g in gold)
        return {"exact_match": em / f.height, "format_correct": fc / f.height, "rougeL": rl / f.height}

    return superni


def measure(args: argparse.Namespace) -> None:
    """Child process: load the workload, warm up, time one scoring pass; print a JSON line."""
    import polars as pl

    frame = pl.read_parquet(args.data, n_rows=args.rows)
    score = ours(args.bench) if args.impl == "capdrift" else reference(args.bench)
    score(frame.head(64))
    rss_loaded = round(peak_rss_mib() * 1024)
    t0, c0 = time.perf_counter(), time.process_time()
    result = score(frame)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "rows": frame.height, "rss_before_scoring_kib": rss_loaded,
                      "vm_hwm_kib": round(peak_rss_mib() * 1024), "result": {k: float(v) for k, v in result.items()}}))


class _Popen(subprocess.Popen):
    """Popen whose wait() reaps with os.wait4, keeping the child's own rusage (its peak RSS)."""

    rusage = None

    def _try_wait(self, wait_flags):  # type: ignore[no-untyped-def]
        try:
            pid, sts, self.rusage = os.wait4(self.pid, wait_flags)
        except ChildProcessError:
            pid, sts = self.pid, 0
        return pid, sts


def run_child(bench: str, impl: str, data: Path, rows: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "_measure", "--bench", bench, "--impl", impl,
           "--data", str(data), "--rows", str(rows)]
    load = os.getloadavg()[0]
    proc = _Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{stderr[-3000:]}")
    out = json.loads(stdout.strip().splitlines()[-1])
    out["load_avg_1m_before"] = round(load, 2)
    out["ru_maxrss_kib"] = proc.rusage.ru_maxrss if proc.rusage else None
    out["parent_rss_kib"] = round(peak_rss_mib() * 1024)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd")
    m = sub.add_parser("_measure")
    m.add_argument("--bench", choices=BENCHMARKS, required=True)
    m.add_argument("--impl", choices=("capdrift", "reference"), required=True)
    m.add_argument("--data", type=Path, required=True)
    m.add_argument("--rows", type=int, required=True)
    b = sub.add_parser("_build")
    b.add_argument("--bench", choices=BENCHMARKS, required=True)
    b.add_argument("--rows", type=int, required=True)
    b.add_argument("--seed", type=int, required=True)
    b.add_argument("--data", type=Path, required=True)
    ap.add_argument("--benchmarks", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    ap.add_argument("--sizes", nargs="+", type=int, default=[100_000, 1_000_000])
    ap.add_argument("--repeats", type=int, default=3, help="Children per (benchmark, size, implementation).")
    ap.add_argument("--repeats-large", type=int, default=1,
                    help="Repeats of capdrift's IFEval at sizes >= 1M (each takes ~10 min on 2 busy cores).")
    ap.add_argument("--ref-rows", nargs="*", default=[], metavar="BENCH=N",
                    help=f"Rows the reference is timed on (default {DEFAULT_REF_ROWS}).")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "capdrift_scoring_bench")
    ap.add_argument("--out", type=Path, default=ROOT / "kernels_bench" / "results" / "scoring_bench.json")
    ap.add_argument("--plot", action="store_true", help="Also write a PNG beside the JSON (matplotlib).")
    args = ap.parse_args()
    if args.cmd == "_measure":
        measure(args)
        return
    if args.cmd == "_build":
        BUILDERS[args.bench](args.rows, args.seed, data_dir()).write_parquet(args.data)
        return

    ref_rows = dict(DEFAULT_REF_ROWS)
    for item in args.ref_rows:
        bench, _, n = item.partition("=")
        ref_rows[bench] = int(n)
    args.workdir.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    results: list[dict] = []
    speedups: list[dict] = []
    for bench in args.benchmarks:
        for size in args.sizes:
            data = workload(bench, size, args.seed, args.workdir)
            plan = {}
            for impl in ("capdrift", "reference"):
                rows = size if impl == "capdrift" else min(size, ref_rows[bench])
                large = (impl, bench) == ("capdrift", "ifeval") and size >= 1_000_000
                plan[impl] = (rows, args.repeats_large if large else args.repeats)
            runs: dict[str, list[dict]] = {"capdrift": [], "reference": []}
            # interleaved (ours, reference, ours, ...) so both see the same load on a shared machine
            for r in range(max(n for _, n in plan.values())):
                for impl, (rows, repeats) in plan.items():
                    if r >= repeats:
                        continue
                    run = run_child(bench, impl, data, rows)
                    runs[impl].append(run)
                    print(f"  {bench} n={size} {impl} rows={rows} repeat {r + 1}/{repeats}: "
                          f"{run['seconds']:.2f} s wall, {run['cpu_seconds']:.2f} s CPU, "
                          f"peak {run['vm_hwm_kib'] / 1024:.0f} MiB, load {run['load_avg_1m_before']}", flush=True)
            for impl, (rows, _) in plan.items():
                results.append(_summary(bench, size, impl, rows, runs[impl]))
            ours_r, ref_r = results[-2], results[-1]
            speedups.append({
                "benchmark": bench, "rows": size,
                "wall": round(ours_r["responses_per_s"] / ref_r["responses_per_s"], 2),
                "cpu": round(ours_r["responses_per_cpu_s"] / ref_r["responses_per_cpu_s"], 2),
            })
    out = {
        "benchmark": "scoring", "started": started, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "host": {"node": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
                 "machine": platform.machine()},
        "versions": _versions(),
        "notes": [
            "responses_per_s = measured_rows / median scoring wall time (imports, data load, 64-row warm-up excluded); "
            "responses_per_cpu_s = measured_rows / median scoring CPU time (time.process_time: all threads, less "
            "sensitive to other users' load; Polars runs multi-threaded, the references single-threaded)",
            "repeats of ours and the reference are interleaved so that both see similar load",
            "reference rows < rows: timed on the first measured_rows rows of the same workload, seconds_median "
            "extrapolated linearly (extrapolated: true); peak RSS is then that of the measured run",
            "peak_rss_mib = the child's VmHWM (its own peak resident set), including imports and the loaded "
            "workload (rss_before_scoring_mib = VmHWM after load + warm-up); ru_maxrss_mib = os.wait4's value, "
            "which also counts the parent's resident set at spawn (parent_peak_rss_mib)",
            "ifeval rows are resampled real responses made distinct (two spaces doubled per row)",
        ],
        "speedup_ours_over_reference": speedups,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")
    if args.plot:
        plot(out, args.out.with_suffix(".png"))


def _summary(bench: str, size: int, impl: str, rows: int, runs: list[dict]) -> dict:
    seconds = statistics.median(x["seconds"] for x in runs)
    cpu = statistics.median(x["cpu_seconds"] for x in runs)
    return {
        "benchmark": bench, "rows": size, "implementation": impl, "measured_rows": rows,
        "extrapolated": rows < size,
        "seconds_median": round(seconds * size / rows, 3),
        "measured_seconds": [round(x["seconds"], 3) for x in runs],
        "measured_cpu_seconds": [round(x["cpu_seconds"], 3) for x in runs],
        "responses_per_s": round(rows / seconds, 1),
        "responses_per_cpu_s": round(rows / cpu, 1),
        "peak_rss_mib_median": round(statistics.median(x["vm_hwm_kib"] for x in runs) / 1024, 1),
        "peak_rss_mib": [round(x["vm_hwm_kib"] / 1024, 1) for x in runs],
        "ru_maxrss_mib": [round(x["ru_maxrss_kib"] / 1024, 1) for x in runs],
        "parent_peak_rss_mib": round(max(x["parent_rss_kib"] for x in runs) / 1024, 1),
        "rss_before_scoring_mib": [round(x["rss_before_scoring_kib"] / 1024, 1) for x in runs],
        "load_avg_1m_before": [x["load_avg_1m_before"] for x in runs],
        "scores": runs[0]["result"],
    }


def _versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {}
    for name in ("polars", "lm-eval", "rouge-score", "nltk", "langdetect", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def plot(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = out["results"]
    labels = sorted({(r["benchmark"], r["rows"]) for r in res}, key=lambda x: (BENCHMARKS.index(x[0]), x[1]))
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.4
    for k, impl in enumerate(("capdrift", "reference")):
        vals = [next((r["responses_per_s"] for r in res if (r["benchmark"], r["rows"], r["implementation"])
                      == (b, n, impl)), 0) for b, n in labels]
        ax.bar([i + (k - 0.5) * width for i in range(len(labels))], vals, width, label=impl)
    ax.set_xticks(range(len(labels)), [f"{b}\n{n:,}" for b, n in labels])
    ax.set_yscale("log")
    ax.set_ylabel("responses / s (log)")
    ax.set_title(f"Scoring throughput ({out['host']['cpus']} CPUs, medians)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
