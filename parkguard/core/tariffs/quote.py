"""``quote``: a stay, a plate, a class and coupons in; an itemised, capped fee in fen out.

Pure and total: times are UTC-aware in, day and band logic runs in site-local time through
``zoneinfo``, and the same inputs give the same receipt on the lane and the gateway.

How a fee is built (``docs/tariffs.md`` has the long form):

1. The stay is counted in started minutes; minute *i* belongs to the band that holds the
   site-local time at its start.
2. Free time: a *threshold* makes short stays free; *deduct* skips the first minutes.
3. Segments: with *split* each run of minutes in one band is an occurrence priced by that
   band's tiers from its own start; with *follow_through* the band at entry prices it all.
4. Each tier step is a *charge* placed on the minute that makes it due (ceil: its first
   minute, floor: its last, nearest: its middle). A longer stay only adds charges, so the
   fee never falls as a stay grows.
5. Caps, in time order: per occurrence, per site-local calendar day, per rolling 24 h from
   entry (with ``share_reentry`` the last two also count ``earlier_charges`` of the plate);
   then per stay. Then the vehicle class multiplier (thousandths, rounded half up).
6. Exemptions make it free with a reason; otherwise coupons, by the stacking policy, in the
   order free minutes, amount off, percent off (half a fen in the driver's favour), full
   free. A coupon never raises a fee or makes it negative.

>>> from datetime import UTC, datetime, date
>>> from parkguard.core.tariffs.model import Period, Tariff, Tier
>>> tariff = Tariff(name="demo", version="1", effective_from=date(2026, 1, 1), periods=[
...     Period(name="all", label_zh="全天", label_en="all day", when="00:00-24:00",
...            tiers=[Tier(upto_minutes=60, flat_fen=500), Tier(every_minutes=30, step_fen=200)])])
>>> fee = quote(tariff, entry=datetime(2026, 5, 1, 2, tzinfo=UTC),
...             exit=datetime(2026, 5, 1, 3, 30, tzinfo=UTC), plate="粤B12345")
>>> fee.total_fen, [line.fen for line in fee.lines]
(700, [500, 200])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from parkguard.core.tariffs.holidays import EMPTY_CALENDAR, DayKind, HolidayCalendar
from parkguard.core.tariffs.model import DAY_MINUTES, CouponKind, Fen, Period, Tariff, TariffBook
from parkguard.errors import TariffError

_MINUTE = timedelta(minutes=1)
_DAY = timedelta(days=1)
CapScope = Literal["occurrence", "calendar_day", "rolling_24h", "session"]


def format_yuan(fen: Fen) -> str:
    """``700`` → ``'¥7.00'``: money as a receipt shows it."""
    sign = "-" if fen < 0 else ""
    return f"{sign}¥{abs(fen) // 100}.{abs(fen) % 100:02d}"


@dataclass(frozen=True, slots=True)
class Coupon:
    """A coupon presented at exit: a rule code the tariff knows, or an ad hoc typed grant.

    >>> Coupon.parse("rule:spend_88"), Coupon.parse("amount_off:500").fen
    (Coupon(kind='rule', minutes=0, fen=0, rule='spend_88', ref=None), 500)
    >>> Coupon.parse("percent_off:20")
    Coupon(kind='percent_off', minutes=0, fen=0, rule=None, percent=20, ref=None)
    """

    kind: Literal["rule", "free_minutes", "amount_off", "percent_off", "full_free"]
    minutes: int = 0
    fen: Fen = 0
    rule: str | None = None
    ref: str | None = field(default=None, compare=False)
    """Who issued it (a merchant coupon id): carried to the :class:`Discount` it earns, so the
    issuer is charged what this coupon took off. Not part of its identity or text form."""
    percent: int = 0
    """For ``percent_off``: the percent of the fee it takes off, 1 to 100."""

    def __post_init__(self) -> None:
        if self.kind == "percent_off" and not 1 <= self.percent <= 100:
            raise ValueError(f"coupon percent_off: percent must be 1 to 100, not {self.percent}")

    def __repr__(self) -> str:
        """Dataclass-style; ``percent`` is shown only for ``percent_off`` coupons."""
        percent = f", percent={self.percent!r}" if self.kind == "percent_off" else ""
        return (f"Coupon(kind={self.kind!r}, minutes={self.minutes!r}, fen={self.fen!r}, "
                f"rule={self.rule!r}{percent}, ref={self.ref!r})")

    def __str__(self) -> str:
        """The ``KIND:VALUE`` text :meth:`parse` reads back."""
        value = {"rule": self.rule or "", "free_minutes": str(self.minutes),
                 "amount_off": str(self.fen), "percent_off": str(self.percent),
                 "full_free": ""}[self.kind]
        return f"{self.kind}:{value}" if value else self.kind

    @classmethod
    def parse(cls, text: str) -> Coupon:
        """``KIND:VALUE`` as typed at the CLI: ``rule:CODE``, ``free_minutes:120``,
        ``amount_off:500`` (fen), ``percent_off:20`` (percent, 1..100) or ``full_free``;
        ValueError says what is wrong."""
        kind, _, value = text.strip().partition(":")
        if kind == "rule" and value:
            return cls("rule", rule=value)
        if kind == "full_free" and not value:
            return cls("full_free")
        if kind == "percent_off":
            if not value.isdigit() or not 1 <= int(value) <= 100:
                raise ValueError(f"coupon {text!r}: percent_off needs a whole number "
                                 "from 1 to 100")
            return cls("percent_off", percent=int(value))
        if kind in ("free_minutes", "amount_off"):
            if not value.isdigit() or int(value) <= 0:
                raise ValueError(f"coupon {text!r}: {kind} needs a positive whole number")
            if kind == "free_minutes":
                return cls("free_minutes", minutes=int(value))
            return cls("amount_off", fen=int(value))
        raise ValueError(f"coupon {text!r}: expected rule:CODE, free_minutes:N, amount_off:FEN, "
                         "percent_off:N or full_free")


@dataclass(frozen=True, slots=True)
class EarlierCharge:
    """What the same plate was already charged for an earlier stay, for caps shared across
    re-entries (``caps.share_reentry``): the stay's entry and exit, and its tariff charge
    ``fen`` in small-car fen after caps (a :class:`Quote`'s ``charged_fen``: before the class
    multiplier and coupons, in the unit the caps are written in)."""

    entry: datetime
    exit: datetime
    fen: Fen

    @classmethod
    def of(cls, earlier: Quote) -> EarlierCharge:
        """The charge an earlier receipt stands for."""
        return cls(earlier.entry, earlier.exit, earlier.charged_fen)


@dataclass(frozen=True, slots=True)
class QuoteLine:
    """One charged part of the stay: which band occurrence, which rule, how long, how much."""

    code: str
    label_zh: str
    label_en: str
    rule: str
    start: datetime
    minutes: int
    rounded_minutes: int
    fen: Fen


@dataclass(frozen=True, slots=True)
class CapApplied:
    """A cap that took money off: its scope, which occurrence/day/window, and how much."""

    scope: CapScope
    key: str
    fen: Fen

    @property
    def label_zh(self) -> str:
        return {"occurrence": "时段封顶", "calendar_day": "单日封顶",
                "rolling_24h": "24小时封顶", "session": "单次封顶"}[self.scope]

    @property
    def label_en(self) -> str:
        return {"occurrence": "period cap", "calendar_day": "calendar-day cap",
                "rolling_24h": "24 h cap", "session": "per-stay cap"}[self.scope]


@dataclass(frozen=True, slots=True)
class Discount:
    """Money taken off after caps: a coupon or an exemption, with the reason for the audit."""

    code: str
    label_zh: str
    label_en: str
    reason: str
    fen: Fen
    ref: str | None = None
    """The presented coupon's ``ref`` (a merchant coupon id), None for exemptions."""


@dataclass(frozen=True, slots=True)
class Quote:
    """An itemised fee: what the pay page, the exit display and a fee complaint show."""

    tariff: str
    version: str
    entry: datetime
    exit: datetime
    minutes: int
    vehicle_class: str
    lines: tuple[QuoteLine, ...]
    caps: tuple[CapApplied, ...]
    charged_fen: Fen
    class_fen: Fen
    discounts: tuple[Discount, ...]
    rejected_coupons: tuple[tuple[Coupon, str], ...]
    total_fen: Fen
    exemption: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The receipt as plain JSON: what ``tariff quote --json`` prints and what the gateway
        keeps with each exit decision, so a disputed fee is answered with the same lines."""
        return {
            "tariff": self.tariff, "version": self.version, "entry": self.entry.isoformat(),
            "exit": self.exit.isoformat(), "minutes": self.minutes,
            "vehicle_class": self.vehicle_class,
            "lines": [{"code": line.code, "label_zh": line.label_zh,
                       "label_en": line.label_en, "rule": line.rule,
                       "start": line.start.isoformat(), "minutes": line.minutes,
                       "rounded_minutes": line.rounded_minutes, "fen": line.fen}
                      for line in self.lines],
            "caps": [{"scope": cap.scope, "key": cap.key, "fen": cap.fen} for cap in self.caps],
            "charged_fen": self.charged_fen, "class_fen": self.class_fen,
            "discounts": [{"code": d.code, "label_zh": d.label_zh, "label_en": d.label_en,
                           "reason": d.reason, "fen": d.fen, "ref": d.ref}
                          for d in self.discounts],
            "rejected_coupons": [{"coupon": str(c), "ref": c.ref, "reason": why}
                                 for c, why in self.rejected_coupons],
            "exemption": self.exemption, "total_fen": self.total_fen,
        }


@dataclass(slots=True)
class _Priced:
    lines: list[QuoteLine] = field(default_factory=list)
    caps: list[CapApplied] = field(default_factory=list)
    charges: list[tuple[int, Fen]] = field(default_factory=list)

    @property
    def fen(self) -> Fen:
        return sum(line.fen for line in self.lines) - sum(cap.fen for cap in self.caps)


@dataclass(frozen=True, slots=True)
class _Grant:
    kind: CouponKind
    minutes: int
    fen: Fen
    code: str
    label_zh: str
    label_en: str
    ref: str | None = None
    percent: int = 0


class _Clock:
    """Site-local time for minute offsets from entry (one zone conversion per question)."""

    def __init__(self, entry: datetime, zone: ZoneInfo) -> None:
        self.entry = entry
        self.zone = zone

    def local(self, minute: int) -> datetime:
        return (self.entry + minute * _MINUTE).astimezone(self.zone)

    def offset_of(self, moment: datetime) -> int:
        """First minute offset whose start is at or after ``moment``."""
        seconds = (moment - self.entry).total_seconds()
        return -int(-seconds // 60)

    def band_end(self, minute: int, period: Period) -> int:
        local = self.local(minute)
        minute_of_day = local.hour * 60 + local.minute
        start, end = period.band
        base = datetime.combine(local.date(), time(0), tzinfo=self.zone)
        if minute_of_day < start:  # the after-midnight part of a band that began yesterday
            base -= timedelta(days=1)
        return max(minute + 1, self.offset_of(base + timedelta(minutes=end)))

    def next_midnight(self, minute: int) -> int:
        local = self.local(minute)
        midnight = datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=self.zone)
        return max(minute + 1, self.offset_of(midnight))


def _steps_due(covered: int, every: int, rounding: str) -> tuple[int, int]:
    """(charged steps, minute into the step at which each becomes due) for ``covered`` minutes."""
    due = {"ceil": 1, "floor": every, "nearest": (every + 1) // 2}[rounding]
    full, rest = divmod(covered, every)
    return full + (1 if rest >= due else 0), due


def _price_segment(priced: _Priced, clock: _Clock, period: Period, start: int, end: int) -> None:
    """Lines and charges of one occurrence of ``period`` over minutes [start, end)."""
    used = 0
    cap = period.cap_fen
    begins = clock.local(start)

    def charge(minute: int, fen: Fen) -> Fen:
        nonlocal used
        allowed = fen if cap is None else max(0, min(fen, cap - used))
        used += allowed
        if allowed:
            priced.charges.append((minute, allowed))
        return fen - allowed

    capped = 0
    if period.flat_fen is not None:
        capped += charge(start, period.flat_fen)
        priced.lines.append(QuoteLine(period.name, period.label_zh, period.label_en,
                                      "flat per occurrence", begins, end - start, end - start,
                                      period.flat_fen))
    else:
        tier_start = 0
        length = end - start
        for tier in period.tiers:
            tier_end = length if tier.upto_minutes is None else min(length, tier.upto_minutes)
            covered = tier_end - tier_start
            if covered <= 0:
                break
            if tier.flat_fen is not None:
                capped += charge(start + tier_start, tier.flat_fen)
                line_fen, rounded = tier.flat_fen, covered
            else:
                every, step_fen = tier.every_minutes or 1, tier.step_fen or 0  # both set: checked
                steps, due = _steps_due(covered, every, tier.rounding)
                for step in range(steps):
                    capped += charge(start + tier_start + step * every + due - 1, step_fen)
                line_fen, rounded = steps * step_fen, steps * every
            priced.lines.append(QuoteLine(period.name, period.label_zh, period.label_en,
                                          tier.rule, begins, covered, rounded, line_fen))
            tier_start = tier_end
    if capped:
        priced.caps.append(CapApplied("occurrence", f"{period.name}@{begins:%Y-%m-%d %H:%M}",
                                      capped))


@dataclass(slots=True)
class _Context:
    """Everything pricing needs besides the minutes: the tariff, the clock, the day kinds
    (looked up once per date) and the money earlier stays put toward shared caps."""

    tariff: Tariff
    clock: _Clock
    calendar: HolidayCalendar
    earlier_by_day: dict[date, Fen] = field(default_factory=dict)
    chain_shift: timedelta | None = None
    """entry minus the start of the shared 24 h windows (None: nothing shared)."""
    earlier_by_window: dict[int, Fen] = field(default_factory=dict)
    kinds: dict[date, DayKind] = field(default_factory=dict)

    def period_at(self, minute: int) -> Period:
        local = self.clock.local(minute)
        kind: DayKind = "workday"
        if self.tariff.has_day_selectors:
            day = local.date()
            found = self.kinds.get(day)
            if found is None:
                found = self.kinds[day] = self.calendar.day_kind(day)
            kind = found
        return self.tariff.period_at(local.hour * 60 + local.minute, kind)

    def boundary(self, minute: int, period: Period, end: int) -> int:
        """Where the occurrence running at ``minute`` stops: its band's end, or with day
        selectors the next midnight (the day kind may change there), or the stay's end."""
        stop = min(end, self.clock.band_end(minute, period))
        if self.tariff.has_day_selectors:
            stop = min(stop, self.clock.next_midnight(minute))
        return stop


def _apply_day_caps(priced: _Priced, ctx: _Context) -> None:
    """Trim charges, in time order, to the calendar-day and rolling-24 h allowances; with
    shared caps the earlier stays' money is already in the day and 24 h ledgers."""
    tariff, clock = ctx.tariff, ctx.clock
    day_cap, roll_cap = tariff.caps.calendar_day_fen, tariff.caps.rolling_24h_fen
    if day_cap is None and roll_cap is None:
        return
    day_used: dict[date, Fen] = dict(ctx.earlier_by_day)
    roll_used: dict[int, Fen] = {}
    chain_used: dict[int, Fen] = dict(ctx.earlier_by_window)
    shift = ctx.chain_shift
    taken: dict[tuple[CapScope, str], Fen] = {}

    def take(scope: CapScope, key: str, fen: Fen) -> None:
        taken[(scope, key)] = taken.get((scope, key), 0) + fen

    day = clock.local(0).date()
    day_ends = clock.next_midnight(0)
    for minute, fen in priced.charges:
        while minute >= day_ends:
            day = clock.local(day_ends).date()
            day_ends = clock.next_midnight(day_ends)
        allowed = fen
        if day_cap is not None:
            allowed = max(0, min(allowed, day_cap - day_used.get(day, 0)))
            if allowed < fen:
                take("calendar_day", day.isoformat(), fen - allowed)
        window = minute // DAY_MINUTES
        chained = 0
        if roll_cap is not None:
            rolled = max(0, min(allowed, roll_cap - roll_used.get(window, 0)))
            if rolled < allowed:
                take("rolling_24h", f"24h #{window + 1}", allowed - rolled)
            allowed = rolled
            if shift is not None:
                chained = (shift + minute * _MINUTE) // _DAY
                shared = max(0, min(allowed, roll_cap - chain_used.get(chained, 0)))
                if shared < allowed:
                    starts = (clock.entry - shift + chained * _DAY).astimezone(clock.zone)
                    take("rolling_24h", f"24h from {starts:%Y-%m-%d %H:%M} (shared)",
                         allowed - shared)
                allowed = shared
        day_used[day] = day_used.get(day, 0) + allowed
        roll_used[window] = roll_used.get(window, 0) + allowed
        if shift is not None:
            chain_used[chained] = chain_used.get(chained, 0) + allowed
    priced.caps.extend(CapApplied(scope, key, fen) for (scope, key), fen in taken.items())


def _price(ctx: _Context, start: int, end: int) -> _Priced:
    """Lines, caps and charges for the minutes [start, end) of a stay (offsets from entry)."""
    tariff, clock = ctx.tariff, ctx.clock
    priced = _Priced()
    free = tariff.free
    if end - start <= 0 or (free.mode == "threshold" and end - start <= free.minutes):
        if end > start:
            priced.lines.append(QuoteLine("free", "免费时段", "free time", "threshold",
                                          clock.local(start), end - start, end - start, 0))
        return priced
    if free.mode == "deduct" and free.minutes:
        skipped = min(free.minutes, end - start)
        priced.lines.append(QuoteLine("free", "免费时段", "free time", "deduct",
                                      clock.local(start), skipped, skipped, 0))
        start += skipped
    selectors = tariff.has_day_selectors
    minute = start
    while minute < end:
        period = ctx.period_at(minute)
        if tariff.segmentation == "follow_through":
            segment_end = end
        else:  # one occurrence runs on while the same period holds the next minute: a
            # whole-day band past midnight, a night band into a day of another kind priced alike
            segment_end = ctx.boundary(minute, period, end)
            while (segment_end < end and (selectors or period.band == (0, DAY_MINUTES))
                   and ctx.period_at(segment_end) is period):
                segment_end = ctx.boundary(segment_end, period, end)
        _price_segment(priced, clock, period, minute, segment_end)
        minute = segment_end
    _apply_day_caps(priced, ctx)
    session = tariff.caps.session_fen
    if session is not None and priced.fen > session:
        priced.caps.append(CapApplied("session", "stay", priced.fen - session))
    return priced


def _with_class(fen: Fen, permille: int) -> Fen:
    """Class price in whole fen, half a fen rounded up (integer arithmetic only)."""
    return (fen * permille + 500) // 1000


def _percent_off(fee: Fen, percent: int) -> Fen:
    """What ``percent`` takes off ``fee``, half a fen rounded up (in the driver's favour);
    never more than the fee, since percent is at most 100."""
    return min(fee, (fee * percent + 50) // 100)


_AD_HOC_LABELS: dict[str, tuple[str, str]] = {
    "free_minutes": ("免费时长", "free time"), "amount_off": ("减免金额", "amount off"),
    "percent_off": ("折扣减免", "percent off"), "full_free": ("全免", "full free")}


def _resolve(tariff: Tariff, coupons: Iterable[Coupon], entry_day: date,
             calendar: HolidayCalendar) -> tuple[list[_Grant], list[tuple[Coupon, str]]]:
    grants: list[_Grant] = []
    rejected: list[tuple[Coupon, str]] = []
    for coupon in coupons:
        if coupon.kind != "rule":
            zh, en = _AD_HOC_LABELS[coupon.kind]
            grants.append(_Grant(coupon.kind, coupon.minutes, coupon.fen, coupon.kind, zh, en,
                                 coupon.ref, coupon.percent))
            continue
        rule = tariff.rule(coupon.rule or "")
        if rule is None:
            rejected.append((coupon, f"unknown coupon rule {coupon.rule!r}"))
            continue
        minutes = rule.minutes
        kind, periods = calendar.day_kind(entry_day), calendar.periods_on(entry_day)
        for upgrade in rule.upgrades:
            if kind in upgrade.day_kinds or periods.intersection(upgrade.periods):
                minutes = max(minutes, upgrade.minutes)
        grants.append(_Grant(rule.kind, minutes, rule.fen, rule.code, rule.label_zh,
                             rule.label_en, coupon.ref, rule.percent))
    return grants, rejected


_ORDER: dict[str, int] = {"free_minutes": 0, "amount_off": 1, "percent_off": 2, "full_free": 3}


def _apply(grants: Sequence[_Grant], base: Fen,
           after_minutes: Callable[[int], Fen]) -> tuple[Fen, list[Discount]]:
    """Free minutes, then amounts off, then percents off, then full free. Free minutes add up
    grant by grant, and each grant's discount is what its minutes took off; each percent
    comes off what is left after the grants before it; no step ever raises the fee."""
    fee = base
    discounts: list[Discount] = []
    minutes = 0
    for grant in sorted(grants, key=lambda g: _ORDER[g.kind]):
        before = fee
        if grant.kind == "free_minutes":
            minutes += grant.minutes
            fee = min(fee, after_minutes(minutes))
        elif grant.kind == "amount_off":
            fee = max(0, fee - grant.fen)
        elif grant.kind == "percent_off":
            fee -= _percent_off(fee, grant.percent)
        else:
            fee = 0
        discounts.append(Discount(grant.code, grant.label_zh, grant.label_en,
                                  f"coupon:{grant.kind}", before - fee, grant.ref))
    return fee, discounts


def _shared_context(tariff: Tariff, clock: _Clock, calendar: HolidayCalendar,
                    earlier: Sequence[EarlierCharge]) -> _Context:
    """The pricing context; with ``caps.share_reentry`` it carries the earlier stays' money:
    by the site-local date of each exit, and by 24 h window counted from the entry of the
    earliest earlier stay that left less than 24 h before this entry."""
    ctx = _Context(tariff, clock, calendar)
    entry = clock.entry
    for charge in earlier:
        if charge.entry.tzinfo is None or charge.exit.tzinfo is None:
            raise TariffError("earlier_charges: entry and exit must be timezone-aware")
        if charge.fen < 0:
            raise TariffError(f"earlier_charges: fen {charge.fen} is negative")
        if charge.exit < charge.entry:
            raise TariffError(f"earlier_charges: exit {charge.exit.isoformat()} is before "
                              f"entry {charge.entry.isoformat()}")
        if charge.exit > entry:
            raise TariffError(f"earlier_charges: a stay leaving at {charge.exit.isoformat()} "
                              f"overlaps this stay (entry {entry.isoformat()})")
    if not tariff.caps.share_reentry or not earlier:
        return ctx
    if tariff.caps.calendar_day_fen is not None:
        for charge in earlier:
            day = charge.exit.astimezone(clock.zone).date()
            ctx.earlier_by_day[day] = ctx.earlier_by_day.get(day, 0) + charge.fen
    recent = [charge for charge in earlier if charge.exit > entry - _DAY]
    if tariff.caps.rolling_24h_fen is not None and recent:
        anchor = min(charge.entry for charge in recent)
        ctx.chain_shift = entry - anchor
        for charge in earlier:
            if charge.exit >= anchor:
                window = (charge.exit - anchor) // _DAY
                ctx.earlier_by_window[window] = ctx.earlier_by_window.get(window, 0) + charge.fen
    return ctx


def quote(tariff_or_book: Tariff | TariffBook, *, entry: datetime, exit: datetime, plate: str,
          vehicle_class: str = "small", coupons: Iterable[Coupon] = (),
          calendar: HolidayCalendar = EMPTY_CALENDAR,
          timezone: ZoneInfo | str = "Asia/Shanghai",
          earlier_charges: Iterable[EarlierCharge] = ()) -> Quote:
    """The itemised fee for one stay. A book prices the stay by the version in force on the
    site-local date of entry. ``earlier_charges`` are the same plate's earlier stays (see
    :class:`EarlierCharge`); they count only when the tariff's ``caps.share_reentry`` is set.
    Raises :class:`TariffError` only for inputs no tariff can price: naive times, exit before
    entry, no version in force, an unknown vehicle class, an earlier charge overlapping the
    stay."""
    if entry.tzinfo is None or exit.tzinfo is None:
        raise TariffError("entry and exit must be timezone-aware")
    if exit < entry:
        raise TariffError(f"exit {exit.isoformat()} is before entry {entry.isoformat()}")
    zone = ZoneInfo(timezone) if isinstance(timezone, str) else timezone
    clock = _Clock(entry, zone)
    entry_day = clock.local(0).date()
    if isinstance(tariff_or_book, TariffBook):
        found = tariff_or_book.in_force(entry_day)
        if found is None:
            raise TariffError(f"no tariff version is in force on {entry_day}")
        tariff = found
    else:
        tariff = tariff_or_book
    if vehicle_class not in tariff.classes:
        raise TariffError(f"vehicle_class {vehicle_class!r} is not one of {sorted(tariff.classes)}")
    ctx = _shared_context(tariff, clock, calendar, tuple(earlier_charges))
    minutes = clock.offset_of(exit)
    priced = _price(ctx, 0, minutes)
    permille = tariff.classes[vehicle_class].permille
    charged = priced.fen
    with_class = _with_class(charged, permille)
    presented = tuple(coupons)

    def result(total: Fen, discounts: Sequence[Discount],
               rejected: Sequence[tuple[Coupon, str]], exemption: str | None = None) -> Quote:
        return Quote(tariff.name, tariff.version, entry, exit, minutes, vehicle_class,
                     tuple(priced.lines), tuple(priced.caps), charged, with_class - charged,
                     tuple(discounts), tuple(rejected), total, exemption)

    exemption = tariff.exemption_for(plate)
    if exemption is not None:
        waived = Discount("exemption", exemption.label_zh, exemption.label_en, exemption.reason,
                          with_class)
        return result(0, [waived], [(c, "exempt: not needed") for c in presented],
                      exemption.reason)
    grants, rejected = _resolve(tariff, presented, entry_day, calendar)
    if not grants:
        return result(with_class, [], rejected)

    cache: dict[int, Fen] = {}

    def after_minutes(free_minutes: int) -> Fen:
        if free_minutes not in cache:
            if tariff.coupons.apply == "back":
                window = (0, max(0, minutes - free_minutes))
            else:
                window = (min(minutes, free_minutes), minutes)
            cache[free_minutes] = _with_class(_price(ctx, *window).fen, permille)
        return cache[free_minutes]

    def outcome(chosen: Sequence[_Grant]) -> tuple[Fen, list[Discount]]:
        return _apply(chosen, with_class, after_minutes)

    stacking = tariff.coupons.stacking
    if stacking == "additive" or len(grants) == 1:
        total, discounts = outcome(grants)
    elif stacking == "none":
        total, discounts = outcome(grants[:1])
        rejected += [(_coupon_of(g), "stacking none: one coupon per stay") for g in grants[1:]]
    else:
        tried = [outcome([g]) for g in grants]
        best = min(range(len(grants)), key=lambda i: tried[i][0])
        total, discounts = tried[best]
        rejected += [(_coupon_of(g), "best_of: another coupon gives a lower fee")
                     for i, g in enumerate(grants) if i != best]
    return result(total, discounts, rejected)


def _coupon_of(grant: _Grant) -> Coupon:
    if grant.code in _ORDER:
        return Coupon(grant.kind, minutes=grant.minutes, fen=grant.fen, ref=grant.ref,
                      percent=grant.percent)
    return Coupon("rule", rule=grant.code, ref=grant.ref)
