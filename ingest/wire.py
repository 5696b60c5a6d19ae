"""paho's client with a lean receive path: buffered reads, PUBLISH parsed in place, bulk PUBACKs.

Stock paho reads every packet with a ``select`` and three or more ``recv``
calls (one byte of header, the length byte by byte, then the body), builds an
``MQTTMessage`` and a v5 ``Properties`` object, and matches the topic against
the per-topic callbacks.  At thousands of messages per second that is most of
the ingestor's CPU.  ``LeanClient`` keeps paho for everything that is not the
hot path (connecting, keepalive, subscriptions, reconnects, TLS, QoS 2, the
packets we do not send) and changes three things:

* the socket is read in large chunks (``BufferedSocket``); ``pending()`` tells
  paho's loop that buffered bytes are waiting, as it does for TLS;
* ``loop_read`` takes every complete QoS 0/1 PUBLISH in the buffer and hands
  ``(topic, payload, mid, qos)`` as bytes straight to ``raw_handler``; anything
  else (and any packet it is not sure about) goes through paho's own reader;
* ``ack_many`` queues the PUBACKs of a whole batch as one write.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

logger = logging.getLogger(__name__)

RawHandler = Callable[[bytes, bytes, int, int], None]  # topic, payload, mid, qos

_CHUNK = 256 * 1024  # bytes asked of the socket per read
_MAX_PACKETS = 2_000  # per loop_read: paho's loop writes (acks, pings) in between
_PUBACK = int(paho.PUBACK)
# the parts of paho's client the lean path relies on (private: checked, not assumed)
_PAHO_METHODS = ("_create_socket", "_packet_read", "_packet_queue", "_loop_rc_handle")
_PAHO_FIELDS = ("_sock", "_in_packet", "_msgtime_mutex", "_last_bytes_received", "_protocol")


def lean_supported() -> bool:
    """Whether this paho release has the internals the lean receive path uses."""
    if not all(callable(getattr(paho.Client, name, None)) for name in _PAHO_METHODS):
        return False
    probe = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    return all(hasattr(probe, name) for name in _PAHO_FIELDS) and isinstance(
        getattr(probe, "_in_packet", None), dict
    )


class BufferedSocket:
    """A socket whose reads are served from a buffer filled by large reads.

    Each read lands in one reusable area (``recv_into``) and only the bytes that came
    are copied out, so no 256 KiB block is allocated and shrunk per read.
    """

    __slots__ = ("_area", "buf", "pos", "sock")

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.buf = b""
        self.pos = 0
        self._area = memoryview(bytearray(_CHUNK)) if hasattr(sock, "recv_into") else None

    def _read(self) -> bytes:
        """One read of up to ``_CHUNK`` bytes (b"" at the end of the stream)."""
        area = self._area
        if area is None:  # a wrapper without recv_into (websockets)
            data: bytes = self.sock.recv(_CHUNK)
            return data
        return bytes(area[: self.sock.recv_into(area)])

    def recv(self, bufsize: int) -> bytes:
        if self.pos >= len(self.buf):
            data = self._read()
            if len(data) <= bufsize:
                self.buf, self.pos = b"", 0
                return data
            self.buf, self.pos = data, 0
        start = self.pos
        self.pos = min(start + bufsize, len(self.buf))
        return self.buf[start : self.pos]

    def fill(self, need: int) -> bool:
        """Have ``need`` bytes buffered from ``pos`` on; False when the socket has no more now.

        A packet larger than one read is gathered in pieces and joined once, so a message of
        many megabytes costs one copy, not one per read (which also scattered the heap).
        """
        have = len(self.buf) - self.pos
        if have >= need:
            return True
        parts = [self.buf[self.pos :]] if have else []
        complete = True
        while have < need:
            try:
                data = self._read()
            except OSError:  # would block (or worse: paho's own read finds out)
                complete = False
                break
            if not data:
                complete = False
                break
            parts.append(data)
            have += len(data)
        if len(parts) == 1:
            self.buf = parts[0]
        elif parts:
            self.buf = b"".join(parts)
        else:
            self.buf = b""
        self.pos = 0
        return complete

    def pending(self) -> int:
        """Bytes read from the socket and not yet taken (plus TLS's own, if any)."""
        inner = getattr(self.sock, "pending", None)
        return len(self.buf) - self.pos + (int(inner()) if inner is not None else 0)

    def fileno(self) -> int:
        return int(self.sock.fileno())

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


class LeanClient(paho.Client):
    """``paho.Client`` whose QoS 0/1 PUBLISH packets go to ``raw_handler`` (when set).

    A packet that paho reads itself (one that had only partly arrived, or QoS 2) reaches
    ``on_message`` as usual, so set both.
    """

    raw_handler: RawHandler | None = None

    def _create_socket(self) -> Any:
        return BufferedSocket(super()._create_socket())

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        sock = self._sock
        handler = self.raw_handler
        if not isinstance(sock, BufferedSocket) or handler is None:
            return super().loop_read(max_packets)
        buffered: BufferedSocket = sock
        took = False
        try:
            for _ in range(_MAX_PACKETS):
                if self._sock is not buffered:
                    return MQTTErrorCode.MQTT_ERR_NO_CONN
                if self._in_packet["command"] == 0 and self._take_publish(buffered, handler):
                    took = True
                    continue
                rc = self._packet_read()
                if rc > 0:
                    return self._loop_rc_handle(rc)
                if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                    break
        finally:
            if took:
                with self._msgtime_mutex:
                    self._last_bytes_received = paho.time_func()
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _take_publish(self, sock: BufferedSocket, handler: RawHandler) -> bool:
        """Hand over one complete QoS 0/1 PUBLISH from the buffer; False: let paho read."""
        if not sock.fill(5):  # the smallest PUBLISH is longer
            return False
        buf, pos = sock.buf, sock.pos
        head = buf[pos]
        qos = (head >> 1) & 3
        if head >> 4 != 3 or qos > 1:
            return False
        i = pos + 1
        length = 0
        for shift in (0, 7, 14, 21):
            b = buf[i]
            i += 1
            length |= (b & 127) << shift
            if not b & 128:
                break
        else:
            return False  # malformed: paho says so
        end = i + length
        if end > len(buf):
            if not sock.fill(end - pos):
                return False
            delta = sock.pos - pos
            buf, pos, i, end = sock.buf, sock.pos, i + delta, end + delta
        topic_end = i + 2 + ((buf[i] << 8) | buf[i + 1])
        p = topic_end
        mid = 0
        if qos:
            mid = (buf[p] << 8) | buf[p + 1]
            p += 2
        if self._protocol == paho.MQTTv5:
            props = 0
            for shift in (0, 7, 14, 21):
                b = buf[p]
                p += 1
                props |= (b & 127) << shift
                if not b & 128:
                    break
            else:
                return False
            p += props
        if p > end or (qos and mid == 0):
            return False  # malformed: paho says so
        sock.pos = end
        topic = buf[i + 2 : topic_end]
        payload = buf[p:end]
        try:
            handler(topic, payload, mid, qos)
        except Exception:
            logger.exception("error in the message handler")
            if not self.suppress_exceptions:
                raise
        return True

    def ack_many(self, mids: Sequence[int]) -> None:
        """Queue a PUBACK for every QoS 1 ``mid``, in this order, as one write."""
        if mids:
            packet = struct.pack(f">{len(mids)}I", *[0x40020000 | m for m in mids])
            self._packet_queue(_PUBACK, packet, 0, 0)
