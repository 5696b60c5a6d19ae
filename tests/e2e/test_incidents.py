"""Incidents end to end, as real processes: Mosquitto, PostgreSQL, ingest, two analytics
partitions (0/2 and 1/2) and the API.  Twelve air-quality stations in one district go
critical within a minute: one open incident covers all twelve, although each partition
saw only some of them.  A thirteenth station under maintenance raises no alert shown and
joins no incident.  The duty route that asks for incidents is paged for the episode,
not for each station; a route of alerts gets each station's alert, none of the one under
maintenance."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import paho.mqtt.client as mqtt
import pytest

from analytics.config import Partition
from core.codecs import encode_native
from core.topics import data_topic, meta_topic
from tests.e2e.test_pipeline import ROOT, Stack, _wait_http
from tests.notify.conftest import SECRET, Receiver, receiver
from tests.support.servers import MosquittoServer, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.db, pytest.mark.mqtt]
__all__ = ["receiver"]  # the fixture

STATIONS = [f"aq-hk-{i:02d}" for i in range(12)]
IN_MAINTENANCE = "aq-hk-mt"
CENTRE = (21.0285, 105.8542)  # Hoàn Kiếm


def _token(env: dict[str, str], role: str) -> str:
    made = subprocess.run(
        [sys.executable, "-m", "ioc", "token", "create", "--role", role, "--name", f"e2e-{role}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    return made.stdout.split()[-1]


def _wait_log(stack: Stack, name: str, words: str, timeout: float) -> None:
    part = next(p for p in stack.parts if p.name == name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stack.check_alive()
        if words in part.log.read_text(errors="replace"):
            return
        time.sleep(0.2)
    pytest.fail(f"ioc {name} did not log {words!r} within {timeout} s:\n{part.tail()}")


@pytest.fixture
def partitioned(
    db_url: str, make_broker: Callable[..., MosquittoServer], tmp_path: Path, receiver: Receiver
) -> Any:
    broker = make_broker()
    port = free_port()
    base = receiver.url.removesuffix("/hook")
    routes = tmp_path / "routes.yaml"
    routes.write_text(
        "routes:\n"
        f"  - {{name: episodes, subject: incident, min_severity: critical, webhook: {base}/inc}}\n"
        f"  - {{name: stations, min_severity: critical, webhook: {base}/alerts}}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
    env.update(
        IOC_DATABASE_URL=db_url,
        IOC_MQTT_URL=broker.url,
        IOC_INGEST_UNKNOWN_SENSORS="register",
        IOC_INGEST_METRICS_PORT="0",
        IOC_ANALYTICS_METRICS_PORT="0",
        IOC_API_HOST="127.0.0.1",
        IOC_API_PORT=str(port),
        IOC_NOTIFY_ROUTES=str(routes),
        IOC_NOTIFY_WEBHOOK_SECRET=SECRET,
        PYTHONUNBUFFERED="1",
    )
    s = Stack(env=env, api=f"127.0.0.1:{port}", token=_token(env, "operator"), tmp=tmp_path)
    try:
        s.start("ingest", "ingest")
        for p in ("0/2", "1/2"):
            s.start(f"analytics-{p[0]}", "analytics", env={"IOC_ANALYTICS_PARTITION": p})
        api = s.start("api", "api")
        _wait_http(f"http://{s.api}/healthz", api, 60)
        for name in ("analytics-0", "analytics-1"):
            _wait_log(s, name, "MQTT connected", 60)
        yield s, broker
    finally:
        codes = {p.name: p.stop() for p in reversed(s.parts)}
        bad = {n: c for n, c in codes.items() if c not in (0, -2, 130)}
        assert not bad, f"parts did not stop cleanly: {bad}\n{s.logs()}"


@pytest.mark.timeout(240)
def test_twelve_stations_going_critical_are_one_incident_across_partitions(
    partitioned: tuple[Stack, MosquittoServer], receiver: Receiver
) -> None:
    stack, broker = partitioned
    owners = {
        Partition.parse(p).index
        for s in STATIONS
        for p in ("0/2", "1/2")
        if Partition.parse(p).owns(s)
    }
    assert owners == {0, 1}, "the stations must span both partitions"
    engineer = _token(stack.env, "engineer")
    base = f"http://{stack.api}"
    now = datetime.now(UTC)
    with httpx.Client(base_url=base, timeout=30) as api:
        r = api.post(
            "/api/v1/maintenance",
            headers={"Authorization": f"Bearer {engineer}"},
            json={
                "sensors": [IN_MAINTENANCE],
                "start": (now - timedelta(hours=1)).isoformat(),
                "end": (now + timedelta(hours=1)).isoformat(),
                "reason": "thay bộ lọc / filter change",
            },
        )
        assert r.status_code == 201, r.text

        stations = [*STATIONS, IN_MAINTENANCE]
        _send(  # within 3 km of each other, one district
            broker,
            {
                sid: (
                    CENTRE[0] + 0.004 * (i % 4 - 1.5),
                    CENTRE[1] + 0.004 * (i // 4 - 1.5),
                    "Hoàn Kiếm",
                )
                for i, sid in enumerate(stations)
            },
            now,
        )

        ops = {"Authorization": f"Bearer {stack.token}"}
        deadline = time.monotonic() + 90
        items: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            stack.check_alive()
            r = api.get("/api/v1/incidents", params={"status": "open"}, headers=ops)
            assert r.status_code == 200, r.text
            items = r.json()["items"]
            if items and set(STATIONS) <= set(items[0]["sensors"]):
                break
            time.sleep(1)
        time.sleep(2)  # nothing more may split off
        items = api.get("/api/v1/incidents", params={"status": "open"}, headers=ops).json()["items"]
        assert len(items) == 1, f"{items}\n{stack.logs()}"
        (inc,) = items
        assert {"id", "status", "severity", "sensors"} <= set(inc)
        assert inc["status"] == "open" and inc["severity"] == "critical"
        assert sorted(inc["sensors"]) == STATIONS
        assert inc["title"].startswith("Air pollution episode: 12 stations in Hoàn Kiếm")

        shown = api.get(
            "/api/v1/alerts", params={"status": "open", "sensor": IN_MAINTENANCE}, headers=ops
        ).json()["items"]
        assert shown == []
        hidden = api.get(
            "/api/v1/alerts",
            params={"sensor": IN_MAINTENANCE, "include_suppressed": True},
            headers=ops,
        ).json()["items"]
        assert hidden and all(a["suppressed_by"] is not None for a in hidden)
        detail = api.get(f"/api/v1/sensors/{IN_MAINTENANCE}", headers=ops).json()
        assert detail["alerts"] == [] and detail["open_alerts"] == 0
        leaders = [
            p.name
            for p in stack.parts
            if p.name.startswith("analytics")
            and "incident correlator: leading" in p.log.read_text(errors="replace")
        ]
        assert len(leaders) == 1, leaders

        # notifications (every process runs a planner; they take turns): one episode page
        pages = _pages(receiver, "/inc", lambda p: p["event"] in ("opened", "escalated"))
        assert {p["incident"]["id"] for p in pages} == {inc["id"]}, pages
        assert 1 <= len(pages) <= 2 and all("alert" not in p for p in pages)
        station_pages = _pages(receiver, "/alerts", lambda p: p["event"] == "opened")
        assert {p["alert"]["sensor"] for p in station_pages} == set(STATIONS)
        assert all(h.signature_ok() for h in receiver.received)
        assert IN_MAINTENANCE not in str([h.doc for h in receiver.received])


def _owned_by(index: int, prefix: str) -> str:
    """The first ``<prefix>-<n>`` that analytics partition ``index`` of 2 owns."""
    part = Partition.parse(f"{index}/2")
    return next(f"{prefix}-{n}" for n in range(100) if part.owns(f"{prefix}-{n}"))


def _open(api: httpx.Client, ops: dict[str, str]) -> list[dict[str, Any]]:
    r = api.get("/api/v1/incidents", params={"status": "open"}, headers=ops)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


@pytest.mark.timeout(240)
def test_a_station_between_two_episodes_on_two_partitions_merges_them(
    partitioned: tuple[Stack, MosquittoServer],
) -> None:
    """Two episodes 28 km apart (air pollution reaches 15 km), each seen by its own
    partition, are two incidents until a station 14 km from both goes critical: then one
    incident, the older, covers all three; the other points to it, in REST and CAP."""
    stack, broker = partitioned
    km = 1 / 111.32
    south, north = _owned_by(0, "aq-south"), _owned_by(1, "aq-north")
    bridge = "aq-middle-0"
    now = datetime.now(UTC)
    ops = {"Authorization": f"Bearer {stack.token}"}
    with httpx.Client(base_url=f"http://{stack.api}", timeout=30) as api:
        _send(broker, {south: (20.90, 105.85, "Thường Tín")}, now)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not _open(api, ops):
            stack.check_alive()
            time.sleep(1)
        _send(broker, {north: (20.90 + 28 * km, 105.85, "Đông Anh")}, now)
        while time.monotonic() < deadline and len(_open(api, ops)) < 2:
            stack.check_alive()
            time.sleep(1)
        older, newer = sorted(_open(api, ops), key=lambda i: i["id"])
        assert (older["sensors"], newer["sensors"]) == ([south], [north]), stack.logs()

        _send(broker, {bridge: (20.90 + 14 * km, 105.85, "Thanh Trì")}, now)
        deadline = time.monotonic() + 90
        items = _open(api, ops)
        while time.monotonic() < deadline and not (
            len(items) == 1 and len(items[0]["sensors"]) == 3
        ):
            stack.check_alive()
            time.sleep(1)
            items = _open(api, ops)
        assert [(i["id"], sorted(i["sensors"])) for i in items] == [
            (older["id"], sorted([bridge, north, south]))
        ], stack.logs()
        gone = api.get(f"/api/v1/incidents/{newer['id']}", headers=ops).json()
        assert (gone["status"], gone["merged_into"]) == ("resolved", older["id"])
        assert [e["action"] for e in gone["events"]][-1] == "merged"
        survivor = api.get(f"/api/v1/incidents/{older['id']}", headers=ops).json()
        assert survivor["merged_from"] == [newer["id"]] and len(survivor["alerts"]) == 3
        cap = api.get(f"/api/v1/incidents/{older['id']}/cap", headers=ops).text
        assert f"incident.{newer['id']}</incidents>" in cap and "3 sensors in" in cap


def _send(
    broker: MosquittoServer, stations: dict[str, tuple[float, float, str]], now: datetime
) -> None:
    """Register each station (retained meta) and send its last 35 minutes of critical PM2.5."""
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    try:
        for sid, (lat, lon, area) in stations.items():
            meta = {
                "name": sid,
                "lat": lat,
                "lon": lon,
                "area": area,
                "metrics": ["pm25"],
                "interval_s": 300,
            }
            pub.publish(
                meta_topic("air_quality", sid), orjson.dumps(meta), qos=1, retain=True
            ).wait_for_publish(10)
        time.sleep(1.0)
        # each station's last 35 minutes, all above the critical level, sent within a minute
        for sid in stations:
            entries = [(now - timedelta(minutes=35 - 5 * k), {"pm25": 300.0 + k}) for k in range(8)]
            pub.publish(
                data_topic("air_quality", sid), encode_native(entries), qos=1
            ).wait_for_publish(10)
    finally:
        pub.loop_stop()
        pub.disconnect()


def _pages(rcv: Receiver, path: str, keep: Callable[[dict[str, Any]], bool]) -> list[Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with rcv.lock:
            got = [h.doc for h in rcv.received if h.path == path and keep(h.doc)]
        if got and (path != "/alerts" or len(got) >= len(STATIONS)):
            return got
        time.sleep(0.2)
    return got
