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

from core.errors import PayloadError
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
    detail: str
    index: int | None = None


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
        raise PayloadError("malformed_json", f"payload is not valid JSON: {exc}") from None


def parse_time(value: Any, *, now: float, epoch_unit: float = 1e-3) -> float:
    """Return epoch seconds from an RFC 3339 string or an epoch number.

    Numbers are multiplied by ``epoch_unit`` (milliseconds by default).
    Raises ``ValueError`` with a readable message.
    """
    if isinstance(value, bool):
        raise ValueError(f"timestamp {value!r} is a boolean")
    if isinstance(value, int | float):
        try:
            t = float(value) * epoch_unit
        except OverflowError:  # an integer beyond any float
            raise ValueError(f"timestamp {str(value)[:24]}... is out of range") from None
        if not math.isfinite(t):
            raise ValueError(f"timestamp {value!r} is not finite")
        return t
    if isinstance(value, str):
        if len(value) > 64:
            raise ValueError("timestamp string is too long")
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"timestamp {value!r} is not RFC 3339") from None
        if dt.tzinfo is None:
            raise ValueError(f"timestamp {value!r} has no time zone (add Z or +07:00)")
        return (dt - _EPOCH).total_seconds()
    raise ValueError(f"timestamp {value!r} must be an RFC 3339 string or epoch milliseconds")


def _check_time(t: float, now: float, limits: Limits) -> Rejection | None:
    if t > now + limits.max_future_skew_s:
        return Rejection(
            "timestamp_future",
            f"timestamp {_iso(t)} is {t - now:.0f} s in the future "
            f"(allowed skew {limits.max_future_skew_s:.0f} s)",
        )
    if t < now - limits.max_age_s:
        return Rejection(
            "timestamp_too_old",
            f"timestamp {_iso(t)} is older than the accepted {limits.max_age_s / 86400:.0f} days",
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
        return None, Rejection("unknown_metric", f"metric {metric!r} is not in the catalogue")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None, Rejection("wrong_type", f"{metric} must be a number, got {value!r:.40}")
    try:
        v = float(value)
    except OverflowError:  # an integer too large for any float: a value, not a structure
        return None, Rejection(
            "out_of_range",
            f"{metric} = {str(value)[:24]}... ({len(str(value))} digits) is outside the"
            f" physical range {m.low:g}..{m.high:g}",
        )
    if not math.isfinite(v):
        return None, Rejection("not_finite", f"{metric} is {v}, not a finite number")
    if v < m.low or v > m.high:
        return None, Rejection(
            "out_of_range",
            f"{metric} = {v:g} {m.unit} is outside the physical range {m.low:g}..{m.high:g}",
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
        out.rejections.append(Rejection(rej.reason, rej.detail, index))
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
        raise PayloadError(
            "oversized", f"payload of {len(payload)} bytes exceeds {limits.max_payload_bytes}"
        )
    if not payload.strip():
        raise PayloadError("empty", "payload is empty")
    doc = _loads(payload)
    try:
        if isinstance(doc, list):
            if not doc:
                raise PayloadError("empty", "payload is an empty list")
            if len(doc) > limits.max_entries:
                raise PayloadError(
                    "oversized", f"{len(doc)} entries exceed the limit of {limits.max_entries}"
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
        raise PayloadError(
            "bad_structure",
            f"payload must be a JSON object or array, got {type(doc).__name__}",
        )
    except PayloadError:
        raise
    except Exception as exc:  # a decoder bug must not kill the ingestor
        raise PayloadError("bad_structure", f"payload could not be decoded: {exc!r}") from None


def _decode_native(sensor: str, items: list[Any], now: float, limits: Limits) -> Decoded:
    out = Decoded("native")
    index = 0
    for item in items:
        if not isinstance(item, dict):
            raise PayloadError("bad_structure", "each entry must be an object with ts and values")
        claimed = item.get("sensor")
        if claimed is not None and claimed != sensor:
            raise PayloadError(
                "sensor_mismatch",
                f"payload names sensor {claimed!r} but the topic names {sensor!r}",
            )
        values = item.get("values")
        if not isinstance(values, dict) or not values:
            raise PayloadError(
                "bad_structure", 'each entry needs a non-empty "values" object of metric: number'
            )
        ts = item.get("ts")
        if ts is None:
            t = now
        else:
            try:
                t = parse_time(ts, now=now)
            except ValueError as exc:
                for _ in values:
                    out.rejections.append(Rejection("bad_timestamp", str(exc), index))
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
            raise PayloadError("bad_structure", f"SenML record {i} is not an object")
        if "bn" in rec:
            if not isinstance(rec["bn"], str):
                raise PayloadError("bad_structure", "SenML bn must be a string")
            bn = rec["bn"]
        if "bt" in rec:
            if isinstance(rec["bt"], bool) or not isinstance(rec["bt"], int | float):
                raise PayloadError("bad_structure", "SenML bt must be a number")
            try:
                bt = float(rec["bt"])
            except OverflowError:
                raise PayloadError("bad_timestamp", "SenML bt is out of range") from None
        if "bu" in rec:
            bu = str(rec["bu"])
        if "bv" in rec:
            if isinstance(rec["bv"], bool) or not isinstance(rec["bv"], int | float):
                raise PayloadError("bad_structure", "SenML bv must be a number")
            try:
                bv = float(rec["bv"])
            except OverflowError:
                raise PayloadError("out_of_range", "SenML bv is too large for a number") from None
        if "n" not in rec and "v" not in rec and ("vs" not in rec and "vb" not in rec):
            continue  # a record carrying base fields only
        name = bn + str(rec.get("n", ""))
        ref, _, metric = _split_senml_name(name)
        if ref and not _sensor_ref_matches(ref, sensor):
            raise PayloadError(
                "sensor_mismatch", f"SenML name {name!r} names another sensor than {sensor!r}"
            )
        t_rel = rec.get("t", 0.0)
        if isinstance(t_rel, bool) or not isinstance(t_rel, int | float):
            out.rejections.append(
                Rejection("bad_timestamp", f"SenML t {t_rel!r} is not a number", i)
            )
            continue
        try:
            t = bt + float(t_rel)
        except OverflowError:  # an integer beyond any float
            t = math.inf
        if not math.isfinite(t):
            out.rejections.append(Rejection("bad_timestamp", "SenML time is not finite", i))
            continue
        if t < _SENML_REL:
            t = now + t
        if "v" not in rec:
            out.rejections.append(
                Rejection("wrong_type", f"{metric}: only numeric SenML values (v) are accepted", i)
            )
            continue
        unit = rec.get("u", bu)
        m = METRICS.get(metric)
        if unit and m is not None and unit not in m.senml_units and unit != m.unit:
            out.rejections.append(
                Rejection(
                    "unit_mismatch",
                    f"{metric} unit {unit!r} is not {m.unit!r} (SenML: {', '.join(m.senml_units)})",
                    i,
                )
            )
            continue
        v = rec["v"]
        if bv and isinstance(v, int | float) and not isinstance(v, bool):
            v = bv + v
        _entry(out, sensor, t, metric, v, now, limits, i)
    if not out.readings and not out.rejections:
        raise PayloadError("empty", "SenML pack holds no records")
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
        raise PayloadError("bad_structure", "each FIWARE entity must be an object")
    ftype = item.get("type")
    attrs = FIWARE_ATTRS.get(str(ftype))
    if attrs is None:
        raise PayloadError("bad_structure", f"unsupported FIWARE type {ftype!r}")
    eid = item.get("id")
    if eid is not None and (not isinstance(eid, str) or not _sensor_ref_matches(eid, sensor)):
        raise PayloadError(
            "sensor_mismatch", f"FIWARE id {eid!r} does not end with the topic's sensor {sensor!r}"
        )
    ts = _ngsi_value(item.get("dateObserved"))
    prefix = 0 if base is None else base * 1000
    if ts is None:
        t = now
    else:
        try:
            t = parse_time(ts, now=now)
        except ValueError as exc:
            out.rejections.append(Rejection("bad_timestamp", str(exc), prefix))
            return
    for j, (key, raw) in enumerate(item.items()):
        if key in FIWARE_DESCRIPTIVE:
            continue
        mapped = attrs.get(key)
        if mapped is None:
            out.rejections.append(
                Rejection(
                    "unknown_metric", f"{ftype} attribute {key!r} is not supported", prefix + j
                )
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
        raise PayloadError("oversized", "meta payload exceeds 64 KiB")
    doc = _loads(payload)
    if not isinstance(doc, dict):
        raise PayloadError("bad_meta", "meta payload must be a JSON object")
    claimed = doc.get("id", doc.get("sensor"))
    if claimed is not None and claimed != sensor:
        raise PayloadError(
            "sensor_mismatch", f"meta names {claimed!r} but the topic names {sensor!r}"
        )
    if "kind" in doc and doc["kind"] != kind.value:
        raise PayloadError("bad_meta", f"meta kind {doc['kind']!r} differs from topic kind {kind}")
    metrics = doc.get("metrics", [])
    if not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics):
        raise PayloadError("bad_meta", "meta metrics must be a list of metric names")
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise PayloadError("unknown_metric", f"meta lists unknown metrics: {', '.join(unknown)}")
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
        raise PayloadError("bad_meta", f"meta is invalid: {exc}".replace("\n", " ")) from None


def decode_status(payload: bytes, *, now: float | None = None) -> tuple[DeviceStatus, float]:
    """``online``/``offline``, plain or ``{"status": ..., "ts": ...}``; returns (status, epoch s)."""
    if now is None:
        now = datetime.now(UTC).timestamp()
    text = payload.strip()
    if text in (b"online", b"offline"):
        return DeviceStatus(text.decode()), now
    if len(payload) > 4096:
        raise PayloadError("oversized", "status payload exceeds 4 KiB")
    doc = _loads(payload)
    if isinstance(doc, str) and doc in ("online", "offline"):
        return DeviceStatus(doc), now
    if not isinstance(doc, dict) or doc.get("status") not in ("online", "offline"):
        raise PayloadError("bad_status", 'status must be "online", "offline" or {"status": ...}')
    t = now
    if doc.get("ts") is not None:
        try:
            t = parse_time(doc["ts"], now=now)
        except ValueError as exc:
            raise PayloadError("bad_timestamp", str(exc)) from None
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
