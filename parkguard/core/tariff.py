"""The walking skeleton's tariff: free time, a first period, then a price per step, a 24 h cap.

Pure and total: the same stay always gives the same itemised quote, on the
lane and on the gateway. (The full tariff language with bands, holidays and
coupons replaces this; its quote keeps this shape.)

>>> from datetime import datetime, UTC
>>> tariff = SimpleTariff()
>>> entry = datetime(2026, 5, 1, 2, 0, tzinfo=UTC)
>>> quote = tariff.quote(entry, datetime(2026, 5, 1, 3, 30, tzinfo=UTC))
>>> quote.total_fen, [item.fen for item in quote.items]
(700, [500, 200])
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from parkguard.errors import TariffError

Fen = int
_DAY = timedelta(hours=24)


def format_fen(fen: Fen) -> str:
    """``700`` → ``'7.00'``: how money is shown on a display or a receipt."""
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True, slots=True)
class QuoteItem:
    """One line of a receipt: what was charged (or taken off) and why."""

    code: str
    label_zh: str
    label_en: str
    minutes: int
    fen: Fen


@dataclass(frozen=True, slots=True)
class Quote:
    """An itemised fee: the same lines the driver sees on the pay page and the exit display."""

    entry: datetime
    exit: datetime
    minutes: int
    items: tuple[QuoteItem, ...]
    total_fen: Fen


class SimpleTariff(BaseModel):
    """Free minutes (a threshold), a first period at a flat price, then a price per step, capped
    per 24 h from entry."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(default="simple", min_length=1, max_length=64)
    free_minutes: int = Field(default=15, ge=0, le=24 * 60, description="stays this short are free")
    first_minutes: int = Field(default=60, gt=0, le=24 * 60, description="length of first period")
    first_fen: Fen = Field(default=500, ge=0, description="price of the first period")
    step_minutes: int = Field(default=30, gt=0, le=24 * 60, description="each later step")
    step_fen: Fen = Field(default=200, ge=0, description="price of each started later step")
    cap_24h_fen: Fen | None = Field(default=4000, ge=0, description="most one 24 h window costs")

    @model_validator(mode="after")
    def _cap_not_below_first_period(self) -> Self:
        if self.cap_24h_fen is not None and self.cap_24h_fen < self.first_fen:
            raise ValueError("cap_24h_fen must not be below first_fen")
        return self

    def _window_fee(self, minutes: int) -> Fen:
        """Fee for up to 24 h of charged time, before the cap."""
        if minutes <= 0:
            return 0
        later = max(0, minutes - self.first_minutes)
        return self.first_fen + _ceil_div(later, self.step_minutes) * self.step_fen

    def quote(self, entry: datetime, exit: datetime) -> Quote:
        """Price a stay; started minutes count (a stay of 60 min 1 s is 61 minutes)."""
        if entry.tzinfo is None or exit.tzinfo is None:
            raise TariffError("entry and exit must be timezone-aware")
        if exit < entry:
            raise TariffError(f"exit {exit.isoformat()} is before entry {entry.isoformat()}")
        minutes = _ceil_div((exit - entry) // timedelta(milliseconds=1), 60_000)
        if minutes <= self.free_minutes:
            item = QuoteItem("free", "免费时段", "free period", minutes, 0)
            return Quote(entry, exit, minutes, (item,), 0)
        items: list[QuoteItem] = []
        full_days, rest = divmod(minutes, 24 * 60)
        for day in range(full_days):
            fee = self._capped(self._window_fee(24 * 60))
            items.append(QuoteItem("day", f"第{day + 1}个24小时", f"24 h #{day + 1}", 24 * 60, fee))
        if rest:
            first = min(rest, self.first_minutes)
            later = rest - first
            later_fee = _ceil_div(later, self.step_minutes) * self.step_fen
            window = self._window_fee(rest)
            capped = self._capped(window)
            if full_days == 0:
                items.append(QuoteItem("first", "首时段", "first period", first, self.first_fen))
                if later:
                    items.append(QuoteItem("steps", "续时", "each further step", later, later_fee))
                if capped < window:
                    items.append(QuoteItem("cap", "24小时封顶", "24 h cap", 0, capped - window))
            else:
                items.append(QuoteItem("part", "不足24小时部分", "part day", rest, capped))
        total = sum(item.fen for item in items)
        return Quote(entry, exit, minutes, tuple(items), total)

    def _capped(self, fee: Fen) -> Fen:
        return fee if self.cap_24h_fen is None else min(fee, self.cap_24h_fen)
