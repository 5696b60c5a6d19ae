-- Notifications: consumer cursors over alert_events, the outbox, routes kept through the
-- API, and escalation state.  See docs/notifications.md.

-- how far each consumer of the committed event log has got (mqtt relay, notify planner);
-- a consumer locks its row (FOR UPDATE SKIP LOCKED) while it works, so that several
-- processes running the same consumer never handle an event twice at the same time
CREATE TABLE event_cursors (
    name       text PRIMARY KEY,
    seq        bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- an existing installation starts from now: history is neither re-published nor notified
INSERT INTO event_cursors (name, seq)
SELECT n, coalesce((SELECT max(seq) FROM alert_events), 0)
FROM unnest(ARRAY['mqtt', 'notify']) AS n;

-- the outbox: one row per (event or escalation step, route, channel), keyed idempotently
CREATE TABLE notifications (
    id              bigserial PRIMARY KEY,
    idempotency_key text NOT NULL UNIQUE,
    alert_id        bigint NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    event_seq       bigint,                 -- the event that caused it (NULL: a reminder)
    reason          text NOT NULL CHECK (reason IN ('event', 'escalation', 'reminder')),
    route           text NOT NULL,          -- route or escalation policy name
    step            integer NOT NULL DEFAULT 0,
    channel         text NOT NULL,          -- the target with its secrets masked (shown)
    target          text NOT NULL,          -- the target itself (never shown by the API)
    lang            text NOT NULL DEFAULT 'vi',
    body            text NOT NULL,          -- the JSON document, fixed at planning time
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'sent', 'dead')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    sent_at         timestamptz
);
CREATE INDEX notifications_due_idx ON notifications (next_attempt_at) WHERE status = 'pending';
CREATE INDEX notifications_alert_idx ON notifications (alert_id, id);

-- routes and escalation policies managed through the admin API (beside the routes file)
CREATE TABLE notify_routes (
    name       text PRIMARY KEY,
    type       text NOT NULL DEFAULT 'route' CHECK (type IN ('route', 'escalation')),
    spec       jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL DEFAULT 'system'
);

-- an alert waiting for acknowledgement under an escalation policy
CREATE TABLE notify_escalations (
    alert_id   bigint NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    policy     text NOT NULL,
    step       integer NOT NULL DEFAULT 0,   -- steps already taken
    reminders  integer NOT NULL DEFAULT 0,   -- reminders already sent after the last step
    started_at timestamptz NOT NULL DEFAULT now(),
    next_at    timestamptz NOT NULL,
    PRIMARY KEY (alert_id, policy)
);
CREATE INDEX notify_escalations_next_idx ON notify_escalations (next_at);

-- what a 'notified' event did (policy, escalation or reminder, its number), for the planner
ALTER TABLE alert_events ADD COLUMN detail jsonb;

-- an escalation step or reminder as an audited event of the alert (action 'notified');
-- callers do this last in their transaction: it takes the alert writers' lock
CREATE FUNCTION ioc_alert_notified(p_alert bigint, p_note text, p_detail jsonb) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    seqv bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(727001);
    INSERT INTO alert_events (alert_id, action, actor, note, snapshot, detail)
    SELECT a.id, 'notified', 'notify', p_note, to_jsonb(a), p_detail FROM alerts a WHERE a.id = p_alert
    RETURNING seq INTO seqv;
    IF seqv IS NOT NULL THEN
        PERFORM pg_notify('ioc_alerts', seqv::text);
    END IF;
    RETURN seqv;
END $$;
