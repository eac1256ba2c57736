"""``make bench`` (tariffs): quotes per second on one core, ParkGuard ``quote`` against a naive
minute-by-minute pricing loop, over the same stays of the mall tariff.

The naive loop walks every minute of the stay: it finds the band of that minute's site-local
time, starts a new occurrence when the band changes, charges a tier step on the minute that
makes it due, and trims each charge to the occurrence, calendar-day and rolling-24 h caps.
It is the tariff's definition written the slow way, so the benchmark also checks that both
give the same fee for every stay (``mismatches`` must be 0). ``quote`` jumps band to band
and step to step instead.

Stays are a plausible mall mix: most between 15 minutes and 4 hours, some all day, a few
overnight and multi-day; entries spread over 2026. No timing targets live in the tests.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo

from rich import box
from rich.console import Console
from rich.table import Table

from parkguard.core.tariffs import Fen, Tariff, parse_tariff_document, quote

MALL: Final = Path(__file__).resolve().parents[1] / "docs/examples/tariff-mall.toml"
NAIVE = "naive per-minute loop"
QUOTE = "ParkGuard quote"
_MINUTE = timedelta(minutes=1)
Stay = tuple[datetime, datetime]


@dataclass(frozen=True, slots=True)
class TariffBenchRow:
    """One line of the table: how many quotes, how fast, and the fees they came to."""

    name: str
    count: int
    seconds: float
    total_fen: Fen
    mismatches: int = 0

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else float("inf")


def stays(count: int, rng: random.Random) -> list[Stay]:
    """Entries over 2026 at any minute, with mostly short and a few long stays."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    result: list[Stay] = []
    for _ in range(count):
        entry = start + timedelta(minutes=rng.randrange(365 * 24 * 60),
                                  seconds=rng.randrange(60))
        kind = rng.random()
        if kind < 0.75:
            minutes = rng.randrange(0, 240)
        elif kind < 0.92:
            minutes = rng.randrange(240, 14 * 60)
        else:
            minutes = rng.randrange(14 * 60, 3 * 24 * 60)
        result.append((entry, entry + timedelta(minutes=minutes, seconds=rng.randrange(60))))
    return result


def naive_fee(tariff: Tariff, entry: datetime, exit_: datetime, zone: ZoneInfo) -> Fen:
    """The fee for a small car without coupons, minute by minute (the slow definition)."""
    minutes = -int(-(exit_ - entry).total_seconds() // 60)
    start = 0
    if tariff.free.mode == "threshold" and minutes <= tariff.free.minutes:
        return 0
    if tariff.free.mode == "deduct":
        start = min(minutes, tariff.free.minutes)
    total = 0
    occurrence_start, occurrence_used = start, 0
    period = None
    day_used: dict[date, Fen] = {}
    roll_used: dict[int, Fen] = {}
    for minute in range(start, minutes):
        local = (entry + minute * _MINUTE).astimezone(zone)
        here = tariff.period_at(local.hour * 60 + local.minute)
        if period is None or (tariff.segmentation == "split" and here is not period):
            period, occurrence_start, occurrence_used = here, minute, 0
        into = minute - occurrence_start
        fen = 0
        if period.flat_fen is not None:
            fen = period.flat_fen if into == 0 else 0
        else:
            tier_start = 0
            for tier in period.tiers:
                tier_end = tier.upto_minutes
                if tier_end is None or into < tier_end:
                    offset = into - tier_start
                    if tier.flat_fen is not None:
                        fen = tier.flat_fen if offset == 0 else 0
                    else:
                        every = tier.every_minutes or 1
                        due = {"ceil": 1, "floor": every, "nearest": (every + 1) // 2}
                        if offset % every == due[tier.rounding] - 1:
                            fen = tier.step_fen or 0
                    break
                tier_start = tier_end
        if period.cap_fen is not None:
            fen = max(0, min(fen, period.cap_fen - occurrence_used))
        occurrence_used += fen
        if tariff.caps.calendar_day_fen is not None:
            fen = max(0, min(fen, tariff.caps.calendar_day_fen - day_used.get(local.date(), 0)))
        if tariff.caps.rolling_24h_fen is not None:
            window = minute // (24 * 60)
            fen = max(0, min(fen, tariff.caps.rolling_24h_fen - roll_used.get(window, 0)))
        day_used[local.date()] = day_used.get(local.date(), 0) + fen
        roll_used[minute // (24 * 60)] = roll_used.get(minute // (24 * 60), 0) + fen
        total += fen
    return total


def _timed(price: Callable[[Stay], Fen], work: Sequence[Stay]) -> tuple[float, list[Fen]]:
    began = time.perf_counter()
    fees = [price(stay) for stay in work]
    return time.perf_counter() - began, fees


def run_tariff_bench(*, count: int, seed: int, baseline_count: int) -> list[TariffBenchRow]:
    """Both rows over the same stays (the baseline over the first ``baseline_count``)."""
    document = parse_tariff_document(MALL.read_text(encoding="utf-8"), source=str(MALL))
    tariff, zone = document.tariffs[0], document.zone
    work = stays(count, random.Random(seed))
    baseline_work = work[:baseline_count]

    def fast(stay: Stay) -> Fen:
        return quote(tariff, entry=stay[0], exit=stay[1], plate="粤B12345",
                     calendar=document.calendar, timezone=zone).total_fen

    naive_seconds, naive_fees = _timed(lambda s: naive_fee(tariff, s[0], s[1], zone),
                                       baseline_work)
    quote_seconds, quote_fees = _timed(fast, work)
    mismatches = sum(a != b for a, b in zip(naive_fees, quote_fees, strict=False))
    return [TariffBenchRow(NAIVE, len(baseline_work), naive_seconds, sum(naive_fees)),
            TariffBenchRow(QUOTE, len(work), quote_seconds, sum(quote_fees), mismatches)]


def results_table(rows: Sequence[TariffBenchRow]) -> Table:
    table = Table(title="tariff quotes on one core (mall tariff; the naive loop is the baseline)",
                  box=box.SIMPLE_HEAVY)
    for column in ("pricing", "stays", "seconds", "quotes/s", "¥/stay", "mismatch"):
        table.add_column(column, justify="left" if column == "pricing" else "right",
                         no_wrap=column == "pricing")
    for row in rows:
        mean = row.total_fen / row.count / 100 if row.count else 0.0
        table.add_row(row.name, f"{row.count}", f"{row.seconds:.3f}", f"{row.per_second:,.0f}",
                      f"{mean:.2f}", "—" if row.name == NAIVE else f"{row.mismatches}")
    return table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--stays", type=int, default=20_000, help="stays quoted by quote()")
    parser.add_argument("--baseline-stays", type=int, default=1_000,
                        help="stays priced by the naive loop (the first ones)")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    console = Console()
    if args.stays < 1 or not 1 <= args.baseline_stays <= args.stays:
        console.print("--stays must be ≥ 1 and --baseline-stays between 1 and --stays")
        return 2
    rows = run_tariff_bench(count=args.stays, seed=args.seed, baseline_count=args.baseline_stays)
    console.print(results_table(rows))
    naive, mine = rows
    console.print(f"speed-up: {mine.per_second / naive.per_second:.1f}× quotes per second")
    return 0 if mine.mismatches == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
