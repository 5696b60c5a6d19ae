"""docker-compose.yml and the broker's password + ACL set-up (deploy/mosquitto), checked for real."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.reasoncodes import ReasonCode

from tests.support.servers import free_port, wait_port

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy" / "mosquitto"
COMPOSE = shutil.which("docker-compose")
NOT_AUTHORIZED = 135  # MQTT 5 reason codes: < 128 is success (16: no subscribers)
LONG_RUNNING = ("mosquitto", "timescaledb", "ingest", "analytics", "api", "simulator")
IOC_SERVICES = ("ingest", "analytics", "api", "simulator")


def _compose(*args: str) -> subprocess.CompletedProcess[str]:
    assert COMPOSE is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
    return subprocess.run(
        [COMPOSE, "-f", str(ROOT / "docker-compose.yml"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    if COMPOSE is None:
        pytest.skip("docker-compose is not installed")
    proc = _compose("config")
    assert proc.returncode == 0, proc.stderr
    loaded: dict[str, Any] = yaml.safe_load(proc.stdout)
    return loaded


def test_compose_config_is_valid_without_warnings(config: dict[str, Any]) -> None:
    proc = _compose("config", "-q")
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" not in proc.stderr, proc.stderr


def test_services_restart_and_health(config: dict[str, Any]) -> None:
    services = config["services"]
    assert set(services) == {*LONG_RUNNING, "migrate"}
    for name in LONG_RUNNING:
        assert services[name]["restart"] == "unless-stopped", name
    for name in ("mosquitto", "timescaledb", "ingest", "analytics", "api"):
        test = services[name]["healthcheck"]["test"]
        assert test[0] in ("CMD", "CMD-SHELL") and len(" ".join(test)) > 20, name
    assert services["migrate"]["command"] == ["ioc", "db", "migrate"]
    for name in ("ingest", "analytics", "api"):
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully", name
        assert deps["timescaledb"]["condition"] == "service_healthy", name
        assert deps["mosquitto"]["condition"] == "service_healthy", name
        assert services[name]["command"] == ["ioc", name]
    assert services["simulator"]["command"] == ["ioc", "simulate"]
    assert services["simulator"]["profiles"] == ["simulator"]
    assert all("profiles" not in services[n] for n in services if n != "simulator")


def test_images_are_pinned(config: dict[str, Any]) -> None:
    services = config["services"]
    assert re.fullmatch(r"eclipse-mosquitto:\d+\.\d+\.\d+", services["mosquitto"]["image"])
    assert re.fullmatch(
        r"timescale/timescaledb:2\.\d+\.\d+-pg1[5-7]", services["timescaledb"]["image"]
    )
    for name in (*IOC_SERVICES, "migrate"):
        assert services[name]["build"]["context"] == str(ROOT)
        assert not services[name]["image"].endswith(":latest")


def test_each_part_logs_in_as_its_own_broker_user(config: dict[str, Any]) -> None:
    acl = (DEPLOY / "acl").read_text()
    for name in IOC_SERVICES:
        env = config["services"][name]["environment"]
        assert env["IOC_MQTT_URL"].startswith(f"mqtt://{name}:"), name
        assert env["IOC_DATABASE_URL"].startswith("postgresql://ioc:"), name
        assert re.search(rf"^user {name}$", acl, re.M), f"no ACL section for {name}"
    assert config["services"]["ingest"]["environment"]["IOC_INGEST_UNKNOWN_SENSORS"] == "register"


def test_broker_mounts_password_and_acl_config(config: dict[str, Any]) -> None:
    mosq = config["services"]["mosquitto"]
    volumes = [v if isinstance(v, str) else f"{v['source']}:{v['target']}" for v in mosq["volumes"]]
    assert any(v.startswith(f"{DEPLOY}:/mosquitto/config") for v in volumes), volumes
    conf = (DEPLOY / "mosquitto.conf").read_text()
    assert re.search(r"^allow_anonymous false$", conf, re.M)
    assert re.search(r"^password_file /mosquitto/data/passwd$", conf, re.M)
    assert re.search(r"^acl_file /mosquitto/config/acl$", conf, re.M)
    assert mosq["command"] == ["/bin/sh", "/mosquitto/config/entrypoint.sh"]


def test_every_compose_variable_is_documented() -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    names = set(re.findall(r"\$\{(IOC_[A-Z0-9_]+)", compose))
    assert len(names) > 10
    example = (ROOT / "deploy" / "env.example").read_text()
    ops = (ROOT / "docs" / "operations.md").read_text()
    assert not {n for n in names if not re.search(rf"^#? ?{n}=", example, re.M)}
    assert not {n for n in names if f"`{n}`" not in ops}


def test_dockerfile_installs_the_project_as_a_user() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert "pip install ." in text
    assert re.search(r"^USER ioc$", text, re.M)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "tests"} <= set(ignored)


# -- the broker's password file and ACL on a real Mosquitto --------------------------------


class Client:
    """A blocking MQTT 5 client for the checks: connect result, PUBACK codes, messages."""

    def __init__(self, port: int, user: str | None, password: str | None, **will: str) -> None:
        self.connected = threading.Event()
        self.connect_rc: ReasonCode | None = None
        self.pubacks: dict[int, int] = {}
        self.subacks: list[int] = []
        self.messages: list[tuple[str, bytes]] = []
        self._cond = threading.Condition()
        self.c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, reconnect_on_failure=False
        )
        if user is not None:
            self.c.username_pw_set(user, password)
        if will:
            self.c.will_set(will["topic"], will["payload"], qos=1, retain=True)
        self.c.on_connect = self._on_connect
        self.c.on_publish = self._on_publish
        self.c.on_subscribe = self._on_subscribe
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        assert self.connected.wait(5), "no CONNACK"

    def _on_connect(self, c: Any, u: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        self.connect_rc = rc
        self.connected.set()

    def _on_publish(self, c: Any, u: Any, mid: int, rc: ReasonCode, props: Any) -> None:
        with self._cond:
            self.pubacks[mid] = rc.value
            self._cond.notify_all()

    def _on_subscribe(self, c: Any, u: Any, mid: int, rcs: list[ReasonCode], props: Any) -> None:
        with self._cond:
            self.subacks.extend(rc.value for rc in rcs)
            self._cond.notify_all()

    def _on_message(self, c: Any, u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append((msg.topic, msg.payload))
            self._cond.notify_all()

    @property
    def refused(self) -> bool:
        return self.connect_rc is not None and self.connect_rc.is_failure

    def publish(self, topic: str, payload: bytes) -> int:
        """Publish with QoS 1 and return the broker's PUBACK reason code."""
        info = self.c.publish(topic, payload, qos=1)
        with self._cond:
            assert self._cond.wait_for(lambda: info.mid in self.pubacks, 5), "no PUBACK"
            return self.pubacks[info.mid]

    def subscribe(self, topic: str) -> int:
        n = len(self.subacks)
        self.c.subscribe(topic, qos=1)
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.subacks) > n, 5), "no SUBACK"
            return self.subacks[n]

    def wait_for(self, payload: bytes, timeout: float = 5.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: any(p == payload for _, p in self.messages), timeout)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


SERVICE_PASSWORDS = {
    "IOC_MQTT_INGEST_PASSWORD": "ingest-pw",
    "IOC_MQTT_ANALYTICS_PASSWORD": "analytics-pw",
    "IOC_MQTT_API_PASSWORD": "api-pw",
    "IOC_MQTT_SIMULATOR_PASSWORD": "simulator-pw",
    "IOC_MQTT_ALERTS_READER_PASSWORD": "reader-pw",
}


@pytest.fixture
def secured_broker(tmp_path: Path) -> Iterator[int]:
    """deploy/mosquitto as in docker-compose: its entrypoint, config, ACL and a password file."""
    with _secured_broker(tmp_path) as (port, _):
        yield port


@contextlib.contextmanager
def _secured_broker(tmp_path: Path, certs: Path | None = None) -> Iterator[tuple[int, int]]:
    """(plain port, TLS port) of the compose broker set-up run by its own entrypoint."""
    if shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto_passwd is not installed")
    port, tls_port = free_port(), free_port()
    data = tmp_path / "data"
    data.mkdir()
    passwd = data / "passwd"
    # an operator added two devices before the start; the entrypoint must keep them
    for i, (user, pw) in enumerate((("cam-0001", "cam-pw"), ("critical", "crit-pw"))):
        flags = ["-c", "-b"] if i == 0 else ["-b"]
        subprocess.run(["mosquitto_passwd", *flags, str(passwd), user, pw], check=True)
    conf = (DEPLOY / "mosquitto.conf").read_text()
    conf = conf.replace("listener 1883", f"listener {port} 127.0.0.1")
    conf = conf.replace("/mosquitto/data/", f"{data}/").replace("/mosquitto/config/", f"{DEPLOY}/")
    if os.geteuid() == 0:
        conf += "user root\n"
    conf_path = tmp_path / "mosquitto.conf"
    conf_path.write_text(conf)
    env = {
        "PATH": os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin", "/bin"]),
        "MOSQUITTO_CONF": str(conf_path),
        "MOSQUITTO_PASSWD_FILE": str(passwd),
        "MOSQUITTO_CERTS": str(certs or tmp_path / "no-certs"),
        "MOSQUITTO_CONF_D": str(data / "conf.d"),
        "MOSQUITTO_TLS_PORT": str(tls_port),
        **SERVICE_PASSWORDS,
    }
    with open(tmp_path / "mosquitto.log", "wb") as log:
        proc = subprocess.Popen(
            ["/bin/sh", str(DEPLOY / "entrypoint.sh")], env=env, stdout=log, stderr=log
        )
    try:
        wait_port(port)
        if certs is not None:
            wait_port(tls_port)
        yield port, tls_port
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.mqtt
def test_broker_refuses_anonymous_and_wrong_passwords(secured_broker: int) -> None:
    for user, pw in ((None, None), ("cam-0001", "wrong"), ("ingest", "cam-pw")):
        c = Client(secured_broker, user, pw)
        assert c.refused, (user, c.connect_rc)
        c.close()


@pytest.mark.mqtt
def test_device_publishes_only_under_its_own_sensor_id(secured_broker: int) -> None:
    ingest = Client(secured_broker, "ingest", "ingest-pw")
    reader = Client(secured_broker, "alerts-reader", "reader-pw")
    # the Last Will on its own status topic is allowed
    cam = Client(
        secured_broker,
        "cam-0001",
        "cam-pw",
        topic="ioc/v1/traffic_camera/cam-0001/status",
        payload="offline",
    )
    critical = Client(secured_broker, "critical", "crit-pw")
    try:
        assert not ingest.refused and not cam.refused and not critical.refused
        assert ingest.subscribe("$share/ingest/ioc/v1/+/+/data") == 1
        assert ingest.subscribe("ioc/v1/+/+/meta") == 1
        assert reader.subscribe("ioc/v1/alerts/#") == 1

        assert cam.publish("ioc/v1/traffic_camera/cam-0001/data", b"own-data") < 128
        assert cam.publish("ioc/v1/traffic_camera/cam-0001/meta", b"own-meta") < 128
        assert ingest.wait_for(b"own-data") and ingest.wait_for(b"own-meta")

        # another sensor's topic, and the alert tree (a "+" pattern would have let this in)
        assert cam.publish("ioc/v1/traffic_camera/cam-0002/data", b"forged") == NOT_AUTHORIZED
        assert critical.publish("ioc/v1/alerts/critical/water_level", b"fake") == NOT_AUTHORIZED
        assert critical.publish("ioc/v1/traffic_camera/cam-0001/data", b"forged2") == NOT_AUTHORIZED
        # devices read nothing: the broker grants the subscription but delivers nothing
        cam.subscribe("ioc/v1/#")

        # a later allowed message arrives, the forged ones never did
        assert cam.publish("ioc/v1/traffic_camera/cam-0001/data", b"sentinel") < 128
        assert ingest.wait_for(b"sentinel")
        assert {p for _, p in ingest.messages}.isdisjoint({b"forged", b"forged2"})
        assert not reader.messages
        time.sleep(0.2)
        assert not cam.messages
    finally:
        for c in (ingest, reader, cam, critical):
            c.close()


@pytest.mark.mqtt
def test_service_users_have_what_their_part_needs(secured_broker: int) -> None:
    ingest = Client(secured_broker, "ingest", "ingest-pw")
    analytics = Client(secured_broker, "analytics", "analytics-pw")
    api = Client(secured_broker, "api", "api-pw")
    sim = Client(secured_broker, "simulator", "simulator-pw")
    try:
        assert ingest.subscribe("$share/ingest/ioc/v1/+/+/data") == 1
        assert analytics.subscribe("$share/analytics/ioc/v1/+/+/data") == 1
        assert api.subscribe("ioc/v1/alerts/#") == 1
        assert sim.publish("ioc/v1/water_level/wl-001/data", b"sim-reading") < 128
        assert sim.publish("ioc/v1/water_level/wl-001/meta", b"sim-meta") < 128
        assert ingest.wait_for(b"sim-reading") and analytics.wait_for(b"sim-reading")
        assert analytics.publish("ioc/v1/alerts/critical/water_level", b"flood") < 128
        assert api.wait_for(b"flood")
        assert api.subscribe("ioc/v1/incidents/#") == 1
        assert analytics.publish("ioc/v1/incidents/critical/flooding", b"episode") < 128
        assert api.wait_for(b"episode")
        # nobody but analytics writes alerts and incidents; ingest and api write nothing
        assert sim.publish("ioc/v1/alerts/critical/water_level", b"x") == NOT_AUTHORIZED
        assert sim.publish("ioc/v1/incidents/critical/flooding", b"x") == NOT_AUTHORIZED
        assert ingest.publish("ioc/v1/water_level/wl-001/data", b"y") == NOT_AUTHORIZED
        assert api.publish("ioc/v1/alerts/info/noise", b"z") == NOT_AUTHORIZED
        time.sleep(0.2)
        assert {p for _, p in api.messages} == {b"flood", b"episode"}
    finally:
        for c in (ingest, analytics, api, sim):
            c.close()


MQTT_FRAMING = 1024  # fixed header, topic, packet id and properties of one PUBLISH


def test_broker_packet_limit_is_the_ingest_limit_plus_framing(config: dict[str, Any]) -> None:
    from core.settings import Settings

    conf = (DEPLOY / "mosquitto.conf").read_text()
    (packet,) = re.findall(r"^max_packet_size (\d+)$", conf, re.M)
    limit = int(config["services"]["ingest"]["environment"]["IOC_MAX_PAYLOAD_BYTES"])
    assert limit == Settings.model_fields["max_payload_bytes"].default
    assert int(packet) == limit + MQTT_FRAMING


@pytest.mark.mqtt
def test_broker_refuses_a_message_past_the_ingest_limit(secured_broker: int) -> None:
    limit = (
        int(
            re.findall(r"^max_packet_size (\d+)$", (DEPLOY / "mosquitto.conf").read_text(), re.M)[0]
        )
        - MQTT_FRAMING
    )
    ingest = Client(secured_broker, "ingest", "ingest-pw")
    cam = Client(secured_broker, "cam-0001", "cam-pw")
    gone = threading.Event()
    cam.c.on_disconnect = lambda *a: gone.set()
    try:
        assert ingest.subscribe("ioc/v1/+/+/data") == 1
        topic = "ioc/v1/traffic_camera/cam-0001/data"
        fits = b"a" * (limit - 1) + b"!"
        assert cam.publish(topic, fits) < 128  # the largest payload ingest takes gets through
        assert ingest.wait_for(fits)
        cam.c.publish(topic, b"b" * (limit + MQTT_FRAMING + 1), qos=1)
        assert gone.wait(5), "the broker kept a client that sent an oversized packet"
        time.sleep(0.2)
        assert all(len(p) <= limit for _, p in ingest.messages)
    finally:
        ingest.close()
        cam.close()


def _make_certs(where: Path) -> Path:
    where.mkdir()
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(where / "server.key"), "-out", str(where / "server.crt"),
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return where


@pytest.mark.mqtt
def test_tls_listener_when_certificates_are_mounted(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    certs = _make_certs(tmp_path / "certs")
    with _secured_broker(tmp_path, certs) as (port, tls_port):
        connected = threading.Event()
        codes: list[int] = []
        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, reconnect_on_failure=False
        )
        c.username_pw_set("cam-0001", "cam-pw")
        c.tls_set(ca_certs=str(certs / "server.crt"), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        c.on_connect = lambda *a: (codes.append(a[3].value), connected.set())
        c.connect("127.0.0.1", tls_port)
        c.loop_start()
        try:
            assert connected.wait(10) and codes == [0]  # TLS, then the same password check
        finally:
            c.disconnect()
            c.loop_stop()
        # the TLS port speaks nothing else; the plain port still works inside
        ctx = ssl.create_default_context(cafile=str(tmp_path / "certs" / "server.crt"))
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_REQUIRED
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            pytest.raises((ssl.SSLError, OSError)),
        ):
            ctx.wrap_socket(raw, server_hostname="localhost").close()
        plain = Client(port, "ingest", "ingest-pw")
        assert not plain.refused
        plain.close()
