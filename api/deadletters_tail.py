"""``ioc deadletters tail``: the latest rejected messages, then new ones as they come."""

from __future__ import annotations

import argparse
import os
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import orjson

from core.i18n import LANGUAGES, Lang, language, number, text
from core.types import to_display

PAGE = 500


@dataclass
class DeadLetterTail:
    url: str
    token: str
    code: list[str] = field(default_factory=list)
    sensor: list[str] = field(default_factory=list)
    topic: str | None = None
    last: int = 20  # shown first
    interval_s: float = 2.0
    lang: Lang = "en"  # words, dates and the API's error texts


def endpoint(base: str) -> str:
    """``http://host:8000`` -> ``http://host:8000/api/v1/dead-letters``."""
    parts = urlsplit(base if "://" in base else f"http://{base}")
    path = parts.path.rstrip("/") + "/api/v1/dead-letters"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def format_dead_letter(d: dict[str, Any], width: int = 100, lang: Lang = "en") -> str:
    """One line: time in Hanoi (dd/MM/yyyy in Vietnamese), id, code, topic, reason, and the
    payload's head on one line."""
    when = to_display(datetime.fromisoformat(str(d["received_at"])))
    stamp = f"{when:%d/%m/%Y %H:%M:%S}" if lang == "vi" else f"{when:%Y-%m-%d %H:%M:%S}"
    head = " ".join(str(d.get("payload_preview", "")).split())
    if len(head) > width or d.get("payload_cut"):
        size = d.get("payload_size")
        shown = number(size, lang, 0) if isinstance(size, int) else "?"
        head = head[:width] + f"… ({text(lang, 'deadletters.bytes', n=shown)})"
    return f"{stamp} #{d['id']} {d['code']:<18} {d['topic']}: {d['reason']} | {head}"


def fetch(opts: DeadLetterTail, *, after_id: int | None, limit: int) -> list[dict[str, Any]]:
    """Dead letters matching the filters, newest first."""
    query: list[tuple[str, str]] = [("code", c) for c in opts.code]
    query += [("sensor", s) for s in opts.sensor] + [("limit", str(limit))]
    if opts.topic:
        query.append(("topic", opts.topic))
    if after_id is not None:
        query.append(("after_id", str(after_id)))
    req = urllib.request.Request(
        f"{endpoint(opts.url)}?{urlencode(query)}",
        headers={"Authorization": f"Bearer {opts.token}", "Accept-Language": opts.lang},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        items: list[dict[str, Any]] = orjson.loads(resp.read())["items"]
    return items


def follow(
    opts: DeadLetterTail,
    emit: Callable[[str], None],
    status: Callable[[str], None],
    stop: threading.Event,
) -> int:
    """Print the latest ``opts.last`` dead letters, then every new one until ``stop``.

    Returns 0 when stopped, 1 when the API refuses the token or the filters."""
    seen: int | None = None
    while not stop.is_set():
        try:
            if seen is None:
                items = fetch(opts, after_id=None, limit=max(1, opts.last))
                batch = items[: opts.last]
                seen = items[0]["id"] if items else 0
                status(text(opts.lang, "deadletters.latest", n=len(batch), url=endpoint(opts.url)))
            else:
                batch = []
                while True:  # a burst: page until caught up
                    items = fetch(opts, after_id=seen, limit=PAGE)
                    batch += items
                    if not items:
                        break
                    seen = max(seen, items[0]["id"])
                    if len(items) < PAGE:
                        break
            for d in sorted(batch, key=lambda x: int(x["id"])):
                emit(format_dead_letter(d, lang=opts.lang))
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403, 422):
                detail = exc.read().decode(errors="replace")[:300]
                status(text(opts.lang, "deadletters.refused", code=exc.code, detail=detail))
                return 1
            status(text(opts.lang, "deadletters.retrying", code=exc.code))
        except (OSError, ValueError) as exc:
            status(text(opts.lang, "deadletters.unreachable", url=endpoint(opts.url), error=exc))
        stop.wait(opts.interval_s)
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ioc deadletters",
        description="Rejected messages (GET /api/v1/dead-letters; an engineer or admin token).",
    )
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("tail", help="the latest dead letters, then new ones as they come")
    t.add_argument(
        "--url",
        default=os.environ.get("IOC_API_URL", "http://127.0.0.1:8000"),
        help="the API (default: IOC_API_URL or http://127.0.0.1:8000)",
    )
    t.add_argument("--token", default=os.environ.get("IOC_API_TOKEN"), help="or IOC_API_TOKEN")
    t.add_argument("--code", action="append", default=[], help="reason code (repeatable)")
    t.add_argument("--sensor", action="append", default=[], help="sensor id (repeatable)")
    t.add_argument("--topic", help="part of the topic, e.g. ioc/v1/air_quality/")
    t.add_argument("-n", "--last", type=int, default=20, help="how many to show first (20)")
    t.add_argument("--interval", type=float, default=2.0, help="seconds between polls (2)")
    t.add_argument(
        "--lang",
        choices=LANGUAGES,
        default=language(os.environ.get("IOC_LANGUAGE")) or "vi",
        help="vi or en: words, dates and the API's errors (default: IOC_LANGUAGE or vi)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    if not args.token:
        print(f"ioc deadletters tail: {text(args.lang, 'deadletters.no_token')}", file=sys.stderr)
        return 2
    opts = DeadLetterTail(
        url=args.url,
        token=args.token,
        code=[c for v in args.code for c in v.split(",") if c],
        sensor=args.sensor,
        topic=args.topic,
        last=max(0, args.last),
        interval_s=max(0.2, args.interval),
        lang=args.lang,
    )
    stop = threading.Event()
    try:
        return follow(
            opts,
            lambda line: print(line, flush=True),
            lambda line: print(f"-- {line}", file=sys.stderr, flush=True),
            stop,
        )
    except KeyboardInterrupt:
        return 0
