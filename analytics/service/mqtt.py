"""The analytics service's MQTT client: a persistent session (v5 or v3.1.1) that reconnects by itself."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from analytics.config import AnalyticsSettings
from core.brokers import BrokerNodes, follow


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
