"""Front doors of the HTTP API: security headers on every answer, and the token checked first.

Both are plain ASGI middleware (no ``BaseHTTPMiddleware``: nothing buffers a body).
``AuthFirst`` looks the bearer token up before routing, body parsing or parameter
validation, so a request without a valid token learns nothing but 401, whatever its
body or parameters; the caller it found is left in ``scope["state"]`` for the route's
role check.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import orjson
import psycopg
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import Principal, authenticate, bearer_from_header
from api.telemetry import RATE_LIMITED
from core.errors import AuthError
from core.i18n import Lang, negotiate, text

logger = logging.getLogger(__name__)

PRINCIPAL_KEY = "ioc_principal"

# the dashboard: its own scripts and styles only, no frames, no plug-ins, no foreign posts
DASHBOARD_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
# Swagger UI and ReDoc as FastAPI serves them: their bundle from jsDelivr and one inline script
DOCS_CSP = (
    "default-src 'none'; script-src 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com "
    "https://cdn.redoc.ly; connect-src 'self'; worker-src blob:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
# JSON, CSV, CAP XML, metrics: nothing in them may run, load or be framed
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

_COMMON = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
]
DOCS_PATHS = ("/docs", "/redoc", "/openapi.json")


def _csp_for(path: str) -> bytes:
    if path == "/" or path.startswith("/static/"):
        return DASHBOARD_CSP.encode()
    if path.startswith(("/docs", "/redoc")):
        return DOCS_CSP.encode()
    return API_CSP.encode()


class SecurityHeaders:
    """Adds CSP (with ``frame-ancestors``), nosniff, X-Frame-Options, Referrer-Policy and
    friends to every HTTP answer that does not set them itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = [*_COMMON, (b"content-security-policy", _csp_for(scope["path"]))]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers.extend((k, v) for k, v in extra if k not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def needs_token(path: str, public_metrics: bool, public_docs: bool = False) -> bool:
    """Whether ``path`` is behind a bearer token (the REST API, its schema and docs)."""
    if path.startswith("/api/") or path == "/api":
        return True
    if path.startswith(DOCS_PATHS):
        return not public_docs
    return path == "/metrics" and not public_metrics


def _error_language(scope: Scope) -> Lang:
    """The language of an error's detail: English unless ``Accept-Language`` asks otherwise."""
    for name, value in scope.get("headers", ()):
        if name == b"accept-language":
            return negotiate(value.decode("latin-1"), "en")
    return "en"


async def _answer(
    send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]], lang: Lang = "en"
) -> None:
    body = orjson.dumps({"detail": detail})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"content-language", lang.encode()),
                (b"vary", b"Accept-Language"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _is_preflight(scope: Scope) -> bool:
    if scope.get("method") != "OPTIONS":
        return False
    names = {name for name, _ in scope.get("headers", ())}
    return b"origin" in names and b"access-control-request-method" in names


class TokenBuckets:
    """A request rate per token: ``rate`` a second on average, bursts of ``burst``.

    In-process (each ``--workers`` process has its own buckets); forgets idle tokens."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.burst = float(burst)
        self.clock = clock
        self._buckets: dict[int, tuple[float, float]] = {}  # token id -> (tokens, at)

    def take(self, key: int) -> float:
        """0 if the request may go, else the seconds until it may."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        level, at = self._buckets.get(key, (self.burst, now))
        level = min(self.burst, level + (now - at) * self.rate)
        if level < 1.0:
            self._buckets[key] = (level, now)
            return (1.0 - level) / self.rate
        self._buckets[key] = (level - 1.0, now)
        if len(self._buckets) > 10_000:  # drop the full (idle) buckets
            full = [
                k
                for k, (lv, t) in self._buckets.items()
                if lv + (now - t) * self.rate >= self.burst
            ]
            for k in full:
                del self._buckets[k]
        return 0.0


class AuthFirst:
    """Checks the bearer token of every request to a protected path before anything else,
    then the token's request rate (429 with ``Retry-After``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.buckets: TokenBuckets | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _is_preflight(scope):
            await self.app(scope, receive, send)  # CORS preflights carry no credentials
            return
        state: Any = scope["app"].state
        settings = state.settings
        if not needs_token(scope["path"], settings.api_public_metrics, settings.api_public_docs):
            await self.app(scope, receive, send)
            return
        header = None
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                header = value.decode("latin-1")
                break
        try:
            async with state.pool.connection(timeout=10.0) as conn:
                principal: Principal = await authenticate(conn, bearer_from_header(header))
        except AuthError as exc:
            lang = _error_language(scope)
            detail = text(lang, exc.key) if exc.key and lang != "en" else str(exc)
            await _answer(send, 401, detail, [(b"www-authenticate", b"Bearer")], lang)
            return
        except psycopg.Error as exc:  # PoolTimeout included
            logger.warning(
                "%s %s: the database is unavailable (%s)", scope["method"], scope["path"], exc
            )
            lang = _error_language(scope)
            detail = "the database is unavailable; try again"
            await _answer(
                send, 503, detail if lang == "en" else text(lang, "api.http.503"), [], lang
            )
            return
        if self.buckets is None:
            self.buckets = TokenBuckets(settings.api_rate_per_token, settings.api_rate_burst)
        wait = self.buckets.take(principal.token_id)
        if wait > 0:
            RATE_LIMITED.inc()
            retry = str(max(1, math.ceil(wait))).encode()
            lang = _error_language(scope)
            await _answer(
                send,
                429,
                text(lang, "api.rate_limited", s=retry.decode()),
                [(b"retry-after", retry)],
                lang,
            )
            return
        scope.setdefault("state", {})[PRINCIPAL_KEY] = principal
        await self.app(scope, receive, send)
