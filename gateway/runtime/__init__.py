"""gateway.runtime."""
