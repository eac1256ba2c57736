"""The emergency numbers every staff page shows as tap-to-call links.

The operations plan says: in a fire call 119 first, then 110; an injury 120; a traffic
accident 122. A site may change or add numbers (a local fire brigade's direct line) in the
gateway's config (``emergency_numbers``); the order given is the order shown, so 119 stays
first unless the site says otherwise.
"""

from __future__ import annotations

from typing import Final

from pydantic import Field

from parkguard.configfile import StrictModel

__all__ = ["DEFAULT_NUMBERS", "EmergencyNumber"]


class EmergencyNumber(StrictModel):
    """One number: what to dial, and what it is for (Chinese and English)."""

    number: str = Field(pattern=r"^\+?[0-9]{3,15}$", description="digits a phone dials")
    zh: str = Field(min_length=1, max_length=16, pattern=r"^[^\x00-\x1f<>]*$")
    en: str = Field(min_length=1, max_length=32, pattern=r"^[^\x00-\x1f<>]*$")

    @property
    def href(self) -> str:
        """The ``tel:`` link a phone's browser dials on a tap."""
        return f"tel:{self.number}"


DEFAULT_NUMBERS: Final = (
    EmergencyNumber(number="119", zh="火警", en="Fire"),
    EmergencyNumber(number="110", zh="报警", en="Police"),
    EmergencyNumber(number="120", zh="急救", en="Ambulance"),
    EmergencyNumber(number="122", zh="交通事故", en="Traffic accident"),
)
