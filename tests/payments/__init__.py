"""Real payment providers against local servers that speak their wire protocols."""
