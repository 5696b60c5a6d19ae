"""Where messages go: MQTT connections (paho, driven from the simulator's own thread) or a file.

Each MQTT connection is a *gateway*: it carries many devices, announces itself
on ``ioc/v1/generic/<gateway>/status`` and leaves a Last Will there, because
one connection can hold only one Will.  A message counts as sent when the
broker acknowledged it (PUBACK for QoS 1), which is what ``stats`` reports.
Paho's network loop runs here, not in a background thread: one thread does
``publish`` and reads the acknowledgements, which is measurably faster than
paho's ``loop_start`` thread fighting for the GIL, and no callback races.
"""

from __future__ import annotations

import logging
import selectors
import ssl
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from core.brokers import BrokerNodes, follow
from core.settings import MqttAddress
from simulators.engine import Message

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class SinkStats:
    """What a sink did; ``acked_*`` is what the broker confirmed."""

    published_messages: int = 0
    published_readings: int = 0
    acked_messages: int = 0
    acked_readings: int = 0
    by_channel: dict[str, int] = field(default_factory=lambda: {"data": 0, "meta": 0, "status": 0})
    reconnects: int = 0
    callback_errors: int = 0

    @property
    def unacked(self) -> int:
        return self.published_messages - self.acked_messages


class Sink(Protocol):
    stats: SinkStats

    def connect(self, timeout: float = 10.0) -> None: ...
    def publish(self, msg: Message) -> None: ...
    def poll(self, timeout: float) -> None: ...
    def flush(self, timeout: float) -> bool: ...
    def close(self) -> None: ...


class FileSink:
    """Writes ``topic<TAB>retain<TAB>payload`` lines (``--output``): no broker needed."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.stats = SinkStats()
        self._fh: Any = None

    def connect(self, timeout: float = 10.0) -> None:
        import sys

        self._fh = sys.stdout.buffer if self.path == "-" else Path(self.path).open("wb")  # noqa: SIM115

    def publish(self, msg: Message) -> None:
        self._fh.write(b"%s\t%d\t%s\n" % (msg.topic.encode(), msg.retain, msg.payload))
        s = self.stats
        s.published_messages += 1
        s.published_readings += msg.readings
        s.acked_messages += 1
        s.acked_readings += msg.readings
        s.by_channel[msg.channel] = s.by_channel.get(msg.channel, 0) + 1

    def poll(self, timeout: float) -> None:
        if timeout > 0:
            time.sleep(timeout)

    def flush(self, timeout: float) -> bool:
        if self._fh is not None:
            self._fh.flush()
        return True

    def close(self) -> None:
        if self._fh is not None and self.path != "-":
            self._fh.close()
        self._fh = None


_WBUF_LIMIT = 1 << 20  # bytes gathered before paho is told to wait
_PUBACK_REASON = ReasonCode(PacketTypes.PUBACK)  # success; shared, the callback ignores it
_PUBACK_PROPERTIES = Properties(PacketTypes.PUBACK)  # type: ignore[no-untyped-call]


class GatheringClient(mqtt.Client):
    """A paho client whose socket writes are gathered and sent in one ``send`` per poll.

    paho writes every packet with its own ``send`` system call; under load each one
    also wakes the broker.  Gathering the packets of a burst (up to 1 MiB) cuts the
    calls by two to three orders of magnitude.  Only paho's two socket hooks are
    overridden: ``_sock_send`` appends, ``_sock_close`` flushes first (so DISCONNECT
    and whatever precedes it still go out); a new socket drops what was gathered
    for the old one (paho resends unacknowledged QoS 1 messages itself).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._wbuf = bytearray()
        self._wsock: Any = None

    def _sock_send(self, buf: bytes | bytearray) -> int:
        sock = self._sock
        if sock is None:
            raise ConnectionError("self._sock is None")
        if sock is not self._wsock:
            self._wbuf.clear()
            self._wsock = sock
        if len(self._wbuf) >= _WBUF_LIMIT and not self.flush_writes():
            raise BlockingIOError()
        self._wbuf += buf
        return len(buf)

    def flush_writes(self) -> bool:
        """Send what was gathered, as far as the socket takes it; True when nothing is left."""
        sock = self._sock
        if not self._wbuf:
            return True
        if sock is None or sock is not self._wsock:
            self._wbuf.clear()
            return True
        try:
            sent = sock.send(self._wbuf)
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return False
        except OSError:
            self._wbuf.clear()  # the connection is gone: the read side will notice
            return True
        del self._wbuf[:sent]
        return not self._wbuf

    def pending_bytes(self) -> int:
        return len(self._wbuf)

    def _handle_pubackcomp(self, cmd: Literal["PUBACK", "PUBCOMP"]) -> MQTTErrorCode:
        """MQTT 3.1.1 PUBACK without paho's per-acknowledgement Properties and ReasonCode
        objects (a third of paho's time per message); anything else goes to paho."""
        packet = self._in_packet["packet"]
        if cmd != "PUBACK" or self._protocol == MQTTProtocolVersion.MQTTv5 or len(packet) != 2:
            return super()._handle_pubackcomp(cmd)
        (mid,) = struct.unpack("!H", packet)
        with self._out_message_mutex:
            if mid in self._out_messages:
                return self._do_on_publish(mid, _PUBACK_REASON, _PUBACK_PROPERTIES)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _sock_close(self) -> None:
        sock = self._sock
        if sock is not None and self._wbuf and sock is self._wsock:
            try:
                sock.settimeout(2.0)  # type: ignore[attr-defined]
                sock.sendall(self._wbuf)  # type: ignore[attr-defined]
            except OSError:
                pass
        self._wbuf.clear()
        super()._sock_close()


class _Conn:
    def __init__(self, sink: MqttSink, index: int, client_id: str, will_topic: str) -> None:
        self.sink = sink
        self.index = index
        self.client_id = client_id
        self.connected = False
        self.failed_rc: str | None = None
        self.pending: dict[int, int] = {}  # mid -> readings
        self.early: dict[int, bool] = {}  # acks seen before publish() returned (QoS 0)
        self.last_try = 0.0
        self.next_readings = 0
        self.registered: Any = None  # the socket registered with the selector
        self.events = 0
        self.reconnect_failures = 0
        self.closing = False
        c = GatheringClient(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        c.max_inflight_messages_set(
            0
        )  # no paho-side limit: its O(n) inflight scan is slow; we bound the window
        c.max_queued_messages_set(0)
        c.will_set(will_topic, b"offline", qos=1, retain=True)
        addr = sink.address
        if addr.username:
            c.username_pw_set(addr.username, addr.password)
        if addr.tls:
            c.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        follow(c, BrokerNodes(sink.nodes))  # a lost node: reconnect to the next one
        self.client = c

    # paho callbacks: nothing may escape them
    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any = None
    ) -> None:
        try:
            if rc.is_failure:
                self.failed_rc = str(rc)
                logger.warning("connection %s refused by the broker: %s", self.client_id, rc)
            else:
                self.connected = True
                self.failed_rc = None
        except Exception:
            self.sink.stats.callback_errors += 1
            logger.exception("on_connect failed")

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any = None
    ) -> None:
        try:
            if self.connected and not self.closing:
                logger.warning("connection %s lost (%s); reconnecting", self.client_id, rc)
            self.connected = False
        except Exception:
            self.sink.stats.callback_errors += 1
            logger.exception("on_disconnect failed")

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, rc: Any, props: Any
    ) -> None:
        try:
            n = self.pending.pop(mid, None)
            if n is None:
                self.early[mid] = True
                n = self.next_readings
            s = self.sink.stats
            s.acked_messages += 1
            s.acked_readings += n
        except Exception:
            self.sink.stats.callback_errors += 1
            logger.exception("on_publish failed")


class MqttSink:
    """Several paho connections driven by one ``selectors`` loop, with a bounded unacked window."""

    def __init__(
        self,
        address: MqttAddress,
        client_ids: list[str],
        will_topics: list[str],
        *,
        qos: int = 1,
        window: int = 1000,
        keepalive: int = 30,
        nodes: Sequence[MqttAddress] = (),
    ) -> None:
        self.address = address
        self.nodes = tuple(nodes) or (address,)  # a broker cluster's nodes, first = address
        self.qos = qos
        self.window = max(1, window)
        self.keepalive = keepalive
        self.stats = SinkStats()
        self.conns = [
            _Conn(self, i, cid, wt)
            for i, (cid, wt) in enumerate(zip(client_ids, will_topics, strict=True))
        ]
        self._sel = selectors.DefaultSelector()
        self._last_misc = 0.0
        self.abort = False  # set on shutdown: stop waiting for window space

    def connect(self, timeout: float = 10.0) -> None:
        for c in self.conns:
            for attempt in range(len(self.nodes)):  # each attempt goes to the next node
                try:
                    c.client.connect(self.address.host, self.address.port, self.keepalive)
                    break
                except OSError as exc:
                    if attempt == len(self.nodes) - 1:
                        where = ", ".join(f"{n.host}:{n.port}" for n in self.nodes)
                        raise ConnectionError(
                            f"cannot reach the broker at {where}: {exc}"
                        ) from None
        deadline = time.monotonic() + timeout
        while not all(c.connected for c in self.conns):
            refused = [c for c in self.conns if c.failed_rc]
            if refused:
                raise ConnectionError(
                    f"the broker refused {refused[0].client_id}: {refused[0].failed_rc}"
                )
            if time.monotonic() > deadline:
                raise ConnectionError(
                    f"no CONNACK from {self.address.host}:{self.address.port} in {timeout:.0f} s"
                )
            self.poll(0.05)

    def publish(self, msg: Message) -> None:
        c = self.conns[msg.conn % len(self.conns)]
        while (len(c.pending) >= self.window or not c.connected) and not self.abort:
            self.poll(0.05)
        c.next_readings = msg.readings
        info = c.client.publish(msg.topic, msg.payload, qos=self.qos, retain=msg.retain)
        if c.early.pop(info.mid, False) is False:
            c.pending[info.mid] = msg.readings
        s = self.stats
        s.published_messages += 1
        s.published_readings += msg.readings
        s.by_channel[msg.channel] = s.by_channel.get(msg.channel, 0) + 1

    def poll(self, timeout: float) -> None:
        """Do network I/O for every connection for at most ``timeout`` seconds."""
        now = time.monotonic()
        sel = self._sel
        for c in self.conns:
            sock = c.client.socket()
            if sock is not c.registered:
                if c.registered is not None:
                    sel.unregister(c.registered)
                    c.registered = None
                if sock is not None:
                    sel.register(sock, selectors.EVENT_READ, c)
                    c.registered = sock
                    c.events = selectors.EVENT_READ
            if sock is None:
                self._maybe_reconnect(c, now)
                continue
            flushed = c.client.flush_writes()
            want = c.client.want_write() or not flushed
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if want else 0)
            if events != c.events:
                sel.modify(sock, events, c)
                c.events = events
        if not sel.get_map():
            time.sleep(timeout)
            return
        for key, events in sel.select(timeout):
            c = key.data
            if events & selectors.EVENT_READ:
                self._check(c, c.client.loop_read())
            if events & selectors.EVENT_WRITE and c.client.socket() is not None:
                self._check(c, c.client.loop_write())
                c.client.flush_writes()
        if now - self._last_misc > 1.0:
            self._last_misc = now
            for c in self.conns:
                if c.client.socket() is not None:
                    self._check(c, c.client.loop_misc())

    def _check(self, c: _Conn, rc: MQTTErrorCode) -> None:
        if rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_AGAIN) and c.connected:
            logger.warning("connection %s: %s", c.client_id, mqtt.error_string(rc))
            c.connected = False

    def _maybe_reconnect(self, c: _Conn, now: float) -> None:
        if now - c.last_try < 2.0:
            return
        c.last_try = now
        try:
            c.client.reconnect()
            self.stats.reconnects += 1
            c.reconnect_failures = 0
        except OSError as exc:
            c.reconnect_failures += 1
            if c.reconnect_failures in (1, 10) or c.reconnect_failures % 100 == 0:
                logger.warning(
                    "reconnecting %s failed (%d tries): %s", c.client_id, c.reconnect_failures, exc
                )

    def flush(self, timeout: float) -> bool:
        """Wait until the broker acknowledged everything published; False on timeout."""
        deadline = time.monotonic() + timeout
        while any(c.pending for c in self.conns):
            if time.monotonic() > deadline or (
                self.abort and not all(c.connected for c in self.conns)
            ):
                return False
            self.poll(0.05)
        return True

    def close(self) -> None:
        for c in self.conns:
            c.closing = True
            try:
                c.client.disconnect()
                c.client.loop_write()
            except Exception:  # closing a dead connection is not worth a traceback
                logger.debug("disconnect %s failed", c.client_id, exc_info=True)
        self._sel.close()
