"""gateway.safety."""
