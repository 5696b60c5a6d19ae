"""``ioc contract``: write or check docs/asyncapi.yaml and docs/schemas/*.json (from core)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.contract import contract_files


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ioc contract", description=__doc__)
    parser.add_argument("action", choices=["write", "check"])
    parser.add_argument("--docs", type=Path, default=Path("docs"), help="the docs folder")
    args = parser.parse_args(argv)
    stale = []
    for rel, text in contract_files().items():
        path = args.docs / rel
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(rel)
        if args.action == "write":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if args.action == "check" and stale:
        print(
            f"out of date / chưa cập nhật: {', '.join(stale)} (run / hãy chạy: ioc contract write)",
            file=sys.stderr,
        )
        return 1
    if args.action == "write":
        print(f"{len(stale)} file(s) written / đã ghi {len(stale)} tệp")
    else:
        print("up to date / đã cập nhật")
    return 0
