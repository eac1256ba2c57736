"""Which vehicle class a stay is priced in: the one rule for the gateway, the lane's
offline pricing and ``parkguard tariff quote``, so all three charge the same car alike
(before issue 21 the CLI priced every car ``small`` while the gateway priced a new-energy
plate at the new-energy rate).
"""

from __future__ import annotations

from collections.abc import Collection

from parkguard.core.plates import PlateError, PlateSeries, parse_plate


def vehicle_class_for(plate: str, classes: Collection[str], *, named: str | None = None) -> str:
    """``named`` (a pass's class) when the tariff has it; else a small new-energy plate as
    ``new_energy`` when the tariff has that class; everything else ``small`` (a yellow
    large-car plate reads the same as a blue one, so "large" needs a pass or a guard, not
    the plate text).

    >>> vehicle_class_for("沪AD12345", {"small", "new_energy"})
    'new_energy'
    >>> vehicle_class_for("粤B12345", {"small"})
    'small'
    >>> vehicle_class_for("粤B12345", {"small", "large"}, named="large")
    'large'
    >>> vehicle_class_for("沪AD12345", {"small", "new_energy"}, named="bus")
    'new_energy'
    """
    if named is not None and named in classes:
        return named
    try:
        series = parse_plate(plate).series
    except PlateError:
        return "small"
    if series is PlateSeries.NEW_ENERGY_SMALL and "new_energy" in classes:
        return "new_energy"
    return "small"
