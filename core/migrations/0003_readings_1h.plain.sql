-- hourly rollup view on plain PostgreSQL (computed on read; TimescaleDB has a continuous aggregate)
CREATE VIEW readings_1h AS
SELECT date_bin('1 hour', time, TIMESTAMPTZ '2000-01-01') AS bucket, sensor, metric,
       avg(value) AS avg, min(value) AS min, max(value) AS max, count(*) AS count,
       (array_agg(value ORDER BY time DESC))[1] AS last
FROM readings GROUP BY 1, 2, 3;
