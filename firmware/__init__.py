"""Code that runs on the devices: ``firmware.lane`` (CPython on a Pi); ``firmware/sensor`` is MicroPython."""
