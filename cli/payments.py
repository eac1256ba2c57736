"""``parkguard payments``: the drivers' money against the providers' own records.

``reconcile`` reads one day's statement file as the provider issues it (WeChat Pay's trade
bill, Alipay's business bill CSV) and the gateway database read-only, and prints every
mismatch. Exit codes: 0 the day reconciles, 1 there are mismatches (listed), 2 the file or
the database could not be read.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

import click
from sqlite_utils import Database

from cli.errors import OneStyleGroup, UnreadableInputError, plain_os_error
from gateway.money.payments.reconcile_statement import (
    LABELS,
    Mismatch,
    OurSide,
    our_side,
    reconcile,
)
from gateway.money.payments.statements import (
    Statement,
    StatementError,
    decode_alipay_bill,
    parse_alipay_bill,
    parse_wechat_bill,
)

PROVIDERS = {"wechat": "微信支付 WeChat Pay", "alipay": "支付宝 Alipay"}


def _yuan(fen: int | None) -> str:
    return "—" if fen is None else f"¥{fen / 100:,.2f}"


def read_statement(provider: str, path: Path) -> Statement:
    """The statement file as the provider's format, or exit 2 naming what is wrong."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UnreadableInputError(f"cannot read {plain_os_error(error, path)}") from None
    try:
        if provider == "wechat":
            return parse_wechat_bill(data.decode("utf-8-sig"))
        return parse_alipay_bill(decode_alipay_bill(data))
    except UnicodeDecodeError:
        raise UnreadableInputError(f"{path}: not UTF-8 text (a WeChat Pay bill is)") from None
    except StatementError as error:
        raise UnreadableInputError(f"{path}: {error}") from None


def _database(db_path: Path) -> Database:
    if not db_path.is_file():
        raise UnreadableInputError(f"{db_path}: no such database file")
    conn = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        conn.execute("SELECT count(*) FROM payments").fetchone()
    except sqlite3.DatabaseError as error:
        conn.close()
        raise UnreadableInputError(f"{db_path}: not a gateway database with payments "
                                   f"({error})") from None
    return Database(conn)


def report(provider: str, statement: Statement, ours: OurSide,
           mismatches: list[Mismatch]) -> list[str]:
    """The report's lines, Chinese with English."""
    booked_refunds = sum(ours.refunds.values())
    lines = [
        f"对账 Reconciliation · {PROVIDERS[provider]} · {ours.day.isoformat()}",
        f"  对方账单 Statement: {statement.count('payment')} 笔支付 payments "
        f"{_yuan(statement.total('payment'))}, {statement.count('refund')} 笔退款 refunds "
        f"{_yuan(statement.total('refund'))}",
        f"  我方记录 Ours:      {len(ours.paid)} 笔支付 payments "
        f"{_yuan(sum(b.amount_fen for b in ours.paid.values()))}, 退款 refunds "
        f"{_yuan(booked_refunds)}",
    ]
    if not mismatches:
        lines.append("一致 All reconciled: no mismatches")
        return lines
    lines.append(f"不符 Mismatches: {len(mismatches)}")
    for item in mismatches:
        note = f"  {item.note}" if item.note else ""
        lines.append(f"  {LABELS[item.kind]:<28} {item.out_trade_no:<34} "
                     f"我方 ours {_yuan(item.ours_fen):>10}  对方 theirs "
                     f"{_yuan(item.theirs_fen):>10}{note}")
    return lines


@click.group(name="payments", cls=OneStyleGroup)
def payments() -> None:
    """Drivers' payments against the providers' statements."""


@payments.command(name="reconcile")
@click.option("--provider", type=click.Choice(sorted(PROVIDERS)), required=True,
              help="Whose statement FILE is.")
@click.option("--db", "db_path", type=click.Path(path_type=Path), default=None,
              help="Gateway SQLite file (default: the database of --config).")
@click.option("-c", "--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="Gateway TOML file, for its database.")
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="The statement's day (default: as the file says).")
@click.argument("statement_file", metavar="FILE", type=click.Path(path_type=Path))
def reconcile_command(provider: str, db_path: Path | None, config_path: Path | None,
                      day: datetime | None, statement_file: Path) -> None:
    """Compare one day's statement FILE (WeChat Pay trade bill, Alipay business bill CSV)
    with the payments the gateway booked; exit 1 if anything differs."""
    if db_path is None:
        if config_path is None:
            raise click.UsageError("give the gateway database: --db FILE or -c CONFIG")
        from gateway.config import GatewayConfig
        from parkguard.configfile import load_config

        db_path = load_config(GatewayConfig, config_path).database
    statement = read_statement(provider, statement_file)
    the_day = day.date() if day is not None else statement.day
    if the_day is None:
        raise click.UsageError(f"{statement_file} spans several days: say which with --date")
    db = _database(db_path)
    try:
        ours = our_side(db, the_day, wallet=provider)
    finally:
        db.close()
    mismatches = reconcile(statement, ours)
    for line in report(provider, statement, ours, mismatches):
        click.echo(line)
    if mismatches:
        raise click.exceptions.Exit(1)
