"""The sample browser of report.html in a real headless Chromium: choosing a cell lists its items with both
responses, the page runs without JavaScript errors and makes no network request, and untrusted response text
cannot inject markup or script."""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from capdrift_fast.config import BASE_NAME
from capdrift_fast.report import write_report
from tests.report.chromium import open_page

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "run_0_1_0"
INJECTION = ('</script><script>document.title="PWNED"</script><img src=x onerror="document.title=\'PWNED2\'">'
             '<b id="injected">bold?</b>')


def _embedded(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="capdrift-data">(.*?)</script>', page, re.S)
    assert m, "no embedded sample data"
    return json.loads(m.group(1))


def _nl(text: str) -> str:
    """Newlines as an HTML parser sees them (CR LF and CR become LF)."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _blocks(dom: str, cls: str) -> list[str]:
    """Texts of the ``<pre>`` of every ``<div class="CLS">`` block in the rendered DOM (HTML-unescaped)."""
    return [_nl(html.unescape(t)) for t in re.findall(rf'<div class="{cls}"><h5>[^<]*</h5><pre>(.*?)</pre>', dom, re.S)]


def check_cell(report: Path, key: str, generations: pl.DataFrame, kind: str = "all") -> str:
    """Open ``report#cell=key`` and check the listed items against the run's generations; return the DOM."""
    page = report.read_text()
    cell = next(c for c in _embedded(page)["cells"] if c["key"] == key)
    dom, requests = open_page(f"{report.as_uri()}#cell={key}&kind={kind}")
    assert requests == [], f"the page made network requests: {requests}"
    assert 'data-browser-ready="1"' in dom, "the browser script did not finish"
    errors = re.search(r'<pre id="js-errors"[^>]*data-count="(\d+)"[^>]*>(.*?)</pre>', dom, re.S)
    assert errors and errors.group(1) == "0" and errors.group(2) == "", f"JavaScript errors: {errors and errors.group(2)}"
    listed = re.findall(r'<div class="item (\w+)" data-sample="([^"]+)"', dom)
    expected = [(k, sid) for sid, k in cell["items"] if kind == "all" or k == kind or (kind == "flips" and k in ("lost", "gained", "up", "down"))]
    assert listed == expected and listed, (listed[:3], expected[:3])
    adapter, task, _metric = key.split("/")
    resp = {(r["adapter"], r["sample_id"]): r["response"] for r in
            generations.filter(pl.col("task") == task).iter_rows(named=True)}
    assert _blocks(dom, "base-response") == [_nl(resp[(BASE_NAME, sid)]) for _, sid in listed]
    assert _blocks(dom, "adapter-response") == [_nl(resp[(adapter, sid)]) for _, sid in listed]
    summary = html.unescape(re.search(r'id="cell-summary">([^<]*)<', dom).group(1))
    assert f"{cell['n']} items" in summary and f"{len(listed)} listed" in summary
    return dom


def test_network_check_catches_a_page_that_loads_something(tmp_path: Path):
    """The check itself can fail: a page fetching an URL and an image is caught."""
    page = tmp_path / "p.html"
    page.write_text('<html><body><img src="http://127.0.0.1:9/x.png"><script>fetch("http://127.0.0.1:9/y").catch(function(){})</script></body></html>')
    _, requests = open_page(page.as_uri())
    assert "http://127.0.0.1:9/x.png" in requests and "http://127.0.0.1:9/y" in requests


def test_browser_lists_items_and_resists_injection(tmp_path: Path, data_dir: Path):
    from tests.test_golden import _portable_copy

    run = _portable_copy(tmp_path, data_dir)
    # an untrusted response: the base model's answer to a gsm8k item becomes an injection attempt
    shard = sorted((run / "generations").glob("*.arrow"))
    tables = {p: ipc.open_file(pa.OSFile(str(p))).read_all() for p in shard}
    gens = pl.concat([pl.from_arrow(t) for t in tables.values()])
    target = gens.filter((pl.col("adapter") == BASE_NAME) & (pl.col("task") == "gsm8k")).sort("sample_id")["request_id"][0]
    for p, t in tables.items():
        frame = pl.from_arrow(t)
        if target in frame["request_id"].to_list():
            frame = frame.with_columns(response=pl.when(pl.col("request_id") == target).then(pl.lit(INJECTION))
                                       .otherwise(pl.col("response")))
            with pa.OSFile(str(p), "wb") as sink, ipc.new_file(sink, t.schema) as w:
                w.write_table(frame.to_arrow().cast(t.schema))
    gens = gens.with_columns(response=pl.when(pl.col("request_id") == target).then(pl.lit(INJECTION)).otherwise(pl.col("response")))
    files = write_report([run], max_items=5)
    page = files.html.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "the page references an URL"
    assert INJECTION not in page and "</script><script>document.title" not in page  # escaped in the JSON
    data = _embedded(page)
    assert all(c["shown"] <= 5 and c["shown"] + c["left_out"] == c["n"] for c in data["cells"])
    key = "instruct-r8/gsm8k/numeric_match_strict"
    dom = check_cell(files.html, key, gens)
    assert INJECTION in _blocks(dom, "base-response")  # shown as text ...
    assert "PWNED" not in re.search(r"<title>(.*?)</title>", dom).group(1)  # ... never run
    assert '<b id="injected">' not in dom and '<img src="x"' not in dom  # as text only (&lt;b ...)
    # flips first, then the filter by kind
    flipped = next(c for c in data["cells"] if c["counts"].get("lost") or c["counts"].get("gained"))
    kinds = [k for _, k in flipped["items"]]
    assert kinds[0] in ("lost", "gained")
    check_cell(files.html, flipped["key"], gens, kind="flips")


@pytest.mark.engine
def test_demo_report_browser_in_chromium(demo_run):
    """The demo run's own report: the cell with the most flips lists its items with both responses."""
    report = demo_run.run_dir / "report.html"
    data = _embedded(report.read_text())
    cell = max(data["cells"], key=lambda c: (sum(v for k, v in c["counts"].items() if k in ("lost", "gained", "up", "down")), c["key"]))
    gens = pl.scan_ipc(str(demo_run.run_dir / "generations" / "*.arrow")).collect()
    check_cell(report, cell["key"], gens)
