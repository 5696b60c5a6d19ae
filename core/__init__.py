"""The shared contract: domain types, metric catalogue, topics, codecs, settings, errors, schema."""
