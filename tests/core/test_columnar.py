"""The fast column decoder agrees with ``core.codecs`` whenever it answers, and answers often."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from core.codecs import DEFAULT_LIMITS, Limits, decode_readings, encode_native, encode_senml
from core.columnar import PG_EPOCH_S, fast_decode, to_pg_us
from core.errors import PayloadError
from core.metrics import METRICS

NOW = 1_790_000_000.0  # a fixed "now" (2026-09)
SENSOR = "aq-01"
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_US = timedelta(microseconds=1)

good_metrics = [m.name for m in METRICS.values() if not m.derived]
metric_names = st.integers(0, 49).flatmap(
    lambda i: st.sampled_from(good_metrics) if i else st.sampled_from(["aqi_vn", "bogus", ""])
)


@st.composite
def value_for(draw: st.DrawFn, metric: str) -> Any:
    m = METRICS.get(metric)
    lo, hi = (m.low, m.high) if m else (0.0, 100.0)
    if draw(st.integers(0, 29)):  # mostly good values
        return draw(st.floats(lo, hi) | st.integers(int(lo), int(hi)))
    return draw(
        st.one_of(
            st.floats(lo, hi),
            st.integers(int(lo), int(hi)),
            st.floats(allow_nan=False),
            st.integers(-(2**70), 2**70),
            st.booleans(),
            st.none(),
            st.text(max_size=3),
            st.sampled_from([lo, hi, lo - 1e-9, hi + 1e-9]),
        )
    )


def _ms(seconds: float) -> float:
    return seconds * 1000.0


good_timestamps = st.one_of(
    st.none(),
    st.integers(int(_ms(NOW - 29 * 86400)), int(_ms(NOW + 200))),
    st.floats(_ms(NOW - 86400), _ms(NOW)),
)
any_timestamps = st.one_of(
    st.integers(int(_ms(NOW - 40 * 86400)), int(_ms(NOW + 900))),
    st.floats(_ms(NOW - 31 * 86400), _ms(NOW + 400)),
    st.floats(_ms(NOW - 86400), _ms(NOW)).map(
        lambda ms: datetime.fromtimestamp(ms / 1000, UTC).isoformat()
    ),
    st.sampled_from(["2026-09-21T10:00:00", "yesterday", True, [1]]),
)


@st.composite
def native_payload(draw: st.DrawFn) -> bytes:
    entries = []
    for _ in range(draw(st.integers(1, 5))):
        metrics = draw(
            st.lists(
                metric_names,
                min_size=0 if draw(st.integers(0, 19)) == 0 else 1,
                max_size=4,
                unique=True,
            )
        )
        values = {name: draw(value_for(name)) for name in metrics}
        entry: dict[str, Any] = {"values": values}
        ts = draw(good_timestamps if draw(st.integers(0, 9)) else any_timestamps)
        if ts is not None:
            entry["ts"] = ts
        if draw(st.integers(0, 9)) == 0:
            entry["sensor"] = draw(st.sampled_from([SENSOR, "other"]))
        entries.append(entry)
    doc: Any = entries[0] if len(entries) == 1 and draw(st.booleans()) else entries
    return json.dumps(doc).encode()


@st.composite
def senml_payload(draw: st.DrawFn) -> bytes:
    recs: list[dict[str, Any]] = []
    for i in range(draw(st.integers(1, 5))):
        metric = draw(metric_names)
        rec: dict[str, Any] = {"n": metric, "v": draw(value_for(metric))}
        if i == 0:
            rec["bn"] = draw(
                st.sampled_from([f"urn:dev:ioc:{SENSOR}:", f"{SENSOR}/", "", "urn:dev:x:other:"])
            )
            rec["bt"] = draw(
                st.floats(NOW - 29 * 86400, NOW)
                if draw(st.integers(0, 9))
                else st.one_of(st.floats(NOW - 40 * 86400, NOW + 900), st.integers(0, 100))
            )
            if draw(st.integers(0, 4)) == 0:
                rec["bv"] = draw(st.sampled_from([0, 1, 2.5, "x"]))
            if draw(st.integers(0, 4)) == 0:
                rec["bu"] = draw(st.sampled_from(["ug/m3", "Cel", "%"]))
        if draw(st.booleans()):
            rec["t"] = draw(
                st.floats(-100, 100) | st.integers(-100, 100)
                if draw(st.integers(0, 19))
                else st.text(max_size=2)
            )
        if draw(st.integers(0, 3)) == 0:
            m = METRICS.get(metric)
            units = [*(m.senml_units if m else ()), m.unit if m else ""]
            rec["u"] = draw(
                st.sampled_from(units if draw(st.integers(0, 9)) else ["furlong", "", "%"])
            )
        if draw(st.integers(0, 29)) == 0:
            del rec["v"]
        recs.append(rec)
    return json.dumps(recs).encode()


def _core(payload: bytes, limits: Limits) -> Any:
    try:
        return decode_readings(SENSOR, payload, now=NOW, limits=limits)
    except PayloadError:
        return None


def _check(payload: bytes, limits: Limits = DEFAULT_LIMITS) -> str:
    fast = fast_decode(SENSOR, payload, NOW, limits)
    core = _core(payload, limits)
    if fast is None:
        return "fell back to core"
    assert core is not None, "fast path accepted what the core rejects"
    assert not core.rejections, core.rejections
    assert fast.format == core.format
    expected = [((r.time - PG_EPOCH) // ONE_US, r.metric, r.value) for r in core.readings]
    assert list(zip(fast.us, fast.metrics, fast.values, strict=True)) == expected
    return "fast path"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(native_payload())
def test_native_fast_path_agrees_with_core(payload: bytes) -> None:
    event(_check(payload))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(senml_payload())
def test_senml_fast_path_agrees_with_core(payload: bytes) -> None:
    event(_check(payload))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
def test_arbitrary_bytes_never_raise_and_agree(payload: bytes) -> None:
    event(_check(payload, Limits(max_payload_bytes=48, max_entries=3)))


@given(st.floats(-2e9, 5e9))
def test_microseconds_round_like_timedelta(t: float) -> None:
    assert to_pg_us(t) == (EPOCH + timedelta(seconds=t) - PG_EPOCH) // ONE_US


@given(st.integers(-2_200_000_000_000, 2_200_000_000_000))
def test_integer_milliseconds_need_no_float_rounding(ms: int) -> None:
    # the fast path's shortcut for epoch milliseconds within 2.2e9 s of 1970
    assert to_pg_us(ms * 1e-3) == ms * 1000 - PG_EPOCH_S * 1_000_000


def test_typical_payloads_take_the_fast_path() -> None:
    t = NOW - 60
    cases = [
        encode_native([(t, {"pm25": 35.5})]),
        encode_native([(t + i, {"pm25": 10.0 + i, "pm10": 20}) for i in range(30)]),
        encode_senml(SENSOR, [(t + i, "pm25", float(i)) for i in range(60)]),
        b'{"ts": "2026-09-21T10:00:00+07:00", "values": {"no2": 41}}',
        b'{"values": {"no2": 41}}',
    ]
    for payload in cases:
        fast = fast_decode(SENSOR, payload, NOW, DEFAULT_LIMITS)
        assert fast is not None, payload
        _check(payload)
    assert len(fast_decode(SENSOR, cases[1], NOW, DEFAULT_LIMITS).us) == 60  # type: ignore[union-attr]


def test_anything_unusual_falls_back() -> None:
    t = int((NOW - 60) * 1000)
    for payload in [
        b'{"ts": %d, "values": {"pm25": NaN}}' % t,  # NaN literal: only the core's json parses it
        b'{"ts": %d, "values": {"pm25": 5000}}' % t,  # out of range
        b'{"ts": %d, "values": {"aqi_vn": 5}}' % t,  # derived metric
        b'{"id": "urn:ngsi-ld:AirQualityObserved:aq-01", "type": "AirQualityObserved", "pm25": 3}',
        b'{"ts": %d, "values": {"pm25": 5}, "sensor": "aq-02"}' % t,
        b"[]",
        b"   ",
    ]:
        assert fast_decode(SENSOR, payload, NOW, DEFAULT_LIMITS) is None, payload
