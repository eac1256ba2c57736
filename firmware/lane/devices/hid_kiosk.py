"""The kiosk's USB keypad and scanner as ``[kiosk] keypad`` and ``scanner`` name them.

``parkguard lane`` calls :func:`kiosk_devices`; the node starts them and reports a device that
is missing or unplugged as a ``fault`` event (``kiosk_device_lost``, then a
``fault_cleared`` with that code when it is back), and keeps looking for it: a lane never
refuses to start for a keypad. evdev is imported only when a device is configured.
:func:`kiosk_selftest` is the commissioning check of both.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import TYPE_CHECKING

from firmware.lane.config import KioskSettings
from firmware.lane.kiosk import KioskInput

if TYPE_CHECKING:
    from firmware.lane.devices.hid import HidInput, Opener


def kiosk_devices(settings: KioskSettings, *, opener: Opener | None = None,
                  reopen_s: float = 2.0) -> tuple[HidInput | None, HidInput | None]:
    """(keypad, scanner), each None when not configured; one device that is both comes
    back as the keypad, classifying scans too."""
    if settings.keypad is None and settings.scanner is None:
        return None, None
    from firmware.lane.devices.hid import open_evdev
    from firmware.lane.devices.keypad import UsbKeypad
    from firmware.lane.devices.scanner import UsbScanner

    opener = opener or open_evdev
    if settings.keypad is not None and settings.keypad == settings.scanner:
        both = UsbScanner(settings.keypad, gap_s=settings.keypad_idle_s, opener=opener,
                          reopen_s=reopen_s, also_keypad=True)
        return both, None
    keypad = None if settings.keypad is None else UsbKeypad(
        settings.keypad, idle_s=settings.keypad_idle_s, opener=opener, reopen_s=reopen_s)
    scanner = None if settings.scanner is None else UsbScanner(
        settings.scanner, gap_s=settings.scan_gap_s, opener=opener, reopen_s=reopen_s)
    return keypad, scanner


def kiosk_selftest(settings: KioskSettings, ask: Callable[[str], str], wait_s: float, *,
                   opener: Opener | None = None) -> list[tuple[str, bool]]:
    """``parkguard lane selftest``'s kiosk checks: each configured device is found (and
    grabbed), then the installer types ``1234`` + Enter on the keypad and scans any code
    (hardware/lane-commissioning.md); each must arrive within ``wait_s``."""
    results: list[tuple[str, bool]] = []
    keypad, scanner = kiosk_devices(settings, opener=opener)
    checks: list[tuple[HidInput | None, str, str, Callable[[KioskInput], bool]]] = [
        (keypad, "keypad", "type 1 2 3 4 and Enter on the keypad",
         lambda item: item.kind == "digits" and item.text == "1234"),
        (scanner, "scanner", "scan a payment code (付款码) or a QR ticket",
         lambda item: item.kind in ("payment_code", "ticket")),
    ]
    for device, name, what, good in checks:
        if device is None:
            continue
        got: queue.Queue[KioskInput] = queue.Queue()
        device.when_input(got.put)
        device.start()
        try:
            found = device.tried.wait(wait_s) and device.connected.is_set()
            results.append((f"{name} found ({device.spec})", found))
            if not found:
                continue
            ask(f"{what}, then press Enter here (waiting {wait_s:g} s)")
            try:
                item = got.get(timeout=wait_s)
            except queue.Empty:
                results.append((f"{name} typed", False))
                continue
            results.append((f"{name} typed ({item.kind})", good(item)))
        finally:
            device.close()
    return results
