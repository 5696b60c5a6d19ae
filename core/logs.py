"""Logging set-up: plain text for people, one JSON object per line for log shippers."""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime

import orjson

_STD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}

# a token in a query string (``?token=...``, ``&access_token=...``), a bearer credential, a
# password in a URL (``mqtt://user:pw@host``), and the websocket sub-protocol that carries one
_SECRETS = re.compile(
    r"(?P<q>(?:\b|_)(?:token|access_token|password|passwd|secret)=)[^&\s\"'\\]+"
    r"|(?P<b>\bBearer\s+)[A-Za-z0-9._~+/=-]+"
    r"|(?P<u>://[^/\s:@\"']+:)[^@\s/\"']+(?=@)"
    r"|(?P<p>\bioc\.bearer\.)[A-Za-z0-9._~+/=-]+",
    re.IGNORECASE,
)
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """``text`` with every token, bearer credential and URL password replaced by [redacted]."""
    return _SECRETS.sub(
        lambda m: (m.group("q") or m.group("b") or m.group("u") or m.group("p")) + REDACTED, text
    )


class RedactingFilter(logging.Filter):
    """Redacts a record's message where it is logged, whatever handler shows it later."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_FILTER = RedactingFilter()


def redact_loggers(*names: str) -> None:
    """Put the redacting filter on these loggers (for servers that log request lines with
    handlers of their own, such as uvicorn's default logging configuration)."""
    for name in names:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


class RedactingFormatter(logging.Formatter):
    """Plain text lines with secrets redacted (uvicorn's access and websocket lines included)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STD and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return redact(orjson.dumps(doc, default=str).decode())


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            RedactingFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
