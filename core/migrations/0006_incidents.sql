-- Incidents (related alerts grouped by the correlator) and maintenance windows.
-- Incident events ride on alert_events (same seq, same lock, same NOTIFY) so that a
-- websocket client resumes alerts and incidents together with no gap and no repeat.

CREATE TABLE incidents (
    id              bigserial PRIMARY KEY,
    hazard          text NOT NULL,                  -- air_pollution, flooding, traffic, fire_weather, device_fault, ...
    group_key       text NOT NULL DEFAULT '',       -- the device of a device fault
    status          text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'acknowledged', 'resolved')),
    severity        text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    title           text NOT NULL,                  -- plain words, English
    title_vi        text NOT NULL,                  -- plain words, Vietnamese
    sensors         text[] NOT NULL DEFAULT '{}',
    areas           text[] NOT NULL DEFAULT '{}',   -- the districts, wards or communes its sensors announce
    kinds           text[] NOT NULL DEFAULT '{}',
    polygon         jsonb,                          -- GeoJSON Polygon around its sensors (lon, lat)
    peak            jsonb NOT NULL DEFAULT '{}',    -- {metric, value, unit} of its worst alert
    alert_count     integer NOT NULL DEFAULT 0,
    active_alerts   integer NOT NULL DEFAULT 0,     -- open or acknowledged
    first_seen      timestamptz NOT NULL,
    last_seen       timestamptz NOT NULL,
    opened_at       timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    acknowledged_at timestamptz,
    acknowledged_by text,
    resolved_at     timestamptz,
    resolved_by     text,
    shelved_until   timestamptz,                    -- an operator shelved it until then
    shelved_by      text
);
CREATE INDEX incidents_status_idx ON incidents (status, last_seen DESC);
CREATE INDEX incidents_sensors_idx ON incidents USING gin (sensors);

CREATE TABLE incident_alerts (
    incident_id bigint NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    alert_id    bigint NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    joined_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (incident_id, alert_id)
);
CREATE INDEX incident_alerts_alert_idx ON incident_alerts (alert_id);

-- the correlator's place in alert_events, written in the transaction of its changes
CREATE TABLE incident_cursor (
    id  integer PRIMARY KEY CHECK (id = 1),
    seq bigint NOT NULL
);

ALTER TABLE alert_events ALTER COLUMN alert_id DROP NOT NULL;
ALTER TABLE alert_events ADD COLUMN incident_id bigint REFERENCES incidents (id) ON DELETE CASCADE;
ALTER TABLE alert_events ADD CONSTRAINT alert_events_one_subject
    CHECK ((alert_id IS NULL) <> (incident_id IS NULL));
CREATE INDEX alert_events_incident_idx ON alert_events (incident_id, seq) WHERE incident_id IS NOT NULL;
CREATE INDEX alert_events_time_idx ON alert_events (time);   -- the operator-load report

CREATE FUNCTION ioc_incident_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    act  text;
    seqv bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(727001);   -- the lock of every alert_events writer
    IF TG_OP = 'INSERT' THEN
        act := 'opened';
    ELSIF NEW.status IS DISTINCT FROM OLD.status THEN
        act := CASE NEW.status WHEN 'open' THEN 'reopened' ELSE NEW.status END;
    ELSIF NEW.severity IS DISTINCT FROM OLD.severity THEN
        act := CASE WHEN (NEW.severity = 'critical' OR (NEW.severity = 'warning' AND OLD.severity = 'info'))
                    THEN 'escalated' ELSE 'deescalated' END;
    ELSE
        act := 'updated';
    END IF;
    INSERT INTO alert_events (incident_id, action, actor, note, snapshot)
    VALUES (NEW.id, act,
            coalesce(nullif(current_setting('ioc.actor', true), ''), 'system'),
            nullif(current_setting('ioc.note', true), ''),
            to_jsonb(NEW))
    RETURNING seq INTO seqv;
    PERFORM pg_notify('ioc_alerts', seqv::text);
    RETURN NULL;
END $$;

CREATE TRIGGER incidents_events_insert AFTER INSERT ON incidents
    FOR EACH ROW EXECUTE FUNCTION ioc_incident_event();
CREATE TRIGGER incidents_events_update AFTER UPDATE ON incidents
    FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*) EXECUTE FUNCTION ioc_incident_event();

-- Maintenance (out of service): sensors, districts or sensor kinds, from start to end.
CREATE TABLE maintenance_windows (
    id           bigserial PRIMARY KEY,
    sensors      text[] NOT NULL DEFAULT '{}',
    areas        text[] NOT NULL DEFAULT '{}',
    kinds        text[] NOT NULL DEFAULT '{}',
    starts_at    timestamptz NOT NULL,
    ends_at      timestamptz NOT NULL,
    reason       text NOT NULL,
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    cancelled_at timestamptz,
    cancelled_by text,
    CHECK (ends_at > starts_at)
);
CREATE INDEX maintenance_windows_ends_idx ON maintenance_windows (ends_at) WHERE cancelled_at IS NULL;

-- every change of a maintenance window, with who made it
CREATE TABLE maintenance_events (
    seq       bigserial PRIMARY KEY,
    window_id bigint NOT NULL REFERENCES maintenance_windows (id) ON DELETE CASCADE,
    time      timestamptz NOT NULL DEFAULT clock_timestamp(),
    action    text NOT NULL,   -- created, cancelled
    actor     text NOT NULL,
    snapshot  jsonb NOT NULL
);

-- An alert raised (or updated) while its sensor, district or kind is in maintenance is
-- recorded as suppressed: stored and audited, but neither shown nor notified.  The check
-- sits on the insert path itself, so every analytics partition and every writer obeys it
-- at once, with no cache to refresh.  The reading's time (updated_at) decides.
-- An operator may shelve an alert until a time; it comes back at once if it gets worse.
ALTER TABLE alerts ADD COLUMN suppressed_by bigint;   -- the maintenance window, or NULL
ALTER TABLE alerts ADD COLUMN shelved_until timestamptz;
ALTER TABLE alerts ADD COLUMN shelved_by text;

CREATE FUNCTION ioc_alert_suppression() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.shelved_until IS NOT NULL AND (
        (NEW.status = 'open' AND OLD.status = 'resolved')
        OR (NEW.severity = 'critical' AND OLD.severity <> 'critical')
        OR (NEW.severity = 'warning' AND OLD.severity = 'info')) THEN
        NEW.shelved_until := NULL;   -- worse (or back): shelving ends at once
        NEW.shelved_by := NULL;
    END IF;
    IF NEW.status = 'resolved' THEN
        RETURN NEW;
    END IF;
    NEW.suppressed_by := (
        SELECT w.id FROM maintenance_windows w
        WHERE w.cancelled_at IS NULL AND w.starts_at <= NEW.updated_at AND w.ends_at > NEW.updated_at
          AND (NEW.sensor = ANY (w.sensors) OR NEW.area = ANY (w.areas) OR NEW.kind = ANY (w.kinds))
        ORDER BY w.id LIMIT 1);
    RETURN NEW;
END $$;

CREATE TRIGGER alerts_suppression BEFORE INSERT OR UPDATE ON alerts
    FOR EACH ROW EXECUTE FUNCTION ioc_alert_suppression();
CREATE INDEX alerts_suppressed_idx ON alerts (suppressed_by) WHERE suppressed_by IS NOT NULL;
