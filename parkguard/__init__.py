"""ParkGuard: the shared heart of the car park — pure domain core, clock, errors and the CLI."""

__version__ = "0.1.0"
