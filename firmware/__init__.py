"""Code that runs on the devices.

``firmware.lane`` is CPython on a Pi; ``firmware/sensor`` is MicroPython, not a package.
"""
