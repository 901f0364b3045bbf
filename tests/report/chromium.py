"""Open a page in a real headless Chromium (Debian's ``chromium``): the DOM after its scripts ran
(``--dump-dom``) and the network requests the *page* made, from Chromium's own net log (``--log-net-log``;
a request whose network isolation key is the ``file://`` site came from the page, not from the browser's
own services)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]


def chromium_or_skip() -> str:
    """The Chromium binary; skip when absent unless ``CAPDRIFT_REQUIRE_CHROMIUM=1`` (``.ci/run`` sets it)."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("CAPDRIFT_REQUIRE_CHROMIUM") == "1":
            pytest.fail("chromium not installed (apt-get install -y chromium)")
        pytest.skip("chromium not installed (apt-get install -y chromium; .ci/run installs it)")
    return exe


def page_requests(netlog: Path) -> list[str]:
    """URLs the page itself requested (net-log ``URL_REQUEST_START_JOB`` events of the ``file://`` site)."""
    log = json.loads(netlog.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [e["params"]["url"] for e in log["events"]
            if e["type"] == start and "file://" in str(e.get("params", {}).get("network_isolation_key", ""))]


def open_page(url: str, screenshot: Path | None = None, size: str = "1300,1000") -> tuple[str, list[str]]:
    """``(dom, page_requests)`` of ``url`` (a ``file://`` URL, hash allowed); with ``screenshot``, also a PNG."""
    exe = chromium_or_skip()
    with tempfile.TemporaryDirectory() as tmp:
        netlog = Path(tmp) / "net.json"
        cmd = [exe, *FLAGS, f"--user-data-dir={tmp}/profile", f"--log-net-log={netlog}"]
        out = subprocess.run([*cmd, "--dump-dom", url], capture_output=True, text=True, timeout=180, check=True)
        requests = page_requests(netlog)
        if screenshot is not None:
            subprocess.run([*cmd, f"--window-size={size}", f"--screenshot={screenshot}", url], capture_output=True,
                           timeout=180, check=True)
    return out.stdout, requests
