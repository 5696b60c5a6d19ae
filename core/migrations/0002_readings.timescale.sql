-- readings on TimescaleDB: a hypertable with daily chunks, compression and retention.

CREATE TABLE readings (
    time   timestamptz NOT NULL,
    sensor text NOT NULL,
    metric text NOT NULL,
    value  double precision NOT NULL
);
SELECT create_hypertable('readings', by_range('time', INTERVAL '1 day'));
CREATE UNIQUE INDEX readings_sensor_metric_time ON readings (sensor, metric, time);

ALTER TABLE readings SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'sensor, metric',
    timescaledb.compress_orderby = 'time DESC'
);
SELECT add_compression_policy('readings', INTERVAL '7 days');
SELECT add_retention_policy('readings', INTERVAL '365 days');

-- same maintenance entry points as on plain PostgreSQL: chunks are created on demand
CREATE FUNCTION ioc_ensure_partitions(p_from timestamptz, p_to timestamptz) RETURNS integer
LANGUAGE sql AS $$ SELECT 0 $$;

CREATE FUNCTION ioc_drop_partitions(p_older_than timestamptz) RETURNS integer
LANGUAGE sql AS $$ SELECT count(*)::integer FROM drop_chunks('readings', older_than => p_older_than) $$;

CREATE FUNCTION ioc_maintain(p_back interval, p_ahead interval, p_retention interval)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    dropped integer;
BEGIN
    dropped := ioc_drop_partitions(now() - p_retention);
    RETURN format('chunks dropped %s', dropped);
END $$;
