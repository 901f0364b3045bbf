"""Bar chart of ``gpu_bench.json``'s output tokens/s per mode: ``python -m kernels_bench.gpu.plot_gpu IN.json OUT.png``."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    """CLI (see module doc)."""
    doc = json.loads(Path(sys.argv[1]).read_text())
    rates = {k: v for k, v in doc["summary"].get("tok_s", {}).items() if v}
    if not rates:
        print("nothing to plot")
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.barh(list(rates), list(rates.values()), color="tab:blue")
    for i, v in enumerate(rates.values()):
        ax.text(v, i, f" {v:,.0f}", va="center")
    c = doc["config"]
    ax.set_xlabel("output tokens/s")
    ax.set_title(f"{c['shape']} {c['dtype']} on {c['device']}: base + N={c['N']} rank-{c['rank']} adapters, "
                 f"P={c['P']}, T={c['T']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=110)
    print(f"wrote {sys.argv[2]}")


if __name__ == "__main__":
    main()
