"""The dashboard's JSON catalogue: both languages complete, and every text the page uses is in it."""

from __future__ import annotations

import json
import re
from pathlib import Path

from core.types import AlertClass, SensorKind

STATIC = Path(__file__).resolve().parents[2] / "api" / "static"
CATALOGUE = json.loads((STATIC / "i18n.json").read_text(encoding="utf-8"))
FIELD = re.compile(r"\{(\w+)\}")
# a literal message id in a call: t("feed.title"), tr("age.now")
CALL = re.compile(r"""(?<![\w.$])tr?\(\s*"([a-z0-9_.]+)"|["']((?:[a-z0-9_]+\.)+[a-z0-9_]+)["']""")


def _sources() -> list[Path]:
    return [STATIC / "app.js", *sorted((STATIC / "js").glob("*.js"))]


def test_both_languages_have_every_text_with_the_same_fields() -> None:
    vi, en = CATALOGUE["vi"], CATALOGUE["en"]
    assert set(CATALOGUE) == {"vi", "en"}
    assert set(vi) == set(en), set(vi) ^ set(en)
    for key in en:
        assert vi[key].strip() and en[key].strip(), key
        assert set(FIELD.findall(vi[key])) == set(FIELD.findall(en[key])), key


def test_every_text_the_page_names_is_in_the_catalogue() -> None:
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    used = set(re.findall(r'data-i18n="([^"]+)"', html))
    for attrs in re.findall(r'data-i18n-attr="([^"]+)"', html):
        used |= {pair.split(":")[1].strip() for pair in attrs.split(";")}
    for src in _sources():
        for a, b in CALL.findall(src.read_text(encoding="utf-8")):
            key = a or b
            if a or key.split(".")[0] in {k.split(".")[0] for k in CATALOGUE["en"]}:
                used.add(key)
    # ids built at run time from the API's words
    used |= {f"sev.{s}" for s in ("critical", "warning", "info")}
    used |= {f"role.{r}" for r in ("operator", "analyst", "engineer", "admin")}
    used |= {f"toast.{w}.{v}" for w in ("failed", "forbidden") for v in ("acknowledge", "resolve")}
    used |= {f"sensor.{s}.word" for s in ("online", "offline", "unknown")}
    used |= {f"kind.{k.value}" for k in SensorKind} | {f"class.{c.value}" for c in AlertClass}
    used |= {
        f"action.{a}"
        for a in (
            "opened", "updated", "escalated", "deescalated",
            "acknowledged", "resolved", "reopened", "commented",
        )
    }  # fmt: skip
    used |= {f"size.{s}" for s in ("normal", "large", "larger", "small")}
    missing = sorted(k for k in used if k not in CATALOGUE["en"])
    assert missing == [], missing
    assert len(used) > 150
