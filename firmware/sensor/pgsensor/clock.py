# Wall-clock helpers. On the Pico W the RTC is set from NTP after Wi-Fi joins (board.py);
# on the unix port time.time_ns() is the host clock. Loop timing uses ticks_ms, never this.
import time


def utc_iso():
    """UTC now as ISO-8601 with milliseconds, e.g. 2026-05-01T02:00:00.120Z."""
    ns = time.time_ns()
    secs = ns // 1000000000
    ms = (ns // 1000000) % 1000
    t = time.gmtime(secs)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (t[0], t[1], t[2], t[3], t[4], t[5], ms)
