"""The MQTT relay: publishes the committed event log on ``ioc/v1/alerts/<severity>/<kind>``
and ``ioc/v1/incidents/<severity>/<hazard>``.

It locks its cursor row (``event_cursors.name = 'mqtt'``, ``FOR UPDATE SKIP LOCKED``),
reads the events after it, publishes each with QoS 1 and waits for the broker's PUBACK,
then moves the cursor in the same transaction.  A crash, a lost broker or a lost
database before the commit means the same events go out again: at least once, with
``seq`` in every message for deduplication.  Relays in several processes take turns.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import threading
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from psycopg.rows import dict_row
from pydantic import ValidationError

from core.brokers import BrokerNodes, follow
from core.events import EVENT_COLUMNS, EVENTS_SHOWN, event_from_row
from core.settings import MqttAddress

logger = logging.getLogger(__name__)

CURSOR = "mqtt"
PAGE = 500
PUBACK_TIMEOUT_S = 10.0


class BrokerUnavailable(Exception):
    """The broker did not acknowledge a publication in time."""


class MqttLink:
    """A paho client that reconnects by itself; publishes at QoS 1 and waits for PUBACK."""

    def __init__(self, address: MqttAddress, nodes: tuple[MqttAddress, ...] = ()) -> None:
        self.connected = threading.Event()
        cid = f"ioc-relay-{socket.gethostname()}-{os.getpid()}"[:64]
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=cid, protocol=MQTTProtocolVersion.MQTTv5
        )
        if address.username:
            client.username_pw_set(address.username, address.password)
        if address.tls:
            client.tls_set_context(ssl.create_default_context())
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self._refused: set[int] = set()  # mids the broker answered with a failure (MQTT 5)
        self._lock = threading.Lock()
        client.reconnect_delay_set(1, 10)
        follow(client, BrokerNodes(nodes or (address,)))  # a cluster: the next node on failure
        self.client = client
        self.address = address

    def _on_connect(self, c: Any, u: Any, flags: Any, reason: Any, props: Any) -> None:
        if not getattr(reason, "is_failure", False):
            self.connected.set()

    def _on_publish(self, c: Any, u: Any, mid: int, reason: Any, props: Any) -> None:
        if getattr(reason, "is_failure", False):  # e.g. 0x87 not authorised by the ACL
            with self._lock:
                self._refused.add(mid)

    def _on_disconnect(self, c: Any, u: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connected.clear()

    def start(self) -> None:
        self.client.connect_async(self.address.host, self.address.port, keepalive=30)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def publish_all(self, messages: list[tuple[str, bytes]]) -> None:
        if not self.connected.is_set():
            raise BrokerUnavailable("not connected")
        try:
            infos = [self.client.publish(t, p, qos=1) for t, p in messages]
            for info in infos:
                info.wait_for_publish(PUBACK_TIMEOUT_S)
                if not info.is_published():
                    raise BrokerUnavailable("no PUBACK")
            with self._lock:
                refused = [i.mid for i in infos if i.mid in self._refused]
                self._refused.clear()
            if refused:
                raise BrokerUnavailable(
                    f"the broker refused {len(refused)} publications on ioc/v1/alerts/... or"
                    " ioc/v1/incidents/..."
                    " (is this client allowed to write there?)"
                )
        except (RuntimeError, ValueError) as exc:  # paho: connection lost, queue full
            raise BrokerUnavailable(str(exc)) from None


class Relay:
    def __init__(self, link: MqttLink) -> None:
        self.link = link
        self.counts = {"published": 0, "bad": 0}

    def step(self, conn: psycopg.Connection[Any]) -> int:
        """Publish one page of new events; return how many (0: idle, busy or no broker)."""
        if not self.link.connected.is_set():
            return 0
        with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                "SELECT seq FROM event_cursors WHERE name = %s FOR UPDATE SKIP LOCKED", (CURSOR,)
            )
            row = cur.fetchone()
            if row is None:
                return 0
            cur.execute(
                f"SELECT {EVENT_COLUMNS} FROM alert_events WHERE seq > %s{EVENTS_SHOWN}"
                " ORDER BY seq LIMIT %s",
                (row["seq"], PAGE),
            )
            rows = cur.fetchall()
            if not rows:
                return 0
            messages = []
            for r in rows:
                try:
                    ev = event_from_row(r)
                except ValidationError as exc:
                    self.counts["bad"] += 1
                    logger.warning("event %s is not a valid event, skipped: %s", r["seq"], exc)
                    continue
                messages.append((ev.topic, ev.to_json()))
            self.link.publish_all(messages)  # raises: the transaction rolls back, cursor stays
            cur.execute(
                "UPDATE event_cursors SET seq = %s, updated_at = now() WHERE name = %s",
                (rows[-1]["seq"], CURSOR),
            )
        self.counts["published"] += len(messages)
        return len(rows)
