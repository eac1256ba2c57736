"""The fleet: many sites run from one place (docs/fleet.md).

Each site's Mosquitto bridges ``parkguard/v1/{site}/…`` to the MQTT listener of a NATS
cluster; a JetStream stream keeps every subject ``parkguard.v1.>``; the fleet service
(``parkguard fleet run``) reads the stream through a durable pull consumer into PostgreSQL,
once per event id. This package is a layer beside ``gateway``: it imports ``wire``,
``broker`` and the kernel, never the gateway or the simulator.
"""
