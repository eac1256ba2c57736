# Seams to the hardware that is not a pin: Wi-Fi, the watchdog, the clock source.
# On the unix port there is no `network` module: Wi-Fi is a no-op and the host clock is used.
import time

import machine


class _NoWatchdog:
    def feed(self):
        pass


def watchdog(timeout_ms):
    """machine.WDT on the Pico (at most 8388 ms on the RP2040); 0 disables it."""
    if not timeout_ms:
        return _NoWatchdog()
    return machine.WDT(timeout=min(int(timeout_ms), 8388))


_wlan = None


def wifi_join(wifi, wdt, timeout_ms=20000):
    """Join the site Wi-Fi (Pico W). True when up, or when this port has no Wi-Fi."""
    global _wlan
    try:
        import network
    except ImportError:
        return True  # unix port: the host's network is already there
    if not wifi:
        return True
    if _wlan is None:
        try:
            import rp2

            rp2.country(wifi.get("country", "CN"))
        except (ImportError, AttributeError):
            pass
        _wlan = network.WLAN(network.STA_IF)
        _wlan.active(True)
        try:
            _wlan.config(pm=0xA11140)  # power-save off: MQTT latency over battery life
        except (ValueError, OSError):
            pass
    if _wlan.isconnected():
        return True
    _wlan.connect(wifi["ssid"], wifi.get("password", ""))
    start = time.ticks_ms()
    while not _wlan.isconnected():
        wdt.feed()
        if time.ticks_diff(time.ticks_ms(), start) > timeout_ms:
            print("wifi: no connection to", wifi["ssid"])
            return False
        time.sleep_ms(100)
    print("wifi: joined", wifi["ssid"], _wlan.ifconfig()[0])
    _sync_clock(wifi.get("ntp"))
    return True


def _sync_clock(host):
    try:
        import ntptime
    except ImportError:
        return
    if host:
        ntptime.host = host
    try:
        ntptime.settime()  # the RTC keeps UTC; readings carry UTC timestamps
    except (OSError, OverflowError) as exc:
        print("ntp: clock not set:", exc)
