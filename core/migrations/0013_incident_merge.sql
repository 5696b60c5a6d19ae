-- Incident merge: an alert that bridges two open incidents of one hazard makes them one.
-- The older incident survives and takes the other's alerts; the absorbed one is closed
-- (status resolved, so it leaves every open list and count) and names the survivor in
-- merged_into.  The merge is one audited 'merged' event of the absorbed incident on
-- alert_events (same seq, lock and NOTIFY as every other event), written by
-- ioc_incident_merged() -- the twin of ioc_incident_notified(): an action the row change
-- alone cannot name.  Every other change keeps its word from ioc_change_action() in the
-- unchanged ioc_incident_event() trigger, which skips the merge's own row change so the log
-- holds exactly one event for it.  See docs/incidents.md.

ALTER TABLE incidents ADD COLUMN merged_into bigint REFERENCES incidents (id) ON DELETE SET NULL;
CREATE INDEX incidents_merged_into_idx ON incidents (merged_into) WHERE merged_into IS NOT NULL;

DROP TRIGGER incidents_events_update ON incidents;
CREATE TRIGGER incidents_events_update AFTER UPDATE ON incidents
    FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.* AND NEW.merged_into IS NOT DISTINCT FROM OLD.merged_into)
    EXECUTE FUNCTION ioc_incident_event();

-- Close p_absorbed as merged into p_survivor at p_at (the bridging alert's time): its member
-- alerts move to the survivor, it is resolved (by the transaction's actor, else 'system')
-- and one 'merged' event records it, with detail {"into": survivor, "alerts": [the alert ids it handed over]}.
-- Returns the event's seq, or NULL when p_absorbed was already closed (nothing happens).
CREATE FUNCTION ioc_incident_merged(
    p_absorbed bigint, p_survivor bigint, p_at timestamptz DEFAULT now()
) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    actor text := coalesce(nullif(current_setting('ioc.actor', true), ''), 'system');
    moved bigint[];
    seqv  bigint;
BEGIN
    IF p_absorbed = p_survivor THEN
        RAISE EXCEPTION 'incident % cannot be merged into itself', p_absorbed;
    END IF;
    PERFORM pg_advisory_xact_lock(727001);
    UPDATE incidents SET status = 'resolved', merged_into = p_survivor, active_alerts = 0,
           alert_count = 0, resolved_at = p_at,
           resolved_by = actor,
           updated_at = greatest(updated_at, p_at)
    WHERE id = p_absorbed AND merged_into IS NULL AND status <> 'resolved';
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    WITH m AS (
        UPDATE incident_alerts SET incident_id = p_survivor
        WHERE incident_id = p_absorbed
          AND alert_id NOT IN (SELECT alert_id FROM incident_alerts WHERE incident_id = p_survivor)
        RETURNING alert_id)
    SELECT coalesce(array_agg(alert_id ORDER BY alert_id), '{}') INTO moved FROM m;
    DELETE FROM incident_alerts WHERE incident_id = p_absorbed;
    INSERT INTO alert_events (incident_id, action, actor, note, snapshot, detail)
    SELECT i.id, 'merged', actor, nullif(current_setting('ioc.note', true), ''), to_jsonb(i),
           jsonb_build_object('into', p_survivor, 'alerts', to_jsonb(moved))
    FROM incidents i WHERE i.id = p_absorbed
    RETURNING seq INTO seqv;
    PERFORM pg_notify('ioc_alerts', seqv::text);
    RETURN seqv;
END $$;
