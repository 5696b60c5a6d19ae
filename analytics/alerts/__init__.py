"""What happens to signals: spatial corroboration and the alert lifecycle in the database."""
