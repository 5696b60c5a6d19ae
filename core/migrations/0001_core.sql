-- The shared schema: sensors, their status, dead letters, alerts and their audit trail, tokens.
-- This is a documented contract for analysts and SQL tools: see README "Storage".

CREATE TABLE sensors (
    id            text PRIMARY KEY,                 -- the sensor id as in its topic
    kind          text NOT NULL,                    -- traffic_camera, air_quality, ...
    name          text NOT NULL DEFAULT '',
    lat           double precision,
    lon           double precision,
    area          text NOT NULL DEFAULT '',         -- district, e.g. 'Hoàn Kiếm'
    metrics       text[] NOT NULL DEFAULT '{}',
    interval_s    double precision,                 -- announced reporting interval
    attributes    jsonb NOT NULL DEFAULT '{}',
    source        text NOT NULL DEFAULT 'meta'      -- meta (self-registered), auto, api
                  CHECK (source IN ('meta', 'auto', 'api')),
    status        text NOT NULL DEFAULT 'unknown'   -- last status seen on .../status
                  CHECK (status IN ('online', 'offline', 'unknown')),
    status_at     timestamptz,
    last_seen_at  timestamptz,                      -- time of the newest reading stored
    registered_at timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sensors_kind_idx ON sensors (kind);
CREATE INDEX sensors_area_idx ON sensors (area);

-- every online/offline change a device (or its Last Will) announced
CREATE TABLE sensor_status (
    sensor text NOT NULL,
    time   timestamptz NOT NULL,
    status text NOT NULL CHECK (status IN ('online', 'offline')),
    PRIMARY KEY (sensor, time)
);

-- every message that could not (fully) become readings, with its raw bytes
CREATE TABLE dead_letters (
    id          bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    topic       text NOT NULL,
    payload     bytea NOT NULL,
    code        text NOT NULL,         -- stable reason code, e.g. out_of_range
    reason      text NOT NULL,         -- a sentence a person can read
    rejected    jsonb,                 -- per-entry rejections of a partly accepted pack
    accepted    integer NOT NULL DEFAULT 0  -- entries of the same message that were stored
);
CREATE INDEX dead_letters_received_idx ON dead_letters (received_at);
CREATE INDEX dead_letters_code_idx ON dead_letters (code, received_at);

CREATE TABLE alerts (
    id              bigserial PRIMARY KEY,
    sensor          text NOT NULL,
    metric          text NOT NULL,
    rule            text NOT NULL,       -- e.g. water_level.critical, seasonal, camera_multivariate
    detector        text NOT NULL,
    kind            text NOT NULL,       -- the sensor's kind
    alert_class     text NOT NULL CHECK (alert_class IN ('incident', 'probable_fault', 'threshold', 'device')),
    severity        text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    status          text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'acknowledged', 'resolved')),
    message         text NOT NULL,
    value           double precision,
    expected_low    double precision,
    expected_high   double precision,
    score           double precision,
    evidence        jsonb NOT NULL DEFAULT '{}',
    lat             double precision,
    lon             double precision,
    area            text NOT NULL DEFAULT '',
    opened_at       timestamptz NOT NULL DEFAULT now(),   -- time of the reading that opened it
    updated_at      timestamptz NOT NULL DEFAULT now(),
    acknowledged_at timestamptz,
    acknowledged_by text,
    resolved_at     timestamptz,
    resolved_by     text,
    occurrences     integer NOT NULL DEFAULT 1
);
-- one open (or acknowledged) alert per sensor, metric and rule: repeats update it
CREATE UNIQUE INDEX alerts_one_active_idx ON alerts (sensor, metric, rule) WHERE status <> 'resolved';
CREATE INDEX alerts_status_idx ON alerts (status, severity, opened_at DESC);
CREATE INDEX alerts_opened_idx ON alerts (opened_at DESC);
CREATE INDEX alerts_sensor_idx ON alerts (sensor, opened_at DESC);

-- every change of every alert, in commit order: the audit trail and the websocket's resume log
CREATE TABLE alert_events (
    seq      bigserial PRIMARY KEY,
    alert_id bigint NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    time     timestamptz NOT NULL DEFAULT clock_timestamp(),
    action   text NOT NULL,   -- opened, updated, escalated, deescalated, acknowledged, resolved, reopened, commented
    actor    text NOT NULL DEFAULT 'system',
    note     text,
    snapshot jsonb NOT NULL   -- the alert row after the change
);
CREATE INDEX alert_events_alert_idx ON alert_events (alert_id, seq);

-- Writers of alert_events take this lock first, so that seq order is commit order:
-- a client that saw seq N and asks for seq > N can never miss a later-committed N-1.
CREATE FUNCTION ioc_alert_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    act  text;
    seqv bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(727001);
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
    INSERT INTO alert_events (alert_id, action, actor, note, snapshot)
    VALUES (NEW.id, act,
            coalesce(nullif(current_setting('ioc.actor', true), ''), 'system'),
            nullif(current_setting('ioc.note', true), ''),
            to_jsonb(NEW))
    RETURNING seq INTO seqv;
    PERFORM pg_notify('ioc_alerts', seqv::text);
    RETURN NULL;
END $$;

CREATE TRIGGER alerts_events_insert AFTER INSERT ON alerts
    FOR EACH ROW EXECUTE FUNCTION ioc_alert_event();
CREATE TRIGGER alerts_events_update AFTER UPDATE ON alerts
    FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*) EXECUTE FUNCTION ioc_alert_event();

-- a comment is an event without a change of the alert
CREATE FUNCTION ioc_alert_comment(p_alert bigint, p_actor text, p_note text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    seqv bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(727001);
    INSERT INTO alert_events (alert_id, action, actor, note, snapshot)
    SELECT a.id, 'commented', p_actor, p_note, to_jsonb(a) FROM alerts a WHERE a.id = p_alert
    RETURNING seq INTO seqv;
    IF seqv IS NOT NULL THEN
        PERFORM pg_notify('ioc_alerts', seqv::text);
    END IF;
    RETURN seqv;
END $$;

CREATE TABLE api_tokens (
    id           bigserial PRIMARY KEY,
    name         text NOT NULL,
    role         text NOT NULL CHECK (role IN ('operator', 'analyst', 'engineer', 'admin')),
    token_hash   text NOT NULL UNIQUE,   -- sha256 of the token; the token itself is never stored
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   text,
    revoked_at   timestamptz,
    last_used_at timestamptz
);

-- detector checkpoints, so that analytics survives a restart warm
CREATE TABLE analytics_state (
    name       text PRIMARY KEY,
    state      bytea NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
