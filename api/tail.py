"""``ioc alerts tail``: follow the live alert stream in a terminal, resuming after every break."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import orjson
import websockets
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from core.i18n import LANGUAGES, Lang, language, text
from core.types import to_display

CLOSE_RESUME_AHEAD = 4409
FATAL_CODES = {4400: "bad request", 4401: "unauthorized", 4403: "forbidden"}
_COLOURS = {"critical": "\x1b[1;31m", "warning": "\x1b[33m", "info": "\x1b[36m"}


@dataclass
class TailOptions:
    url: str
    token: str
    severity: list[str] = field(default_factory=list)
    kind: list[str] = field(default_factory=list)
    area: list[str] = field(default_factory=list)
    since: int | None = None
    colour: bool = False
    max_backoff_s: float = 30.0
    lang: Lang | None = None  # None: the server's words (English) and stored messages
    open_first: bool = True  # print what is open (and acknowledged) before the new events


def stream_url(base: str) -> str:
    """``http://host:8000`` or ``ws://host:8000/ws/alerts`` -> the websocket URL."""
    parts = urlsplit(base if "://" in base else f"http://{base}")
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    path = parts.path.rstrip("/")
    if not path.endswith("/ws/alerts"):
        path += "/ws/alerts"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


def alerts_url(base: str) -> str:
    """``http://host:8000`` or ``ws://host:8000/ws/alerts`` -> ``.../api/v1/alerts``."""
    parts = urlsplit(stream_url(base))
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    path = parts.path.removesuffix("/ws/alerts") + "/api/v1/alerts"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


def fetch_open(opts: TailOptions, limit: int = 500) -> list[dict[str, Any]]:
    """The open and acknowledged alerts that match the filters, oldest first."""
    query: list[tuple[str, str]] = [("status", "open"), ("status", "acknowledged")]
    query += [("severity", s) for s in opts.severity] + [("kind", k) for k in opts.kind]
    query += [("area", a) for a in opts.area] + [("limit", str(limit))]
    headers = {"Authorization": f"Bearer {opts.token}"}
    if opts.lang:
        headers["Accept-Language"] = opts.lang
    req = urllib.request.Request(f"{alerts_url(opts.url)}?{urlencode(query)}", headers=headers)
    with urllib.request.urlopen(req, timeout=10) as resp:
        items: list[dict[str, Any]] = orjson.loads(resp.read())["items"]
    return list(reversed(items))


def format_open(alert: dict[str, Any], colour: bool = False, lang: Lang | None = None) -> str:
    """An alert that is open now, as a line like an event's (``open now`` for the action)."""
    doc = {"seq": alert.get("id"), "action": "open_now", "time": alert.get("updated_at")}
    line = format_event({**doc, "alert": alert}, colour, lang)
    if lang is None:
        line = line.replace(" open_now ", " open now ", 1)
    return line.replace(f" #{alert.get('id')} ", f" id {alert.get('id')} ", 1)


def format_event(doc: dict[str, Any], colour: bool = False, lang: Lang | None = None) -> str:
    """One line per event, in Hanoi time (words and date order in ``lang`` when given)."""
    if doc.get("type") == "incident":
        return _format_incident(doc, colour)
    alert = doc.get("alert") or {}
    when = datetime.fromisoformat(str(doc.get("time") or alert.get("updated_at")))
    severity = str(alert.get("severity", "?"))
    action, status = str(doc.get("action", "")), str(alert.get("status", "?"))
    stamp = f"{to_display(when):%Y-%m-%d %H:%M:%S}"
    word = severity
    if lang is not None:
        stamp = f"{to_display(when):%d/%m/%Y %H:%M:%S}" if lang == "vi" else stamp
        word = _word(lang, "severity", severity)
        action = _word(lang, "tail.action", action)
        status = _word(lang, "tail.status", status)
    sev = f"{word.upper():<12}" if lang == "vi" else f"{word.upper():<8}"
    if colour:
        sev = f"{_COLOURS.get(severity, '')}{sev}\x1b[0m"
    actor = doc.get("actor") or "system"
    who = "" if actor == "system" else f"  [{actor}]"
    note = f"  “{doc['note']}”" if doc.get("note") else ""
    return (
        f"{stamp} #{doc.get('seq')} {action:<12} "
        f"{sev} {alert.get('sensor', '?')}/{alert.get('metric', '?')} "
        f"({alert.get('area') or '-'}) {status}: "
        f"{alert.get('message', '')}{who}{note}"
    )


def _word(lang: Lang, prefix: str, code: str) -> str:
    """A code (``acknowledged``) as the word ``lang`` uses for it, else the code."""
    out = text(lang, f"{prefix}.{code}")
    return code if out == f"{prefix}.{code}" else out


def _format_incident(doc: dict[str, Any], colour: bool) -> str:
    inc = doc.get("incident") or {}
    when = datetime.fromisoformat(str(doc.get("time") or inc.get("updated_at")))
    severity = str(inc.get("severity", "?"))
    sev = f"{severity.upper():<8}"
    if colour:
        sev = f"{_COLOURS.get(severity, '')}{sev}\x1b[0m"
    actor = doc.get("actor") or "system"
    who = "" if actor == "system" else f"  [{actor}]"
    return (
        f"{to_display(when):%Y-%m-%d %H:%M:%S} #{doc.get('seq')} {doc.get('action', '')!s:<12} "
        f"{sev} incident {inc.get('id', '?')} {inc.get('status', '?')}: "
        f"{inc.get('title', '')} / {inc.get('title_vi', '')}{who}"
    )


async def follow(
    opts: TailOptions,
    emit: Callable[[str], None],
    status: Callable[[str], None],
    stop: asyncio.Event | None = None,
) -> int:
    """Print events until ``stop`` is set; reconnect and resume with the last seq seen.

    Returns 0 when stopped, 1 when the server refuses us (4400, 4401, 4403)."""
    last = opts.since
    backoff = 1.0
    base = stream_url(opts.url)
    stop = stop or asyncio.Event()
    while not stop.is_set():
        query: list[tuple[str, str]] = [("severity", s) for s in opts.severity]
        query += [("kind", k) for k in opts.kind] + [("area", a) for a in opts.area]
        if last is not None:
            query.append(("since", str(last)))
        if opts.lang is not None:
            query.append(("lang", opts.lang))
        url = f"{base}?{urlencode(query)}" if query else base
        try:
            async with websockets.connect(
                url,
                additional_headers={"Authorization": f"Bearer {opts.token}"},
                open_timeout=10,
                compression=None,
            ) as ws:
                backoff = 1.0
                lang = opts.lang or "en"
                status(
                    text(lang, "tail.connected", url=base)
                    + (text(lang, "tail.resuming", seq=last) if last else "")
                )
                reader = asyncio.ensure_future(_read(ws, emit, status, opts, last))
                stopper = asyncio.ensure_future(stop.wait())
                done, _ = await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
                stopper.cancel()
                if reader not in done:
                    reader.cancel()
                    return 0
                reader.result()  # raises _Closed with the last seq
        except _Closed as exc:
            last = exc.last
            if exc.code == CLOSE_RESUME_AHEAD:
                status(text(opts.lang or "en", "tail.reset", seq=last))
                last = None
            if exc.code in FATAL_CODES:
                status(
                    text(
                        opts.lang or "en",
                        "tail.refused",
                        code=exc.code,
                        meaning=FATAL_CODES[exc.code],
                        reason=exc.reason,
                    )
                )
                return 1
            status(text(opts.lang or "en", "tail.closed", code=exc.code, s=f"{backoff:.0f}"))
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            status(
                text(opts.lang or "en", "tail.unreachable", url=base, error=exc, s=f"{backoff:.0f}")
            )
        try:
            async with asyncio.timeout(backoff):
                await stop.wait()
        except TimeoutError:
            pass
        backoff = min(backoff * 2, opts.max_backoff_s)
    return 0


class _Closed(Exception):
    def __init__(self, last: int | None, code: int | None, reason: str) -> None:
        super().__init__(f"closed {code}")
        self.last, self.code, self.reason = last, code, reason


async def _read(
    ws: Any,
    emit: Callable[[str], None],
    status: Callable[[str], None],
    opts: TailOptions,
    last: int | None,
) -> None:
    """Print alert events; always ends with ``_Closed`` carrying the last seq printed."""
    try:
        async for raw in ws:
            doc = orjson.loads(raw)
            kind = doc.get("type")
            if kind == "hello" and last is None:
                last = int(doc["seq"])
                if opts.open_first:  # the first connection: what is open now, then news
                    lang = opts.lang or "en"
                    try:
                        current = await asyncio.to_thread(fetch_open, opts)
                    except (OSError, ValueError, KeyError) as exc:
                        current = []
                        status(text(lang, "tail.open_failed", error=exc))
                    for alert in current:
                        emit(format_open(alert, opts.colour, opts.lang))
                    status(text(lang, "tail.open_listed", n=len(current)))
            elif kind in ("alert", "incident"):
                seq = int(doc["seq"])
                if last is not None and seq <= last:
                    continue
                emit(format_event(doc, opts.colour, opts.lang))
                last = seq
    except ConnectionClosed as exc:
        code = exc.rcvd.code if exc.rcvd else None
        raise _Closed(last, code, exc.rcvd.reason if exc.rcvd else "") from None
    raise _Closed(last, ws.close_code, ws.close_reason or "")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ioc alerts",
        description="Follow the live alert stream (/ws/alerts) in a terminal.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("tail", help="print one line per alert event, in Hanoi time")
    t.add_argument(
        "--url",
        default=os.environ.get("IOC_API_URL", "http://127.0.0.1:8000"),
        help="the API (http://host:port) or the websocket URL (default: IOC_API_URL or "
        "http://127.0.0.1:8000)",
    )
    t.add_argument("--token", default=os.environ.get("IOC_API_TOKEN"), help="or IOC_API_TOKEN")
    t.add_argument("--severity", action="append", default=[], help="info, warning, critical")
    t.add_argument("--kind", action="append", default=[], help="e.g. water_level (repeatable)")
    t.add_argument("--area", action="append", default=[], help="e.g. 'Cầu Giấy' (repeatable)")
    t.add_argument("--since", type=int, help="replay the events after this seq first")
    t.add_argument("--new-only", action="store_true", help="do not list the open alerts first")
    t.add_argument("--no-colour", action="store_true", help="plain text")
    t.add_argument(
        "--lang",
        choices=LANGUAGES,
        default=language(os.environ.get("IOC_LANGUAGE")) or "vi",
        help="vi or en: words, dates and alert messages (default: IOC_LANGUAGE or vi)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    if not args.token:
        print(f"ioc alerts tail: {text(args.lang, 'tail.no_token')}", file=sys.stderr)
        return 2
    opts = TailOptions(
        url=args.url,
        token=args.token,
        severity=[s for v in args.severity for s in v.split(",") if s],
        kind=[k for v in args.kind for k in v.split(",") if k],
        area=args.area,
        since=args.since,
        open_first=not args.new_only and args.since is None,
        colour=sys.stdout.isatty() and not args.no_colour,
        lang=args.lang,
    )

    def emit(line: str) -> None:
        print(line, flush=True)

    def status(line: str) -> None:
        print(f"-- {line}", file=sys.stderr, flush=True)

    try:
        return asyncio.run(follow(opts, emit, status))
    except InvalidURI as exc:
        print(f"ioc alerts tail: bad --url: {exc}", file=sys.stderr)
        return 2
