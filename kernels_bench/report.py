"""Markdown tables from the benchmark JSONs (what kernels_bench/README.md quotes).

    python -m kernels_bench.report [--dir kernels_bench/results] [--suffix _quick]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _f(v: Any, nd: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def e2e_table(res: dict[str, Any]) -> str:
    """One row per (N, rank, mode): output tokens/s (wall and generation only), wall s, boots, and our
    pass's speed-up over the mode (wall and generation), and fraction of the base-only ceiling."""
    lines = [
        "| N | rank | mode | reps | wall s | tok/s (wall) | tok/s (gen) | ours x faster (wall) | ours x faster (gen) "
        "| of base ceiling (wall) | of base ceiling (gen) |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["summary"]:
        mode = r["mode"] + (" (modelled)" if r.get("modelled") else "")
        lines.append(
            f"| {r['n_adapters']} | {r['rank']} | {mode} | {r['reps']} | {_f(r['wall_s'])} | "
            f"{_f(r['tokens_per_s_wall'], 0)} | {_f(r['tokens_per_s_gen'], 0)} | {_f(r.get('ours_speedup_wall'), 2)} | "
            f"{_f(r.get('ours_speedup_gen'), 2)} | {_f(r.get('fraction_of_base_ceiling_wall'), 2)} | "
            f"{_f(r.get('fraction_of_base_ceiling_gen'), 2)} |")
    errors = [r for r in res["records"] if "error" in r]
    for r in errors:
        lines.append(f"| {r['n_adapters']} | {r['rank']} | {r['mode']} | error: {r['error'][:120]} |||||||||")
    return "\n".join(lines)


def e2e_ratio_table(res: dict[str, Any]) -> str:
    """One row per (N, rank): our pass's output tokens/s (wall; generation only in brackets), how many
    times faster it is than each alternative (wall / generation only; ``*`` = modelled), and the
    fraction of the base-only ceiling it reaches (wall / generation only)."""
    rows: dict[tuple[int, Any], dict[str, Any]] = {}
    for r in res["summary"]:
        rows.setdefault((r["n_adapters"], r["rank"]), {})[r["mode"]] = r
    others = [m for m in ("boot_per_adapter", "generate_per_adapter", "hf_peft", "ours_vllm_ops")
              if any(m in d for d in rows.values())]
    eager = any("base_only_eager" in d for d in rows.values())
    head = (["N", "rank", "ours tok/s wall (gen)"] + [f"vs {m}" for m in others] + ["of base-only ceiling"]
            + (["of eager base-only (gen)"] if eager else []))
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * 2 + "---:|" * (len(head) - 2)]
    for (n, rank), d in sorted((k, v) for k, v in rows.items() if k[1] != "none"):
        o = d.get("ours")
        if o is None:
            continue
        cells = [str(n), str(rank), f"{_f(o['tokens_per_s_wall'], 0)} ({_f(o['tokens_per_s_gen'], 0)})"]
        for m in others:
            r = d.get(m)
            cells.append("-" if r is None or r.get("ours_speedup_wall") is None else
                         f"{r['ours_speedup_wall']:.1f}x / {r['ours_speedup_gen']:.1f}x" + ("*" if r.get("modelled") else ""))
        cells.append("-" if o.get("fraction_of_base_ceiling_wall") is None else
                     f"{o['fraction_of_base_ceiling_wall']:.2f} / {o['fraction_of_base_ceiling_gen']:.2f}")
        if eager:
            cells.append(_f(o.get("fraction_of_eager_base_gen"), 2))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def kernels_table(res: dict[str, Any]) -> str:
    """Milliseconds per layer call per (rank, batch, distinct adapters, impl)."""
    rows: dict[tuple, dict[str, Any]] = {}
    for r in res["results"]:
        rows.setdefault((r["rank"], r["batch"], r["n_adapters"]), {})[r["impl"]] = r
    impls = ("base", "punica", "grouped", "loop", "merged")
    lines = ["| rank | batch | distinct adapters | " + " | ".join(f"{i} ms" for i in impls) + " | best LoRA impl |",
             "|---:|---:|---:|" + "---:|" * len(impls) + "---|"]
    for (rank, batch, n), d in sorted(rows.items()):
        cells = [(_f(d[i]["time_s"] * 1e3, 2) if i in d and "time_s" in d[i] else "skip") for i in impls]
        timed = {i: d[i]["time_s"] for i in impls[1:] if i in d and "time_s" in d[i]}
        best = min(timed, key=timed.get) if timed else "-"
        lines.append(f"| {rank} | {batch} | {n} | " + " | ".join(cells) + f" | {best} |")
    bad = [c for c in res["correctness"] if not c["ok"]]
    lines.append("")
    lines.append(f"Correctness vs float64 reference: {sum(c['ok'] for c in res['correctness'])}/"
                 f"{len(res['correctness'])} cases within 1e-5; failing: "
                 + (", ".join(f"{c['impl']} (batch {c['batch']}, {c['base_tokens']} base tokens, "
                             f"err {c['max_rel_error']:.2f})" for c in bad) or "none"))
    return "\n".join(lines)


def tune_table(res: dict[str, Any]) -> str:
    """One row per variant: tokens/s, vs baseline, median TTFT, first result, boot."""
    lines = ["| variant | reps | tok/s (gen) | vs baseline | median TTFT s | first result s | boot s |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for s in res["summary"]:
        lines.append(f"| {s['variant']} | {s['reps']} | {_f(s['tokens_per_s'], 0)} | "
                     f"{_f(s.get('vs_baseline_tokens_per_s'), 2)} | {_f(s['ttft_median_s'], 2)} | "
                     f"{_f(s['first_result_s'], 2)} | {_f(s['boot_s'])} |")
    return "\n".join(lines)


def memory_table(res: dict[str, Any]) -> str:
    """One row per (mode, requests): RSS after boot, peak RSS, growth, throughput."""
    lines = ["| mode | requests | RSS after engine start MiB | peak RSS MiB | peak growth MiB | requests/s | gen s |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in res["records"]:
        if "error" in r:
            lines.append(f"| {r['mode']} | {r['requests']} | error: {r['error'][-150:]} |||||")
            continue
        lines.append(f"| {r['mode']} | {r['requests']:,} | {_f(r['rss_after_boot_mib'], 0)} | {_f(r['peak_rss_mib'], 0)} | "
                     f"{_f(r['peak_growth_mib'], 0)} | {_f(r['requests_per_s'], 0)} | {_f(r['gen_s'], 0)} |")
    return "\n".join(lines)


def _host(res: dict[str, Any]) -> str:
    h0, h1 = res.get("host_before", {}), res.get("host_after", {})
    return (f"_host: {h0.get('cpus')} CPUs, {h0.get('mem_gib')} GiB; load average before {h0.get('loadavg')}, "
            f"after {h1.get('loadavg')}; {h0.get('utc')}_")


def render(folder: Path, suffix: str = "") -> str:
    """All tables for the JSONs present in ``folder`` (names ``{bench}_cpu{suffix}.json``)."""
    parts = []
    for name, title, fn in (("e2e", "End to end", e2e_table), ("lora_kernels", "LoRA kernels", kernels_table),
                            ("tune", "Knobs of our pass", tune_table), ("memory", "Host memory", memory_table)):
        res = _load(folder / f"{name}_cpu{suffix}.json")
        if res is not None:
            body = fn(res)
            if name == "e2e":
                body = f"{e2e_ratio_table(res)}\n\nEvery measurement:\n\n{body}"
            parts.append(f"## {title} (`{name}_cpu{suffix}.json`)\n\n{_host(res)}\n\n{body}\n")
    return "\n".join(parts)


def main() -> None:
    """CLI: print the tables."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", type=Path, default=Path("kernels_bench/results"))
    ap.add_argument("--suffix", default="")
    args = ap.parse_args()
    print(render(args.dir, args.suffix))


if __name__ == "__main__":
    main()
