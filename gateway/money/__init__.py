"""gateway.money."""
