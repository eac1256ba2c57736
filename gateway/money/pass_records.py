"""How the access desk stores passes and lists: times as integer UTC milliseconds, rows back
into values, the shape the audit log keeps, and the errors the desk raises."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from parkguard.core.access import (
    AccessError,
    ListEntry,
    Pass,
    pass_to_json,
    require_plate,
)


class UnknownPassError(AccessError, LookupError):
    """No pass has that id."""


class PlateConflictError(AccessError):
    """A plate would be on two passes valid at the same time."""


def to_ms(field: str, moment: object) -> int:
    """UTC milliseconds since the epoch; sub-millisecond parts are dropped (as on the wire)."""
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise AccessError(field, f"expected a timezone-aware datetime, got {moment!r}")
    delta = moment.astimezone(UTC) - EPOCH
    return delta // timedelta(milliseconds=1)


def from_ms(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def require_who(actor: str, reason: str) -> None:
    """Refuse before writing anything: every change says who made it and why."""
    for name, value in (("actor", actor), ("reason", reason)):
        if not isinstance(value, str) or not value.strip():
            raise AccessError(name, f"must be non-empty text, got {value!r}")


def plate_list(plates: Iterable[str]) -> list[str]:
    if isinstance(plates, str):
        raise AccessError("plates", "give a list of plates, not one text")
    return [require_plate("plates", plate) for plate in plates]


def list_entry_from(row: dict[str, Any]) -> ListEntry:
    until = row["until_ms"]
    return ListEntry(row["list_name"], row["plate"], row["reason"],
                     None if until is None else from_ms(until))


def subject_of(pass_id: str) -> str:
    return f"pass:{pass_id}"


def audit_json(pass_: Pass) -> dict[str, Any]:
    """A pass as the audit log keeps it: the holder's name, but never the full phone."""
    return pass_to_json(pass_, private=True) | {"phone": pass_.masked_phone}
