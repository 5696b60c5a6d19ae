-- retention is applied by ioc_maintain() from IOC_RETENTION_DAYS, not by a fixed policy;
-- the hourly aggregate refreshes as far back as late readings are accepted (IOC_MAX_AGE_DAYS).
SELECT remove_retention_policy('readings', if_exists => true);
SELECT remove_continuous_aggregate_policy('readings_1h', if_exists => true);
SELECT add_continuous_aggregate_policy('readings_1h', start_offset => INTERVAL '31 days',
    end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '30 minutes');
