"""Streaming anomaly detection and the alert lifecycle."""
