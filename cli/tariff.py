"""``parkguard tariff``: price a stay by hand and check a tariff file (installers, guards).

* ``parkguard tariff quote --tariff FILE --plate P --in T --out T`` prints the itemised fee
  in Chinese and English (``--json`` for one JSON document). Times without an offset are
  site-local; ``--coupon KIND:VALUE`` may be repeated (``rule:spend_88``, ``free_minutes:120``,
  ``amount_off:500``, ``percent_off:20``, ``full_free``).
* ``parkguard tariff check FILE`` validates the file and runs its golden vectors.

Exit codes: 0 fine; 1 an invalid tariff, a failing vector or a stay it cannot price;
2 a usage error or a file that cannot be read.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import click

from cli.errors import UnreadableInputError
from parkguard.core.tariffs import (
    Coupon,
    Quote,
    TariffDocument,
    format_yuan,
    parse_tariff_document,
    quote,
    run_vectors,
)
from parkguard.errors import TariffError


def _load(path: Path) -> TariffDocument:
    """Read and parse a tariff file; an invalid one is exit 1 with the field named."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UnreadableInputError(f"{path}: cannot read tariff file: {error}") from error
    try:
        return parse_tariff_document(text, source=str(path))
    except TariffError as error:
        raise click.ClickException(str(error)) from error


def _moment(text: str, document: TariffDocument, option: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as error:
        raise click.BadParameter(f"{text!r} is not an ISO date-time", param_hint=option) from error
    return moment if moment.tzinfo else moment.replace(tzinfo=document.zone)


def _as_text(fee: Quote, zone_name: str) -> list[str]:
    lines = [f"收费标准 tariff: {fee.tariff} {fee.version}    车型 class: {fee.vehicle_class}",
             f"入场 entry: {fee.entry.isoformat()}    出场 exit: {fee.exit.isoformat()}"
             f"    时长 stay: {fee.minutes} 分钟 min    (site time {zone_name})"]
    lines += [f"  {line.label_zh} {line.label_en:<12} {line.start:%m-%d %H:%M}  "
              f"{line.rule:<26} {line.minutes:>5} → {line.rounded_minutes:>5} min  "
              f"{format_yuan(line.fen):>10}" for line in fee.lines]
    lines += [f"  {cap.label_zh} {cap.label_en} ({cap.key})  {format_yuan(-cap.fen):>10}"
              for cap in fee.caps]
    if fee.class_fen:
        lines.append(f"  车型调整 class adjustment ({fee.vehicle_class})  "
                     f"{format_yuan(fee.class_fen):>10}")
    lines += [f"  {d.label_zh} {d.label_en} [{d.reason}]  {format_yuan(-d.fen):>10}"
              for d in fee.discounts]
    lines += [f"  未使用 not used: {coupon} — {why}" for coupon, why in fee.rejected_coupons]
    lines.append(f"应付 total: {format_yuan(fee.total_fen)}")
    return lines


@click.group(name="tariff")
def tariff() -> None:
    """Price a stay by hand and check a tariff file with its golden vectors."""


@tariff.command("quote")
@click.option("--tariff", "tariff_path", type=click.Path(path_type=Path), required=True,
              help="Tariff TOML file (see docs/tariffs.md).")
@click.option("--plate", required=True, help="Plate as read at the lane.")
@click.option("--in", "entry_text", required=True, metavar="T",
              help="Entry time, ISO 8601; without an offset it is site-local.")
@click.option("--out", "exit_text", required=True, metavar="T",
              help="Exit time, ISO 8601; without an offset it is site-local.")
@click.option("--class", "vehicle_class", default="small", show_default=True,
              help="Vehicle class name from the tariff.")
@click.option("--coupon", "coupon_texts", multiple=True, metavar="KIND:VALUE",
              help="rule:CODE, free_minutes:N, amount_off:FEN, percent_off:N (1-100) or "
                   "full_free (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def quote_command(tariff_path: Path, plate: str, entry_text: str, exit_text: str,
                  vehicle_class: str, coupon_texts: tuple[str, ...], as_json: bool) -> None:
    """Print the itemised fee for one stay."""
    document = _load(tariff_path)
    entry = _moment(entry_text, document, "--in")
    exit_ = _moment(exit_text, document, "--out")
    try:
        coupons = [Coupon.parse(text) for text in coupon_texts]
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--coupon") from error
    try:
        fee = quote(document.book, entry=entry, exit=exit_, plate=plate,
                    vehicle_class=vehicle_class, coupons=coupons, calendar=document.calendar,
                    timezone=document.zone)
    except TariffError as error:
        raise click.ClickException(str(error)) from error
    if as_json:
        click.echo(json.dumps(fee.as_json(), ensure_ascii=False, indent=2))
        return
    for line in _as_text(fee, document.timezone):
        click.echo(line)


@tariff.command("check")
@click.argument("path", type=click.Path(path_type=Path))
def check_command(path: Path) -> None:
    """Validate a tariff file and run its golden vectors (exit 1 if any fails)."""
    document = _load(path)
    results = run_vectors(document)
    failed = [result for result in results if not result.ok]
    for result in results:
        mark = "ok  " if result.ok else "FAIL"
        detail = "" if result.ok else f" — {result.problem}"
        click.echo(f"{mark} {result.name}{detail}")
    versions = ", ".join(f"{t.version} from {t.effective_from}" for t in document.tariffs)
    click.echo(f"{path}: {len(document.tariffs)} version(s) ({versions}), "
               f"{len(results) - len(failed)}/{len(results)} vectors pass")
    if failed:
        raise click.exceptions.Exit(1)
