"""The analytics service's MQTT side: a persistent session (v5 or v3.1.1) that reconnects by itself, and its callbacks."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from analytics.config import AnalyticsSettings
from analytics.service.batcher import Batcher, decode_message
from analytics.service.metrics import ServiceMetrics
from core.brokers import BrokerNodes, follow
from core.topics import ALL_DATA, ALL_META, ALL_STATUS
from core.types import SensorKind

logger = logging.getLogger(__name__)


def make_client(
    s: AnalyticsSettings,
    on_connect: Callable[..., None],
    on_disconnect: Callable[..., None],
    on_message: Callable[[mqtt.Client, Any, mqtt.MQTTMessage], None],
) -> mqtt.Client:
    """A started client (``loop_start``) connecting asynchronously with the service's session."""
    addr = s.mqtt
    v5 = s.analytics_mqtt_protocol == "5"
    if v5:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=s.client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
    else:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=s.client_id,
            clean_session=False,
            protocol=MQTTProtocolVersion.MQTTv311,
        )
    if addr.username:
        client.username_pw_set(addr.username, addr.password)
    if addr.tls:
        client.tls_set()
    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_message = on_message
    client.reconnect_delay_set(1, 30)
    follow(client, BrokerNodes(s.mqtt_nodes))  # another node of the cluster on loss
    client.max_queued_messages_set(0)
    if v5:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = s.analytics_session_expiry_s
        props.ReceiveMaximum = 65535
        client.connect_async(
            addr.host, addr.port, keepalive=30, clean_start=False, properties=props
        )
    else:
        client.connect_async(addr.host, addr.port, keepalive=30)
    client.loop_start()
    return client


class Receiver:
    """What paho's network thread does: decode each message, keep this partition's, enqueue.

    Nothing else runs in that thread, and no exception escapes a callback (it would
    kill the thread): it is logged and counted.
    """

    def __init__(
        self,
        settings: AnalyticsSettings,
        batcher: Batcher,
        counts: dict[str, int],
        metrics: ServiceMetrics,
        stopping: threading.Event,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.batcher = batcher
        self.counts = counts
        self.metrics = metrics
        self.stopping = stopping
        self.wall = wall
        self.kinds: dict[str, SensorKind] = {}  # sensor -> kind, from its topics
        self.connected = threading.Event()

    def on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        try:
            if reason.is_failure:
                logger.warning("MQTT connection refused: %s", reason)
                return
            client.subscribe([(ALL_DATA, 1), (ALL_META, 1), (ALL_STATUS, 1)])
            self.connected.set()
            logger.info("MQTT connected (session present: %s)", flags.session_present)
        except Exception:
            self.counts["callback_errors"] += 1
            logger.exception("on_connect failed")

    def on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self.connected.clear()
        if not self.stopping.is_set():
            logger.warning("MQTT disconnected (%s); reconnecting", reason)

    def on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self.decode(msg.topic, bytes(msg.payload))
        except Exception:  # nothing may escape a paho callback
            self.counts["callback_errors"] += 1
            logger.exception("on_message failed for %s", msg.topic)

    def decode(self, topic: str, payload: bytes, now: float | None = None) -> None:
        """Decode one message and enqueue it (``now``: the time of arrival)."""
        self.counts["messages"] += 1
        d = decode_message(
            topic,
            payload,
            owns=self.settings.partition.owns,
            limits=self.settings.limits,
            now=now,
            wall=self.wall,
        )
        if d.channel is not None:
            self.metrics.messages.labels(d.channel.value).inc()
        if d.kind is not None:
            self.kinds[d.sensor] = d.kind
        if d.undecodable:
            self.counts["undecodable"] += 1
            self.metrics.undecodable.inc()
        elif d.msg is not None:
            self.batcher.put(d.msg)
