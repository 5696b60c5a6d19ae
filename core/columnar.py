"""Fast decoding of well-formed native and SenML payloads straight into column lists (ingest and analytics).

``core.codecs.decode_readings`` is the contract: it says what is accepted and why
the rest is rejected.  It builds a ``datetime`` per reading, which costs more than
everything else the ingestor does per reading.  ``fast_decode`` walks the same
structure, checks the same rules and emits plain columns (microseconds since
2000-01-01, the PostgreSQL epoch; float values; metric names).  It only answers
when *every* entry is good; on anything unusual (a rejection, FIWARE, NaN
literals, big integers, odd types) it returns ``None`` and the caller falls back
to ``core.codecs``, so the outcome is always exactly the core's.  A property test
checks that equivalence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from core.codecs import FIWARE_TYPES, Limits, Rejection, decode_readings, parse_time
from core.metrics import METRICS

PG_EPOCH_S = 946_684_800  # 2000-01-01T00:00:00Z in Unix seconds: PostgreSQL's epoch
PG_EPOCH = datetime.fromtimestamp(PG_EPOCH_S, UTC)
_PG_EPOCH_US = PG_EPOCH_S * 1_000_000
_ONE_US = timedelta(microseconds=1)
_SENML_REL = 2.0**28  # RFC 8428: times below this are relative to now

# metric -> (low, high) for metrics a device may send
BOUNDS: dict[str, tuple[float, float]] = {
    m.name: (m.low, m.high) for m in METRICS.values() if not m.derived
}
# metric -> (accepted SenML units, catalogue unit)
_UNITS: dict[str, tuple[tuple[str, ...], str]] = {
    m.name: (m.senml_units, m.unit) for m in METRICS.values()
}


# sensor -> {SenML resolved name -> metric} for names that name this sensor (or none)
_senml_names: dict[str, dict[str, str]] = {}
_MAX_NAMES = 100_000
_NO_VALUE = object()


@dataclass(slots=True)
class Columns:
    """Readings of one message in columns; ``us`` is microseconds since 2000-01-01 UTC."""

    format: str
    us: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)


def to_pg_us(t: float) -> int:
    """Epoch seconds -> PostgreSQL microseconds, rounded exactly as ``timedelta(seconds=t)``."""
    frac, whole = math.modf(t)
    return int(whole) * 1_000_000 + round(frac * 1e6) - _PG_EPOCH_US


def fast_decode(sensor: str, payload: bytes, now: float, limits: Limits) -> Columns | None:
    """Columns of a payload whose entries are all good, else ``None`` (use ``core.codecs``)."""
    if len(payload) > limits.max_payload_bytes:
        return None
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    try:
        if type(doc) is list:
            if not doc or len(doc) > limits.max_entries:
                return None
            first = doc[0]
            if type(first) is dict:
                if "n" in first or "bn" in first or "bt" in first:
                    return _senml(sensor, doc, now, limits)
                if first.get("type") in FIWARE_TYPES:
                    return None
            return _native(sensor, doc, now, limits)
        if type(doc) is dict:
            if doc.get("type") in FIWARE_TYPES:
                return None
            return _native(sensor, [doc], now, limits)
    except Exception:  # anything surprising: let the core decoder say what it is
        return None
    return None


def decode_columns(
    sensor: str, payload: bytes, now: float, limits: Limits
) -> tuple[Columns, list[Rejection]]:
    """A data payload in columns, with its rejections: the fast path when every entry is
    good, else ``core.codecs.decode_readings`` (which raises ``PayloadError`` for a payload
    it rejects as a whole)."""
    cols = fast_decode(sensor, payload, now, limits)
    if cols is not None:
        return cols, []
    decoded = decode_readings(sensor, payload, now=now, limits=limits)
    cols = Columns(decoded.format)
    for r in decoded.readings:
        cols.us.append((r.time - PG_EPOCH) // _ONE_US)
        cols.values.append(r.value)
        cols.metrics.append(r.metric)
    return cols, decoded.rejections


# within this many seconds of 1970 (until 2039) integer milliseconds times 1000 are exactly
# what ``to_pg_us(ms * 1e-3)`` gives (the float error stays under 0.5 us); past it, it decides
_EXACT_MS_S = 2.2e9


def _native(sensor: str, items: list[Any], now: float, limits: Limits) -> Columns | None:
    lo = now - limits.max_age_s
    hi = now + limits.max_future_skew_s
    us_col: list[int] = []
    val_col: list[Any] = []
    met_col: list[str] = []
    bounds = BOUNDS
    ints = False
    for item in items:
        if type(item) is not dict:
            return None
        claimed = item.get("sensor")
        if claimed is not None and claimed != sensor:
            return None
        values = item.get("values")
        if type(values) is not dict or not values:
            return None
        ts = item.get("ts")
        if type(ts) is int:
            t = ts * 1e-3
            if not lo <= t <= hi:
                return None
            us = ts * 1000 - _PG_EPOCH_US if -_EXACT_MS_S < t < _EXACT_MS_S else to_pg_us(t)
        else:
            if ts is None:
                t = now
            elif type(ts) is float:
                t = ts * 1e-3
            elif type(ts) is str:
                try:
                    t = parse_time(ts, now=now)
                except ValueError:
                    return None
            else:
                return None
            if not lo <= t <= hi:
                return None
            us = to_pg_us(t)
        for metric, value in values.items():
            low, high = bounds[metric]  # KeyError: not a device metric (the core says so)
            if type(value) is not float:
                if type(value) is not int:
                    return None
                ints = True  # compared exactly; stored as float below
            if not low <= value <= high:
                return None
        us_col += [us] * len(values)
        val_col += values.values()
        met_col += values
    if ints:
        val_col = list(map(float, val_col))
    return Columns("native", us_col, val_col, met_col)


def _split_name(name: str) -> tuple[str, str]:
    """``urn:dev:ioc:cam-1:speed`` -> (``cam-1``, ``speed``); mirrors the core's SenML rule."""
    cut = max(name.rfind(":"), name.rfind("/"))
    if cut < 0:
        return "", name
    ref = name[:cut]
    ref_cut = max(ref.rfind(":"), ref.rfind("/"))
    return ref[ref_cut + 1 :], name[cut + 1 :]


def _senml(sensor: str, records: list[Any], now: float, limits: Limits) -> Columns | None:
    lo = now - limits.max_age_s
    hi = now + limits.max_future_skew_s
    out = Columns("senml")
    names = _senml_names.get(sensor)
    if names is None:
        if len(_senml_names) >= _MAX_NAMES:
            _senml_names.clear()
        names = _senml_names[sensor] = {}
    bn, bt, bu, bv = "", 0.0, "", 0.0
    last_t, last_us = math.nan, 0  # records of one time come together: convert it once
    under_bn: dict[str, str] = {}  # "n" -> metric while the base name stays the same
    us_col, val_col, met_col = out.us, out.values, out.metrics
    for rec in records:
        if type(rec) is not dict:
            return None
        if "bn" in rec:
            if type(rec["bn"]) is not str:
                return None
            if rec["bn"] != bn:
                bn, under_bn = rec["bn"], {}
        if "bt" in rec:
            if type(rec["bt"]) is not int and type(rec["bt"]) is not float:
                return None
            bt = float(rec["bt"])
        if "bu" in rec:
            bu = str(rec["bu"])
        if "bv" in rec:
            if type(rec["bv"]) is not int and type(rec["bv"]) is not float:
                return None
            bv = float(rec["bv"])
        if "n" not in rec and "v" not in rec and "vs" not in rec and "vb" not in rec:
            continue
        n = rec.get("n", "")
        metric = under_bn.get(n) if type(n) is str else None
        if metric is None:
            name = bn + str(n)
            metric = names.get(name)
            if metric is None:
                ref, metric = _split_name(name)
                if ref and ref != sensor and ref.rsplit(":", 1)[-1] != sensor:
                    return None
                if len(names) >= _MAX_NAMES:
                    names.clear()
                names[name] = metric
            if type(n) is str:
                under_bn[n] = metric
        t_rel = rec.get("t", 0.0)
        if type(t_rel) is not int and type(t_rel) is not float:
            return None
        t = bt + float(t_rel)
        if not math.isfinite(t):
            return None
        if t < _SENML_REL:
            t = now + t
        value = rec.get("v", _NO_VALUE)
        tv = type(value)
        if tv is not float and tv is not int:
            return None  # also no "v" at all, or "vs"/"vb": the core says why
        unit = rec.get("u", bu)
        if unit:
            units = _UNITS.get(metric)
            if units is not None and unit not in units[0] and unit != units[1]:
                return None
        v = float(value)
        if bv:
            v = bv + value
        b = BOUNDS.get(metric)
        if b is None or not b[0] <= v <= b[1] or not lo <= t <= hi:
            return None
        if t != last_t:
            last_t, last_us = t, to_pg_us(t)
        us_col.append(last_us)
        val_col.append(v)
        met_col.append(metric)
    if not us_col:
        return None
    return out
