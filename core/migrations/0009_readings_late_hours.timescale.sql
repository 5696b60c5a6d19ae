-- TimescaleDB tracks late rows itself (the continuous aggregate's invalidation log), so
-- ioc_mark_late() has nothing to do here; the hourly aggregate answers with real-time
-- aggregation above what is materialised, and its policy refreshes the invalidated
-- buckets (as far back as readings are accepted) every 5 minutes instead of 30.
CREATE TABLE readings_1h_stale (
    bucket    timestamptz PRIMARY KEY,
    marked_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION ioc_mark_late(p_times timestamptz[]) RETURNS integer LANGUAGE sql AS $$
    SELECT 0
$$;

ALTER MATERIALIZED VIEW readings_1h SET (timescaledb.materialized_only = false);
SELECT remove_continuous_aggregate_policy('readings_1h', if_exists => true);
SELECT add_continuous_aggregate_policy('readings_1h', start_offset => INTERVAL '31 days',
    end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '5 minutes');
