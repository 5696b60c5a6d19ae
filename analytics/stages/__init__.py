"""The pipeline stages: rules, series, health (with consistency), AQI, fire risk, camera; their registry."""
