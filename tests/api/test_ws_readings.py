"""/ws/readings: one sensor's readings live from MQTT, one MQTT link, refcounted subscriptions."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.api.conftest import LiveApi

pytestmark = [pytest.mark.db, pytest.mark.mqtt]


def ws_readings(live: LiveApi, token: str, sensor: str) -> ClientConnection:
    query = httpx.QueryParams({"token": token, "sensor": sensor})
    return connect(f"{live.ws_url}/ws/readings?{query}", open_timeout=10, compression=None)


def publisher(url: str) -> mqtt.Client:
    host, port = url.removeprefix("mqtt://").split(":")
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-pub-{uuid.uuid4().hex[:8]}")
    client.connect(host, int(port))
    client.loop_start()
    return client


def wait_for(pred: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def readings(ws: ClientConnection, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        doc = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        if doc["type"] == "reading":
            out.append(doc)
    return out


def test_live_readings_of_one_sensor(
    live_api: LiveApi, tokens: dict[str, str], mqtt_url: str
) -> None:
    sensor = f"wl-{uuid.uuid4().hex[:6]}"
    other = f"wl-{uuid.uuid4().hex[:6]}"
    hub = live_api.app.state.readings_hub
    pub = publisher(mqtt_url)
    try:
        with (
            ws_readings(live_api, tokens["operator"], sensor) as a,
            ws_readings(live_api, tokens["analyst"], sensor) as b,
            ws_readings(live_api, tokens["engineer"], other) as c,
        ):
            wait_for(lambda: live_api.call(lambda: hub.connected))
            assert live_api.call(lambda: {k: len(v) for k, v in hub.watchers.items()}) == {
                sensor: 2,
                other: 1,
            }
            time.sleep(0.3)  # let the subscriptions reach the broker
            now_ms = int(time.time() * 1000)
            body = {"ts": now_ms, "values": {"water_level": 42.5, "rainfall": 3}}
            pub.publish(
                f"ioc/v1/water_level/{sensor}/data", json.dumps(body), qos=1
            ).wait_for_publish()
            senml = [
                {
                    "bn": f"urn:dev:{other}:",
                    "n": "water_level",
                    "u": "cm",
                    "v": 7,
                    "t": now_ms / 1000,
                }
            ]
            pub.publish(
                f"ioc/v1/water_level/{other}/data", json.dumps(senml), qos=1
            ).wait_for_publish()
            pub.publish(f"ioc/v1/water_level/{sensor}/data", b"not json", qos=1).wait_for_publish()
            got_a = readings(a, 2)
            got_b = readings(b, 2)
            got_c = readings(c, 1)
        assert {(r["metric"], r["value"]) for r in got_a} == {
            ("water_level", 42.5),
            ("rainfall", 3.0),
        }
        assert got_a == got_b
        assert all(r["sensor"] == sensor and r["time"].endswith("Z") for r in got_a)
        assert [(r["sensor"], r["value"]) for r in got_c] == [(other, 7.0)]
        # every client gone: nothing watched any more
        wait_for(lambda: live_api.call(lambda: dict(hub.watchers)) == {})
    finally:
        pub.loop_stop()
        pub.disconnect()


@pytest.mark.parametrize(
    ("token", "sensor", "code"),
    [
        (None, "wl-1", 4401),
        ("bad", "wl-1", 4401),
        ("operator", "", 4400),
        ("operator", "a b", 4400),
        ("operator", "wl-1&since=3", 4400),  # not a parameter of this stream
        ("operator", "wl-1&sensor=wl-2", 4400),  # one sensor per connection
    ],
)
def test_readings_refusals(
    shared_api: LiveApi, shared_tokens: dict[str, str], token: str | None, sensor: str, code: int
) -> None:
    query: dict[str, str] = {}
    if token is not None:
        query["token"] = shared_tokens.get(token, token)
    name, _, extra = sensor.partition("&")  # a raw tail adds parameters
    url = f"{shared_api.ws_url}/ws/readings?{httpx.QueryParams({**query, 'sensor': name})}"
    url += f"&{extra}" if extra else ""
    with connect(url) as ws, pytest.raises(ConnectionClosed) as err:
        ws.recv(timeout=10)
    assert err.value.rcvd is not None and err.value.rcvd.code == code
