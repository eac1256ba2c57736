"""gateway.records."""
