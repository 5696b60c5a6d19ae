"""The broker's nodes (``IOC_MQTT_URL`` may list several) and which one a client connects to next.

A city runs its broker as a cluster; every part is given all of the cluster's
addresses.  A paho client follows :class:`BrokerNodes`: its first attempt goes to
the first address, and every later attempt (after a refused connection or a lost
one) to the next address in the list, round and round, with paho's own back-off
between attempts.  The client keeps its client id and asks for its persistent
session on every node, so a cluster that replicates sessions (EMQX, HiveMQ,
VerneMQ, NATS with JetStream) carries on where the lost node left off.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from paho.mqtt.client import Client

from core.errors import ConfigError
from core.settings import MqttAddress

logger = logging.getLogger(__name__)


class BrokerNodes:
    """The nodes in the order given; ``next_attempt()`` says where the next connection goes."""

    def __init__(self, addresses: Sequence[MqttAddress]) -> None:
        if not addresses:
            raise ConfigError("IOC_MQTT_URL names no broker")
        self.addresses = tuple(addresses)
        self._index = 0
        self._attempts = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.addresses)

    @property
    def current(self) -> MqttAddress:
        """The node of the latest attempt (the first before any)."""
        with self._lock:
            return self.addresses[self._index]

    def next_attempt(self) -> MqttAddress:
        """The first node on the first attempt, then the next one on every later attempt."""
        with self._lock:
            if self._attempts:
                self._index = (self._index + 1) % len(self.addresses)
            self._attempts += 1
            return self.addresses[self._index]

    def describe(self, address: MqttAddress) -> str:
        """``host:port`` and, with several nodes, which one of them (no credentials)."""
        where = f"{address.host}:{address.port}"
        if len(self.addresses) == 1:
            return where
        return f"{where} (node {self.addresses.index(address) + 1} of {len(self.addresses)})"


def follow(client: Client, nodes: BrokerNodes) -> None:
    """Send every connection attempt of ``client`` (first, retry, reconnect) to the next node.

    Works with ``connect``, ``connect_async`` + ``loop_start`` (paho's automatic
    reconnect) and explicit ``reconnect()`` calls alike: paho calls ``on_pre_connect``
    right before it opens the socket, and the node is chosen there.  With a single
    node nothing changes.  Credentials and TLS are the same on every node.
    """
    if len(nodes) == 1:
        return
    if not hasattr(client, "_host") or not hasattr(client, "_port"):  # pragma: no cover
        raise ConfigError("this paho-mqtt cannot switch broker nodes; install paho-mqtt 2.x")

    def on_pre_connect(c: Client, userdata: Any) -> None:
        try:
            previous = (c._host, c._port)
            node = nodes.next_attempt()
            # paho's host/port setters refuse while connecting; this is the moment paho
            # reads them to open the socket (and, with TLS, to check the certificate)
            c._host, c._port = node.host, node.port
            if previous != (node.host, node.port):
                logger.info("connecting to the MQTT broker at %s", nodes.describe(node))
        except Exception:  # nothing may escape a paho callback
            logger.exception("choosing a broker node failed")

    client.on_pre_connect = on_pre_connect
