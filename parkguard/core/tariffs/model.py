"""The tariff language as frozen pydantic models: periods, tiers, caps, classes, coupons.

Every field has a description and bounds; cross-field checks name the field at fault, so a
site's TOML fails at load with the reason, never at the lane with a wrong fee. Money is
integer fen. ``docs/tariffs.md`` explains each field with the mall example.
"""

from __future__ import annotations

from datetime import date
from functools import cached_property
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from parkguard.core.plates import PlateSeries, parse_plate
from parkguard.core.plates.errors import PlateError
from parkguard.core.tariffs.holidays import DayKind

Fen = int
DAY_MINUTES = 24 * 60
Rounding = Literal["ceil", "floor", "nearest"]
CouponKind = Literal["free_minutes", "amount_off", "percent_off", "full_free"]
DAY_KINDS: tuple[DayKind, ...] = ("workday", "weekend", "holiday")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _parse_clock(text: str) -> int:
    """``"08:00"`` → 480 minutes after midnight; ``"24:00"`` is the end of the day."""
    hours, sep, minutes = text.partition(":")
    if not sep or not hours.isdigit() or not minutes.isdigit() or len(minutes) != 2:
        raise ValueError(f"{text!r} is not HH:MM")
    value = int(hours) * 60 + int(minutes)
    if int(minutes) >= 60 or value > DAY_MINUTES:
        raise ValueError(f"{text!r} is not a time of day between 00:00 and 24:00")
    return value


class FreeTime(_Frozen):
    """Minutes a car may stay without charge, and what happens when it stays longer."""

    minutes: int = Field(default=0, ge=0, le=DAY_MINUTES, description="free minutes")
    mode: Literal["threshold", "deduct"] = Field(
        default="threshold",
        description="threshold: stays up to `minutes` are free, longer ones pay from entry; "
                    "deduct: the first `minutes` of every stay are never charged")


class Tier(_Frozen):
    """One part of a period's price: a flat first part, or a price per started/whole step.

    Tiers follow each other inside one occurrence of a period; ``upto_minutes`` is where the
    tier ends, counted from the start of the occurrence. The last tier is open-ended.
    """

    upto_minutes: int | None = Field(default=None, gt=0,
                                     description="tier ends this many minutes into the occurrence")
    flat_fen: Fen | None = Field(default=None, ge=0,
                                 description="charged once when the stay enters this tier")
    every_minutes: int | None = Field(default=None, gt=0, le=DAY_MINUTES,
                                      description="step length (the rounding step)")
    step_fen: Fen | None = Field(default=None, ge=0, description="price of each charged step")
    rounding: Rounding = Field(default="ceil",
                               description="ceil: a started step is charged; floor: only whole "
                                           "steps; nearest: half a step or more is charged")

    @model_validator(mode="after")
    def _flat_or_steps(self) -> Self:
        steps = self.every_minutes is not None or self.step_fen is not None
        if (self.flat_fen is None) == (not steps):
            raise ValueError("a tier has either flat_fen, or every_minutes with step_fen")
        if steps and (self.every_minutes is None or self.step_fen is None):
            raise ValueError("every_minutes and step_fen go together")
        return self

    @property
    def rule(self) -> str:
        """How the line is described on a receipt (``flat 500`` / ``200 per 30 min ceil``)."""
        if self.flat_fen is not None:
            return f"flat {self.flat_fen}"
        return f"{self.step_fen} per {self.every_minutes} min {self.rounding}"


class Period(_Frozen):
    """A time-of-day band with its price: tiers, or one flat fee per occurrence (night flat)."""

    name: str = Field(min_length=1, max_length=32, description="code on receipts, e.g. day")
    label_zh: str = Field(min_length=1, description="name shown to drivers, e.g. 日间")
    label_en: str = Field(min_length=1, description="English name, e.g. day")
    when: str = Field(description='site-local band "HH:MM-HH:MM"; may cross midnight')
    tiers: list[Tier] = Field(default_factory=list, description="prices inside one occurrence")
    flat_fen: Fen | None = Field(default=None, ge=0,
                                 description="one fee per occurrence instead of tiers")
    cap_fen: Fen | None = Field(default=None, ge=0, description="most one occurrence costs")
    days: list[DayKind] | None = Field(
        default=None, description="day kinds (holiday, workday, weekend) this band prices; "
                                  "without it the band prices every day kind that has no "
                                  "bands of its own")

    @field_validator("days")
    @classmethod
    def _days_listed_once(cls, value: list[DayKind] | None) -> list[DayKind] | None:
        if value is not None:
            if not value:
                raise ValueError("give at least one day kind, or leave days out for any day")
            if len(set(value)) != len(value):
                raise ValueError("a day kind is listed twice")
        return value

    @field_validator("when")
    @classmethod
    def _band_parses(cls, value: str) -> str:
        start, sep, end = value.partition("-")
        if not sep:
            raise ValueError(f"{value!r} is not HH:MM-HH:MM")
        if _parse_clock(start.strip()) % DAY_MINUTES == _parse_clock(end.strip()) % DAY_MINUTES:
            if (start.strip(), end.strip()) != ("00:00", "24:00"):
                raise ValueError(f"{value!r} is empty: use 00:00-24:00 for the whole day")
        return value

    @model_validator(mode="after")
    def _tiers_or_flat(self) -> Self:
        if (self.flat_fen is None) == (not self.tiers):
            raise ValueError(f"period {self.name!r}: give either tiers or flat_fen, not both")
        bounds = [tier.upto_minutes for tier in self.tiers]
        if bounds and bounds[-1] is not None:
            raise ValueError(f"period {self.name!r}: tiers: the last tier must be open-ended "
                             "(no upto_minutes)")
        inner = [b for b in bounds[:-1] if b is not None]
        if len(inner) != len(bounds[:-1]) or inner != sorted(set(inner)):
            raise ValueError(f"period {self.name!r}: tiers: upto_minutes must rise tier by tier")
        return self

    @cached_property
    def band(self) -> tuple[int, int]:
        """(start, end) minutes after local midnight; end > start, end may pass 1440."""
        start_text, _, end_text = self.when.partition("-")
        start = _parse_clock(start_text.strip()) % DAY_MINUTES
        end = _parse_clock(end_text.strip())
        if end <= start:
            end += DAY_MINUTES
        return start, end


class Caps(_Frozen):
    """Most a stay pays per site-local calendar day, per rolling 24 h from entry and per stay.

    With ``share_reentry`` the day and 24 h caps also count what the same plate was already
    charged (``quote(..., earlier_charges=...)``): leaving and coming back shares the cap.
    """

    calendar_day_fen: Fen | None = Field(default=None, ge=0,
                                         description="most charged on one site-local date")
    rolling_24h_fen: Fen | None = Field(default=None, ge=0,
                                        description="most charged in each 24 h from entry")
    session_fen: Fen | None = Field(default=None, ge=0,
                                    description="most one stay pays in total, after the "
                                                "other caps")
    share_reentry: bool = Field(default=False,
                                description="earlier stays of the same plate count toward the "
                                            "calendar-day and rolling-24 h caps")

    @model_validator(mode="after")
    def _something_to_share(self) -> Self:
        if self.share_reentry and self.calendar_day_fen is None and self.rolling_24h_fen is None:
            raise ValueError("share_reentry: there is no calendar_day_fen or rolling_24h_fen "
                             "cap to share")
        return self


class VehicleClass(_Frozen):
    """A class's price as a multiple of the small-car price, in thousandths (rounded half up)."""

    permille: int = Field(ge=0, le=10_000, description="1000 = small-car price, 500 = half")
    label_zh: str = Field(min_length=1, description="class name shown to drivers")
    label_en: str = Field(min_length=1, description="class name in English")


class Exemption(_Frozen):
    """Cars that park free: by plate series (duty vehicles) or by a named list of plates."""

    reason: str = Field(min_length=1, max_length=64, description="reason code for the audit log")
    label_zh: str = Field(min_length=1, description="why, as shown on the receipt")
    label_en: str = Field(min_length=1, description="why, in English")
    series: list[PlateSeries] = Field(default_factory=list,
                                      description="plate series that park free")
    list_name: str | None = Field(default=None, alias="list",
                                  description="name of a plate list in `lists`")

    @model_validator(mode="after")
    def _series_or_list(self) -> Self:
        if bool(self.series) == (self.list_name is not None):
            raise ValueError(f"exemption {self.reason!r}: give either series or list")
        return self


class Upgrade(_Frozen):
    """A bigger grant on some dates: named calendar periods or day kinds (holiday)."""

    periods: list[str] = Field(default_factory=list, description="named calendar periods")
    day_kinds: list[Literal["holiday", "workday", "weekend"]] = Field(
        default_factory=list, description="day kinds that get the upgrade")
    minutes: int = Field(gt=0, le=7 * DAY_MINUTES, description="free minutes granted instead")


class CouponRule(_Frozen):
    """A grant the site issues (a merchant's "spend ¥88, park 2 h free"), presented by code."""

    code: str = Field(min_length=1, max_length=32, description="code a coupon refers to")
    label_zh: str = Field(min_length=1, description="name on the receipt")
    label_en: str = Field(min_length=1, description="English name on the receipt")
    kind: CouponKind = Field(description="free_minutes | amount_off | percent_off | full_free")
    minutes: int = Field(default=0, ge=0, le=7 * DAY_MINUTES, description="for free_minutes")
    fen: Fen = Field(default=0, ge=0, description="for amount_off")
    percent: int = Field(default=0, ge=0, le=100,
                         description="for percent_off: percent taken off the fee, 1..100")
    upgrades: list[Upgrade] = Field(default_factory=list,
                                    description="bigger free_minutes on some entry dates")
    min_spend_fen: Fen | None = Field(
        default=None, ge=1, le=100_000_000,
        description="a merchant may issue it for a shopper who spent at least this much")

    @model_validator(mode="after")
    def _value_matches_kind(self) -> Self:
        if self.kind == "free_minutes" and self.minutes == 0:
            raise ValueError(f"coupon rule {self.code!r}: free_minutes needs minutes > 0")
        if self.kind == "amount_off" and self.fen == 0:
            raise ValueError(f"coupon rule {self.code!r}: amount_off needs fen > 0")
        if self.kind == "percent_off" and not 1 <= self.percent <= 100:
            raise ValueError(f"coupon rule {self.code!r}: percent_off needs percent "
                             "from 1 to 100")
        if self.percent and self.kind != "percent_off":
            raise ValueError(f"coupon rule {self.code!r}: percent is only for percent_off")
        if self.upgrades and self.kind != "free_minutes":
            raise ValueError(f"coupon rule {self.code!r}: upgrades only for free_minutes")
        return self


class CouponPolicy(_Frozen):
    """How several coupons on one stay combine, and where free minutes come off the stay."""

    stacking: Literal["none", "additive", "best_of"] = Field(
        default="none", description="none: the first coupon only; additive: all of them; "
                                    "best_of: the one that leaves the lowest fee")
    apply: Literal["front", "back"] = Field(
        default="back", description="free minutes come off the start (front) or end (back)")
    rules: list[CouponRule] = Field(default_factory=list, description="grants issued by code")

    @model_validator(mode="after")
    def _codes_unique(self) -> Self:
        codes = [rule.code for rule in self.rules]
        if len(codes) != len(set(codes)):
            raise ValueError("rules: coupon codes must be unique")
        return self


class Tariff(_Frozen):
    """One version of a site's prices. ``quote`` turns it and a stay into an itemised fee."""

    name: str = Field(min_length=1, max_length=64, description="tariff name, e.g. mall-b2")
    version: str = Field(min_length=1, max_length=32, description="version label on receipts")
    effective_from: date = Field(description="site-local date from which stays entering use it")
    free: FreeTime = Field(default_factory=FreeTime, description="free time")
    segmentation: Literal["split", "follow_through"] = Field(
        default="split", description="split: each band prices its own minutes; follow_through: "
                                     "the band at entry prices the whole stay")
    periods: list[Period] = Field(min_length=1, description="bands covering the day once")
    caps: Caps = Field(default_factory=Caps, description="calendar-day and rolling-24 h caps")
    classes: dict[str, VehicleClass] = Field(
        default_factory=lambda: {"small": VehicleClass(permille=1000, label_zh="小型车",
                                                       label_en="small")},
        description="vehicle classes by name; `small` is required")
    exemptions: list[Exemption] = Field(default_factory=list, description="who parks free")
    lists: dict[str, list[str]] = Field(default_factory=dict,
                                        description="named plate lists (whitelist, staff)")
    coupons: CouponPolicy = Field(default_factory=CouponPolicy, description="coupon policy")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        for period in self.periods:
            if period.days is not None or not self.has_day_selectors:
                continue
            if not any(self._applies(period, kind) for kind in DAY_KINDS):
                raise ValueError(f"periods: period {period.name!r} has no days and applies on "
                                 "no day kind (each has bands of its own); give it days or "
                                 "remove it")
        for kind in DAY_KINDS if self.has_day_selectors else DAY_KINDS[:1]:
            covered = [0] * DAY_MINUTES
            for period in self.periods:
                if not self._applies(period, kind):
                    continue
                start, end = period.band
                for minute in range(start, end):
                    covered[minute % DAY_MINUTES] += 1
            if any(count != 1 for count in covered):
                gap = next(m for m, count in enumerate(covered) if count != 1)
                what = "not covered" if covered[gap] == 0 else "covered twice"
                where = f" on {kind} days" if self.has_day_selectors else ""
                raise ValueError(f"periods: the bands must cover the day exactly once{where}; "
                                 f"{gap // 60:02d}:{gap % 60:02d} is {what}")
        if len({p.name for p in self.periods}) != len(self.periods):
            raise ValueError("periods: names must be unique")
        if "small" not in self.classes:
            raise ValueError("classes: the `small` class is required (the base price)")
        for exemption in self.exemptions:
            if exemption.list_name is not None and exemption.list_name not in self.lists:
                raise ValueError(f"exemptions: list {exemption.list_name!r} is not in lists")
        return self

    @cached_property
    def has_day_selectors(self) -> bool:
        """Whether any period carries ``days`` (then quote asks the calendar for day kinds)."""
        return any(period.days is not None for period in self.periods)

    def _applies(self, period: Period, kind: DayKind) -> bool:
        """A period with ``days`` prices those day kinds; one without prices every day kind
        that no period selects."""
        if period.days is not None:
            return kind in period.days
        return not any(p.days is not None and kind in p.days for p in self.periods)

    @cached_property
    def _period_by_minute(self) -> dict[DayKind, tuple[Period, ...]]:
        """Per day kind, one entry per minute of the day (the bands tile it): a lookup, not a
        search. Day kinds priced alike share one table."""
        tables: dict[tuple[int, ...], tuple[Period, ...]] = {}
        result: dict[DayKind, tuple[Period, ...]] = {}
        for kind in DAY_KINDS:
            chosen = [p for p in self.periods if self._applies(p, kind)]
            key = tuple(id(p) for p in chosen)
            if key not in tables:
                table: list[Period | None] = [None] * DAY_MINUTES
                for period in chosen:
                    start, end = period.band
                    for minute in range(start, end):
                        table[minute % DAY_MINUTES] = period
                tables[key] = tuple(p for p in table if p is not None)
            result[kind] = tables[key]
        return result

    def period_at(self, minute_of_day: int, day_kind: DayKind = "workday") -> Period:
        """The period whose band holds this minute after local midnight on a day of this kind
        (the kind matters only when some period carries ``days``)."""
        return self._period_by_minute[day_kind][minute_of_day]

    def exemption_for(self, plate: str) -> Exemption | None:
        """The first exemption this plate earns; an unreadable plate earns none by series."""
        try:
            parsed = parse_plate(plate)
            series: PlateSeries | None = parsed.series
            text = parsed.text
        except PlateError:
            series, text = None, plate.strip()
        for exemption in self.exemptions:
            if series is not None and series in exemption.series:
                return exemption
            if exemption.list_name is not None and text in self._lists[exemption.list_name]:
                return exemption
        return None

    @cached_property
    def _lists(self) -> dict[str, frozenset[str]]:
        """Each plate list in canonical form, so ``粤B·66666`` on the list matches ``粤B66666``."""
        def canonical(entry: str) -> str:
            try:
                return parse_plate(entry).text
            except PlateError:
                return entry.strip()

        return {name: frozenset(map(canonical, plates)) for name, plates in self.lists.items()}

    def rule(self, code: str) -> CouponRule | None:
        """The coupon rule with this code, if the tariff has one."""
        return next((rule for rule in self.coupons.rules if rule.code == code), None)


class TariffBook(_Frozen):
    """Versions of one site's tariff. A stay is priced by the version in force at its entry.

    Why entry: the driver agreed to the price shown when they drove in, and a session's one
    recorded version makes the fee reproducible on the lane and the gateway alike.
    """

    versions: list[Tariff] = Field(min_length=1, description="tariff versions")

    @model_validator(mode="after")
    def _dates_distinct(self) -> Self:
        dates = [t.effective_from for t in self.versions]
        if len(dates) != len(set(dates)):
            raise ValueError("versions: two versions share an effective_from date")
        return self

    def in_force(self, day: date) -> Tariff | None:
        """The version with the latest ``effective_from`` on or before this site-local date."""
        candidates = [t for t in self.versions if t.effective_from <= day]
        return max(candidates, key=lambda t: t.effective_from) if candidates else None
