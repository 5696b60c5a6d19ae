-- ioc:autocommit
-- hourly continuous aggregate, refreshed in the background
CREATE MATERIALIZED VIEW readings_1h WITH (timescaledb.continuous) AS
SELECT time_bucket(INTERVAL '1 hour', time) AS bucket, sensor, metric,
       avg(value) AS avg, min(value) AS min, max(value) AS max, count(*) AS count,
       last(value, time) AS last
FROM readings GROUP BY 1, 2, 3
WITH NO DATA;
SELECT add_continuous_aggregate_policy('readings_1h',
    start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '30 minutes');
