"""Bronze: what arrived on Kafka, stored exactly once (one module per stream, one ingest path)."""
