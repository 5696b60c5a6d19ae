"""Live readings for ``/ws/readings``: one MQTT connection per process, refcounted per sensor.

paho runs its network loop in its own thread; ``on_message`` decodes the payload with
``core.codecs`` and crosses to the event loop with ``call_soon_threadsafe`` only.  A
sensor's topic ``ioc/v1/+/<sensor>/data`` is subscribed while at least one websocket
client watches it.  No exception escapes a paho callback: it is logged and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import uuid
from collections.abc import Sequence
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from api.stream import Frame, FrameKind, Subscriber
from api.telemetry import MQTT_CONNECTED, MQTT_MESSAGES, WS_CLIENTS, WS_FRAMES
from core.brokers import BrokerNodes, follow
from core.codecs import Limits, decode_readings
from core.errors import IocError
from core.settings import MqttAddress
from core.topics import PREFIX, SENSOR_ID_RE, parse_sensor_topic
from core.types import Reading

logger = logging.getLogger(__name__)


def sensor_filter(sensor: str) -> str:
    return f"{PREFIX}/+/{sensor}/data"


class ReadingsHub:
    """Fans readings of the watched sensors out to their websocket subscribers."""

    def __init__(
        self, address: MqttAddress, limits: Limits, nodes: Sequence[MqttAddress] = ()
    ) -> None:
        self.address = address
        self.nodes = BrokerNodes(nodes or (address,))  # the cluster's nodes, first = address
        self.limits = limits
        self.watchers: dict[str, set[Subscriber]] = {}
        self.connected = False
        self._client: mqtt.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- event-loop side -------------------------------------------------------

    def watch(self, sensor: str, sub: Subscriber) -> None:
        if not SENSOR_ID_RE.match(sensor):
            raise ValueError(f"invalid sensor id {sensor!r}")
        self._ensure_client()
        subs = self.watchers.setdefault(sensor, set())
        subs.add(sub)
        if len(subs) == 1 and self._client is not None and self.connected:
            self._client.subscribe(sensor_filter(sensor), qos=0)
        self._count()

    def unwatch(self, sensor: str, sub: Subscriber) -> None:
        subs = self.watchers.get(sensor)
        if subs is None:
            return
        subs.discard(sub)
        if not subs:
            del self.watchers[sensor]
            if self._client is not None and self.connected:
                self._client.unsubscribe(sensor_filter(sensor))
        self._count()

    def _count(self) -> None:
        WS_CLIENTS.labels("readings").set(sum(len(s) for s in self.watchers.values()))

    def _ensure_client(self) -> None:
        if self._client is not None:
            return
        self._loop = asyncio.get_running_loop()
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"ioc-api-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}",
            clean_session=True,
        )
        if self.address.username:
            client.username_pw_set(self.address.username, self.address.password)
        if self.address.tls:
            client.tls_set()
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.reconnect_delay_set(1, 30)
        follow(client, self.nodes)
        client.connect_async(self.address.host, self.address.port, keepalive=30)
        client.loop_start()
        self._client = client

    async def stop(self) -> None:
        client, self._client = self._client, None
        self.connected = False
        MQTT_CONNECTED.set(0)
        if client is not None:
            client.on_disconnect = None
            await asyncio.to_thread(_close, client)

    def _resubscribe(self) -> None:
        if self._client is None:
            return
        for sensor in self.watchers:
            self._client.subscribe(sensor_filter(sensor), qos=0)

    def _dispatch(self, sensor: str, readings: list[Reading]) -> None:
        subs = self.watchers.get(sensor)
        if not subs:
            return
        for r in readings:
            doc = {
                "type": "reading",
                "sensor": r.sensor,
                "metric": r.metric,
                "time": r.time,
                "value": r.value,
            }
            frame = Frame(FrameKind.EVENT, 0, orjson.dumps(doc, option=orjson.OPT_UTC_Z).decode())
            for sub in subs:
                sub.offer(frame)
            WS_FRAMES.labels("readings").inc(len(subs))
        for sub in [s for s in subs if s.overflowed.is_set()]:
            self.unwatch(sensor, sub)  # its endpoint closes it with 4008

    def _set_connected(self, up: bool) -> None:
        self.connected = up
        MQTT_CONNECTED.set(1 if up else 0)
        if up:
            self._resubscribe()

    # -- paho thread side: never raise -------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        try:
            if reason.is_failure:
                logger.warning("readings MQTT connection refused: %s", reason)
                return
            logger.info("readings MQTT link up (%s:%d)", self.address.host, self.address.port)
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._set_connected, True)
        except Exception:
            MQTT_MESSAGES.labels("callback_error").inc()
            logger.exception("on_connect failed")

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        try:
            logger.warning("readings MQTT link down (%s); paho reconnects", reason)
            if self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self._set_connected, False)
        except Exception:
            MQTT_MESSAGES.labels("callback_error").inc()
            logger.exception("on_disconnect failed")

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = parse_sensor_topic(msg.topic)
            decoded = decode_readings(topic.sensor, bytes(msg.payload), limits=self.limits)
            MQTT_MESSAGES.labels("ok").inc()
            if decoded.readings and self._loop is not None:
                self._loop.call_soon_threadsafe(self._dispatch, topic.sensor, decoded.readings)
        except IocError as exc:
            MQTT_MESSAGES.labels("rejected").inc()
            logger.debug("readings message on %s not shown: %s", msg.topic, exc)
        except Exception:
            MQTT_MESSAGES.labels("callback_error").inc()
            logger.exception("on_message failed for %s", msg.topic)


def _close(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


async def broker_reachable(*addresses: MqttAddress) -> bool:
    """Whether a node of the broker accepts TCP (and TLS) connections within two seconds."""
    for address in addresses:
        if await _reachable(address):
            return True
    return False


async def _reachable(address: MqttAddress) -> bool:
    try:
        ctx = ssl.create_default_context() if address.tls else None
        async with asyncio.timeout(2.0):
            _, writer = await asyncio.open_connection(address.host, address.port, ssl=ctx)
    except (OSError, TimeoutError, ssl.SSLError):
        return False
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(2.0):
            await writer.wait_closed()
    return True
