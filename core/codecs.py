"""Payload codecs: native JSON, SenML (RFC 8428) and FIWARE key-values, in and out.

``decode_readings`` never lets an exception other than ``PayloadError`` escape.
A message-level problem (not JSON, too big, names another sensor...) raises
``PayloadError`` and the whole message is dead-lettered.  An entry-level problem
(one NaN in a pack of 50) rejects that entry only: the good entries are kept and
the bad ones are returned as ``Rejection`` rows, which the ingestor stores as one
dead letter holding the raw message and every entry's reason.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from core.errors import InvalidValue, PayloadError
from core.i18n import message
from core.metrics import METRICS
from core.types import DeviceStatus, Reading, Sensor, SensorKind

# ---------------------------------------------------------------------------
# limits and results


@dataclass(frozen=True, slots=True)
class Limits:
    """What a plausible message looks like; see ``IOC_INGEST_*`` settings."""

    max_payload_bytes: int = 256 * 1024
    max_entries: int = 10_000
    max_future_skew_s: float = 300.0
    max_age_s: float = 30 * 86_400.0


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class Rejection:
    """One rejected entry of a message (``index`` is its position, if it has one)."""

    reason: str
    detail: str  # in English; ``key`` and ``fields`` give it in any language (core.i18n)
    index: int | None = None
    key: str | None = None
    fields: Mapping[str, Any] | None = None


def payload_error(reason: str, key: str, **fields: Any) -> PayloadError:
    """A ``PayloadError`` whose detail is the catalogue text ``key`` (English kept as detail)."""
    return PayloadError(reason, message("en", key, fields), key=key, **fields)


def _rej(reason: str, key: str, index: int | None = None, **fields: Any) -> Rejection:
    return Rejection(reason, message("en", key, fields), index, key, fields)


def _bad_time(key: str, **fields: Any) -> InvalidValue:
    return InvalidValue(message("en", key, fields), key, **fields)


def _time_rejection(exc: ValueError, index: int | None) -> Rejection:
    if isinstance(exc, InvalidValue):
        return Rejection("bad_timestamp", str(exc), index, exc.key, exc.fields)
    return Rejection("bad_timestamp", str(exc), index)


@dataclass(slots=True)
class Decoded:
    format: str
    readings: list[Reading] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


# ---------------------------------------------------------------------------
# helpers

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _loads(payload: bytes) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        pass
    # orjson refuses NaN/Infinity literals; the standard parser accepts them so
    # that such a value is reported as ``not_finite`` rather than as bad JSON.
    try:
        return json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise payload_error("malformed_json", "payload.malformed_json", error=str(exc)) from None


def parse_time(value: Any, *, now: float, epoch_unit: float = 1e-3) -> float:
    """Return epoch seconds from an RFC 3339 string or an epoch number.

    Numbers are multiplied by ``epoch_unit`` (milliseconds by default).
    Raises ``ValueError`` with a readable message.
    """
    if isinstance(value, bool):
        raise _bad_time("payload.time.boolean", value=repr(value))
    if isinstance(value, int | float):
        try:
            t = float(value) * epoch_unit
        except OverflowError:  # an integer beyond any float
            raise _bad_time("payload.time.out_of_range", value=str(value)[:24]) from None
        if not math.isfinite(t):
            raise _bad_time("payload.time.not_finite", value=repr(value))
        return t
    if isinstance(value, str):
        if len(value) > 64:
            raise _bad_time("payload.time.too_long")
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise _bad_time("payload.time.not_rfc3339", value=repr(value)) from None
        if dt.tzinfo is None:
            raise _bad_time("payload.time.no_zone", value=repr(value))
        return (dt - _EPOCH).total_seconds()
    raise _bad_time("payload.time.type", value=repr(value)[:40])


def _check_time(t: float, now: float, limits: Limits) -> Rejection | None:
    if t > now + limits.max_future_skew_s:
        return _rej(
            "timestamp_future",
            "payload.time.future",
            time=_iso(t),
            seconds=round(t - now),
            skew=round(limits.max_future_skew_s),
        )
    if t < now - limits.max_age_s:
        return _rej(
            "timestamp_too_old",
            "payload.time.too_old",
            time=_iso(t),
            days=round(limits.max_age_s / 86400),
        )
    return None


def _iso(t: float) -> str:
    try:
        return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return f"epoch {t:.0f} s"


def _check_value(metric: str, value: Any) -> tuple[float | None, Rejection | None]:
    m = METRICS.get(metric)
    if m is None or m.derived:
        return None, _rej("unknown_metric", "payload.metric.unknown", name=repr(metric))
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None, _rej("wrong_type", "payload.value.type", metric=metric, value=f"{value!r:.40}")
    try:
        v = float(value)
    except OverflowError:  # an integer too large for any float: a value, not a structure
        return None, _rej(
            "out_of_range",
            "payload.value.huge",
            metric=metric,
            value=str(value)[:24],
            digits=len(str(value)),
            low=m.low,
            high=m.high,
        )
    if not math.isfinite(v):
        return None, _rej("not_finite", "payload.value.not_finite", metric=metric, value=str(v))
    if v < m.low or v > m.high:
        return None, _rej(
            "out_of_range",
            "payload.value.out_of_range",
            metric=metric,
            value=v,
            unit=m.unit,
            low=m.low,
            high=m.high,
        )
    return v, None


def _entry(
    out: Decoded,
    sensor: str,
    t: float,
    metric: str,
    value: Any,
    now: float,
    limits: Limits,
    index: int,
) -> None:
    v, rej = _check_value(metric, value)
    if rej is None:
        rej = _check_time(t, now, limits)
    if rej is not None:
        out.rejections.append(Rejection(rej.reason, rej.detail, index, rej.key, rej.fields))
        return
    assert v is not None
    out.readings.append(Reading(_EPOCH + timedelta(seconds=t), sensor, metric, v))


def _sensor_ref_matches(ref: str, sensor: str) -> bool:
    return ref == sensor or ref.rsplit(":", 1)[-1] == sensor


# ---------------------------------------------------------------------------
# decoding


def decode_readings(
    sensor: str, payload: bytes, *, now: float | None = None, limits: Limits = DEFAULT_LIMITS
) -> Decoded:
    """Decode a ``.../data`` payload from ``sensor`` (the id in its topic)."""
    if now is None:
        now = datetime.now(UTC).timestamp()
    if len(payload) > limits.max_payload_bytes:
        raise payload_error(
            "oversized", "payload.oversized", size=len(payload), limit=limits.max_payload_bytes
        )
    if not payload.strip():
        raise payload_error("empty", "payload.empty")
    doc = _loads(payload)
    try:
        if isinstance(doc, list):
            if not doc:
                raise payload_error("empty", "payload.empty_list")
            if len(doc) > limits.max_entries:
                raise payload_error(
                    "oversized", "payload.too_many", count=len(doc), limit=limits.max_entries
                )
            first = doc[0]
            if isinstance(first, dict) and ("n" in first or "bn" in first or "bt" in first):
                return _decode_senml(sensor, doc, now, limits)
            if isinstance(first, dict) and first.get("type") in FIWARE_TYPES:
                out = Decoded("fiware")
                for i, item in enumerate(doc):
                    _decode_fiware_one(out, sensor, item, now, limits, i)
                return out
            return _decode_native(sensor, doc, now, limits)
        if isinstance(doc, dict):
            if doc.get("type") in FIWARE_TYPES:
                out = Decoded("fiware")
                _decode_fiware_one(out, sensor, doc, now, limits, None)
                return out
            return _decode_native(sensor, [doc], now, limits)
        raise payload_error("bad_structure", "payload.not_container", type=type(doc).__name__)
    except PayloadError:
        raise
    except Exception as exc:  # a decoder bug must not kill the ingestor
        raise payload_error("bad_structure", "payload.undecodable", error=repr(exc)) from None


def _decode_native(sensor: str, items: list[Any], now: float, limits: Limits) -> Decoded:
    out = Decoded("native")
    index = 0
    for item in items:
        if not isinstance(item, dict):
            raise payload_error("bad_structure", "payload.entry")
        claimed = item.get("sensor")
        if claimed is not None and claimed != sensor:
            raise payload_error(
                "sensor_mismatch",
                "payload.sensor_mismatch",
                claimed=repr(claimed)[:80],
                sensor=repr(sensor),
            )
        values = item.get("values")
        if not isinstance(values, dict) or not values:
            raise payload_error("bad_structure", "payload.values")
        ts = item.get("ts")
        if ts is None:
            t = now
        else:
            try:
                t = parse_time(ts, now=now)
            except ValueError as exc:
                for _ in values:
                    out.rejections.append(_time_rejection(exc, index))
                    index += 1
                continue
        for metric, value in values.items():
            _entry(out, sensor, t, str(metric), value, now, limits, index)
            index += 1
    return out


_SENML_REL = 2.0**28  # RFC 8428: times below this are relative to now


def _decode_senml(sensor: str, records: list[Any], now: float, limits: Limits) -> Decoded:
    out = Decoded("senml")
    bn, bt, bu, bv = "", 0.0, "", 0.0
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise payload_error("bad_structure", "senml.record", index=str(i))
        if "bn" in rec:
            if not isinstance(rec["bn"], str):
                raise payload_error("bad_structure", "senml.bn")
            bn = rec["bn"]
        if "bt" in rec:
            if isinstance(rec["bt"], bool) or not isinstance(rec["bt"], int | float):
                raise payload_error("bad_structure", "senml.bt")
            try:
                bt = float(rec["bt"])
            except OverflowError:
                raise payload_error("bad_timestamp", "senml.bt_range") from None
        if "bu" in rec:
            bu = str(rec["bu"])
        if "bv" in rec:
            if isinstance(rec["bv"], bool) or not isinstance(rec["bv"], int | float):
                raise payload_error("bad_structure", "senml.bv")
            try:
                bv = float(rec["bv"])
            except OverflowError:
                raise payload_error("out_of_range", "senml.bv_range") from None
        if "n" not in rec and "v" not in rec and ("vs" not in rec and "vb" not in rec):
            continue  # a record carrying base fields only
        name = bn + str(rec.get("n", ""))
        ref, _, metric = _split_senml_name(name)
        if ref and not _sensor_ref_matches(ref, sensor):
            raise payload_error(
                "sensor_mismatch",
                "senml.sensor_mismatch",
                name=repr(name)[:80],
                sensor=repr(sensor),
            )
        t_rel = rec.get("t", 0.0)
        if isinstance(t_rel, bool) or not isinstance(t_rel, int | float):
            out.rejections.append(_rej("bad_timestamp", "senml.t", i, value=repr(t_rel)[:40]))
            continue
        try:
            t = bt + float(t_rel)
        except OverflowError:  # an integer beyond any float
            t = math.inf
        if not math.isfinite(t):
            out.rejections.append(_rej("bad_timestamp", "senml.time", i))
            continue
        if t < _SENML_REL:
            t = now + t
        if "v" not in rec:
            out.rejections.append(_rej("wrong_type", "senml.not_numeric", i, metric=metric))
            continue
        unit = rec.get("u", bu)
        m = METRICS.get(metric)
        if unit and m is not None and unit not in m.senml_units and unit != m.unit:
            out.rejections.append(
                _rej(
                    "unit_mismatch",
                    "senml.unit",
                    i,
                    metric=metric,
                    unit=repr(unit)[:40],
                    expected=repr(m.unit),
                    units=", ".join(m.senml_units),
                )
            )
            continue
        v = rec["v"]
        if bv and isinstance(v, int | float) and not isinstance(v, bool):
            v = bv + v
        _entry(out, sensor, t, metric, v, now, limits, i)
    if not out.readings and not out.rejections:
        raise payload_error("empty", "senml.empty")
    return out


def _split_senml_name(name: str) -> tuple[str, str, str]:
    """``urn:dev:ioc:cam-1:speed`` -> (``urn:dev:ioc:cam-1``, ``:``, ``speed``)."""
    cut = max(name.rfind(":"), name.rfind("/"))
    if cut < 0:
        return "", "", name
    ref = name[:cut]
    sep = name[cut]
    metric = name[cut + 1 :]
    # the sensor reference is the last segment of what precedes the metric
    ref_cut = max(ref.rfind(":"), ref.rfind("/"))
    return ref[ref_cut + 1 :], sep, metric


# FIWARE Smart Data Models (key-values): attribute -> (metric, scale)
FIWARE_TYPES: dict[str, SensorKind] = {
    "TrafficFlowObserved": SensorKind.TRAFFIC_CAMERA,
    "AirQualityObserved": SensorKind.AIR_QUALITY,
    "WaterObserved": SensorKind.WATER_LEVEL,
    "NoiseLevelObserved": SensorKind.NOISE,
    "WeatherObserved": SensorKind.WEATHER,
}

FIWARE_ATTRS: dict[str, dict[str, tuple[str, float]]] = {
    "TrafficFlowObserved": {
        "intensity": ("vehicle_count", 1.0),
        "averageVehicleSpeed": ("speed", 1.0),
        "occupancy": ("occupancy", 100.0),  # SDM: fraction 0..1
        "queueLength": ("queue_length", 1.0),
        "motorbikeIntensity": ("count_motorbike", 1.0),
        "carIntensity": ("count_car", 1.0),
        "busIntensity": ("count_bus", 1.0),
        "truckIntensity": ("count_truck", 1.0),
    },
    "AirQualityObserved": {
        "pm25": ("pm25", 1.0),
        "pm10": ("pm10", 1.0),
        "no2": ("no2", 1.0),
        "o3": ("o3", 1.0),
        "co": ("co", 1.0),
        "so2": ("so2", 1.0),
        "temperature": ("temperature", 1.0),
        "relativeHumidity": ("humidity", 100.0),  # SDM: fraction 0..1
    },
    "WaterObserved": {
        "height": ("water_level", 100.0),  # SDM: metres
        "precipitation": ("rainfall", 1.0),
    },
    "NoiseLevelObserved": {"LAeq": ("noise", 1.0)},
    "WeatherObserved": {
        "temperature": ("temperature", 1.0),
        "relativeHumidity": ("humidity", 100.0),
        "windSpeed": ("wind_speed", 1.0),
        "windDirection": ("wind_direction", 1.0),
        "precipitation": ("rainfall", 1.0),
        "atmosphericPressure": ("pressure", 1.0),
    },
}

# descriptive attributes that are not measurements
FIWARE_DESCRIPTIVE = frozenset(
    {
        "id",
        "type",
        "dateObserved",
        "dateObservedFrom",
        "dateObservedTo",
        "dateCreated",
        "dateModified",
        "location",
        "address",
        "name",
        "description",
        "refDevice",
        "refPointOfInterest",
        "refRoadSegment",
        "source",
        "dataProvider",
        "areaServed",
        "alternateName",
        "owner",
        "seeAlso",
        "laneId",
        "laneDirection",
        "reliability",
        "typeofLocation",
        "vehicleType",
        "congested",
        "@context",
        "airQualityIndex",
        "airQualityLevel",
        "weatherType",
        "sensorHeight",
        "sonometerClass",
        "LAmax",
        "LAS",
        "LAeq_d",
        "averageHeadwayTime",
        "averageGapDistance",
        "averageVehicleLength",
        "volumeOfWater",
        "flow",
        "width",
        "measurand",
        "illuminance",
        "dewPoint",
        "visibility",
        "solarRadiation",
        "streamGauge",
        "snowHeight",
        "uVIndexMax",
        "feelsLikeTemperature",
        "gustSpeed",
        "pressureTendency",
    }
)


def _decode_fiware_one(
    out: Decoded, sensor: str, item: Any, now: float, limits: Limits, base: int | None
) -> None:
    if not isinstance(item, dict):
        raise payload_error("bad_structure", "fiware.entity")
    ftype = item.get("type")
    attrs = FIWARE_ATTRS.get(str(ftype))
    if attrs is None:
        raise payload_error("bad_structure", "fiware.type", type=repr(ftype)[:80])
    eid = item.get("id")
    if eid is not None and (not isinstance(eid, str) or not _sensor_ref_matches(eid, sensor)):
        raise payload_error(
            "sensor_mismatch", "fiware.sensor_mismatch", id=repr(eid)[:80], sensor=repr(sensor)
        )
    ts = _ngsi_value(item.get("dateObserved"))
    prefix = 0 if base is None else base * 1000
    if ts is None:
        t = now
    else:
        try:
            t = parse_time(ts, now=now)
        except ValueError as exc:
            out.rejections.append(_time_rejection(exc, prefix))
            return
    for j, (key, raw) in enumerate(item.items()):
        if key in FIWARE_DESCRIPTIVE:
            continue
        mapped = attrs.get(key)
        if mapped is None:
            out.rejections.append(
                _rej("unknown_metric", "fiware.attribute", prefix + j, type=ftype, name=repr(key))
            )
            continue
        metric, scale = mapped
        value = _ngsi_value(raw)
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = value * scale
        _entry(out, sensor, t, metric, value, now, limits, prefix + j)


def _ngsi_value(raw: Any) -> Any:
    """Accept both key-values (``42``) and normalized NGSI (``{"value": 42}``)."""
    if isinstance(raw, dict) and "value" in raw:
        return raw["value"]
    return raw


# ---------------------------------------------------------------------------
# meta and status


def decode_meta(kind: SensorKind, sensor: str, payload: bytes) -> Sensor | None:
    """Decode a retained ``.../meta`` message; ``None`` for an empty (cleared) one."""
    if not payload.strip():
        return None
    if len(payload) > 64 * 1024:
        raise payload_error("oversized", "meta.oversized")
    doc = _loads(payload)
    if not isinstance(doc, dict):
        raise payload_error("bad_meta", "meta.object")
    claimed = doc.get("id", doc.get("sensor"))
    if claimed is not None and claimed != sensor:
        raise payload_error(
            "sensor_mismatch",
            "meta.sensor_mismatch",
            claimed=repr(claimed)[:80],
            sensor=repr(sensor),
        )
    if "kind" in doc and doc["kind"] != kind.value:
        raise payload_error("bad_meta", "meta.kind", claimed=repr(doc["kind"])[:80], kind=str(kind))
    metrics = doc.get("metrics", [])
    if not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics):
        raise payload_error("bad_meta", "meta.metrics")
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise payload_error("unknown_metric", "meta.unknown_metrics", metrics=", ".join(unknown))
    known = {"id", "sensor", "kind", "name", "lat", "lon", "area", "metrics", "interval_s"}
    try:
        return Sensor(
            id=sensor,
            kind=kind,
            name=str(doc.get("name", "")),
            lat=doc.get("lat"),
            lon=doc.get("lon"),
            area=str(doc.get("area", "")),
            metrics=tuple(metrics),
            interval_s=doc.get("interval_s"),
            attributes={k: v for k, v in doc.items() if k not in known},
        )
    except ValueError as exc:  # pydantic.ValidationError is a ValueError
        raise payload_error("bad_meta", "meta.invalid", error=str(exc).replace("\n", " ")) from None


def decode_status(payload: bytes, *, now: float | None = None) -> tuple[DeviceStatus, float]:
    """``online``/``offline``, plain or ``{"status": ..., "ts": ...}``; returns (status, epoch s)."""
    if now is None:
        now = datetime.now(UTC).timestamp()
    text = payload.strip()
    if text in (b"online", b"offline"):
        return DeviceStatus(text.decode()), now
    if len(payload) > 4096:
        raise payload_error("oversized", "status.oversized")
    doc = _loads(payload)
    if isinstance(doc, str) and doc in ("online", "offline"):
        return DeviceStatus(doc), now
    if not isinstance(doc, dict) or doc.get("status") not in ("online", "offline"):
        raise payload_error("bad_status", "status.invalid", example='{"status": ...}')
    t = now
    if doc.get("ts") is not None:
        try:
            t = parse_time(doc["ts"], now=now)
        except ValueError as exc:
            rej = _time_rejection(exc, None)
            raise PayloadError(
                "bad_timestamp", rej.detail, key=rej.key, **(rej.fields or {})
            ) from None
    return DeviceStatus(doc["status"]), t


# ---------------------------------------------------------------------------
# encoding (used by simulators, tests and examples)


def _ms(t: datetime | float) -> int:
    return round((t.timestamp() if isinstance(t, datetime) else t) * 1000)


def encode_native(entries: Iterable[tuple[datetime | float, Mapping[str, float]]]) -> bytes:
    """Entries of (time, {metric: value}); one entry encodes as an object, more as a list."""
    docs = [{"ts": _ms(t), "values": dict(values)} for t, values in entries]
    return orjson.dumps(docs[0] if len(docs) == 1 else docs)


def encode_senml(sensor: str, readings: Iterable[tuple[datetime | float, str, float]]) -> bytes:
    """A SenML pack with ``bn`` = ``<sensor>:`` and base time of the first record."""
    recs: list[dict[str, Any]] = []
    bt: float | None = None
    for t, metric, value in readings:
        ts = t.timestamp() if isinstance(t, datetime) else float(t)
        if bt is None:
            bt = ts
            recs.append({"bn": f"urn:dev:ioc:{sensor}:", "bt": bt, "n": metric, "v": value})
        else:
            rec: dict[str, Any] = {"n": metric, "v": value}
            if ts != bt:
                rec["t"] = round(ts - bt, 3)
            recs.append(rec)
    return orjson.dumps(recs)


_FIWARE_REVERSE: dict[str, dict[str, tuple[str, float]]] = {
    ftype: {metric: (attr, scale) for attr, (metric, scale) in attrs.items()}
    for ftype, attrs in FIWARE_ATTRS.items()
}
KIND_FIWARE_TYPE: dict[SensorKind, str] = {k: t for t, k in FIWARE_TYPES.items()}


def encode_fiware(
    kind: SensorKind, sensor: str, t: datetime | float, values: Mapping[str, float]
) -> bytes:
    """One FIWARE key-values entity; metrics the model lacks are left out."""
    ftype = KIND_FIWARE_TYPE[kind]
    rev = _FIWARE_REVERSE[ftype]
    ts = t if isinstance(t, datetime) else datetime.fromtimestamp(t, UTC)
    doc: dict[str, Any] = {
        "id": f"urn:ngsi-ld:{ftype}:{sensor}",
        "type": ftype,
        "dateObserved": ts.isoformat().replace("+00:00", "Z"),
    }
    for metric, value in values.items():
        if metric in rev:
            attr, scale = rev[metric]
            doc[attr] = value / scale
    return orjson.dumps(doc)


def encode_meta(sensor: Sensor) -> bytes:
    doc: dict[str, Any] = {
        "id": sensor.id,
        "kind": sensor.kind.value,
        "name": sensor.name,
        "lat": sensor.lat,
        "lon": sensor.lon,
        "area": sensor.area,
        "metrics": list(sensor.metrics),
    }
    if sensor.interval_s is not None:
        doc["interval_s"] = sensor.interval_s
    doc.update(sensor.attributes)
    return orjson.dumps(doc)
