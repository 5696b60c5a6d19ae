"""The MQTT side: a persistent MQTT 5 session, manual acknowledgements, decode-and-enqueue.

paho-mqtt 2.x, ``CallbackAPIVersion.VERSION2``, QoS 1, a fixed client id and
``clean_start=False`` with a session expiry interval, so the broker keeps our
subscriptions and queues readings while the ingestor is down.  ``manual_ack``:
a message is acknowledged only after the batch holding it has committed; until
then the broker may redeliver it, and the primary key turns the redelivery into
a no-op.  The connect property ``ReceiveMaximum`` caps how many unacknowledged
messages the broker sends us, which bounds memory while the database is away.

Packet ids are reused after a reconnect, so every message remembers the
connection (generation) it came on and is acknowledged only on that one; the
broker redelivers the others on the new connection.

The client is ``ingest.wire.LeanClient``: paho with a receive path that reads the
socket in large chunks and hands each PUBLISH's topic, payload and packet id
straight to ``_on_raw``, and that acknowledges a committed batch in one write.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt import __version__ as paho_version
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from core.brokers import BrokerNodes, follow
from core.codecs import payload_error
from core.topics import ALL_DATA, ALL_META, ALL_STATUS, shared
from ingest.config import IngestSettings
from ingest.inbound import Inbound, decode_message
from ingest.metrics import IngestMetrics
from ingest.wire import LeanClient, lean_supported

logger = logging.getLogger(__name__)


class Consumer:
    """Owns the paho client; puts decoded ``Inbound`` messages on ``queue``."""

    def __init__(
        self,
        settings: IngestSettings,
        out: queue.SimpleQueue[Inbound],
        metrics: IngestMetrics,
    ) -> None:
        self.settings = settings
        self.out = out
        self.metrics = metrics
        self.limits = settings.limits
        self.gen = 0  # bumped on every connect and disconnect
        # each counter has one writer thread, so neither needs a lock
        self.received = 0  # messages taken (paho's thread)
        self.settled = 0  # messages acknowledged or given up (the writer thread)
        self.subscribed = threading.Event()
        self._lock = threading.Lock()  # orders acks against generation changes
        self._accepting = True
        self._count = {ch: metrics.messages.labels(ch) for ch in ("data", "meta", "status", "bad")}
        addr = settings.mqtt
        self.v5 = settings.ingest_mqtt_protocol == "5"
        self.lean = settings.ingest_receive_path == "lean"
        if self.lean and not lean_supported():
            logger.warning(
                "paho-mqtt %s lacks what the lean receive path uses: using paho's own reader",
                paho_version,
            )
            self.lean = False
        client = (LeanClient if self.lean else paho.Client)(
            CallbackAPIVersion.VERSION2,
            client_id=settings.ingest_client_id,
            protocol=paho.MQTTv5 if self.v5 else paho.MQTTv311,
            clean_session=None if self.v5 else False,  # 3.1.1: a persistent session
            manual_ack=True,
            reconnect_on_failure=True,
        )
        if addr.username is not None:
            client.username_pw_set(addr.username, addr.password)
        if addr.tls:
            client.tls_set_context(ssl.create_default_context())
        client.reconnect_delay_set(1, max(1, int(settings.ingest_reconnect_max_s)))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message  # what LeanClient leaves to paho (QoS 2)
        if isinstance(client, LeanClient):
            client.raw_handler = self._on_raw
        client.on_subscribe = self._on_subscribe
        self.nodes = BrokerNodes(settings.mqtt_nodes)
        follow(client, self.nodes)  # each (re)connection attempt goes to the next node
        self.client = client
        group = settings.ingest_shared_group
        self.data_filter = shared(group, ALL_DATA) if group else ALL_DATA
        self.last_message = time.monotonic()  # when the last message arrived

    # -- life cycle ----------------------------------------------------------

    def start(self) -> None:
        s = self.settings
        addr = s.mqtt
        if self.v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = s.ingest_session_expiry_s
            props.ReceiveMaximum = s.ingest_receive_maximum
            self.client.connect_async(
                addr.host,
                addr.port,
                keepalive=s.ingest_keepalive_s,
                clean_start=False,
                properties=props,
            )
        else:  # no receive maximum: the broker's own in-flight limit bounds what we hold
            self.client.connect_async(addr.host, addr.port, keepalive=s.ingest_keepalive_s)
        self.client.loop_start()

    def stop_accepting(self) -> None:
        """From now on incoming messages are left unacknowledged (the broker keeps them)."""
        self._accepting = False

    def leave_group(self) -> None:
        """Unsubscribe from readings: the broker stops routing new ones to this session."""
        self.client.unsubscribe(self.data_filter)

    def close(self, *, end_session: bool = False) -> None:
        """Disconnect after the queued acks went out; the session stays unless ``end_session``."""
        self._accepting = False
        if end_session and self.v5:
            props = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 0
            self.client.disconnect(properties=props)
        else:
            self.client.disconnect()
        self.client.loop_stop()
        # paho leaves the wake-up socket pair of loop_start open after loop_stop
        reset = getattr(self.client, "_reset_sockets", None)
        if callable(reset):
            reset()

    @property
    def pending(self) -> int:
        """Messages received and not yet acknowledged or given up."""
        return self.received - self.settled

    # -- acknowledgements ------------------------------------------------------

    def ack(self, msgs: list[Inbound]) -> None:
        """Acknowledge committed messages that came on the current connection (one write)."""
        mids: list[int] = []
        exactly_once: list[int] = []  # QoS 2: never subscribed so; acknowledged all the same
        with self._lock:
            gen = self.gen
            if self.client.is_connected():
                mids = [m.mid for m in msgs if m.qos == 1 and m.gen == gen]
                exactly_once = [m.mid for m in msgs if m.qos == 2 and m.gen == gen]
                if isinstance(self.client, LeanClient):
                    self.client.ack_many(mids)
                else:
                    for mid in mids:
                        self.client.ack(mid, 1)
                for mid in exactly_once:
                    self.client.ack(mid, 2)
        skipped = sum(1 for m in msgs if m.qos) - len(mids) - len(exactly_once)
        self.settled += len(msgs)
        if skipped:
            self.metrics.acks_dropped.inc(skipped)
            logger.info(
                "%d committed message(s) came on an earlier connection; the broker redelivers"
                " them and the duplicates are ignored",
                skipped,
            )

    def forget(self, msgs: list[Inbound]) -> None:
        """Give up on messages without acknowledging them (shutdown with the database away)."""
        self.settled += len(msgs)

    # -- paho callbacks: nothing may escape them -------------------------------

    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        try:
            if reason_code.is_failure:
                logger.warning("broker refused the connection: %s", reason_code)
                return
            with self._lock:
                self.gen += 1
            self.metrics.mqtt_connected.set(1)
            self.metrics.mqtt_connects.inc()
            s = self.settings
            data = self.data_filter
            # meta and status are not shared: every instance keeps its registry complete and
            # gets the retained ones (status rows are only written when the status changes)
            if self.v5:
                retained_once = SubscribeOptions(qos=1, retainHandling=1)
                client.subscribe(
                    [
                        (ALL_META, retained_once),
                        (ALL_STATUS, retained_once),
                        (data, SubscribeOptions(qos=1)),
                    ]
                )
            else:
                client.subscribe([(ALL_META, 1), (ALL_STATUS, 1), (data, 1)])
            logger.info(
                "connected to %s as %s (session %s), subscribing to %s",
                self.nodes.describe(self.nodes.current),
                s.ingest_client_id,
                "resumed" if flags.session_present else "new",
                data,
            )
        except Exception:
            self.metrics.callback_errors.inc()
            logger.exception("error in on_connect")

    def _on_subscribe(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        try:
            bad = [str(rc) for rc in reason_codes if rc.is_failure]
            if bad:
                logger.error("broker refused subscriptions: %s", ", ".join(bad))
                return
            logger.info("subscribed")
            self.subscribed.set()
        except Exception:
            self.metrics.callback_errors.inc()
            logger.exception("error in on_subscribe")

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        try:
            with self._lock:
                self.gen += 1
            self.metrics.mqtt_connected.set(0)
            self.subscribed.clear()
            if self._accepting:
                logger.warning("disconnected from the broker (%s); reconnecting", reason_code)
        except Exception:
            self.metrics.callback_errors.inc()
            logger.exception("error in on_disconnect")

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        payload = message.payload
        self._on_raw(
            message._topic,
            payload if isinstance(payload, bytes) else bytes(payload),
            message.mid,
            message.qos,
        )

    def _on_raw(self, topic: bytes, payload: bytes, mid: int, qos: int) -> None:
        if not self._accepting:
            return  # not acknowledged: the broker keeps it for the next run
        try:
            self.last_message = time.monotonic()
            msg = self._decode(topic, payload, mid, qos)
            self.received += 1
            self.out.put(msg)
            self._count[msg.channel].inc()
        except Exception:
            self.metrics.callback_errors.inc()
            logger.exception("error handling a message")

    def _decode(self, raw_topic: bytes, payload: bytes, mid: int, qos: int) -> Inbound:
        try:
            topic = raw_topic.decode("utf-8")
        except UnicodeDecodeError:
            topic = raw_topic.decode("utf-8", "replace")
        now = time.time()
        try:
            return decode_message(
                topic, payload, mid=mid, qos=qos, gen=self.gen, now=now, limits=self.limits
            )
        except Exception as exc:  # a bug: keep the message as a dead letter rather than lose it
            self.metrics.callback_errors.inc()
            logger.exception("error decoding a message on %r", topic)
            return Inbound(
                mid,
                qos,
                self.gen,
                topic,
                payload,
                now,
                "bad",
                error=payload_error("internal_error", "payload.internal_error", error=repr(exc)),
            )
