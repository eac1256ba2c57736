"""The tariff language: versioned tariffs, a holiday calendar, coupons and a pure ``quote``.

Pure code, no IO: the lane and the gateway price a stay the same way. ``docs/tariffs.md``
explains every field with the mall example (``docs/examples/tariff-mall.toml``).

>>> from datetime import UTC, datetime
>>> site = parse_tariff_document('''
... [[tariffs]]
... name = "mall-b2"
... version = "1"
... effective_from = 2026-01-01
... [[tariffs.periods]]
... name = "all"
... label_zh = "全天"
... label_en = "all day"
... when = "00:00-24:00"
... tiers = [{ upto_minutes = 60, flat_fen = 500 }, { every_minutes = 30, step_fen = 200 }]
... ''')
>>> fee = quote(site.book, entry=datetime(2026, 3, 2, 2, tzinfo=UTC),
...             exit=datetime(2026, 3, 2, 3, 10, tzinfo=UTC), plate="粤B12345",
...             calendar=site.calendar, timezone=site.timezone)
>>> format_yuan(fee.total_fen)
'¥7.00'
"""

from parkguard.core.tariffs.classes import vehicle_class_for
from parkguard.core.tariffs.document import (
    GoldenVector,
    TariffDocument,
    VectorResult,
    parse_tariff_document,
    run_vectors,
)
from parkguard.core.tariffs.holidays import DateSpan, DayKind, HolidayCalendar
from parkguard.core.tariffs.model import (
    Caps,
    CouponPolicy,
    CouponRule,
    Exemption,
    Fen,
    FreeTime,
    Period,
    Tariff,
    TariffBook,
    Tier,
    Upgrade,
    VehicleClass,
)
from parkguard.core.tariffs.quote import (
    CapApplied,
    Coupon,
    Discount,
    EarlierCharge,
    Quote,
    QuoteLine,
    format_yuan,
    quote,
)

__all__ = [
    "CapApplied",
    "Caps",
    "Coupon",
    "CouponPolicy",
    "CouponRule",
    "DateSpan",
    "DayKind",
    "Discount",
    "EarlierCharge",
    "Exemption",
    "Fen",
    "FreeTime",
    "GoldenVector",
    "HolidayCalendar",
    "Period",
    "Quote",
    "QuoteLine",
    "Tariff",
    "TariffBook",
    "TariffDocument",
    "Tier",
    "Upgrade",
    "VectorResult",
    "VehicleClass",
    "format_yuan",
    "parse_tariff_document",
    "quote",
    "run_vectors",
    "vehicle_class_for",
]
