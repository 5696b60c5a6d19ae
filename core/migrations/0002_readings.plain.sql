-- readings on plain PostgreSQL: native range partitions by day, created ahead and
-- dropped by retention through ioc_maintain().

CREATE TABLE readings (
    time   timestamptz NOT NULL,
    sensor text NOT NULL,
    metric text NOT NULL,
    value  double precision NOT NULL,
    PRIMARY KEY (sensor, metric, time)   -- a duplicate (sensor, metric, time) is stored once
) PARTITION BY RANGE (time);
CREATE INDEX readings_time_brin ON readings USING brin (time);

CREATE FUNCTION ioc_ensure_partitions(p_from timestamptz, p_to timestamptz) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    d    date := (p_from AT TIME ZONE 'UTC')::date;
    last date := (p_to AT TIME ZONE 'UTC')::date;
    n    integer := 0;
    part text;
BEGIN
    PERFORM pg_advisory_xact_lock(727002);
    WHILE d <= last LOOP
        part := 'readings_p' || to_char(d, 'YYYYMMDD');
        IF to_regclass(part) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF readings FOR VALUES FROM (%L) TO (%L)',
                           part, d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC');
            n := n + 1;
        END IF;
        d := d + 1;
    END LOOP;
    RETURN n;
END $$;

CREATE FUNCTION ioc_drop_partitions(p_older_than timestamptz) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    part record;
    n    integer := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(727002);
    FOR part IN
        SELECT c.relname FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'readings'::regclass AND c.relname ~ '^readings_p[0-9]{8}$'
    LOOP
        IF (to_date(substr(part.relname, 11), 'YYYYMMDD') + 1)::timestamp AT TIME ZONE 'UTC' <= p_older_than THEN
            EXECUTE format('DROP TABLE %I', part.relname);
            n := n + 1;
        END IF;
    END LOOP;
    RETURN n;
END $$;

-- create partitions for [now - back, now + ahead], drop those wholly older than retention
CREATE FUNCTION ioc_maintain(p_back interval, p_ahead interval, p_retention interval)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    made    integer;
    dropped integer;
BEGIN
    made := ioc_ensure_partitions(now() - least(p_back, p_retention), now() + p_ahead);
    dropped := ioc_drop_partitions(now() - p_retention);
    RETURN format('partitions created %s, dropped %s', made, dropped);
END $$;

SELECT ioc_ensure_partitions(now() - interval '31 days', now() + interval '7 days');
