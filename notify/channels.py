"""Sending one notification: the signed JSON webhook, or any Apprise URL.

The webhook is a JSON POST.  ``X-IOC-Signature`` is the hex HMAC-SHA256 of the raw body
keyed with ``IOC_NOTIFY_WEBHOOK_SECRET``; ``X-IOC-Timestamp`` is the sending time (Unix
seconds) and ``X-IOC-Idempotency-Key`` the key a receiver deduplicates on (it is also in
the body, so it is covered by the signature).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import re
import time
from typing import Any
from urllib.parse import urlsplit

import apprise

SIGNATURE_HEADER = "X-IOC-Signature"
TIMESTAMP_HEADER = "X-IOC-Timestamp"
KEY_HEADER = "X-IOC-Idempotency-Key"
EVENT_HEADER = "X-IOC-Event"
MAX_ERROR_CHARS = 500


class DeliveryError(Exception):
    """A channel did not take the notification; ``reason`` says why (no secrets)."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason[:MAX_ERROR_CHARS]
        self.permanent = permanent


def sign(body: bytes, secret: str) -> str:
    """The ``X-IOC-Signature`` of ``body``: hex HMAC-SHA256 keyed with the shared secret."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def send_webhook(
    url: str, body: bytes, *, secret: str, key: str, event: str, timeout: float
) -> None:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "ioc-notify/1",
        TIMESTAMP_HEADER: str(int(time.time())),
        KEY_HEADER: key,
        EVENT_HEADER: event,
    }
    if secret:
        headers[SIGNATURE_HEADER] = sign(body, secret)
    parts = urlsplit(url)
    conn_type = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn = conn_type(parts.hostname or "", parts.port, timeout=timeout)
        try:
            conn.request("POST", path, body=body, headers=headers)  # header case kept as is
            resp = conn.getresponse()
            resp.read(1024)
        finally:
            conn.close()
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise DeliveryError(f"webhook unreachable: {exc}") from None
    if resp.status >= 300:
        # a 4xx other than these will not get better by sending the same body again
        permanent = 400 <= resp.status < 500 and resp.status not in (408, 409, 425, 429)
        raise DeliveryError(f"HTTP {resp.status} {resp.reason}", permanent=permanent)


def check_apprise(url: str) -> bool:
    """True if Apprise understands ``url`` (a channel of a route)."""
    return bool(apprise.Apprise().add(url))


def send_apprise(url: str, title: str, text: str, *, timeout: float) -> None:
    """Send through Apprise (email, Telegram, Slack, Teams, ntfy, Matrix, ...)."""
    asset = apprise.AppriseAsset(async_mode=False)
    ap = apprise.Apprise(asset=asset)
    if not ap.add(url):
        raise DeliveryError("not a valid Apprise URL", permanent=True)
    with apprise.LogCapture(level=apprise.logging.WARNING) as logs:  # type: ignore[no-untyped-call]
        ok = ap.notify(body=text, title=title, body_format=apprise.NotifyFormat.TEXT)
    if not ok:
        detail = _last_line(logs.getvalue()) or "the service refused or could not be reached"
        raise DeliveryError(f"apprise: {scrub(detail, url)}")


def scrub(text: str, url: str) -> str:
    """``text`` without any credential, token or path piece of ``url``."""
    rest = url.partition("://")[2]
    pieces = {url, rest, *re.split(r"[/:@?&=#,]", rest)}
    for piece in sorted((p for p in pieces if len(p) >= 4), key=len, reverse=True):
        text = text.replace(piece, "***")
    return text


def _last_line(text: Any) -> str:
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return lines[-1] if lines else ""
