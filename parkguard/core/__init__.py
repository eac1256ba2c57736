"""Pure domain core: no MQTT, GPIO, SQLite or camera; time comes in as arguments.

Imported by both the lane and the gateway so that both give the same answer.
"""
