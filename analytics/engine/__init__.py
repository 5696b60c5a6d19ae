"""The analytics engine: the stage protocol, per-slot state, time buckets and the pipeline."""
