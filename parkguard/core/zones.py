"""Site time zones as config values: an IANA name checked when the file is loaded.

Screens, reports, shifts and tariff bands are site-local; a typo in the zone must stop the
program at start, naming the field, not shift every fee by eight hours.
"""

from __future__ import annotations

from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator


def known_zone(value: str) -> str:
    """``value`` if it names a time zone this machine knows; ValueError otherwise.

    >>> known_zone("Asia/Shanghai")
    'Asia/Shanghai'
    """
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from error
    return value


#: A config field holding an IANA time zone name, validated at load.
TimeZoneName = Annotated[str, AfterValidator(known_zone)]
