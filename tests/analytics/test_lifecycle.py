"""The alert lifecycle on a real PostgreSQL: one active alert per key, updates, ack, resolution, reopening."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from analytics.alerts.lifecycle import Lifecycle
from analytics.alerts.spatial import Upgrade
from analytics.engine.base import Signal
from core.events import AlertAction
from core.types import AlertClass, Sensor, SensorKind, Severity

pytestmark = pytest.mark.db

T0 = 1_763_769_600.0
GAUGE = Sensor(
    id="wl-td-03",
    kind=SensorKind.WATER_LEVEL,
    name="Trần Duy Hưng",
    lat=21.01,
    lon=105.80,
    area="Cầu Giấy",
)


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(db_url, autocommit=True) as c:
        yield c


@pytest.fixture
def lc(conn: psycopg.Connection[Any], clock: FakeClock) -> Lifecycle:
    life = Lifecycle(
        conn,
        sensors={GAUGE.id: GAUGE}.get,
        update_throttle_s=60,
        resolve_after_s=300,
        cooldown_s=1800,
        monotonic=clock,
    )
    life.load(T0)
    return life


def flood(
    t: float, value: float = 45.0, active: bool = True, sev: Severity = Severity.WARNING
) -> Signal:
    return Signal(
        sensor=GAUGE.id,
        metric="water_level",
        rule="water_level.flood",
        detector="rules",
        time=t,
        active=active,
        severity=sev,
        value=value,
        expected_high=20.0,
        message=f"flooding: water_level {value:g} cm",
        evidence={"threshold": 20.0},
        alert_class=AlertClass.THRESHOLD,
    )


def alerts(db: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return db.execute(
        "SELECT id, status, severity, occurrences, value FROM alerts ORDER BY id"
    ).fetchall()


def events(db: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return db.execute("SELECT alert_id, action, actor FROM alert_events ORDER BY seq").fetchall()


def test_open_stores_the_alert_with_its_place_and_evidence(
    lc: Lifecycle, db: psycopg.Connection[Any]
) -> None:
    changes = lc.apply([flood(T0)])
    assert [c.action for c in changes] == ["opened"]
    row = db.execute(
        "SELECT sensor, metric, rule, detector, kind, alert_class, severity, status, message,"
        " value, expected_high, lat, lon, area, evidence, opened_at FROM alerts"
    ).fetchone()
    assert row is not None
    (
        sensor,
        metric,
        rule,
        detector,
        kind,
        cls,
        sev,
        status,
        msg,
        value,
        hi,
        lat,
        lon,
        area,
        ev,
        opened,
    ) = row
    assert (sensor, metric, rule, detector) == (
        "wl-td-03",
        "water_level",
        "water_level.flood",
        "rules",
    )
    assert (kind, cls, sev, status) == ("water_level", "threshold", "warning", "open")
    assert msg == "Trần Duy Hưng (Cầu Giấy): flooding: water_level 45 cm"
    assert (value, hi, lat, lon, area) == (45.0, 20.0, 21.01, 105.80, "Cầu Giấy")
    assert ev["threshold"] == 20.0 and ev["detector"] == "rules" and ev["value"] == 45.0
    assert opened.timestamp() == T0
    assert events(db) == [(changes[0].alert.id, "opened", "system")]
    assert changes[0].action is AlertAction.OPENED
    assert changes[0].alert.sensor == "wl-td-03" and changes[0].alert.kind is SensorKind.WATER_LEVEL
    assert changes[0].alert.opened_at.timestamp() == T0


def test_repeats_update_one_alert_and_updates_are_throttled(
    lc: Lifecycle, db: psycopg.Connection[Any], clock: FakeClock
) -> None:
    lc.apply([flood(T0)])
    for k in range(1, 6):
        clock.t += 10
        lc.apply([flood(T0 + 60 * k, 45 + k)])
    ((_, status, _, occ, value),) = alerts(db)
    assert (status, occ, value) == ("open", 1, 45.0)  # throttled: nothing written yet
    clock.t += 60
    lc.tick(T0 + 400)  # the pending update is due
    ((_, _, _, occ, value),) = alerts(db)
    assert (occ, value) == (6, 50.0)
    assert [a for _, a, _ in events(db)] == ["opened", "updated"]
    # a repeat after the throttle period writes straight away
    clock.t += 61
    lc.apply([flood(T0 + 600, 52)])
    assert alerts(db)[0][3:] == (7, 52.0)
    assert [a for _, a, _ in events(db)] == ["opened", "updated", "updated"]


def test_escalation_is_written_at_once(lc: Lifecycle, db: psycopg.Connection[Any]) -> None:
    lc.apply([flood(T0)])
    changes = lc.apply([flood(T0 + 60, 80, sev=Severity.CRITICAL)])
    assert [c.action for c in changes] == ["escalated"]
    assert alerts(db)[0][2] == "critical"
    # severity does not fall back while the alert is active
    lc.apply([flood(T0 + 120, 30, sev=Severity.WARNING)])
    assert [a for _, a, _ in events(db)] == ["opened", "escalated"]
    assert alerts(db)[0][2] == "critical"


def test_texts_say_the_kept_severity_and_the_district_once(
    conn: psycopg.Connection[Any], db: psycopg.Connection[Any], clock: FakeClock
) -> None:
    named = GAUGE.model_copy(update={"name": "water level 3 (Cầu Giấy)"})
    life = Lifecycle(conn, sensors={named.id: named}.get, update_throttle_s=0, monotonic=clock)
    life.load(T0)
    life.apply([flood(T0, 80, sev=Severity.CRITICAL)])
    msg = db.execute("SELECT message FROM alerts").fetchone()
    assert msg == ("water level 3 (Cầu Giấy): flooding: water_level 80 cm",)
    clock.t += 1
    life.apply([flood(T0 + 60, 30, sev=Severity.WARNING)])
    row = db.execute("SELECT severity, message FROM alerts").fetchone()
    assert row is not None and row[0] == "critical"
    assert row[1].endswith("30 cm (now warning; the alert stays critical until resolved)")


def test_one_active_alert_per_key_even_with_a_second_writer(
    lc: Lifecycle, conn: psycopg.Connection[Any], db_url: str, clock: FakeClock
) -> None:
    lc.apply([flood(T0)])
    with psycopg.connect(db_url, autocommit=True) as other_conn:
        other = Lifecycle(other_conn, monotonic=clock)  # knows nothing of the open alert
        changes = other.apply([flood(T0 + 60, 47)])
        assert [c.action for c in changes] == ["updated"]
    assert len(alerts(conn)) == 1
    assert alerts(conn)[0][3] == 2
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(
            "INSERT INTO alerts (sensor, metric, rule, detector, kind, alert_class, severity, message)"
            " VALUES ('wl-td-03', 'water_level', 'water_level.flood', 'x', 'water_level',"
            " 'threshold', 'warning', 'dup')"
        )


def test_acknowledged_stays_acknowledged_and_then_resolves_automatically(
    lc: Lifecycle, db: psycopg.Connection[Any], clock: FakeClock
) -> None:
    lc.apply([flood(T0)])
    db.execute(
        "UPDATE alerts SET status = 'acknowledged', acknowledged_at = now(),"
        " acknowledged_by = 'operator-1'"
    )
    for k in range(1, 4):
        clock.t += 61
        lc.apply([flood(T0 + 60 * k, 50 + k)])
    assert alerts(db)[0][1] == "acknowledged"
    assert alerts(db)[0][3] == 4
    # cleared: nothing happens for 300 s of event time, then it resolves
    lc.apply([flood(T0 + 300, 10, active=False)])
    assert lc.tick(T0 + 599) == []
    changes = lc.tick(T0 + 600)
    assert [c.action for c in changes] == ["resolved"]
    status, by, note = db.execute(
        "SELECT a.status, a.resolved_by, e.note FROM alerts a JOIN alert_events e"
        " ON e.alert_id = a.id WHERE e.action = 'resolved'"
    ).fetchone()  # type: ignore[misc]
    assert (status, by) == ("resolved", "system")
    assert note == "condition cleared for 300 s"
    assert [a for _, a, _ in events(db)] == [
        "opened",
        "acknowledged",
        "updated",
        "updated",
        "updated",
        "resolved",
    ]


def test_hysteresis_in_time_and_reopening_within_the_cooldown(
    lc: Lifecycle, db: psycopg.Connection[Any]
) -> None:
    lc.apply([flood(T0)])
    lc.apply([flood(T0 + 60, 10, active=False)])
    lc.apply([flood(T0 + 200, 30)])  # back before 300 s: the alert never resolves
    lc.apply([flood(T0 + 260, 10, active=False)])
    assert lc.tick(T0 + 500) == []
    assert [c.action for c in lc.tick(T0 + 560)] == ["resolved"]
    # flapping: the condition returns 10 minutes later: the same alert reopens
    changes = lc.apply([flood(T0 + 1200, 33)])
    assert [c.action for c in changes] == ["reopened"]
    assert len(alerts(db)) == 1 and alerts(db)[0][1:4] == ("open", "warning", 3)
    # after the cooldown a return is a new alert
    lc.apply([flood(T0 + 1300, 10, active=False)])
    lc.tick(T0 + 1600)
    changes = lc.apply([flood(T0 + 1600 + 1801, 40)])
    assert [c.action for c in changes] == ["opened"]
    assert [r[1] for r in alerts(db)] == ["resolved", "open"]
    assert [a for _, a, _ in events(db)] == ["opened", "resolved", "reopened", "resolved", "opened"]


def test_an_operator_resolution_is_respected_while_the_condition_persists(
    lc: Lifecycle, db: psycopg.Connection[Any], clock: FakeClock
) -> None:
    lc.apply([flood(T0)])
    db.execute("UPDATE alerts SET status = 'resolved', resolved_at = now(), resolved_by = 'op'")
    lc.sync()
    for k in range(1, 5):
        clock.t += 61
        assert lc.apply([flood(T0 + 60 * k)]) == []
    assert len(alerts(db)) == 1
    # it clears, and comes back: now it is a new occurrence (reopened within the cooldown)
    lc.apply([flood(T0 + 400, 5, active=False)])
    assert [c.action for c in lc.apply([flood(T0 + 500)])] == ["reopened"]


def test_an_operator_resolution_seen_on_the_next_write(
    lc: Lifecycle, db: psycopg.Connection[Any], clock: FakeClock
) -> None:
    lc.apply([flood(T0)])
    db.execute("UPDATE alerts SET status = 'resolved', resolved_at = now(), resolved_by = 'op'")
    clock.t += 61
    assert lc.apply([flood(T0 + 60)]) == []  # the update finds it resolved: left alone
    clock.t += 61
    assert lc.apply([flood(T0 + 120)]) == []
    assert [a for _, a, _ in events(db)] == ["opened", "resolved"]


def test_upgrade_to_incident(lc: Lifecycle, db: psycopg.Connection[Any]) -> None:
    s = Signal(
        GAUGE.id,
        "water_level",
        "series.anomaly",
        "robust_z",
        T0,
        True,
        alert_class=AlertClass.PROBABLE_FAULT,
        evidence={"corroboration": "none of 2 neighbouring sensors", "neighbours": []},
    )
    lc.apply([s])
    changes = lc.apply([], [Upgrade(GAUGE.id, T0 + 60, {"corroboration": "corroborated by wl-2"})])
    assert [c.action for c in changes] == ["updated"]
    cls, ev = db.execute("SELECT alert_class, evidence FROM alerts").fetchone()  # type: ignore[misc]
    assert cls == "incident" and ev["corroboration"] == "corroborated by wl-2"
    # a threshold alert (class not from corroboration) is never upgraded
    lc.apply([flood(T0)])
    assert lc.apply([], [Upgrade(GAUGE.id, T0 + 90, {})]) == []


def test_restart_picks_up_active_alerts_and_timers(
    lc: Lifecycle, db_url: str, clock: FakeClock
) -> None:
    lc.apply([flood(T0)])
    lc.apply([flood(T0 + 60, 10, active=False)])
    state = lc.get_state()
    with psycopg.connect(db_url, autocommit=True) as conn2:
        again = Lifecycle(conn2, monotonic=clock)
        again.load(T0 + 100)
        again.set_state(state)
        assert len(again.active) == 1
        assert [c.action for c in again.tick(T0 + 360)] == ["resolved"]
        again.load(T0 + 400)
        assert [c.action for c in again.apply([flood(T0 + 500)])] == ["reopened"]


def test_notify_and_event_order(lc: Lifecycle, db_url: str) -> None:
    got: list[str] = []
    ready = threading.Event()

    def listen() -> None:
        with psycopg.connect(db_url, autocommit=True) as c:
            c.execute("LISTEN ioc_alerts")
            ready.set()
            for n in c.notifies(timeout=5, stop_after=2):
                got.append(n.payload)

    th = threading.Thread(target=listen)
    th.start()
    ready.wait(5)
    lc.apply([flood(T0)])
    lc.apply([flood(T0 + 1, sev=Severity.CRITICAL)])
    th.join(10)
    assert len(got) == 2 and int(got[0]) < int(got[1])
