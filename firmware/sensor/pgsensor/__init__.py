# ParkGuard sensor-node runtime (MicroPython on the Raspberry Pi Pico W; unix port in CI).
VERSION = "0.1.0"
