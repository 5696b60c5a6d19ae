"""Prometheus metrics of the API and the ASGI middleware that times every HTTP request."""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HTTP_REQUESTS = Counter(
    "ioc_api_http_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
HTTP_SECONDS = Histogram(
    "ioc_api_http_request_seconds",
    "HTTP request duration until the response starts",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
WS_CLIENTS = Gauge("ioc_api_ws_clients", "connected websocket clients", ["stream"])
WS_FRAMES = Counter("ioc_api_ws_frames_total", "frames queued for websocket clients", ["stream"])
WS_SLOW_CLOSED = Counter(
    "ioc_api_ws_slow_closed_total", "websocket clients closed with 4008 (too slow)", ["stream"]
)
RATE_LIMITED = Counter(
    "ioc_api_rate_limited_total", "requests refused with 429 (a token over its request rate)"
)
WS_DENIED = Counter(
    "ioc_api_ws_denied_total", "websocket connections refused (4401/4403/4400)", ["code"]
)
ALERT_EVENTS = Counter("ioc_api_alert_events_total", "alert events read from alert_events")
ALERT_EVENT_LAG = Histogram(
    "ioc_api_alert_event_lag_seconds",
    "from an alert event's insert to its fan-out",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
ALERT_READER_RECONNECTS = Counter(
    "ioc_api_alert_reader_reconnects_total", "reconnections of the LISTEN connection"
)
REPLAYED_EVENTS = Counter("ioc_api_ws_replayed_events_total", "alert events replayed on resume")
MQTT_MESSAGES = Counter(
    "ioc_api_mqtt_messages_total", "readings messages received for /ws/readings", ["outcome"]
)
MQTT_CONNECTED = Gauge("ioc_api_mqtt_connected", "1 while the readings MQTT link is up")


class MetricsMiddleware:
    """Counts and times HTTP requests by route template (never by raw path)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                HTTP_SECONDS.labels(_method(scope), _route(scope)).observe(
                    time.perf_counter() - start
                )
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            HTTP_REQUESTS.labels(_method(scope), _route(scope), str(status[0])).inc()


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _method(scope: MutableMapping[str, Any]) -> str:
    """The method as a label: any other token (``FOO``) is ``other``, so labels stay few."""
    method: str = scope["method"]
    return method if method in _METHODS else "other"


def _route(scope: MutableMapping[str, Any]) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"
