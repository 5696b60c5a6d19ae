"""What happens to signals: spatial corroboration, the alert lifecycle in the database, and
the incident correlator that groups related alerts (hazards, geometry, texts)."""
