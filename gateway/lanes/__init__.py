"""gateway.lanes."""
