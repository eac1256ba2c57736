"""The hash-chained, append-only audit log: who opened, refunded or re-priced what, and why.

Every manual open, fee override, refund, coupon issue and tariff change is one
:class:`AuditEntry` written by :meth:`AuditLog.record`. Entries are numbered
1, 2, 3, ... and each one carries the SHA-256 of its own contents and the hash
of the entry before it, so the entries form a chain; a one-row ``audit_head``
table records how long the chain is and the hash it ends on, and is updated in
the same transaction as every append.

How an entry's hash is made (so any tool can re-check it)::

    sha256(utf8(json.dumps(
        {"seq": 7, "ts": "2026-05-01T10:00:00.000Z", "actor": ..., "action": ...,
         "subject": ..., "reason": ..., "before": <stored text or null>,
         "after": <stored text or null>, "prev_hash": <hash of entry 6>},
        sort_keys=True, separators=(",", ":"), ensure_ascii=False))).hexdigest()

``before`` and ``after`` enter the hash as the canonical JSON *text* stored in
the row, so even a cosmetic edit of that text is caught. Entry 1 chains to
sixty-four zeros (:data:`GENESIS_HASH`).

What :func:`verify` catches, naming the first affected entry:

- an edit of any column of any row with ``UPDATE`` ("tampered"),
- a deleted row inside the log ("missing"), also when the later rows were
  renumbered to close the gap,
- rows moved around: contents swapped between seqs, or seqs renumbered
  ("reordered"),
- rows deleted from the end, which the head record still counts ("truncated"),
- one row rewritten *with* a freshly computed hash, because the next entry (or
  the head) still links to the old hash ("tampered").

What it cannot catch: the hash has no secret key, so someone with write access
to the file who knows this recipe can rewrite an entry, re-hash every entry
after it and update the head; the result is a valid chain and ``verify`` says
OK. Only an anchor kept outside this file detects that: copy the head hash
that ``parkguard audit verify`` prints to somewhere the attacker cannot reach
(a daily report mailed off site, the fleet server, paper) and compare later.
The ``BEFORE UPDATE``/``BEFORE DELETE`` triggers installed by the migration stop
honest mistakes in application code; they stop no one who can drop a trigger.

>>> from datetime import UTC, datetime
>>> import sqlite_utils
>>> from parkguard.clock import ManualClock
>>> log = AuditLog(sqlite_utils.Database(memory=True),
...                clock=ManualClock(datetime(2026, 5, 1, 10, 0, tzinfo=UTC)))
>>> entry = log.record(actor="guard:0042", action="lane.manual_open", subject="lane:A1",
...                    reason="help button: ticket machine jammed")
>>> entry.seq, entry.ts, entry.prev_hash == GENESIS_HASH
(1, '2026-05-01T10:00:00.000Z', True)
>>> verify(log.db).ok
True
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from parkguard.clock import Clock, utc_iso
from parkguard.errors import AuditError

__all__ = [
    "GENESIS_HASH",
    "AuditEntry",
    "AuditLog",
    "AuditProblem",
    "AuditReport",
    "IncompleteEntryError",
    "JSONValue",
    "NoAuditLogError",
    "ProblemKind",
    "UnserialisableValueError",
    "canonical_json",
    "migrations",
    "read_entries",
    "verify",
]

_log = logging.getLogger(__name__)

GENESIS_HASH = "0" * 64
"""What entry 1 chains to: there is no entry 0."""

JSONValue: TypeAlias = bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"] | None
ProblemKind: TypeAlias = Literal["tampered", "missing", "reordered", "truncated"]

_LOG_TABLE = "audit_log"
_HEAD_TABLE = "audit_head"
_HEAD_ID = 1
_TEXT_COLUMNS = ("ts", "actor", "action", "subject", "reason", "prev_hash", "hash")
_JSON_COLUMNS = ("before", "after")
_COLUMNS = ("seq", "ts", "actor", "action", "subject", "reason", "before", "after", "prev_hash",
            "hash")
_SELECT = (
    "SELECT seq, ts, actor, action, subject, reason, before, after, prev_hash, hash FROM audit_log"
)


class IncompleteEntryError(AuditError, ValueError):
    """An audit entry was refused because its actor, action, subject or reason is blank."""


class UnserialisableValueError(AuditError, TypeError):
    """An audit entry's ``before`` or ``after`` value cannot be written as standard JSON."""


class NoAuditLogError(AuditError, LookupError):
    """The database has no audit log to read or verify."""


# --- schema ----------------------------------------------------------------------------------

migrations = Migrations("audit")
"""The "audit" migration set; :class:`AuditLog` applies it, so callers rarely need it directly."""


@migrations()
def m001_create_audit_log(db: Database) -> None:
    """Create the log, its head record and the triggers that keep application code append-only."""
    db.table(_LOG_TABLE).create(
        {
            "seq": int,
            "ts": str,
            "actor": str,
            "action": str,
            "subject": str,
            "reason": str,
            "before": str,
            "after": str,
            "prev_hash": str,
            "hash": str,
        },
        pk="seq",
        not_null=["ts", "actor", "action", "subject", "reason", "prev_hash", "hash"],
        strict=True,
    )
    head = db.table(_HEAD_TABLE).create(
        {"id": int, "count": int, "last_hash": str},
        pk="id",
        not_null=["count", "last_hash"],
        strict=True,
    )
    head.insert({"id": _HEAD_ID, "count": 0, "last_hash": GENESIS_HASH})
    for statement in (
        f"""CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON {_LOG_TABLE}
            BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: no UPDATE'); END""",
        f"""CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON {_LOG_TABLE}
            BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: no DELETE'); END""",
        f"""CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON {_HEAD_TABLE}
            BEGIN SELECT RAISE(ABORT, 'audit_head cannot be deleted'); END""",
        f"""CREATE TRIGGER audit_head_no_shrink BEFORE UPDATE ON {_HEAD_TABLE}
            WHEN NEW.count < OLD.count
            BEGIN SELECT RAISE(ABORT, 'audit_head count cannot go down'); END""",
    ):
        db.execute(statement)


# --- values ----------------------------------------------------------------------------------


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


# --- canonical form --------------------------------------------------------------------------


def canonical_json(value: object) -> str:
    """The one JSON spelling of ``value``: sorted keys, no spaces, UTF-8 text, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def _to_stored_json(field: str, value: object) -> str | None:
    if value is None:
        return None
    try:
        return canonical_json(value)
    except (TypeError, ValueError) as error:
        raise UnserialisableValueError(
            f"audit {field} value {value!r} is not JSON-serialisable: {error}"
        ) from error


def _entry_hash(fields: Mapping[str, object]) -> str:
    """SHA-256 over the canonical JSON of everything in a row except its own hash."""
    payload = json.dumps(
        {name: fields[name] for name in _COLUMNS if name != "hash"},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        # Only a hand-edited row can hold something JSON cannot spell; spell it anyway
        # (it will not match) rather than let a tampered file crash verify().
        default=repr,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class _Row:
    """A raw ``audit_log`` row as read back, trusted for nothing until it is checked."""

    fields: Mapping[str, Any]

    @property
    def seq(self) -> int:
        return int(self.fields["seq"])

    @property
    def hash(self) -> object:
        return self.fields["hash"]

    @property
    def prev_hash(self) -> object:
        return self.fields["prev_hash"]

    def well_typed(self) -> bool:
        """True if every column holds the type the writer stores (STRICT can be dropped)."""
        return all(isinstance(self.fields[name], str) for name in _TEXT_COLUMNS) and all(
            self.fields[name] is None or isinstance(self.fields[name], str)
            for name in _JSON_COLUMNS
        )

    def hash_as(self, seq: int) -> str | None:
        """The hash these contents would have if they had been written as entry ``seq``."""
        if not self.well_typed():
            return None
        return _entry_hash({**self.fields, "seq": seq})

    def is_sound(self) -> bool:
        return self.hash_as(self.seq) == self.hash


def _entry_from(row: _Row) -> AuditEntry:
    def parsed(name: str) -> JSONValue:
        text = row.fields[name]
        if text is None:
            return None
        try:
            value: JSONValue = json.loads(text)
        except (TypeError, ValueError):
            # Only a hand-edited row gets here; show what is there rather than fail to
            # show the very entry someone is investigating (verify() reports the edit).
            return str(text)
        return value

    return AuditEntry(
        seq=row.seq,
        ts=row.fields["ts"],
        actor=row.fields["actor"],
        action=row.fields["action"],
        subject=row.fields["subject"],
        reason=row.fields["reason"],
        before=parsed("before"),
        after=parsed("after"),
        prev_hash=row.fields["prev_hash"],
        hash=row.fields["hash"],
    )


# --- writing ---------------------------------------------------------------------------------


class AuditLog:
    """Appends entries to the audit chain in a sqlite-utils database.

    Record inside the caller's own ``db.atomic()`` block to make the action and its
    audit entry one transaction (the append then becomes a savepoint)::

        with db.atomic():
            sessions.override_fee(...)
            audit.record(actor="manager:li", action="fee.override", subject="session:8812",
                         reason="barrier fault kept the car in", before={"fee": 1500},
                         after={"fee": 0})

    One connection belongs to one thread (sqlite3's rule); several processes may
    append to the same file: the head row is claimed with a write first, so two
    writers queue on SQLite's lock instead of forking the chain.
    """

    def __init__(self, db: Database, *, clock: Clock) -> None:
        self.db = db
        self._clock = clock
        migrations.apply(db)

    def record(
        self,
        *,
        actor: str,
        action: str,
        subject: str,
        reason: str,
        before: object = None,
        after: object = None,
    ) -> AuditEntry:
        """Append one entry and return it as stored.

        ``actor`` is who (``"guard:0042"``), ``action`` what (``"coupon.issue"``),
        ``subject`` on what (``"session:8812"``), ``reason`` why, in the person's own
        words; none may be blank. ``before``/``after`` are any JSON values, typically
        the changed fields.
        """
        for name, value in (("actor", actor), ("action", action), ("subject", subject),
                            ("reason", reason)):
            if not isinstance(value, str) or not value.strip():
                raise IncompleteEntryError(
                    f"audit entry refused: {name} must be a non-empty string, got {value!r}"
                )
        before_text = _to_stored_json("before", before)
        after_text = _to_stored_json("after", after)
        ts = utc_iso(self._clock.now())
        with self.db.atomic():
            # Claiming the next seq is the transaction's first statement and a write, so
            # it takes SQLite's write lock before anything is read: no two appends can
            # chain to the same predecessor.
            claimed = self.db.execute(
                "UPDATE audit_head SET count = count + 1 WHERE id = ? "
                "RETURNING count, last_hash",
                [_HEAD_ID],
            ).fetchall()
            if len(claimed) != 1:
                raise AuditError(
                    "the audit_head record is missing: the log cannot be appended to "
                    "(run `parkguard audit verify`)"
                )
            seq, prev_hash = claimed[0]
            fields: dict[str, object] = {
                "seq": seq,
                "ts": ts,
                "actor": actor,
                "action": action,
                "subject": subject,
                "reason": reason,
                "before": before_text,
                "after": after_text,
                "prev_hash": prev_hash,
            }
            fields["hash"] = _entry_hash(fields)
            self.db.table(_LOG_TABLE).insert(fields)
            self.db.execute(
                "UPDATE audit_head SET last_hash = ? WHERE id = ?",
                [fields["hash"], _HEAD_ID],
            )
        _log.info("audit entry %d recorded: %s", seq, action)
        return _entry_from(_Row(fields))

    def entries(self, *, last: int | None = None) -> Iterator[AuditEntry]:
        """Every entry in seq order, or only the ``last`` few."""
        return read_entries(self.db, last=last)

    def verify(self) -> AuditReport:
        """Check this log's chain; see :func:`verify`."""
        return verify(self.db)


# --- reading and checking --------------------------------------------------------------------


def _require_log(db: Database) -> None:
    if not db.table(_LOG_TABLE).exists():
        raise NoAuditLogError(
            f"this database has no {_LOG_TABLE} table: nothing has ever been audited in it"
        )


def read_entries(db: Database, *, last: int | None = None) -> Iterator[AuditEntry]:
    """Entries in seq order without touching the schema (for read-only inspection).

    Reading does not check the chain: use :func:`verify` for that.
    """
    _require_log(db)
    if last is not None and last < 1:
        raise ValueError(f"last must be at least 1, got {last}")
    if last is None:
        rows = db.query(f"{_SELECT} ORDER BY seq")
    else:
        rows = db.query(
            f"SELECT * FROM ({_SELECT} ORDER BY seq DESC LIMIT ?) ORDER BY seq",  # noqa: S608
            [last],
        )
    for raw in rows:
        yield _entry_from(_Row(raw))


def _was_created(db: Database) -> bool:
    """True if this database shows signs of having held an audit log."""
    return db.table(_HEAD_TABLE).exists() or any(
        applied.name == m001_create_audit_log.__name__ for applied in migrations.applied(db)
    )


def _read_head(db: Database) -> tuple[int, str] | None:
    if not db.table(_HEAD_TABLE).exists():
        return None
    rows = list(db.query(
        "SELECT count, last_hash FROM audit_head WHERE id = ?",
        [_HEAD_ID],
    ))
    if len(rows) != 1:
        return None
    count, last_hash = rows[0]["count"], rows[0]["last_hash"]
    if not isinstance(count, int) or not isinstance(last_hash, str):
        return None
    return count, last_hash


def _rows(db: Database, where: str = "", params: list[object] | None = None) -> Iterator[_Row]:
    for raw in db.query(f"{_SELECT} {where} ORDER BY seq", params or []):
        yield _Row(raw)


def _span(first: int, last: int, verb_one: str, verb_many: str) -> str:
    """"entry 5 has" or "entries 4–5 have": a sentence fragment that agrees in number."""
    if first == last:
        return f"entry {first} {verb_one}"
    return f"entries {first}–{last} {verb_many}"


def _moved_here_from(db: Database, seq: int, prev_hash: str) -> _Row | None:
    """The row elsewhere whose contents were written as entry ``seq``, if one survives."""
    for row in _rows(db, "WHERE prev_hash = ? AND seq != ?", [prev_hash, seq]):
        if row.hash_as(seq) == row.hash:
            return row
    return None


def _written_as(row: _Row, bound: int) -> int | None:
    """The seq this row's contents were written under, if it is one of 1..bound."""
    for candidate in range(1, bound + 1):
        if candidate != row.seq and row.hash_as(candidate) == row.hash:
            return candidate
    return None


def _slot_problem(
    db: Database,
    *,
    seq: int,
    prev_hash: str,
    occupant: _Row | None,
    next_seq: int | None,
    head: tuple[int, str] | None,
) -> AuditProblem:
    """Explain why slot ``seq`` is empty or holds contents that do not hash.

    Runs once, after the first failure, so it may scan the table again.
    """
    moved = _moved_here_from(db, seq, prev_hash)
    if moved is not None:
        return AuditProblem(
            seq, "reordered",
            f"entries have been reordered: what was written as entry {seq} is now "
            f"stored as entry {moved.seq}.",
        )
    found = occupant.seq if occupant is not None else next_seq
    if head is not None and seq > head[0] and found is not None:
        return AuditProblem(
            found, "tampered",
            f"entry {found} was not written by the audit log: it lies beyond the "
            f"last entry the head record knows of ({head[0]}).",
        )
    if occupant is None:
        after = f"entry {seq - 1}" if seq > 1 else "the start"
        return AuditProblem(
            seq, "missing",
            f"entry {seq} is missing: the log jumps from {after} to entry {next_seq}.",
        )
    row_count = db.table(_LOG_TABLE).count
    origin = _written_as(occupant, max(row_count, head[0] if head else 0) + 1)
    if origin is not None and origin > seq:
        return AuditProblem(
            seq, "missing",
            f"entry {seq} is missing: the entries after it were renumbered to close the gap "
            f"(entry {seq} now holds what was written as entry {origin}).",
        )
    if origin is not None:
        return AuditProblem(
            seq, "tampered",
            f"entry {seq} has been overwritten with a copy of entry {origin}.",
        )
    if not occupant.well_typed():
        return AuditProblem(
            seq, "tampered",
            f"entry {seq} has been altered: a column holds a value of the wrong type.",
        )
    return AuditProblem(
        seq, "tampered",
        f"entry {seq} has been altered: its contents no longer match its hash.",
    )


def _link_problem(db: Database, row: _Row) -> AuditProblem:
    """Explain a row whose own hash is right but which does not chain to its predecessor.

    Plain edits cannot produce this (the hash covers ``prev_hash``); someone re-hashed.
    """
    seq = row.seq
    if seq == 1:
        return AuditProblem(
            1, "tampered",
            "entry 1 does not start the chain: its link was changed and its hash recomputed.",
        )
    chained_to = list(_rows(db, "WHERE hash = ?", [row.prev_hash]))
    if chained_to:
        return AuditProblem(
            seq, "reordered",
            f"entry {seq} was chained after entry {chained_to[0].seq}, not after "
            f"entry {seq - 1}.",
        )
    return AuditProblem(
        seq - 1, "tampered",
        f"entry {seq - 1} was rewritten and its hash recomputed: entry {seq} is still "
        "chained to its original hash.",
    )


def _end_problem(
    checked: int, last_hash: str, head: tuple[int, str] | None
) -> AuditProblem | None:
    """Compare the end of an intact chain with the head record."""
    if head is None:
        return AuditProblem(
            checked + 1, "truncated",
            f"the audit_head record is missing, so entries removed after entry {checked} "
            "could not be noticed.",
        )
    count, head_hash = head
    if count > checked:
        return AuditProblem(
            checked + 1, "truncated",
            f"the log ends at entry {checked} but the head record counts {count}: "
            f"{_span(checked + 1, count, 'has', 'have')} been removed from the end.",
        )
    if count < checked:
        return AuditProblem(
            count + 1, "tampered",
            f"{_span(count + 1, checked, 'is', 'are')} not covered by the head record, "
            f"which counts {count}: added by hand, or the head was rolled back.",
        )
    if head_hash != last_hash:
        if checked == 0:
            return AuditProblem(
                1, "truncated",
                "the log is empty but the head record does not end on the genesis hash: "
                "its entries have been removed.",
            )
        return AuditProblem(
            checked, "tampered",
            f"the head record does not end on entry {checked}'s hash: entry {checked} was "
            "rewritten with a recomputed hash, or entries after it were removed and the "
            "head count wound back.",
        )
    return None


def verify(db: Database) -> AuditReport:
    """Walk the log in seq order and report the first entry that is not what was written.

    Read-only; streams the rows, so memory stays flat however long the log is. Raises
    :class:`NoAuditLogError` if the database has no audit log at all.
    """
    if not db.table(_LOG_TABLE).exists() and _was_created(db):
        return AuditReport(
            ok=False, checked=0,
            problem=AuditProblem(1, "missing", f"the {_LOG_TABLE} table has been dropped."),
        )
    _require_log(db)
    head = _read_head(db)
    expected = 1
    last_hash = GENESIS_HASH
    stray: _Row | None = None

    def failed(problem: AuditProblem) -> AuditReport:
        confirmed = min(expected, problem.seq) - 1
        return AuditReport(ok=False, checked=max(confirmed, 0), problem=problem)

    for row in _rows(db):
        if row.seq < 1:
            # Before the chain's start: either a renumbered entry, which shows up as a gap
            # below, or an inserted one, reported if nothing earlier is wrong.
            if stray is None:
                stray = row
            continue
        if row.seq != expected:
            return failed(_slot_problem(db, seq=expected, prev_hash=last_hash, occupant=None,
                                        next_seq=row.seq, head=head))
        if not row.is_sound():
            return failed(_slot_problem(db, seq=expected, prev_hash=last_hash, occupant=row,
                                        next_seq=None, head=head))
        if row.prev_hash != last_hash:
            return failed(_link_problem(db, row))
        last_hash = str(row.hash)
        expected += 1

    problem = _end_problem(expected - 1, last_hash, head)
    if problem is None and stray is not None:
        problem = AuditProblem(
            stray.seq, "tampered",
            f"entry {stray.seq} lies outside the chain, which starts at entry 1: it was "
            "inserted by hand.",
        )
    if problem is not None:
        return failed(problem)
    return AuditReport(ok=True, checked=expected - 1, problem=None, head_hash=last_hash)
