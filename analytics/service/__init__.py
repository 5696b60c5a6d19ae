"""The live service: MQTT in, micro-batches through the pipeline, alerts and checkpoints out."""
