-- An alert's updated_at never goes back, and an operator's change (acknowledge, resolve)
-- moves it to at least the time of that change: clients polling alerts?since=... see
-- every change, even when the readings' own time (a replay, a simulation) runs behind.
CREATE FUNCTION ioc_alert_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := greatest(NEW.updated_at, OLD.updated_at,
                               NEW.acknowledged_at, NEW.resolved_at);
    RETURN NEW;
END $$;

CREATE TRIGGER alerts_updated_at BEFORE UPDATE ON alerts
    FOR EACH ROW EXECUTE FUNCTION ioc_alert_updated_at();

