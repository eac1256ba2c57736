"""firmware.lane.devices."""
