"""Audit entries, the problems a check can find, and the errors the log raises."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

from parkguard.errors import AuditError

JSONValue: TypeAlias = bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"] | None
ProblemKind: TypeAlias = Literal["tampered", "missing", "reordered", "truncated"]


class IncompleteEntryError(AuditError, ValueError):
    """An audit entry was refused because its actor, action, subject or reason is blank."""


class UnserialisableValueError(AuditError, TypeError):
    """An audit entry's ``before`` or ``after`` value cannot be written as standard JSON."""


class NoAuditLogError(AuditError, LookupError):
    """The database has no audit log to read or verify."""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One recorded action, as stored: ``before``/``after`` are the parsed canonical JSON.

    Reading does not check the chain, so a hand-edited row reads back as edited.
    """

    seq: int
    ts: str
    actor: str
    action: str
    subject: str
    reason: str
    before: JSONValue
    after: JSONValue
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class AuditProblem:
    """The first place where the log stops being trustworthy, and what happened there.

    ``seq`` is the first affected entry (for "truncated", the first entry that is gone);
    ``detail`` is one sentence for a person.
    """

    seq: int
    kind: ProblemKind
    detail: str


@dataclass(frozen=True, slots=True)
class AuditReport:
    """The outcome of :func:`verify`.

    ``checked`` counts the entries confirmed intact before the first problem (all of
    them when ``ok``). ``head_hash`` is the hash the intact chain ends on (the genesis
    hash for an empty log) and the value to keep outside the file as an anchor; it is
    ``None`` when the log failed.
    """

    ok: bool
    checked: int
    problem: AuditProblem | None
    head_hash: str | None = None
