"""``parkguard tariff``: price a stay by hand and check a tariff file (installers, guards).

* ``parkguard tariff quote --tariff FILE --plate P --in T --out T`` prints the itemised fee
  in Chinese and English, line by line as the pay page shows it (``--json`` for one JSON
  document). The plate must be a valid one; its vehicle class is picked as the gateway
  picks it unless ``--class`` names one. Times without an offset are site-local;
  ``--coupon KIND:VALUE`` may be repeated (``rule:spend_88``, ``free_minutes:120``,
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

from cli.errors import OneStyleGroup, UnreadableInputError, plain_os_error
from parkguard.core.bill_lines import BillLine, itemise, stay_en, stay_zh
from parkguard.core.plates import PlateError, is_no_plate, parse_plate
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
    except OSError as error:
        raise UnreadableInputError(f"cannot read tariff file: {plain_os_error(error, path)}"
                                   ) from error
    except UnicodeDecodeError as error:
        raise UnreadableInputError(f"{path}: not a UTF-8 tariff file") from error
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
    """The receipt as the pay page and the dashboard show it: the same itemised lines
    (:func:`parkguard.core.bill_lines.itemise`), which sum to the total printed last."""
    lines = [f"收费标准 tariff: {fee.tariff} {fee.version}    车型 class: {fee.vehicle_class}",
             f"入场 entry: {fee.entry.isoformat()}    出场 exit: {fee.exit.isoformat()}"
             f"    时长 stay: {stay_zh(fee.minutes, spaced=True)} ({stay_en(fee.minutes)}, "
             f"{fee.minutes} 分钟 min)    (site time {zone_name})"]
    bill = itemise(fee)
    lines += [f"  {_head(line):<56} {format_yuan(line.fen):>10}" for line in bill.lines]
    lines += [f"  未使用 not used: {coupon} — {why}" for coupon, why in fee.rejected_coupons]
    lines.append(f"应付 total: {format_yuan(bill.due_fen)}")
    return lines


def _head(line: BillLine) -> str:
    """A line's words and detail: ``折扣减免 percent off [coupon:percent_off]``."""
    if not line.detail:
        return f"{line.label_zh} {line.label_en}"
    shown = {"coupon": f"[{line.detail}]", "exemption": f"[{line.detail}]",
             "cap": f"({line.detail})"}.get(line.kind, f"  {line.detail}")
    return f"{line.label_zh} {line.label_en} {shown}"


def _checked_plate(plate: str) -> str:
    """The plate in its canonical spelling; an invalid one is a usage error naming why."""
    if is_no_plate(plate.strip()):
        return plate.strip()
    try:
        return parse_plate(plate).text
    except PlateError as error:
        raise click.BadParameter(f"not a valid plate: {error}",
                                 param_hint="--plate") from error


@click.group(name="tariff", cls=OneStyleGroup)
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
@click.option("--class", "vehicle_class", default=None,
              help="Vehicle class name from the tariff (a pass's class); default: the "
                   "plate's, as the gateway picks it (a new-energy plate is new_energy when "
                   "the tariff has that class, else small).")
@click.option("--coupon", "coupon_texts", multiple=True, metavar="KIND:VALUE",
              help="rule:CODE, free_minutes:N, amount_off:FEN, percent_off:N (1-100) or "
                   "full_free (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def quote_command(tariff_path: Path, plate: str, entry_text: str, exit_text: str,
                  vehicle_class: str | None, coupon_texts: tuple[str, ...],
                  as_json: bool) -> None:
    """Print the itemised fee for one stay."""
    plate = _checked_plate(plate)
    document = _load(tariff_path)
    entry = _moment(entry_text, document, "--in")
    exit_ = _moment(exit_text, document, "--out")
    if vehicle_class is None:
        vehicle_class = document.vehicle_class(plate, entry)
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
        receipt = {**fee.as_json(),
                   "bill_lines": [line.as_json() for line in itemise(fee).lines]}
        click.echo(json.dumps(receipt, ensure_ascii=False, indent=2))
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
