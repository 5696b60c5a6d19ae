"""The time from ``ioc demo`` to the first alert and the first incident on the dashboard.

Starts ``ioc demo`` as a newcomer would (its own data directory, embedded PostgreSQL and
broker on free ports), reads the dashboard address it prints, opens it in headless
Chromium and times, from the start: the address, the first alert on ``/api/v1/alerts``,
the first incident on ``/api/v1/incidents``, and the first incident card on the screen.
The last run's figures go to ``benchmarks/results/demo_first.json``.

With ``--screenshots DIR`` it then lets the city run a while longer, charts the first
alert's sensor and takes the documentation's pictures of the demo: ``dashboard-wall.png``
(1920x1080) and ``dashboard-laptop.png`` (1366x768), in ``--lang`` (docs/dashboard.md).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from ioc.embedded import free_port

RESULTS = Path(__file__).with_name("results") / "demo_first.json"
ADDRESS = re.compile(r"Dashboard: (http://\S+)/#token=(\S+)")
CHROMIUM = os.environ.get("IOC_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def _first(api: str, token: str, path: str) -> bool:
    try:
        r = httpx.get(
            f"{api}{path}", params={"limit": 1}, headers={"Authorization": f"Bearer {token}"}
        )
    except httpx.HTTPError:
        return False
    return r.status_code == 200 and bool(r.json().get("items"))


SHOTS = {"wall": (1920, 1080), "laptop": (1366, 768)}


def _screenshots(browser: Any, api: str, token: str, shots: Path, lang: str) -> None:
    """The dashboard of the running demo at a wall's and a laptop's size."""
    for name, (width, height) in SHOTS.items():
        page = browser.new_page(
            viewport={"width": width, "height": height}, locale="vi-VN" if lang == "vi" else "en-GB"
        )
        page.goto(f"{api}/#token={token}")
        page.wait_for_selector("#incidents li.incident", timeout=60_000)
        page.locator("li.alert .btn-chart").first.click()
        page.wait_for_selector("#chart[data-points]:not([data-points='0'])", timeout=60_000)
        page.wait_for_timeout(1_500)
        page.screenshot(path=str(shots / f"dashboard-{name}.png"))
        page.close()


def run(
    timeout_s: float,
    data_dir: Path,
    log: Path | None = None,
    shots: Path | None = None,
    settle_s: float = 60.0,
    lang: str = "vi",
) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    port = free_port()
    cmd = [sys.executable, "-m", "ioc", "demo", "--data-dir", str(data_dir), "--port", str(port)]
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    lines: list[str] = []
    found: dict[str, str] = {}
    got = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            m = ADDRESS.search(line)
            if m and not got.is_set():
                found["api"], found["token"] = m.group(1), m.group(2)
                got.set()

    threading.Thread(target=read, daemon=True).start()
    times: dict[str, Any] = {}
    try:
        if not got.wait(timeout_s):
            raise RuntimeError("no dashboard address:\n" + "".join(lines[-30:]))
        times["address_s"] = round(time.monotonic() - started, 1)
        api, token = found["api"], found["token"]
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
            )
            page = browser.new_page(viewport={"width": 1920, "height": 1080}, locale="vi-VN")
            page.goto(f"{api}/#token={token}")
            times["dashboard_open_s"] = round(time.monotonic() - started, 1)
            deadline = started + timeout_s
            while time.monotonic() < deadline and len(times) < 5:
                now = round(time.monotonic() - started, 1)
                if "first_alert_api_s" not in times and _first(api, token, "/api/v1/alerts"):
                    times["first_alert_api_s"] = now
                if "first_incident_api_s" not in times and _first(api, token, "/api/v1/incidents"):
                    times["first_incident_api_s"] = now
                if (
                    "first_incident_card_s" not in times
                    and page.locator("#incidents li.incident").count()
                ):
                    times["first_incident_card_s"] = now
                time.sleep(0.5)
            if shots is not None and "first_incident_card_s" in times:
                time.sleep(settle_s)  # more of the city's alerts and incidents come in
                _screenshots(browser, api, token, shots, lang)
            browser.close()
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if log is not None:
        log.write_text("".join(lines))
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ioc bench demo-first", description=__doc__)
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after (s)")
    parser.add_argument("--data-dir", type=Path, help="keep the demo's data here (a next run)")
    parser.add_argument("--log", type=Path, help="write the demo's output to this file")
    parser.add_argument(
        "--screenshots", type=Path, help="then take the docs' wall and laptop pictures here"
    )
    parser.add_argument("--settle", type=float, default=60.0, help="s to wait before them")
    parser.add_argument("--lang", choices=("vi", "en"), default="vi", help="the pictures' language")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ioc-demo-first-") as tmp:
        data_dir = args.data_dir or Path(tmp) / "data"
        first_run = not data_dir.exists()
        times = run(args.timeout, data_dir, args.log, args.screenshots, args.settle, args.lang)
    times["first_run"] = first_run
    times["cpus"] = os.cpu_count()
    times["load_1min"] = round(os.getloadavg()[0], 1)
    print(json.dumps(times, indent=2))
    RESULTS.write_text(json.dumps(times, indent=2) + "\n")
    return 0 if "first_incident_card_s" in times else 1
