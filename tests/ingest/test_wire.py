"""The lean receive path hands over exactly what stock paho would, however the bytes arrive."""

from __future__ import annotations

import random
import select
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingest.wire import BufferedSocket, LeanClient, lean_supported

Got = tuple[bytes, bytes, int, int]


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def publish(topic: bytes, payload: bytes, mid: int, qos: int, *, v5: bool, props: bytes) -> bytes:
    body = len(topic).to_bytes(2, "big") + topic
    if qos:
        body += mid.to_bytes(2, "big")
    if v5:
        body += _varint(len(props)) + props
    body += payload
    return bytes([0x30 | qos << 1]) + _varint(len(body)) + body


def stream(rng: random.Random, n: int, *, v5: bool) -> tuple[bytes, list[Got]]:
    """``n`` PUBLISH packets (and a PINGRESP now and then) and what each should deliver."""
    out, expected = bytearray(), []
    for i in range(n):
        size = rng.choice([0, 1, 50, 126, 127, 128, 900, 16_383, 16_384, 70_000, 600_000])
        payload = rng.randbytes(size)
        topic = f"ioc/v1/air_quality/aq-{i}/data".encode()
        qos = rng.choice([0, 1, 1, 1])
        mid = rng.randint(1, 65_535) if qos else 0
        props = rng.choice([b"", b"\x01\x01", b"\x26\x00\x01k\x00\x01v"])  # format, user prop
        out += publish(topic, payload, mid, qos, v5=v5, props=props)
        expected.append((topic, payload, mid, qos))
        if rng.random() < 0.05:
            out += b"\xd0\x00"  # PINGRESP: paho's own reader takes it
    return bytes(out), expected


@contextmanager
def connected(client: paho.Client, lean: bool) -> Iterator[socket.socket]:
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    client._sock = BufferedSocket(ours) if lean else ours
    try:
        yield peer
    finally:
        client._sock = None
        ours.close()
        peer.close()


def _drain(client: paho.Client) -> None:
    sock: Any = client._sock
    while select.select([sock], [], [], 0)[0] or (
        isinstance(sock, BufferedSocket) and sock.pending()
    ):
        client.loop_read()


def receive(data: bytes, rng: random.Random, *, lean: bool, v5: bool) -> list[Got]:
    protocol = paho.MQTTv5 if v5 else paho.MQTTv311
    got: list[Got] = []
    client: paho.Client
    if lean:
        client = LeanClient(CallbackAPIVersion.VERSION2, protocol=protocol, manual_ack=True)
        client.raw_handler = lambda t, p, mid, qos: got.append((t, p, mid, qos))  # type: ignore[attr-defined]
    else:
        client = paho.Client(CallbackAPIVersion.VERSION2, protocol=protocol, manual_ack=True)
    client.on_message = lambda c, u, m: got.append((m._topic, m.payload, m.mid, m.qos))
    with connected(client, lean) as peer:
        peer.setblocking(False)
        pos = 0
        while pos < len(data):
            step = rng.choice([1, 2, 3, 7, 100, 1_500, 65_536, 300_000])
            with suppress(BlockingIOError):  # the socket is full: read first
                pos += peer.send(data[pos : pos + step])
            _drain(client)
    return got


@pytest.mark.parametrize("v5", [True, False], ids=["mqtt5", "mqtt311"])
@pytest.mark.parametrize("seed", range(6))
def test_lean_path_delivers_what_paho_delivers(seed: int, v5: bool) -> None:
    rng = random.Random(seed)
    data, expected = stream(rng, 120, v5=v5)
    assert receive(data, random.Random(seed), lean=False, v5=v5) == expected
    assert receive(data, random.Random(seed + 100), lean=True, v5=v5) == expected


def test_lean_path_over_tls(tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl to make a certificate with")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"),
            *("-addext", "subjectAltName=DNS:localhost"),
        ],
        check=True,
        capture_output=True,
    )
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    data, expected = stream(random.Random(7), 60, v5=True)
    ours, peer = socket.socketpair()
    done = threading.Event()

    def serve() -> None:
        with server_ctx.wrap_socket(peer, server_side=True) as tls:
            for i in range(0, len(data), 5_000):  # TLS records of every size
                tls.sendall(data[i : i + 5_000])
            done.wait(30)

    server = threading.Thread(target=serve)
    server.start()
    got: list[Got] = []
    client = LeanClient(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5, manual_ack=True)
    client.raw_handler = lambda t, p, mid, qos: got.append((t, p, mid, qos))
    client.on_message = lambda c, u, m: got.append((m._topic, m.payload, m.mid, m.qos))
    tls = client_ctx.wrap_socket(ours, server_hostname="localhost")
    try:
        tls.setblocking(False)
        client._sock = BufferedSocket(tls)
        deadline = time.monotonic() + 30
        while len(got) < len(expected) and time.monotonic() < deadline:
            select.select([tls], [], [], 0.1)
            _drain(client)
        assert got == expected
    finally:
        done.set()
        server.join(30)
        client._sock = None
        tls.close()


def test_qos2_is_left_to_paho() -> None:
    got: list[Got] = []
    client = LeanClient(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5, manual_ack=True)
    client.raw_handler = lambda t, p, mid, qos: got.append((t, p, mid, qos))
    with connected(client, lean=True) as peer:
        peer.sendall(b"\x34" + publish(b"t", b"x", 9, 1, v5=True, props=b"")[1:])
        _drain(client)
        assert got == []
        assert 9 in client._in_messages  # paho's QoS 2 flow: PUBREC sent, waits for PUBREL
        assert peer.recv(100) == b"\x50\x02\x00\x09"


def test_ack_many_is_one_write_of_pubacks_in_order() -> None:
    client = LeanClient(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5, manual_ack=True)
    with connected(client, lean=True) as peer:
        client.ack_many([1, 258, 65_535])
        assert peer.recv(100) == b"\x40\x02\x00\x01\x40\x02\x01\x02\x40\x02\xff\xff"
        client.ack_many([])
        assert not select.select([peer], [], [], 0.05)[0]


def test_buffered_socket_serves_small_reads_from_one_recv() -> None:
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    buffered = BufferedSocket(ours)
    peer.sendall(b"abcdef")
    select.select([ours], [], [], 1)
    assert buffered.recv(1) == b"a"
    assert buffered.pending() == 5
    assert not select.select([ours], [], [], 0)[0]  # the rest is in our buffer, not the socket
    assert buffered.recv(10) == b"bcdef"
    with pytest.raises(BlockingIOError):
        buffered.recv(1)
    peer.close()
    assert buffered.recv(1) == b""
    ours.close()


def test_the_installed_paho_has_what_the_lean_path_uses() -> None:
    # the project pins paho-mqtt to releases whose internals the lean path knows; an
    # unknown release falls back to paho's reader (tested in test_service)
    assert lean_supported()
