-- Notifications of incidents: the outbox and the escalation state name an alert or an
-- incident; an escalation step of an incident is an audited 'notified' event of the
-- incident; shelving is recorded with its own action words (shelved, unshelved).
-- See docs/notifications.md.

ALTER TABLE notifications ALTER COLUMN alert_id DROP NOT NULL;
ALTER TABLE notifications ADD COLUMN incident_id bigint REFERENCES incidents (id) ON DELETE CASCADE;
ALTER TABLE notifications ADD CONSTRAINT notifications_one_subject
    CHECK ((alert_id IS NULL) <> (incident_id IS NULL));
CREATE INDEX notifications_incident_idx ON notifications (incident_id, id) WHERE incident_id IS NOT NULL;

ALTER TABLE notify_escalations DROP CONSTRAINT notify_escalations_pkey;
ALTER TABLE notify_escalations ALTER COLUMN alert_id DROP NOT NULL;
ALTER TABLE notify_escalations ADD COLUMN incident_id bigint REFERENCES incidents (id) ON DELETE CASCADE;
ALTER TABLE notify_escalations ADD CONSTRAINT notify_escalations_one_subject
    CHECK ((alert_id IS NULL) <> (incident_id IS NULL));
CREATE UNIQUE INDEX notify_escalations_alert_key ON notify_escalations (alert_id, policy) WHERE alert_id IS NOT NULL;
CREATE UNIQUE INDEX notify_escalations_incident_key ON notify_escalations (incident_id, policy) WHERE incident_id IS NOT NULL;

-- an escalation step or reminder of an incident (the twin of ioc_alert_notified)
CREATE FUNCTION ioc_incident_notified(p_incident bigint, p_note text, p_detail jsonb) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    seqv bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(727001);
    INSERT INTO alert_events (incident_id, action, actor, note, snapshot, detail)
    SELECT i.id, 'notified', 'notify', p_note, to_jsonb(i), p_detail FROM incidents i WHERE i.id = p_incident
    RETURNING seq INTO seqv;
    IF seqv IS NOT NULL THEN
        PERFORM pg_notify('ioc_alerts', seqv::text);
    END IF;
    RETURN seqv;
END $$;

-- the action word of a change: a change of shelving alone is 'shelved' or 'unshelved'
-- (before, 'updated'); status and severity changes keep their words.  One function for
-- alerts and incidents, so both speak the same action words.
CREATE OR REPLACE FUNCTION ioc_change_action(
    op text, new_status text, old_status text, new_severity text, old_severity text,
    new_shelved timestamptz, old_shelved timestamptz
) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN op = 'INSERT' THEN 'opened'
        WHEN new_status IS DISTINCT FROM old_status THEN
            CASE new_status WHEN 'open' THEN 'reopened' ELSE new_status END
        WHEN new_severity IS DISTINCT FROM old_severity THEN
            CASE WHEN new_severity = 'critical' OR (new_severity = 'warning' AND old_severity = 'info')
                 THEN 'escalated' ELSE 'deescalated' END
        WHEN new_shelved IS DISTINCT FROM old_shelved THEN
            CASE WHEN new_shelved IS NULL THEN 'unshelved' ELSE 'shelved' END
        ELSE 'updated'
    END
$$;

CREATE OR REPLACE FUNCTION ioc_alert_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    act  text;
    seqv bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(727001);
    act := ioc_change_action(TG_OP, NEW.status, OLD.status, NEW.severity, OLD.severity,
                             NEW.shelved_until, OLD.shelved_until);
    INSERT INTO alert_events (alert_id, action, actor, note, snapshot)
    VALUES (NEW.id, act,
            coalesce(nullif(current_setting('ioc.actor', true), ''), 'system'),
            nullif(current_setting('ioc.note', true), ''),
            to_jsonb(NEW))
    RETURNING seq INTO seqv;
    PERFORM pg_notify('ioc_alerts', seqv::text);
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION ioc_incident_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    act  text;
    seqv bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(727001);
    act := ioc_change_action(TG_OP, NEW.status, OLD.status, NEW.severity, OLD.severity,
                             NEW.shelved_until, OLD.shelved_until);
    INSERT INTO alert_events (incident_id, action, actor, note, snapshot)
    VALUES (NEW.id, act,
            coalesce(nullif(current_setting('ioc.actor', true), ''), 'system'),
            nullif(current_setting('ioc.note', true), ''),
            to_jsonb(NEW))
    RETURNING seq INTO seqv;
    PERFORM pg_notify('ioc_alerts', seqv::text);
    RETURN NULL;
END $$;
