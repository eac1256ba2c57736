"""Patrol rounds at the gateway: the desk that checks taps, and the compliance reports."""
