"""The ingest part: MQTT readings into PostgreSQL/TimescaleDB, acknowledged only once stored."""
