"""``parkguard plate``: check plate texts and try the matcher by hand (installers, guards).

* ``parkguard plate check TEXT...`` prints each text normalised, with its series and colour
  class, the letter/digit corrections made and soft warnings, or the error naming the
  position at fault. ``--strict`` takes letters and digits as written.
* ``parkguard plate match READ --inside FILE`` matches one camera read (``?`` for unreadable
  characters) against the cars inside (FILE: one plate a line) and prints the match, its
  score and the runner-up, or why there is none.

Exit codes: 0 all valid / a match; 1 something invalid / ambiguous / none; 2 a usage error
or a FILE that cannot be read. ``--json`` prints one JSON document instead of text (error
positions there count from 1, as in the messages).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from cli.errors import OneStyleGroup, UnreadableInputError, plain_os_error
from parkguard.core.plates import (
    DEFAULT_POLICY,
    MatchPolicy,
    MatchResult,
    OcrRead,
    PlateError,
    PlateIndex,
    is_plate,
    match,
    normalise_with_corrections,
    parse_plate,
)
from parkguard.core.plates.charset import tidy


@click.group(name="plate", cls=OneStyleGroup)
def plate() -> None:
    """Check plate texts and match a camera read against the cars inside."""


# check -------------------------------------------------------------------------------------


def _check_one(text: str, *, strict: bool) -> dict[str, Any]:
    """What ``check`` reports about one text, as a JSON-ready dict."""
    normalisation = normalise_with_corrections(text)
    candidate = tidy(text) if strict else normalisation.text
    try:
        parsed = parse_plate(candidate)
    except PlateError as error:
        return {
            "input": text, "valid": False, "normalised": error.text,
            "error": {"position": None if error.position is None else error.position + 1,
                      "reason": error.reason},
            "message": str(error),
        }
    corrections = [] if strict else [str(c) for c in normalisation.corrections]
    return {
        "input": text, "valid": True, "plate": parsed.text, "display": parsed.display,
        "series": parsed.series.value, "series_zh": parsed.series.label_zh,
        "colour": parsed.colour.value, "colour_zh": parsed.colour.label_zh,
        "province": parsed.province, "authority": parsed.authority, "serial": parsed.serial,
        "energy": parsed.energy, "duty_vehicle": parsed.series.is_duty_vehicle,
        "corrections": corrections, "warnings": list(parsed.warnings),
    }


def _check_lines(report: dict[str, Any]) -> list[str]:
    if not report["valid"]:
        return [f"{report['input']}  INVALID  {report['message']}"]
    shown = report["display"]
    typed = report["input"].strip()
    head = shown if typed in (report["plate"], shown) else f"{typed} → {shown}"
    lines = [f"{head}  {report['series']} {report['series_zh']}  "
             f"{report['colour']} {report['colour_zh']}"
             + ("  (duty vehicle)" if report["duty_vehicle"] else "")]
    lines += [f"  corrected {correction}" for correction in report["corrections"]]
    lines += [f"  warning: {warning}" for warning in report["warnings"]]
    return lines


@plate.command(name="check")
@click.argument("texts", nargs=-1, required=True)
@click.option("--strict", is_flag=True,
              help="Take letters and digits as written: no I→1, O→0 or look-alike repairs.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def check_command(texts: tuple[str, ...], strict: bool, as_json: bool) -> None:
    """Normalise and check each TEXT: series and colour class, or what is wrong where."""
    reports = [_check_one(text, strict=strict) for text in texts]
    if as_json:
        click.echo(json.dumps(reports, ensure_ascii=False, indent=2))
    else:
        for report in reports:
            click.echo("\n".join(_check_lines(report)))
    if not all(report["valid"] for report in reports):
        # sys.exit, not ctx.exit: without standalone mode click returns ctx.exit's code.
        sys.exit(1)


# match -------------------------------------------------------------------------------------


def _load_inside(path: Path) -> tuple[PlateIndex, list[str]]:
    """The cars inside from FILE (one a line, blanks skipped), and notes on odd lines."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise UnreadableInputError(
            f"cannot read the list of cars inside: {plain_os_error(error, path)}") from error
    except UnicodeDecodeError as error:
        raise UnreadableInputError(
            f"{path}: cannot read the list of cars inside: not UTF-8 text") from error
    index = PlateIndex()
    notes: list[str] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            key = index.add(line)
        except PlateError as error:
            raise UnreadableInputError(f"{path}:{number}: {error}") from error
        if not key.startswith("#") and not is_plate(key):
            notes.append(f"{path}:{number}: {key} is not a valid plate; matched as written")
    return index, notes


def _parse_confidences(value: str | None) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        return tuple(float(part) for part in value.split(","))
    except ValueError as error:
        raise click.BadParameter("give numbers between 0 and 1, separated by commas",
                                 param_hint="--confidences") from error


def _match_lines(result: MatchResult) -> list[str]:
    lines = []
    if result.outcome == "match":
        lines.append(f"match  {result.plate}  score {result.score:g}")
    elif result.outcome == "ambiguous":
        lines.append("ambiguous  a guard must choose")
    else:
        lines.append("none")
    lines.append(f"  read       {result.read}" + (f"  (raw {result.raw!r})"
                                                  if result.raw != result.read else ""))
    lines.append(f"  why        {result.reason}")
    if result.outcome == "match":
        runner_up = "none within the search distance" if result.runner_up is None \
            else str(result.runner_up)
        lines.append(f"  runner-up  {runner_up}")
    if result.outcome != "match" and result.candidates:
        lines.append("  closest    " + ", ".join(map(str, result.candidates)))
    return lines


@plate.command(name="match")
@click.argument("read")
@click.option("--inside", "inside_path", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The cars inside: one plate (or #P/#Q no-plate identity) a line.")
@click.option("--confidences", default=None, metavar="C1,C2,...",
              help="Per-character confidences (0..1) of READ as written.")
@click.option("--max-distance", type=float, default=DEFAULT_POLICY.max_distance,
              show_default=True, help="Farthest a read may be from a plate to match it.")
@click.option("--min-margin", type=float, default=DEFAULT_POLICY.min_margin,
              show_default=True, help="How much further the runner-up must be.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def match_command(read: str, inside_path: Path, confidences: str | None,
                  max_distance: float, min_margin: float, as_json: bool) -> None:
    """Match READ (a camera read, ? for unreadable characters) against the cars inside."""
    try:
        policy = MatchPolicy(max_distance=max_distance, min_margin=min_margin,
                             suggest_distance=max(DEFAULT_POLICY.suggest_distance, max_distance))
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'policy'}: {e['msg']}"
                             for e in error.errors())
        raise click.UsageError(problems) from error
    try:
        ocr = OcrRead(read, _parse_confidences(confidences))
    except PlateError as error:
        raise click.BadParameter(str(error), param_hint="--confidences") from error
    index, notes = _load_inside(inside_path)
    for note in notes:
        click.echo(f"note: {note}", err=True)
    try:
        result = match(ocr if not read.strip().startswith("#") else read, index, policy)
    except PlateError as error:
        raise click.BadParameter(str(error), param_hint="READ") from error
    if as_json:
        click.echo(json.dumps({**result.evidence(), "inside": len(index)},
                              ensure_ascii=False, indent=2))
    else:
        click.echo("\n".join(_match_lines(result)))
    if not result.is_match:
        sys.exit(1)
