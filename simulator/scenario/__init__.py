"""Scenario engine: a TOML file of traffic, drivers and faults, played on a simulated site
and checked against the invariants (``docs/scenarios.md``)."""
