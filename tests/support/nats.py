"""A real three-node NATS cluster with JetStream and its MQTT listener, on free ports.

Each node keeps its JetStream data (MQTT sessions, retained messages, QoS 1 queues)
with three replicas, so any one node can die and the other two carry every session
on.  Tests and benchmarks start it, kill a node and restart it; nothing is mocked.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.servers import free_port, wait_port


def nats_binary() -> str | None:
    return shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None
    )


class NatsNode:
    def __init__(self, workdir: Path, name: str, cluster_ports: list[int], index: int) -> None:
        self.name = name
        self.workdir = workdir
        self.client_port = free_port()
        self.mqtt_port = free_port()
        self.cluster_port = cluster_ports[index]
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        routes = ", ".join(f"nats://127.0.0.1:{p}" for p in cluster_ports)
        self.conf = workdir / "nats.conf"
        self.conf.write_text(
            f"server_name: {name}\n"
            f"listen: 127.0.0.1:{self.client_port}\n"
            f'jetstream {{ store_dir: "{workdir}/js", max_memory_store: 256MB,'
            " max_file_store: 4GB }\n"
            f"cluster {{ name: ioc, listen: 127.0.0.1:{self.cluster_port}, routes: [{routes}] }}\n"
            f"mqtt {{ listen: 127.0.0.1:{self.mqtt_port}, stream_replicas: 3,"
            ' consumer_replicas: 3, max_ack_pending: 1000, ack_wait: "10s" }\n'
        )

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.mqtt_port}"

    def start(self) -> None:
        binary = nats_binary()
        assert binary is not None, "nats-server is not installed"
        with open(self.workdir / "nats.log", "ab") as log:
            self.proc = subprocess.Popen(
                [binary, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT
            )
        wait_port(self.mqtt_port, 30)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class NatsCluster:
    """Three nodes that route to each other; ``urls`` is what ``IOC_MQTT_URL`` takes."""

    def __init__(self, workdir: Path, size: int = 3) -> None:
        ports = [free_port() for _ in range(size)]
        self.nodes = [NatsNode(workdir / f"n{i + 1}", f"n{i + 1}", ports, i) for i in range(size)]

    @property
    def urls(self) -> str:
        return ",".join(n.url for n in self.nodes)

    def start(self, timeout: float = 40.0) -> None:
        for node in self.nodes:
            node.start()
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 40.0) -> None:
        """Until every node accepts an MQTT session (JetStream has its leaders)."""
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            while not _mqtt_session_ok(node.mqtt_port):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"NATS node {node.name} takes no MQTT session")
                time.sleep(0.5)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def kill(self) -> None:
        for node in self.nodes:
            node.kill()


def _mqtt_session_ok(port: int) -> bool:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"probe-{port}",
        clean_session=False,  # a persistent session needs JetStream: the real readiness
        protocol=mqtt.MQTTv311,
    )
    try:
        client.connect("127.0.0.1", port, keepalive=10)
        client.loop_start()
        ok = False
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if client.is_connected():
                ok = True
                break
            time.sleep(0.05)
        client.disconnect()
        client.loop_stop()
        return ok
    except OSError:
        return False
