"""``parkguard patrol report``: the rounds of a day (or of a range of days) by person and
route, with compliance, missed checkpoints, late and too-fast rounds and cloned tags: the
same figures as the dashboard's patrol page, both from
:func:`gateway.patrols.summary.patrol_summary` (docs/patrols.md).

It reads the gateway's database read-only, so it runs beside a running gateway.
"""

from __future__ import annotations

import json
import sqlite3
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path

import click
import sqlite_utils

from cli.errors import OneStyleGroup, UnreadableInputError
from gateway.patrols.reports import status_words
from gateway.patrols.summary import ROLE_WORDS, PatrolSummary, read_summary
from parkguard.clock import SystemClock
from parkguard.core.patrol import PatrolConfig


@click.group(name="patrol", cls=OneStyleGroup)
def patrol() -> None:
    """Patrol rounds and compliance (the three checks, docs/patrols.md)."""


@patrol.command(name="report")
@click.option("-c", "--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
              required=True, help="Gateway TOML file: its database and its patrol_file.")
@click.option("--day", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="One site-local day, YYYY-MM-DD (default: today).")
@click.option("--from", "first", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="First day of a range (with --to).")
@click.option("--to", "last", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="Last day of a range, included.")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of tables.")
def report(config_path: Path, day: datetime | None, first: datetime | None,
           last: datetime | None, as_json: bool) -> None:
    """Rounds by person and route: status, compliance, missed checkpoints, late, walked
    too fast, cloned tags; site-local times."""
    from gateway.config import GatewayConfig
    from gateway.patrols.regime import load_site_regime
    from parkguard.configfile import load_config

    config = load_config(GatewayConfig, config_path)
    if config.patrol_file is None:
        raise click.ClickException(f"{config_path}: no patrol_file, so no patrol regime to "
                                   "judge taps by (docs/patrols.md)")
    regime = load_site_regime(config.patrol_file, config.tariff_file)
    now = SystemClock().now()
    days = _days(regime, now, day, first, last)
    with _read_only(config.database) as db:
        summary = read_summary(db, regime, *days, now=now)
    if as_json:
        click.echo(json.dumps(summary.as_json(), ensure_ascii=False, indent=1))
    else:
        click.echo(tables(summary))


def _days(regime: PatrolConfig, now: datetime, day: datetime | None, first: datetime | None,
          last: datetime | None) -> tuple[date, date]:
    if day is not None and (first is not None or last is not None):
        raise click.UsageError("give --day or --from/--to, not both")
    if (first is None) != (last is None):
        raise click.UsageError("--from and --to go together")
    if first is not None and last is not None:
        if last < first:
            raise click.BadParameter(f"{last:%Y-%m-%d} is before --from {first:%Y-%m-%d}",
                                     param_hint="'--to'")
        if (last - first).days > 366:
            raise click.BadParameter("a range of at most a year", param_hint="'--to'")
        return first.date(), last.date()
    chosen = day.date() if day is not None else now.astimezone(regime.zone).date()
    return chosen, chosen


@contextmanager
def _read_only(path: Path) -> Iterator[sqlite_utils.Database]:
    if not path.is_file():
        raise UnreadableInputError(f"{path}: no such database file")
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        yield sqlite_utils.Database(conn)
    except sqlite3.DatabaseError as error:
        raise UnreadableInputError(f"{path}: cannot read its patrol taps ({error})") from error
    finally:
        conn.close()


# --- tables ----------------------------------------------------------------------------------


def _width(text: str) -> int:
    """Terminal columns: Chinese characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to the widest cell, counting a Chinese character as two columns."""
    widths = [max(_width(str(cell)) for cell in column) for column in zip(header, *rows,
                                                                         strict=True)]
    lines = []
    for row in (header, *rows):
        cells = [str(c) + " " * (w - _width(str(c))) for c, w in zip(row, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _pct(value: int | None) -> str:
    return "—" if value is None else f"{value}%"


def tables(summary: PatrolSummary) -> str:
    """The summary as the terminal shows it: per person, every round, cloned tags."""
    span = summary.first.isoformat() if summary.first == summary.last else \
        f"{summary.first} – {summary.last}"
    people = table(
        ("人员 person", "角色 role", "应完成 due", "达标 met", "逾时 late", "未完成 missed",
         "未到期 pending", "合规 compliance", "轮次 rounds", "异常 flagged"),
        [(g.name, ROLE_WORDS.get(g.role, "团队 team"), str(g.due), str(g.met), str(g.late),
          str(g.missed), str(g.pending),
          _pct(g.compliance_pct), str(g.rounds), str(g.flagged_rounds))
         for g in summary.guards])
    rounds = table(
        ("人员 person", "路线 route", "开始 start", "结束 end", "分钟 min", "状态 status",
         "完成度 done", "漏检 missed", "过快 too fast", "克隆标签 cloned tag"),
        [(r.name, r.route, "—" if r.start is None else f"{r.start:%m-%d %H:%M}",
          "—" if r.end is None else f"{r.end:%H:%M}",
          "—" if r.minutes is None else f"{r.minutes:.0f}", status_words(r.status),
          f"{r.visited}/{r.needed} {r.compliance_pct}%", " ".join(r.missed) or "—",
          "; ".join(r.too_fast) or "—",
          " ".join(f"{f.at:%H:%M} {f.checkpoint} {f.reason}" for f in r.tag_flags) or "—")
         for r in summary.rounds])
    flags = table(("时间 at", "巡更点 checkpoint", "原因 reason", "人员 person", "读卡器 reader"),
                  [(f"{f.at:%m-%d %H:%M:%S}", f"{f.checkpoint} {f.place}", f.reason, f.person,
                    f"{f.reader}#{f.seq}") for f in summary.tag_flags])
    return (f"巡查 Patrols {span} ({summary.zone}), as of {summary.generated_at:%Y-%m-%d %H:%M}"
            f"\n\n按人员 By person\n{people}\n\n巡查轮次 Rounds\n{rounds}\n\n"
            f"标签异常 Cloned or replayed tags\n"
            f"{flags if summary.tag_flags else '无 none'}")
