"""uvicorn as ``ioc api`` runs it: bounded request heads on either HTTP parser.

uvicorn parses HTTP with httptools when it is installed (``http="auto"``), else h11.
h11 bounds an incomplete request head with ``h11_max_incomplete_event_size``; httptools
has no bound at all (a 200 MB header is read, joined and kept).  ``BoundedHttpTools``
counts the bytes of each request head as they arrive and answers 431 as soon as they
pass the same limit, then discards the rest of what the client sends and closes.
"""

from __future__ import annotations

from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.config import ApiSettings

WS_MAX_MESSAGE_BYTES = 64 * 1024
_DISCARD_FOR_S = 1.0  # after a 431, read and drop for this long so the client sees the answer


class HeadTooLargeError(Exception):
    pass


class BoundedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with a byte limit on the request line and headers
    (``config.h11_max_incomplete_event_size``) and a limit on the number of headers."""

    max_headers = 100

    def __init__(self, config: Any, server_state: Any, app_state: Any, _loop: Any = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.max_head = int(config.h11_max_incomplete_event_size or 64 * 1024)
        self._head_bytes = 0
        self._in_head = True
        self._refused = False
        self._header_count = 0

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # drained, not parsed: the answer is on its way
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._head_bytes > self.max_head and not self._refused:
            self._refuse()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0
        self._header_count = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.max_headers:
            raise HeadTooLargeError
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0

    def send_400_response(self, msg: str) -> None:
        if self._header_count > self.max_headers:
            self._refuse()
        else:
            super().send_400_response(msg)

    def _refuse(self) -> None:
        self._refused = True
        body = orjson.dumps(
            {
                "detail": f"request header fields too large: at most {self.max_head} bytes "
                f"and {self.max_headers} fields"
            }
        )
        head = (
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n"
            b"connection: close\r\n\r\n"
        )
        transport = self.transport
        transport.write(head + body)
        if transport.can_write_eof():
            transport.write_eof()
        self.loop.call_later(_DISCARD_FOR_S, transport.close)
        self.logger.info("refused a request head larger than %d bytes (431)", self.max_head)


def uvicorn_options(settings: ApiSettings) -> dict[str, Any]:
    """The uvicorn settings of ``ioc api`` (and of the tests that serve the app)."""
    return {
        "log_config": None,
        "proxy_headers": True,
        "server_header": False,
        "http": BoundedHttpTools,
        "h11_max_incomplete_event_size": settings.api_max_header_bytes,
        "ws_max_size": WS_MAX_MESSAGE_BYTES,
        "ws_per_message_deflate": settings.api_ws_deflate,
    }
