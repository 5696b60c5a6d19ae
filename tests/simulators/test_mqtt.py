"""Through a real Mosquitto: every message the simulator says it sent arrives; Wills and shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from core.codecs import decode_readings
from core.settings import parse_mqtt_url, parse_mqtt_urls
from core.topics import parse_sensor_topic
from core.types import DeviceStatus
from simulators.publisher import MqttSink
from simulators.runner import Runner, RunOptions, RunStats
from tests.simulators.util import NO_LIMITS, engine, hanoi, run
from tests.support.servers import MosquittoServer, free_port

pytestmark = pytest.mark.mqtt
ROOT = Path(__file__).resolve().parents[2]


class Listener:
    """A subscriber that keeps what arrives for sensors with one id prefix."""

    def __init__(self, url: str, prefix: str) -> None:
        self.prefix = prefix
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        addr = parse_mqtt_url(url)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"listen-{uuid.uuid4().hex[:8]}"
        )
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect(addr.host, addr.port)
        self.client.loop_start()
        self.client.subscribe("ioc/v1/#", qos=1)
        assert subscribed.wait(10)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.split("/")[3].startswith(self.prefix):
            with self.lock:
                self.messages.append((msg.topic, msg.payload, bool(msg.retain)))

    def wait_for(self, n: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.messages) < n and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _retained_status(url: str, prefix: str, expect: int) -> dict[str, str]:
    """What a newcomer learns from the retained status topics of this prefix."""
    seen = Listener(url, prefix)

    def statuses() -> dict[str, str]:
        with seen.lock:
            msgs = list(seen.messages)
        return {
            t.split("/")[3]: orjson.loads(p)["status"] if p.startswith(b"{") else p.decode()
            for t, p, r in msgs
            if t.endswith("/status") and r
        }

    try:
        deadline = time.monotonic() + 15
        while len(statuses()) < expect and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        return statuses()
    finally:
        seen.close()


def test_a_subscriber_receives_every_message_the_simulator_says_it_sent(mqtt_url: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:6]}-"
    t0 = hanoi("2026-11-23T07:30")
    counts = {"traffic_camera": 150, "air_quality": 6, "water_level": 6, "weather": 4, "noise": 6}
    eng = engine(t0, counts=counts, id_prefix=prefix, connections=3)
    listener = Listener(mqtt_url, prefix)
    try:
        sink = MqttSink(
            parse_mqtt_url(mqtt_url),
            [f"sim-{prefix}{i}" for i in range(3)],
            [f"ioc/v1/generic/{g}/status" for g in eng.gateways],
            window=200,
        )
        stats = Runner(
            eng, sink, RunOptions(start=t0, until=t0 + 1800, speed=float("inf"), progress_s=0)
        ).run()
        listener.wait_for(stats.messages_sent)
        time.sleep(0.3)  # anything extra would show up now
    finally:
        listener.close()
    got = listener.messages
    assert stats.unacked_at_exit == 0 and stats.messages_sent == stats.messages_published
    assert len(got) == stats.messages_sent
    channels = Counter(t.rsplit("/", 1)[1] for t, _, _ in got)
    assert channels == Counter(stats.messages_by_channel)
    readings = 0
    for topic, payload, _ in got:
        st = parse_sensor_topic(topic)
        if st.channel == "data":
            dec = decode_readings(st.sensor, payload, now=t0 + 3600, limits=NO_LIMITS)
            assert not dec.rejections
            readings += len(dec.readings)
    assert readings == stats.readings_sent > 30_000


def test_sigterm_marks_every_device_offline(mqtt_url: str, tmp_path: Path) -> None:
    prefix = f"s{uuid.uuid4().hex[:6]}-"
    stats_file = tmp_path / "stats.json"
    counts = "traffic_camera=30,air_quality=3,water_level=3,weather=2,noise=2"
    env = {
        **os.environ,
        "IOC_MQTT_URL": mqtt_url,
        "IOC_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }
    cmd = [
        sys.executable,
        "-m",
        "simulators",
        "--count",
        counts,
        "--id-prefix",
        prefix,
        "--speed",
        "60",
    ]
    cmd += [
        "--start",
        "now-1h",
        "--stats-file",
        str(stats_file),
        "--progress",
        "0",
        "--connections",
        "2",
    ]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stderr=subprocess.PIPE)
    listener = Listener(mqtt_url, prefix)
    try:
        listener.wait_for(200, timeout=60)  # registration, then readings
        assert any(t.endswith("/data") for t, _, _ in listener.messages)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        listener.close()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()
    stats = orjson.loads(stats_file.read_bytes())
    assert stats["stopped_by"] == "SIGTERM" and stats["unacked_at_exit"] == 0
    status = _retained_status(mqtt_url, prefix, 40 + 2)
    assert len(status) == 40 + 2  # devices and gateways
    assert set(status.values()) == {DeviceStatus.OFFLINE.value}


def test_a_crash_leaves_the_gateways_will(mqtt_url: str) -> None:
    prefix = f"k{uuid.uuid4().hex[:6]}-"
    env = {
        **os.environ,
        "IOC_MQTT_URL": mqtt_url,
        "IOC_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }
    cmd = [
        sys.executable,
        "-m",
        "simulators",
        "--count",
        "traffic_camera=5,air_quality=0,water_level=0,weather=0,noise=0",
    ]
    cmd += [
        "--id-prefix",
        prefix,
        "--connections",
        "2",
        "--progress",
        "0",
        "--name",
        prefix.rstrip("-"),
    ]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stderr=subprocess.DEVNULL)
    listener = Listener(mqtt_url, prefix)
    try:
        listener.wait_for(14, timeout=60)  # 2 gateways + 5 cameras, meta and status each
        proc.kill()
        proc.wait(30)
        listener.wait_for(16, timeout=30)
    finally:
        listener.close()
    wills = [(t, p) for t, p, _ in listener.messages[14:]]
    assert sorted(t for t, _ in wills) == [
        f"ioc/v1/generic/{prefix}gw-{prefix.rstrip('-')}-0{i}/status" for i in (1, 2)
    ]
    assert {p for _, p in wills} == {b"offline"}
    status = _retained_status(mqtt_url, prefix, 7)
    # honest: after a crash the devices' own retained status still says online; the gateway says offline
    assert {k: v for k, v in status.items() if "gw-" in k} == {
        k: "offline" for k in status if "gw-" in k
    }


@pytest.mark.slow
def test_a_broker_restart_loses_nothing(make_broker: Callable[..., MosquittoServer]) -> None:
    """The broker dies mid-run and comes back: the simulator reconnects and every message
    is acknowledged (QoS 1, resent by paho after the reconnect)."""
    server = make_broker()
    t0 = hanoi("2026-11-23T08:00")
    eng = engine(t0, counts={"traffic_camera": 100}, connections=2)
    sink = MqttSink(
        parse_mqtt_url(server.url),
        ["restart-1", "restart-2"],
        [f"ioc/v1/generic/{g}/status" for g in eng.gateways],
        window=100,
    )
    # paced at an hour a second, the two hours take ~2 s: the broker dies well inside the run
    opts = RunOptions(start=t0, until=t0 + 2 * 3600, speed=3600.0, progress_s=0, lag_warn_s=5.0)
    result: list[RunStats] = []
    worker = threading.Thread(target=lambda: result.append(Runner(eng, sink, opts).run()))
    worker.start()
    time.sleep(0.5)
    server.kill()
    time.sleep(1.5)
    server.start()
    worker.join(120)
    assert result, "the run did not end"
    stats = result[0]
    assert sink.stats.reconnects >= 1
    assert stats.unacked_at_exit == 0
    same = run(engine(t0, counts={"traffic_camera": 100}), t0, t0 + 2 * 3600)
    assert stats.messages_by_channel["data"] == len(same) > 11_000  # two hours, a camera a minute
    assert stats.readings_sent == stats.readings_published


def test_a_dead_first_broker_node_is_skipped(mqtt_url: str) -> None:
    """IOC_MQTT_URL lists a dead node first: every connection goes on to the live one."""
    prefix = f"t{uuid.uuid4().hex[:6]}-"
    t0 = hanoi("2026-11-23T07:30")
    eng = engine(t0, counts={"traffic_camera": 20}, id_prefix=prefix, connections=2)
    nodes = parse_mqtt_urls(f"mqtt://127.0.0.1:{free_port()},{mqtt_url}")
    listener = Listener(mqtt_url, prefix)
    try:
        sink = MqttSink(
            nodes[0],
            [f"sim-{prefix}{i}" for i in range(2)],
            [f"ioc/v1/generic/{g}/status" for g in eng.gateways],
            nodes=nodes,
        )
        stats = Runner(
            eng, sink, RunOptions(start=t0, until=t0 + 600, speed=float("inf"), progress_s=0)
        ).run()
        listener.wait_for(stats.messages_sent)
    finally:
        listener.close()
    assert stats.unacked_at_exit == 0 and stats.messages_sent > 200
    assert len(listener.messages) == stats.messages_sent
    assert all(c.client.port == nodes[1].port for c in sink.conns)
