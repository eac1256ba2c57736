"""The tariff file in force at the gateway, and the vehicle class a stay is priced in.

The pricing itself is the pure core (:mod:`parkguard.core.tariffs`), so a lane pricing
offline from the same file gets the same receipt.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from parkguard.core.tariffs import (
    Coupon,
    Quote,
    TariffDocument,
    parse_tariff_document,
    quote,
)
from parkguard.errors import ConfigError

log = logging.getLogger(__name__)

#: Where the demo site's tariff lives (the source documents' mall rules).
EXAMPLE_TARIFF = Path(__file__).resolve().parents[2] / "docs" / "examples" / "tariff-mall.toml"


def load_tariff_file(path: Path) -> TariffDocument:
    """Read a tariff file at start; a bad one stops the gateway naming the field and reason."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read tariff file: {error}") from error
    return parse_tariff_document(text, source=str(path))


class SitePricing:
    """Quotes stays by the site's tariff book, calendar and time zone."""

    def __init__(self, document: TariffDocument, *, source: str = "") -> None:
        self.document = document
        self.source = source

    @classmethod
    def from_file(cls, path: Path) -> SitePricing:
        return cls(load_tariff_file(path), source=str(path))

    def quote(self, *, plate: str, entry: datetime, exit: datetime,
              coupons: Iterable[Coupon] = (), vehicle_class: str | None = None) -> Quote:
        """Price a stay; the class comes from the plate unless a pass names one the version
        in force has (:meth:`TariffDocument.vehicle_class`, the rule ``tariff quote`` uses)."""
        chosen = self.document.vehicle_class(plate, entry, named=vehicle_class)
        if vehicle_class is not None and chosen != vehicle_class:
            log.warning("vehicle class %r is not in the tariff: %s priced as %s",
                        vehicle_class, plate, chosen)
        return quote(
            self.document.book, entry=entry, exit=exit, plate=plate,
            vehicle_class=chosen, coupons=coupons,
            calendar=self.document.calendar, timezone=self.document.zone,
        )

    def audit_record(self) -> dict[str, Any]:
        """What the audit log keeps of a tariff change: every version and the calendar."""
        return {
            "tariffs": [t.model_dump(mode="json") for t in self.document.tariffs],
            "calendar": self.document.calendar.model_dump(mode="json"),
            "timezone": self.document.timezone,
        }
