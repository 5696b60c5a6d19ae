-- Hours that received readings after they had closed (late, replayed or backfilled data):
-- writers mark them with ioc_mark_late(); the API's hourly rollup (api_readings_1h) rolls
-- them again, and reads them from raw readings until it has.
CREATE TABLE readings_1h_stale (
    bucket    timestamptz PRIMARY KEY,   -- the hour's start (date_bin from 2000-01-01 UTC)
    marked_at timestamptz NOT NULL DEFAULT now()
);

-- mark the hours of the given reading times; returns the number of new marks
CREATE FUNCTION ioc_mark_late(p_times timestamptz[]) RETURNS integer LANGUAGE sql AS $$
    WITH marked AS (
        INSERT INTO readings_1h_stale (bucket)
        SELECT DISTINCT date_bin('1 hour', t, TIMESTAMPTZ '2000-01-01 00:00:00+00')
        FROM unnest(p_times) t WHERE t IS NOT NULL
        ON CONFLICT (bucket) DO NOTHING
        RETURNING 1)
    SELECT count(*)::integer FROM marked
$$;
