"""What a shopper's spend earns, by the site's tariff: pure, no IO.

A merchant's till types the amount the shopper spent; the tariff's coupon rules that carry a
``min_spend_fen`` say what that buys (``spend_88``: ¥88 or more, 2 h free, 3 h on holidays).
The rule is picked here, at the till, by the tariff in force today; what it gives is decided
at exit by the quote, from the calendar of the car's entry date, so the gateway and an
offline lane price it the same way.

>>> from datetime import date
>>> from gateway.money.pricing import EXAMPLE_TARIFF
>>> from parkguard.core.tariffs import parse_tariff_document
>>> site = parse_tariff_document(EXAMPLE_TARIFF.read_text(encoding="utf-8"))
>>> tariff = site.book.in_force(date(2026, 10, 2))
>>> rule_for_spend(tariff, 12_000).code
'spend_88'
>>> grant_minutes(rule_for_spend(tariff, 8_800), site.calendar, date(2026, 10, 2))
180
>>> try:
...     rule_for_spend(tariff, 5_000)
... except SpendTooLowError as refused:
...     print(refused)
消费¥50.00未满¥88.00，不能领停车券 / Spent ¥50.00: a parking coupon needs a spend of ¥88.00 or more
"""

from __future__ import annotations

from datetime import date

from gateway.money.merchants.errors import NoSpendRuleError, SpendTooLowError
from gateway.money.merchants.values import CouponGrant
from parkguard.core.tariffs import CouponRule, HolidayCalendar, Tariff, format_yuan

MAX_SPEND_FEN = 100_000_000
"""¥1 000 000: a typed spend above this is a typing mistake, not a purchase."""


def spend_rules(tariff: Tariff) -> list[CouponRule]:
    """The tariff's rules a till may issue for a spend, the smallest spend first."""
    rules = [rule for rule in tariff.coupons.rules if rule.min_spend_fen is not None]
    return sorted(rules, key=lambda rule: (rule.min_spend_fen or 0, rule.code))


def rule_for_spend(tariff: Tariff, spent_fen: int) -> CouponRule:
    """The rule with the highest ``min_spend_fen`` the spend reaches.

    Refuses a tariff without spend rules (:class:`NoSpendRuleError`) and a spend below the
    smallest one (:class:`SpendTooLowError`), each with a message the till can show."""
    if isinstance(spent_fen, bool) or not isinstance(spent_fen, int) \
            or not 0 < spent_fen <= MAX_SPEND_FEN:
        raise ValueError(f"消费金额须在¥0.01至{format_yuan(MAX_SPEND_FEN)}之间 / the amount spent "
                         f"must be ¥0.01 to {format_yuan(MAX_SPEND_FEN)}, got {spent_fen!r} fen")
    rules = spend_rules(tariff)
    if not rules:
        raise NoSpendRuleError(
            f"收费标准 {tariff.name} {tariff.version} 没有按消费发券的规则 / tariff "
            f"{tariff.name} {tariff.version} has no coupon rule with a min_spend_fen")
    reached = [rule for rule in rules if (rule.min_spend_fen or 0) <= spent_fen]
    if not reached:
        least = format_yuan(rules[0].min_spend_fen or 0)
        spent = format_yuan(spent_fen)
        raise SpendTooLowError(f"消费{spent}未满{least}，不能领停车券 / Spent {spent}: a "
                               f"parking coupon needs a spend of {least} or more")
    return reached[-1]


def grant_minutes(rule: CouponRule, calendar: HolidayCalendar, entry_day: date) -> int:
    """The free minutes a ``free_minutes`` rule gives a car that came in on ``entry_day``
    (site-local), upgrades included, the way the quote counts them; 0 for other kinds. For
    the till's confirmation ("2 h free today, 3 h on holidays"), never for pricing."""
    if rule.kind != "free_minutes":
        return 0
    kind, periods = calendar.day_kind(entry_day), calendar.periods_on(entry_day)
    minutes = rule.minutes
    for upgrade in rule.upgrades:
        if kind in upgrade.day_kinds or periods.intersection(upgrade.periods):
            minutes = max(minutes, upgrade.minutes)
    return minutes


def describe_rule(rule: CouponRule) -> tuple[str, str]:
    """What the rule gives, in Chinese and English, upgrades included."""
    if rule.kind == "free_minutes":
        most = max([rule.minutes, *(u.minutes for u in rule.upgrades)])
        zh, en = f"免费停车{_hours(rule.minutes, 'zh')}", f"{_hours(rule.minutes, 'en')} free"
        if most > rule.minutes:
            zh += f"（节假日{_hours(most, 'zh')}）"
            en += f" ({_hours(most, 'en')} on holidays)"
        return zh, en
    if rule.kind == "amount_off":
        return f"停车费减{format_yuan(rule.fen)}", f"{format_yuan(rule.fen)} off parking"
    if rule.kind == "percent_off":
        return f"停车费减{rule.percent}%", f"{rule.percent} % off parking"
    return "免费停车", "free parking"


def describe_grant(grant: CouponGrant, tariff: Tariff | None) -> tuple[str, str]:
    """What a coupon gives, in Chinese and English: a rule as the tariff describes it."""
    if grant.kind == "rule":
        rule = tariff.rule(grant.rule) if tariff is not None else None
        return describe_rule(rule) if rule is not None else (grant.rule, grant.rule)
    if grant.kind == "free_minutes":
        return (f"免费停车{_hours(grant.minutes, 'zh')}",
                f"{_hours(grant.minutes, 'en')} free")
    if grant.kind == "amount_off":
        return f"停车费减{format_yuan(grant.fen)}", f"{format_yuan(grant.fen)} off parking"
    return "停车费全免", "free parking"


def _hours(minutes: int, language: str) -> str:
    hours, rest = divmod(minutes, 60)
    if language == "zh":
        return (f"{hours}小时" if hours else "") + (f"{rest}分钟" if rest else "")
    return " ".join(part for part in (f"{hours} h" if hours else "",
                                      f"{rest} min" if rest else "") if part)
