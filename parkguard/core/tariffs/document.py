"""A site's tariff file as text: versions, calendar, time zone and golden vectors together.

Reading the file is the caller's job (the CLI, the gateway); this module only parses text,
so the core stays free of IO. Every error names the source, the field and the reason.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Self
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from parkguard.core.tariffs.classes import vehicle_class_for
from parkguard.core.tariffs.holidays import HolidayCalendar
from parkguard.core.tariffs.model import Fen, Tariff, TariffBook
from parkguard.core.tariffs.quote import Coupon, quote
from parkguard.core.zones import TimeZoneName
from parkguard.errors import TariffError


class GoldenVector(BaseModel):
    """One stay with the fee the site expects: the tariff's own regression test."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, description="what the vector checks, e.g. one hour ten")
    entry: datetime = Field(description="entry time; without an offset it is site-local")
    exit: datetime = Field(description="exit time; without an offset it is site-local")
    plate: str = Field(default="粤B12345", min_length=1, description="plate read at the lane")
    vehicle_class: str = Field(default="small", description="vehicle class name")
    coupons: list[str] = Field(default_factory=list, description="coupons as KIND:VALUE")
    expect_fen: Fen = Field(ge=0, description="expected total in fen")
    expect_exemption: str | None = Field(default=None, description="expected exemption reason")

    @field_validator("coupons")
    @classmethod
    def _coupons_parse(cls, value: list[str]) -> list[str]:
        for text in value:
            Coupon.parse(text)
        return value


class TariffDocument(BaseModel):
    """Everything in a tariff file: the versions (a book), the calendar, the zone, the vectors."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    timezone: TimeZoneName = Field(default="Asia/Shanghai",
                                   description="site time zone (IANA name)")
    tariffs: list[Tariff] = Field(min_length=1, description="tariff versions")
    calendar: HolidayCalendar = Field(default_factory=HolidayCalendar,
                                      description="holidays, make-up workdays, named periods")
    vectors: list[GoldenVector] = Field(default_factory=list, description="golden vectors")


    @model_validator(mode="after")
    def _book_valid(self) -> Self:
        TariffBook(versions=self.tariffs)
        names = [vector.name for vector in self.vectors]
        if len(names) != len(set(names)):
            raise ValueError("vectors: names must be unique")
        return self

    @cached_property
    def book(self) -> TariffBook:
        """The versions as a book that picks the one in force at entry (built once: it is
        validated again on every build, a tenth of a millisecond twice in each exit quote)."""
        return TariffBook(versions=self.tariffs)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def vehicle_class(self, plate: str, entry: datetime, *, named: str | None = None) -> str:
        """The class a stay entering at ``entry`` is priced in: ``named`` (a pass's class)
        when the version in force then has it, else the plate's (:func:`vehicle_class_for`).
        The gateway, the lane's offline pricing and ``tariff quote`` all ask here."""
        day = entry.astimezone(self.zone).date() if entry.tzinfo else entry.date()
        version = self.book.in_force(day) or self.tariffs[0]
        return vehicle_class_for(plate, version.classes, named=named)


@dataclass(frozen=True, slots=True)
class VectorResult:
    """How one golden vector came out: the fee expected, the fee quoted, or why it failed."""

    name: str
    expected_fen: Fen
    got_fen: Fen | None
    problem: str | None

    @property
    def ok(self) -> bool:
        return self.problem is None


def _explain(error: ValidationError, *, source: str) -> str:
    lines = [f"{source}: invalid tariff"]
    for problem in error.errors():
        where = ".".join(str(p) for p in problem["loc"]) or "(top level)"
        lines.append(f"  {where}: {problem['msg']}")
    return "\n".join(lines)


def parse_tariff_document(text: str, *, source: str = "tariff") -> TariffDocument:
    """Parse TOML text into a document; :class:`TariffError` names the source and the field."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise TariffError(f"{source}: not valid TOML: {error}") from error
    try:
        return TariffDocument.model_validate(data)
    except ValidationError as error:
        raise TariffError(_explain(error, source=source)) from error


def run_vectors(document: TariffDocument) -> list[VectorResult]:
    """Quote every golden vector; a wrong fee or exemption is a problem, not an exception."""
    zone = document.zone
    results: list[VectorResult] = []
    for vector in document.vectors:
        entry = vector.entry if vector.entry.tzinfo else vector.entry.replace(tzinfo=zone)
        exit_ = vector.exit if vector.exit.tzinfo else vector.exit.replace(tzinfo=zone)
        try:
            got = quote(document.book, entry=entry, exit=exit_, plate=vector.plate,
                        vehicle_class=vector.vehicle_class,
                        coupons=[Coupon.parse(c) for c in vector.coupons],
                        calendar=document.calendar, timezone=zone)
        except TariffError as error:
            results.append(VectorResult(vector.name, vector.expect_fen, None, str(error)))
            continue
        problem = None
        if got.total_fen != vector.expect_fen:
            problem = f"expected {vector.expect_fen} fen, quoted {got.total_fen}"
        elif got.exemption != vector.expect_exemption:
            problem = f"expected exemption {vector.expect_exemption}, got {got.exemption}"
        results.append(VectorResult(vector.name, vector.expect_fen, got.total_fen, problem))
    return results
