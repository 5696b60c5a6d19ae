"""The incident correlator as a service: one leader reads committed alert events, writes incidents.

Every analytics process starts an :class:`IncidentService`; the one that holds the
PostgreSQL advisory lock ``LEADER_LOCK`` on its connection is the leader and the others
wait, so several instances (or partitions) never group twice.  The leader reads
``alert_events`` after its cursor (``incident_cursor``) in seq order, which is commit
order, groups the snapshots (:mod:`analytics.alerts.correlator`), and writes the
incidents, their members and the new cursor in one transaction: a leader that dies
mid-way leaves nothing half done, and the next one resumes at the cursor.  The
``incidents`` triggers (migration 0006) put every incident change on ``alert_events``;
a merge is closed by ``ioc_incident_merged()`` (migration 0013), one ``merged`` event.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from analytics.alerts.correlator import Correlator, CorrelatorConfig, Incident, Member, escalated
from core.db import migrate
from core.registry import read_sensors

logger = logging.getLogger(__name__)

LEADER_LOCK = 727006
PAGE = 2_000


def _load(conn: psycopg.Connection[Any], config: CorrelatorConfig) -> Correlator:
    """The active incidents and their members' current rows."""
    incidents: dict[int, Incident] = {}
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT id, hazard, group_key, severity FROM incidents WHERE status <> 'resolved'"
        )
        for r in cur:
            incidents[r["id"]] = Incident(
                hazard=r["hazard"],
                group_key=r["group_key"],
                id=r["id"],
                stored_severity=r["severity"],
            )
        cur.execute(
            "SELECT ia.incident_id, to_jsonb(a) AS alert FROM incident_alerts ia"
            " JOIN alerts a ON a.id = ia.alert_id WHERE ia.incident_id = ANY(%s)",
            (list(incidents),),
        )
        found = cur.fetchall()
        snaps = _placed(conn, [r["alert"] for r in found])
        for r, snap in zip(found, snaps, strict=True):
            m = Member.from_row(snap)
            incidents[r["incident_id"]].members[m.id] = m
    return Correlator(config, [inc for inc in incidents.values() if inc.members])


def _placed(conn: psycopg.Connection[Any], snaps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Snapshots with their sensor's place from the registry where the alert has none.

    (An alert opened before analytics learnt of its sensor, e.g. one registered over the
    API moments earlier, carries no position nor area; the registry has them by now.)
    """
    missing = {s["sensor"] for s in snaps if s.get("lat") is None or not s.get("area")}
    if not missing:
        return snaps
    where = {r.id: (r.lat, r.lon, r.area) for r in read_sensors(conn, sorted(missing))}
    out = []
    for s in snaps:
        found = where.get(s["sensor"]) if s["sensor"] in missing else None
        if found is not None:
            lat, lon, area = found
            s = {**s, "area": s.get("area") or area or ""}
            if s.get("lat") is None and lat is not None and lon is not None:
                s.update(lat=lat, lon=lon)
        out.append(s)
    return out


def _start_seq(conn: psycopg.Connection[Any]) -> int:
    """Where a correlator without cursor starts: at the first event of an alert still active."""
    row = conn.execute(
        "SELECT coalesce((SELECT min(e.seq) - 1 FROM alert_events e JOIN alerts a"
        " ON a.id = e.alert_id WHERE a.status <> 'resolved'),"
        " (SELECT max(seq) FROM alert_events), 0)"
    ).fetchone()
    return int(row[0]) if row else 0


class IncidentStore:
    """One connection's view: load, then ``step()`` through the log a page at a time."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        config: CorrelatorConfig,
        *,
        start_seq: int | None = None,
    ) -> None:
        """``start_seq``: where to begin without a cursor (default: the first event of an
        alert still active, else the end of the log)."""
        self.conn = conn
        self.config = config
        self.start_seq = start_seq
        self.correlator: Correlator | None = None

    def step(self, limit: int = PAGE) -> int:
        """Group the next page of alert events; return how many were read (0: caught up)."""
        if self.correlator is None:
            self.correlator = _load(self.conn, self.config)
        corr = self.correlator
        try:
            with self.conn.transaction():
                row = self.conn.execute(
                    "SELECT seq FROM incident_cursor WHERE id = 1 FOR UPDATE"
                ).fetchone()
                if row is not None:
                    after = int(row[0])
                else:  # the first run: the cursor is kept from now on, events or not
                    after = self.start_seq if self.start_seq is not None else _start_seq(self.conn)
                    self.conn.execute(
                        "INSERT INTO incident_cursor (id, seq) VALUES (1, %s)"
                        " ON CONFLICT (id) DO NOTHING",
                        (after,),
                    )
                with self.conn.cursor(row_factory=dict_row) as cur:
                    cur.execute(
                        "SELECT seq, snapshot FROM alert_events WHERE seq > %s"
                        " AND alert_id IS NOT NULL ORDER BY seq LIMIT %s",
                        (after, limit),
                    )
                    rows = cur.fetchall()
                if not rows:
                    return 0
                for snap in _placed(self.conn, [r["snapshot"] for r in rows]):
                    corr.observe(snap)
                for inc in corr.dirty():
                    self._write(inc)
                self.conn.execute(
                    "INSERT INTO incident_cursor (id, seq) VALUES (1, %s)"
                    " ON CONFLICT (id) DO UPDATE SET seq = excluded.seq",
                    (rows[-1]["seq"],),
                )
        except BaseException:
            self.correlator = None  # memory may be ahead of the table: reload next time
            raise
        corr.settle()
        return len(rows)

    def run_until_idle(self, limit: int = PAGE) -> int:
        """Step until the log is read to its end; return the events read."""
        total = 0
        while n := self.step(limit):
            total += n
        return total

    def _write(self, inc: Incident) -> None:
        s = inc.summary()
        fields: dict[str, Any] = {
            "severity": s.severity,
            "title": s.titles.en,
            "title_vi": s.titles.vi,
            "sensors": s.sensors,
            "areas": s.areas,
            "kinds": s.kinds,
            "polygon": Jsonb({"type": "Polygon", "coordinates": [s.polygon]})
            if s.polygon
            else None,
            "peak": Jsonb(
                {"metric": s.peak.metric, "value": s.peak.value} if s.peak is not None else {}
            ),
            "alert_count": s.alert_count,
            "active_alerts": s.active_alerts,
            "first_seen": s.first_seen,
            "last_seen": s.last_seen,
            "resolved": s.resolved,
            "resolved_at": s.resolved_at,
            "escalated": escalated(inc.stored_severity, s.severity),
        }
        if inc.id is None:
            row = self.conn.execute(
                "INSERT INTO incidents (hazard, group_key, status, severity, title, title_vi,"
                " sensors, areas, kinds, polygon, peak, alert_count, active_alerts, first_seen,"
                " last_seen, opened_at, updated_at, resolved_at, resolved_by) VALUES"
                " (%(hazard)s, %(group_key)s,"
                " CASE WHEN %(resolved)s THEN 'resolved' ELSE 'open' END, %(severity)s,"
                " %(title)s, %(title_vi)s, %(sensors)s, %(areas)s, %(kinds)s, %(polygon)s,"
                " %(peak)s, %(alert_count)s, %(active_alerts)s, %(first_seen)s, %(last_seen)s,"
                " %(first_seen)s, %(last_seen)s, %(resolved_at)s,"
                " CASE WHEN %(resolved)s THEN 'system' END) RETURNING id",
                {**fields, "hazard": inc.hazard, "group_key": inc.group_key},
            ).fetchone()
            assert row is not None
            inc.id = int(row[0])
        else:
            self.conn.execute(
                "UPDATE incidents SET severity = %(severity)s, title = %(title)s,"
                " title_vi = %(title_vi)s, sensors = %(sensors)s, areas = %(areas)s,"
                " kinds = %(kinds)s, polygon = %(polygon)s, peak = %(peak)s,"
                " alert_count = %(alert_count)s, active_alerts = %(active_alerts)s,"
                " first_seen = %(first_seen)s, last_seen = %(last_seen)s,"
                " updated_at = greatest(updated_at, %(last_seen)s),"
                " status = CASE WHEN %(resolved)s THEN 'resolved'"
                "   WHEN status = 'resolved' OR (status = 'acknowledged' AND %(escalated)s)"
                "   THEN 'open' ELSE status END,"
                " resolved_at = CASE WHEN %(resolved)s THEN coalesce(resolved_at, %(resolved_at)s)"
                "   END,"
                " resolved_by = CASE WHEN %(resolved)s THEN coalesce(resolved_by, 'system') END,"
                " shelved_until = CASE WHEN %(escalated)s THEN NULL ELSE shelved_until END,"
                " shelved_by = CASE WHEN %(escalated)s THEN NULL ELSE shelved_by END"
                " WHERE id = %(id)s",
                {**fields, "id": inc.id},
            )
        inc.stored_severity = s.severity
        for other, at in inc.absorbed:  # before the new members: the event lists what moved
            self.conn.execute("SELECT ioc_incident_merged(%s, %s, %s)", (other.id, inc.id, at))
        if inc.joined:
            with self.conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO incident_alerts (incident_id, alert_id) VALUES (%s, %s)"
                    " ON CONFLICT DO NOTHING",
                    [(inc.id, aid) for aid in sorted(inc.joined)],
                )


class IncidentService:
    """A thread that becomes the correlator's leader when it can and groups while it is."""

    def __init__(
        self,
        dsn: str,
        config: CorrelatorConfig,
        *,
        poll_s: float = 0.5,
        retry_s: float = 5.0,
        name: str = "incidents",
    ) -> None:
        self.dsn = dsn
        self.config = config
        self.poll_s = poll_s
        self.retry_s = retry_s
        self.name = name
        self.leader = threading.Event()
        self.events = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
                    migrate(conn)  # safe beside the service's own (an advisory lock)
                    self._lead(conn)
            except psycopg.Error as exc:
                logger.warning("incident correlator: database error (%s); retrying", exc)
            except Exception:  # keep trying: incidents must not stop for one bad event
                logger.exception("incident correlator: unexpected error")
            finally:
                self.leader.clear()
            self._stop.wait(self.retry_s if not self._stop.is_set() else 0)

    def _lead(self, conn: psycopg.Connection[Any]) -> None:
        while not self._stop.is_set():
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK,)).fetchone()
            if row and row[0]:
                break
            self._stop.wait(self.retry_s)
        else:
            return
        self.leader.set()
        logger.info("incident correlator: leading")
        store = IncidentStore(conn, self.config)
        try:
            while not self._stop.is_set():
                n = store.step()
                self.events += n
                if n == 0:
                    self._stop.wait(self.poll_s)
        finally:
            with contextlib.suppress(psycopg.Error):
                conn.execute("SELECT pg_advisory_unlock(%s)", (LEADER_LOCK,))
            logger.info("incident correlator: no longer leading")


def start_incidents(dsn: str, config: CorrelatorConfig, enabled: bool) -> IncidentService | None:
    """The correlator's thread of an analytics process (None when switched off)."""
    if not enabled:
        return None
    service = IncidentService(dsn, config)
    service.start()
    return service


def stop_incidents(service: IncidentService | None) -> None:
    if service is not None:
        service.stop()
