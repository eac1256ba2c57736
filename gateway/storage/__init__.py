"""gateway.storage."""
