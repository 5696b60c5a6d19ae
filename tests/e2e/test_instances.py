"""Two of every part on one machine, against one Mosquitto and one PostgreSQL, as real processes.

Two ingestors on a shared subscription, analytics partitions 0/2 and 1/2, two API
processes with a websocket client on each:

* every reading is stored once, and both ingestors took a share;
* both partitions raise alerts, each alert once;
* every alert event reaches the websockets of both APIs, in the same order;
* a client that read from one API resumes on the other with no gap and no duplicate.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from core.codecs import encode_native
from tests.ingest.conftest import count, publish, wait_for
from tests.support.parts import REPO, PartProcess, ioc_env
from tests.support.servers import MosquittoServer, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.db, pytest.mark.mqtt]

GAUGES = 40  # water-level gauges; the first FLOODED of them flood (critical: >= 40 cm)
FLOODED = 20
READINGS = 50  # per gauge, in packs of 10


class AlertFeed:
    """A /ws/alerts client that keeps every frame."""

    def __init__(self, url: str) -> None:
        self.frames: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._ws: ClientConnection = connect(url, open_timeout=10)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            for text in self._ws:
                with self._lock:
                    self.frames.append(orjson.loads(text))

    def events(self) -> list[tuple[int, str, int]]:
        """(seq, action, alert id) of every alert frame, in arrival order."""
        with self._lock:
            return [
                (f["seq"], f["action"], f["alert"]["id"])
                for f in self.frames
                if f.get("type") == "alert"
            ]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._ws.close()
        self._thread.join(5)


def _metric(port: int, name: str, label: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    m = re.search(rf'^{name}\{{channel="{label}"\}} ([0-9.e+]+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[list[PartProcess]]:
    made: list[PartProcess] = []
    yield made
    for p in reversed(made):
        p.stop()


def test_two_of_every_part(
    db_url: str,
    make_broker: Callable[..., MosquittoServer],
    tmp_path: Path,
    parts: list[PartProcess],
) -> None:
    broker = make_broker()
    base = ioc_env(
        IOC_DATABASE_URL=db_url,
        IOC_MQTT_URL=broker.url,
        IOC_INGEST_UNKNOWN_SENSORS="register",
        IOC_INGEST_SHARED_GROUP="ingest",
        IOC_INGEST_METRICS_HOST="127.0.0.1",
        IOC_INGEST_BATCH_INTERVAL_MS="50",
        IOC_ANALYTICS_STAGES="rules",
        IOC_ANALYTICS_WARMUP_S="0",
        IOC_ANALYTICS_METRICS_PORT="0",
        IOC_API_HOST="127.0.0.1",
        IOC_LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
    )
    made = subprocess.run(
        [sys.executable, "-m", "ioc", "token", "create", "--role", "operator", "--name", "two"],
        cwd=REPO,
        env=base,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.split()[-1]

    def start(name: str, args: list[str], **env: str) -> PartProcess:
        part = PartProcess(args, {**base, **env}, tmp_path / f"{name}.log")
        part.start()
        parts.append(part)
        return part

    metrics = [free_port(), free_port()]
    ingests = [
        start(f"ingest{i}", ["ingest"], IOC_INGEST_CLIENT_ID=f"ingest-{i}",
              IOC_INGEST_METRICS_PORT=str(metrics[i]))
        for i in range(2)
    ]  # fmt: skip
    analytics = [
        start(f"analytics{i}", ["analytics"], IOC_ANALYTICS_PARTITION=f"{i}/2") for i in range(2)
    ]
    api_ports = [free_port(), free_port()]
    apis = [start(f"api{i}", ["api"], IOC_API_PORT=str(api_ports[i])) for i in range(2)]
    for p in ingests:
        p.wait_for_line("subscribed", 60)
    for p in analytics:
        p.wait_for_line("MQTT connected", 60)
    for p, port in zip(apis, api_ports, strict=True):
        wait_for(lambda port=port: _healthy(port), timeout=60)
        assert p.proc is not None and p.proc.poll() is None
    time.sleep(0.5)  # analytics subscribes right after it connects

    feeds = [AlertFeed(f"ws://127.0.0.1:{port}/ws/alerts?token={token}") for port in api_ports]
    try:
        gauges = [f"wl-{k:03d}" for k in range(GAUGES)]
        flooded = gauges[:FLOODED]
        parts_of = {g: zlib.crc32(g.encode()) % 2 for g in flooded}
        assert set(parts_of.values()) == {0, 1}, "the flooded gauges span both partitions"
        t0 = time.time() - READINGS * 60
        msgs = []
        for k, g in enumerate(gauges):
            for j in range(0, READINGS, 10):
                level = 60.0 if g in flooded and j >= READINGS - 10 else 5.0 + k % 3
                entries = [(t0 + (j + n) * 60, {"water_level": level}) for n in range(10)]
                msgs.append((f"ioc/v1/water_level/{g}/data", encode_native(entries)))
        publish(broker.url, msgs)

        total = GAUGES * READINGS
        wait_for(lambda: count(db_url, "SELECT count(*) FROM readings") >= total, timeout=30)
        time.sleep(0.5)
        assert count(db_url, "SELECT count(*) FROM readings") == total
        shares = [_metric(port, "ioc_ingest_messages_total", "data") for port in metrics]
        assert all(s > 0 for s in shares), f"one ingestor took nothing: {shares}"
        assert sum(shares) >= len(msgs)

        opened = "SELECT count(*) FROM alert_events WHERE action = 'opened'"
        wait_for(lambda: count(db_url, opened) >= FLOODED, timeout=30)
        assert count(db_url, "SELECT count(DISTINCT sensor) FROM alerts") == FLOODED
        assert count(db_url, "SELECT count(*) FROM alerts") == FLOODED  # each alert once
        head = _settled(db_url)

        # every event on both websockets, in the same order
        for feed in feeds:
            wait_for(lambda feed=feed: feed.events() and feed.events()[-1][0] >= head, timeout=20)
        first, second = feeds[0].events(), feeds[1].events()
        assert first == second
        assert len({e[2] for e in first if e[1] == "opened"}) == FLOODED

        # resume on the other API from the middle of what the first one sent
        middle = first[len(first) // 2][0]
        resumed = AlertFeed(f"ws://127.0.0.1:{api_ports[1]}/ws/alerts?token={token}&since={middle}")
        feeds.append(resumed)
        wait_for(lambda: resumed.events() and resumed.events()[-1][0] >= head, timeout=20)
        assert resumed.events() == [e for e in first if e[0] > middle]
    finally:
        for feed in feeds:
            feed.close()
    for p in [*ingests, *analytics, *apis]:
        assert p.proc is not None and p.proc.poll() is None, p.tail()


def _settled(dsn: str) -> int:
    """The newest alert event's seq (incident events left out) once no new event of any
    kind came for a second."""
    head, since = -1, time.monotonic()
    while time.monotonic() - since < 1.0:
        now = count(dsn, "SELECT coalesce(max(seq), 0) FROM alert_events")
        if now != head:
            head, since = now, time.monotonic()
        time.sleep(0.1)
    return count(dsn, "SELECT coalesce(max(seq), 0) FROM alert_events WHERE alert_id IS NOT NULL")


def _healthy(port: int) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    return False
