"""Notifications: the MQTT relay of the alert event log, routing, the outbox and its dispatcher."""
