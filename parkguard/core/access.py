"""Who may enter on what terms: monthly and family passes, whitelists and blacklists.

Pure: no IO and no clock (``now`` comes in as an argument), so the gateway and a lane that has
lost the network give the same answer from the same passes and lists.

The order of precedence at the entry gate (``docs/passes.md``):

1. **Blacklist** — refused, whatever passes the plate holds (a stolen or fraudulent plate
   must not get in because someone sold it a pass).
2. **Whitelist** — free entry (landlord, staff, emergency vehicles).
3. **A pass that is valid now and not already in use** — enters on the pass.
4. Otherwise a **visitor**, with the reason a pass did not apply: ``pass_in_use`` (a family
   pass already has its car inside: the second car pays as a visitor), ``pass_revoked``,
   ``pass_not_yet_valid``, ``pass_expired``, or ``no_pass``.

List entries past their ``until`` are ignored. The answer never depends on the order the
passes and lists are given in.

>>> from datetime import UTC, datetime, timedelta
>>> now = datetime(2026, 5, 10, 2, 0, tzinfo=UTC)
>>> family = Pass("P1", "family", "王芳", frozenset({"沪A12345", "沪B67890"}),
...               valid_from=now - timedelta(days=3), valid_until=now + timedelta(days=27),
...               phone="13812345678")
>>> first = entry_access("沪a·12345", now, passes=[family], lists=[], occupied=set())
>>> first.kind, first.pass_id, first.display_zh, first.display_en
('pass', 'P1', '家庭卡 剩余27天', 'Pass: 27 days left')
>>> second = entry_access("沪B67890", now, passes=[family], lists=[], occupied={"P1"})
>>> second.kind, second.reason, second.display_en
('visitor', 'pass_in_use', 'Pass in use: pay as visitor')
>>> family.masked_phone
'138****5678'
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Set
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, TypeAlias

from parkguard.core.plates.grammar import is_plate
from parkguard.core.plates.normalise import normalise_plate
from parkguard.core.privacy import mask_phone
from parkguard.errors import ParkGuardError

__all__ = [
    "LIST_NAMES",
    "MAX_FAMILY_PLATES",
    "MAX_LINE_CHARS",
    "Access",
    "AccessError",
    "AccessKind",
    "AccessReason",
    "ListEntry",
    "ListName",
    "Pass",
    "PassKind",
    "billable_span",
    "entry_access",
    "exit_hold",
    "list_entry_from_json",
    "list_entry_to_json",
    "masked_name",
    "pass_from_json",
    "pass_to_json",
    "require_plate",
]

PassKind: TypeAlias = Literal["monthly", "family"]
ListName: TypeAlias = Literal["whitelist", "blacklist", "hold"]
LIST_NAMES: Final[tuple[str, ...]] = ("whitelist", "blacklist", "hold")
"""``hold``: a plate held at the exit (an accident, a dispute): the exit refuses it and a
guard is called; entries ignore it (see :func:`exit_hold`)."""
AccessKind: TypeAlias = Literal["blacklisted", "whitelisted", "pass", "visitor"]
AccessReason: TypeAlias = Literal[
    "blacklisted", "whitelisted", "pass_valid", "pass_in_use", "pass_revoked",
    "pass_not_yet_valid", "pass_expired", "no_pass",
]

MAX_FAMILY_PLATES: Final = 5
"""A family pass covers 2..5 cars: a household, not a fleet (a fleet is a contract)."""

MAX_LINE_CHARS: Final = 64
"""The longest line a lane display is given (its widest font fits 64 characters)."""

_PHONE = re.compile(r"\+?\d{7,15}")
_PHONE_SEPARATORS = re.compile(r"[\s\-()]")
_KIND_ZH: Final[dict[str, str]] = {"monthly": "月卡", "family": "家庭卡"}


class AccessError(ParkGuardError, ValueError):
    """A pass, a list entry or an access question is invalid; ``field`` names what is wrong.

    >>> str(AccessError("plates", "a monthly pass has exactly one plate, got 2"))
    'plates: a monthly pass has exactly one plate, got 2'
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field

    def __reduce__(self) -> tuple[type[AccessError], tuple[str, str]]:
        return (type(self), (self.field, str(self).removeprefix(f"{self.field}: ")))


# --- helpers anyone may use ------------------------------------------------------------------


def require_plate(field_name: str, text: str) -> str:
    """``text`` normalised, or :class:`AccessError` if it is not a plate at all.

    Passes and lists hold real plates only: a typo on a pass would silently grant nothing, and
    a typo on a blacklist would silently refuse nobody.
    """
    if not isinstance(text, str):
        raise AccessError(field_name, f"a plate is text, got {text!r}")
    plate = normalise_plate(text)
    if not is_plate(plate):
        raise AccessError(field_name, f"{text!r} is not a plate (GA 36-2018)")
    return plate


def masked_name(name: str) -> str:
    """A holder's name as a replica or report may carry it: the first character, then stars.

    >>> masked_name("王芳"), masked_name("Li Wei")
    ('王*', 'L*****')
    """
    return name[:1] + "*" * max(len(name) - 1, 1)


def _utc(field_name: str, moment: object) -> datetime:
    if not isinstance(moment, datetime):
        raise AccessError(field_name, f"expected a datetime, got {moment!r}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise AccessError(field_name, f"naive datetime {moment!r}: times are UTC-aware")
    return moment.astimezone(UTC)


def _text(field_name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise AccessError(field_name, f"must be non-empty text, got {value!r}")
    return value.strip()


def _iso(moment: datetime) -> str:
    """The wire spelling of an instant (UTC, milliseconds, ``Z``), as ``parkguard.clock``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_iso(field_name: str, text: object) -> datetime:
    if not isinstance(text, str):
        raise AccessError(field_name, f"expected an ISO-8601 time, got {text!r}")
    try:
        return _utc(field_name, datetime.fromisoformat(text))
    except ValueError as error:
        raise AccessError(field_name, f"{text!r} is not an ISO-8601 time") from error


# --- values ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pass:
    """A monthly or family pass: which plates, from when until when, how many cars inside.

    The validity window is half-open, ``[valid_from, valid_until)``, so one month's pass
    ending at midnight and the next starting at midnight never both apply. Plates are stored
    normalised. A monthly pass has exactly one plate; a family pass 2..5 plates, of which
    ``max_inside`` (1 unless agreed otherwise) may be inside at once — the next car pays as
    a visitor. ``revoked_at`` ends the pass early: a revoked pass grants nothing from then on,
    and a car inside when it was revoked pays from the revocation (see :func:`billable_span`).

    The phone is kept for alerts (move your car, the basement floods) and is left out of the
    ``repr``; print :attr:`masked_phone`.
    """

    pass_id: str
    kind: PassKind
    holder: str
    plates: frozenset[str]
    valid_from: datetime
    valid_until: datetime
    vehicle_class: str | None = None
    phone: str | None = field(default=None, repr=False)
    max_inside: int = 1
    revoked_at: datetime | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "pass_id", _text("pass_id", self.pass_id))
        if self.kind not in ("monthly", "family"):
            raise AccessError("kind", f"a pass is 'monthly' or 'family', got {self.kind!r}")
        set_(self, "holder", _text("holder", self.holder))
        if isinstance(self.plates, str):
            raise AccessError("plates", "give a set of plates, not one text")
        plates = frozenset(require_plate("plates", plate) for plate in self.plates)
        if self.kind == "monthly" and len(plates) != 1:
            raise AccessError("plates",
                              f"a monthly pass has exactly one plate, got {len(plates)}")
        if self.kind == "family" and not 2 <= len(plates) <= MAX_FAMILY_PLATES:
            raise AccessError("plates", f"a family pass has 2 to {MAX_FAMILY_PLATES} different "
                                        f"plates, got {len(plates)}")
        set_(self, "plates", plates)
        valid_from = _utc("valid_from", self.valid_from)
        valid_until = _utc("valid_until", self.valid_until)
        if valid_until <= valid_from:
            raise AccessError("valid_until", f"{_iso(valid_until)} is not after valid_from "
                                             f"{_iso(valid_from)}")
        set_(self, "valid_from", valid_from)
        set_(self, "valid_until", valid_until)
        if self.vehicle_class is not None:
            set_(self, "vehicle_class", _text("vehicle_class", self.vehicle_class))
        if self.phone is not None:
            phone = _PHONE_SEPARATORS.sub("", self.phone) if isinstance(self.phone, str) else ""
            if not _PHONE.fullmatch(phone):
                raise AccessError("phone", "must be 7 to 15 digits, optionally after '+'")
            set_(self, "phone", phone)
        max_inside = self.max_inside
        if isinstance(max_inside, bool) or not isinstance(max_inside, int) \
                or not 1 <= max_inside <= len(plates):
            raise AccessError("max_inside", f"must be 1..{len(plates)} (the pass's plates), "
                                            f"got {max_inside!r}")
        if self.revoked_at is not None:
            set_(self, "revoked_at", _utc("revoked_at", self.revoked_at))

    @property
    def lapses_at(self) -> datetime:
        """When the pass stops covering parking: its end, or its revocation if earlier."""
        if self.revoked_at is not None and self.revoked_at < self.valid_until:
            return self.revoked_at
        return self.valid_until

    @property
    def masked_phone(self) -> str | None:
        """The phone as it may be printed (``138****5678``), or None if there is none."""
        return None if self.phone is None else mask_phone(self.phone)

    def is_revoked(self, now: datetime) -> bool:
        return self.revoked_at is not None and self.revoked_at <= now

    def is_valid(self, now: datetime) -> bool:
        """True if the pass grants entry at ``now``: inside its window and not revoked."""
        return self.valid_from <= now < self.lapses_at

    def days_left(self, now: datetime) -> int:
        """Whole days of validity left, counting a started day as a day (0 once lapsed).

        Shown at the gate so a driver sees the renewal coming: "1 day left" means it lapses
        within 24 hours.
        """
        left = self.lapses_at - now
        return max(0, math.ceil(left / timedelta(days=1)))


@dataclass(frozen=True, slots=True)
class ListEntry:
    """A plate on the whitelist (free entry) or the blacklist (refused), until ``until``.

    ``reason`` is for staff (a guard answering the help button), never for the lane display.
    An entry with ``until`` in the past is ignored, so a temporary ban lapses by itself.
    """

    list_name: ListName
    plate: str
    reason: str
    until: datetime | None = None

    def __post_init__(self) -> None:
        if self.list_name not in LIST_NAMES:
            raise AccessError("list_name", f"a list is one of {LIST_NAMES}, got "
                                           f"{self.list_name!r}")
        object.__setattr__(self, "plate", require_plate("plate", self.plate))
        object.__setattr__(self, "reason", _text("reason", self.reason))
        if self.until is not None:
            object.__setattr__(self, "until", _utc("until", self.until))

    def is_active(self, now: datetime) -> bool:
        return self.until is None or now < self.until


@dataclass(frozen=True, slots=True)
class Access:
    """The entry answer for one plate: on what terms it enters, and what the lane shows.

    ``kind`` is what the gate does: ``blacklisted`` keeps the barrier shut; ``whitelisted``
    and ``pass`` open it with nothing to pay; ``visitor`` opens it and the stay is priced by
    the tariff. ``reason`` is the machine word (see :data:`AccessReason`). ``pass_id`` is set
    only when the car enters on a pass (the caller then records it with ``occupy``).
    ``display_zh``/``display_en`` are the lane display's two lines. ``note`` is context for
    staff only: a list entry's reason, or the pass that did not apply.
    """

    kind: AccessKind
    reason: AccessReason
    display_zh: str
    display_en: str
    pass_id: str | None = None
    days_left: int | None = None
    note: str | None = None

    def __post_init__(self) -> None:
        for name in ("display_zh", "display_en"):
            line = getattr(self, name)
            if not line or len(line) > MAX_LINE_CHARS:
                raise AccessError(name, f"a display line is 1..{MAX_LINE_CHARS} characters, "
                                        f"got {len(line)}")
        if (self.kind == "pass") != (self.pass_id is not None):
            raise AccessError("pass_id", "is set exactly when the car enters on a pass")

    @property
    def refused(self) -> bool:
        return self.kind == "blacklisted"

    @property
    def free(self) -> bool:
        """True if the car enters with nothing to pay for the time it is covered."""
        return self.kind in ("whitelisted", "pass")


# --- deciding --------------------------------------------------------------------------------


def entry_access(plate: str, now: datetime, *, passes: Iterable[Pass],
                 lists: Iterable[ListEntry], occupied: Set[str]) -> Access:
    """On what terms ``plate`` enters at ``now``, by the order of precedence in the module doc.

    ``occupied`` holds the ids of passes that already have ``max_inside`` cars inside. Passes
    and list entries for other plates are ignored, so callers may hand over everything they
    have. When one plate holds several passes (allowed only if their windows do not overlap),
    a usable one wins; among those not usable, the most telling reason is given:
    in use, then revoked, then not yet valid, then expired.
    """
    when = _utc("now", now)
    key = normalise_plate(plate) if isinstance(plate, str) else ""
    listed = [entry for entry in lists if entry.plate == key and entry.is_active(when)]
    blacklisted = sorted(entry.reason for entry in listed if entry.list_name == "blacklist")
    if blacklisted:
        return Access("blacklisted", "blacklisted", "禁止入场 请联系管理处",
                      "Entry refused: please call the office", note=blacklisted[0])
    whitelisted = sorted(entry.reason for entry in listed if entry.list_name == "whitelist")
    if whitelisted:
        return Access("whitelisted", "whitelisted", "欢迎 免费通行", "Welcome: free entry",
                      note=whitelisted[0])
    mine = sorted((p for p in passes if key in p.plates), key=lambda p: p.pass_id)
    usable = [p for p in mine if p.is_valid(when) and p.pass_id not in occupied]
    if usable:
        # The pass that lasts longest, so the display counts the days the driver really has.
        best = max(usable, key=lambda p: (p.lapses_at, p.pass_id))
        days = best.days_left(when)
        return Access("pass", "pass_valid", f"{_KIND_ZH[best.kind]} 剩余{days}天",
                      f"Pass: {days} days left" if days != 1 else "Pass: 1 day left",
                      pass_id=best.pass_id, days_left=days)
    refusals: tuple[tuple[AccessReason, Callable[[Pass], bool]], ...] = (
        ("pass_in_use", lambda p: p.is_valid(when)),
        ("pass_revoked", lambda p: p.is_revoked(when)),
        ("pass_not_yet_valid", lambda p: when < p.valid_from),
        ("pass_expired", lambda p: p.valid_until <= when),
    )
    for reason, applies in refusals:
        hits = [p for p in mine if applies(p)]
        if hits:
            return _visitor(reason, hits[0])
    return Access("visitor", "no_pass", "临时车 欢迎光临", "Visitor: welcome")


_VISITOR_LINES: Final[dict[str, tuple[str, str]]] = {
    "pass_in_use": ("{kind}已有车在场 按临时车计费", "Pass in use: pay as visitor"),
    "pass_revoked": ("{kind}已停用 按临时车计费", "Pass cancelled: pay as visitor"),
    "pass_not_yet_valid": ("{kind}未生效 按临时车计费", "Pass not yet valid: pay as visitor"),
    "pass_expired": ("{kind}已过期 按临时车计费", "Pass expired: pay as visitor"),
}


def _visitor(reason: AccessReason, pass_: Pass) -> Access:
    zh, en = _VISITOR_LINES[reason]
    return Access("visitor", reason, zh.format(kind=_KIND_ZH[pass_.kind]), en,
                  note=f"pass {pass_.pass_id}")


def billable_span(entry: datetime, exit: datetime, pass_: Pass) -> tuple[datetime, datetime] | None:
    """The part of a pass car's stay that the pass does not cover, to be priced as a visitor's.

    The rule: **the pass covers the stay from entry until the pass lapses** (its
    ``valid_until``, or its revocation if earlier). A driver whose monthly pass lapses while
    the car is parked pays from the lapse to the exit, exactly as a visitor who had entered at
    the lapse — not for the whole stay, and not nothing. A pass that lapsed before the entry
    covers nothing (the whole stay is billable). The car entered on the pass, so the pass was
    valid then: a ``valid_from`` later than the entry (the pass was edited while the car was
    inside) does not make the driver pay for time the gate already let in as covered.

    Returns ``None`` when the pass covers the whole stay (or the stay lasted no time at all),
    else ``(start, exit)`` with
    ``entry <= start < exit``.

    >>> from datetime import UTC, datetime
    >>> p = Pass("P1", "monthly", "李雷", frozenset({"沪A12345"}),
    ...          datetime(2026, 4, 30, 16, tzinfo=UTC), datetime(2026, 5, 31, 16, tzinfo=UTC))
    >>> [t.isoformat() for t in billable_span(datetime(2026, 5, 31, 12, tzinfo=UTC),
    ...                                        datetime(2026, 5, 31, 20, tzinfo=UTC), p)]
    ['2026-05-31T16:00:00+00:00', '2026-05-31T20:00:00+00:00']
    """
    start = _utc("entry", entry)
    end = _utc("exit", exit)
    if end < start:
        raise AccessError("exit", f"{_iso(end)} is before the entry {_iso(start)}")
    billable_from = max(start, pass_.lapses_at)
    if billable_from >= end:
        return None
    return (billable_from, end)


# --- replicas --------------------------------------------------------------------------------


def pass_to_json(pass_: Pass, *, private: bool = False) -> dict[str, Any]:
    """A pass as JSON-able data, for a lane's replica.

    By default the holder's name is masked and the phone left out: a lane decides from plates
    and dates, and its SD card sits at the gate. ``private=True`` keeps the name and the
    phone for the gateway's own exports.
    """
    data: dict[str, Any] = {
        "pass_id": pass_.pass_id,
        "kind": pass_.kind,
        "holder": pass_.holder if private else masked_name(pass_.holder),
        "plates": sorted(pass_.plates),
        "valid_from": _iso(pass_.valid_from),
        "valid_until": _iso(pass_.valid_until),
        "vehicle_class": pass_.vehicle_class,
        "max_inside": pass_.max_inside,
        "revoked_at": None if pass_.revoked_at is None else _iso(pass_.revoked_at),
    }
    if private:
        data["phone"] = pass_.phone
    return data


def pass_from_json(data: Mapping[str, Any]) -> Pass:
    """The :class:`Pass` that :func:`pass_to_json` wrote (validated again: replicas are input)."""
    revoked = data.get("revoked_at")
    return Pass(
        pass_id=data["pass_id"], kind=data["kind"], holder=data["holder"],
        plates=frozenset(data["plates"]),
        valid_from=_parse_iso("valid_from", data["valid_from"]),
        valid_until=_parse_iso("valid_until", data["valid_until"]),
        vehicle_class=data.get("vehicle_class"), phone=data.get("phone"),
        max_inside=data.get("max_inside", 1),
        revoked_at=None if revoked is None else _parse_iso("revoked_at", revoked),
    )


def exit_hold(plate: str, now: datetime, lists: Iterable[ListEntry]) -> ListEntry | None:
    """The hold in force on ``plate`` at ``now``, if any: the exit refuses the car and calls
    a guard. The gateway and an offline lane ask the same question of the same entries."""
    when = _utc("now", now)
    key = normalise_plate(plate) if isinstance(plate, str) else ""
    held = [entry for entry in lists
            if entry.list_name == "hold" and entry.plate == key and entry.is_active(when)]
    return min(held, key=lambda entry: entry.reason) if held else None


def list_entry_to_json(entry: ListEntry) -> dict[str, Any]:
    """A list entry as JSON-able data, for a lane's replica."""
    return {"list_name": entry.list_name, "plate": entry.plate, "reason": entry.reason,
            "until": None if entry.until is None else _iso(entry.until)}


def list_entry_from_json(data: Mapping[str, Any]) -> ListEntry:
    """The :class:`ListEntry` that :func:`list_entry_to_json` wrote."""
    until = data.get("until")
    return ListEntry(data["list_name"], data["plate"], data["reason"],
                     None if until is None else _parse_iso("until", until))
