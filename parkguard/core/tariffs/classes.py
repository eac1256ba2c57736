"""Which vehicle class a plate is priced as when nothing else (a pass) says so.

Shared by the gateway and the lane's offline pricing, so both charge the same car alike.
"""

from __future__ import annotations

from collections.abc import Collection

from parkguard.core.plates import PlateError, PlateSeries, parse_plate


def vehicle_class_for(plate: str, classes: Collection[str]) -> str:
    """A small new-energy plate as ``new_energy`` when the tariff has that class; everything
    else ``small`` (a yellow large-car plate reads the same as a blue one, so "large" needs
    a pass or a guard, not the plate text).

    >>> vehicle_class_for("沪AD12345", {"small", "new_energy"})
    'new_energy'
    >>> vehicle_class_for("粤B12345", {"small"})
    'small'
    """
    try:
        series = parse_plate(plate).series
    except PlateError:
        return "small"
    if series is PlateSeries.NEW_ENERGY_SMALL and "new_energy" in classes:
        return "new_energy"
    return "small"
