"""``ioc readings export``: a readings query as CSV into a file, through the API, with progress."""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlencode, urlsplit, urlunsplit

from core.i18n import LANGUAGES, Lang, language, number, text
from core.progress import TaskProgress

CHUNK = 1 << 16


def endpoint(base: str) -> str:
    """``http://host:8000`` -> ``http://host:8000/api/v1/readings/export.csv``."""
    parts = urlsplit(base if "://" in base else f"http://{base}")
    path = parts.path.rstrip("/") + "/api/v1/readings/export.csv"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def export(
    url: str,
    token: str,
    query: list[tuple[str, str]],
    out: Path,
    *,
    lang: Lang = "en",
    progress: TaskProgress | None = None,
) -> int:
    """Stream the CSV of ``query`` into ``out`` (written whole or not at all); the rows written.

    Raises ``urllib.error.HTTPError`` when the API refuses (its detail in ``lang``)."""
    req = urllib.request.Request(
        f"{endpoint(url)}?{urlencode(query)}",
        headers={"Authorization": f"Bearer {token}", "Accept-Language": lang},
    )
    part = out.with_name(out.name + ".part")
    lines = 0
    with urllib.request.urlopen(req, timeout=60) as resp:
        try:
            with open(part, "wb") as fh:
                while chunk := resp.read(CHUNK):
                    fh.write(chunk)
                    lines += chunk.count(b"\n")
                    if progress is not None:
                        progress.update(max(0, lines - 1))
        except BaseException:
            part.unlink(missing_ok=True)  # a cut stream leaves no half file
            raise
    part.replace(out)
    return max(0, lines - 1)  # the header is not a row


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ioc readings",
        description="Readings history as CSV (GET /api/v1/readings/export.csv; analyst or admin).",
    )
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export", help="a query's readings as CSV into a file, with progress")
    e.add_argument("-o", "--output", type=Path, required=True, help="the CSV file to write")
    e.add_argument(
        "--url",
        default=os.environ.get("IOC_API_URL", "http://127.0.0.1:8000"),
        help="the API (default: IOC_API_URL or http://127.0.0.1:8000)",
    )
    e.add_argument("--token", default=os.environ.get("IOC_API_TOKEN"), help="or IOC_API_TOKEN")
    for name in ("sensor", "metric", "area", "kind"):
        e.add_argument(f"--{name}", action="append", default=[], help=f"{name} (repeatable)")
    e.add_argument("--bbox", help="minlon,minlat,maxlon,maxlat")
    e.add_argument("--start", help="RFC 3339, e.g. 2026-11-01T00:00:00+07:00")
    e.add_argument("--end", help="RFC 3339")
    e.add_argument("--bucket", help="1m, 15m, 1h, 1d (default: raw readings)")
    e.add_argument("--agg", help="avg,min,max,count,last (with --bucket)")
    e.add_argument(
        "--lang",
        choices=LANGUAGES,
        default=language(os.environ.get("IOC_LANGUAGE")) or "vi",
        help="vi or en: words and the API's errors (default: IOC_LANGUAGE or vi)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    lang: Lang = args.lang
    if not args.token:
        print(f"ioc readings export: {text(lang, 'deadletters.no_token')}", file=sys.stderr)
        return 2
    query: list[tuple[str, str]] = [
        (name, v) for name in ("sensor", "metric", "area", "kind") for v in getattr(args, name)
    ]
    query += [
        (name, v)
        for name in ("bbox", "start", "end", "bucket", "agg")
        if (v := getattr(args, name)) is not None
    ]
    try:
        with TaskProgress(text(lang, "export.progress"), unit=text(lang, "export.rows")) as bar:
            rows = export(args.url, args.token, query, args.output, lang=lang, progress=bar)
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:500]
        print(f"ioc readings export: {exc.code} {detail}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"ioc readings export: {exc}", file=sys.stderr)
        return 1
    print(text(lang, "export.done", n=number(rows, lang, 0), path=args.output))
    return 0
