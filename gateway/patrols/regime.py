"""The site's patrol regime with the tariff file's holiday calendar in it, so obligations,
people and staffing rules by the kind of day (workday, weekend, holiday) follow the same
holidays and make-up workdays the fees do (docs/patrols.md, docs/tariffs.md)."""

from __future__ import annotations

from pathlib import Path

from gateway.money.pricing import load_tariff_file
from parkguard.core.patrol import PatrolConfig, load_patrol_config
from parkguard.errors import ConfigError

__all__ = ["load_site_regime"]


def load_site_regime(patrol_file: Path, tariff_file: Path | None) -> PatrolConfig:
    """The regime of ``patrol_file`` judged on the calendar of ``tariff_file``. A patrol
    file may carry a ``[calendar]`` of its own only when it is the same as the tariff's
    (two calendars that disagree would make a holiday for fees a workday for guards)."""
    regime = load_patrol_config(patrol_file)
    if tariff_file is None:
        return regime
    calendar = load_tariff_file(tariff_file).calendar
    own = regime.calendar
    if (own.holidays or own.workdays or own.periods) and own != calendar:
        raise ConfigError(f"{patrol_file}: calendar: differs from the tariff file's "
                          f"({tariff_file}); keep the holidays in the tariff file only")
    return regime.model_copy(update={"calendar": calendar})
