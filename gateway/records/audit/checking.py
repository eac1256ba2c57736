"""Reading the audit log back and checking its chain: the first entry that is missing,
moved, rewritten or cut off, and how far the log can still be trusted."""

from __future__ import annotations

from collections.abc import Iterator

from sqlite_utils import Database

from gateway.records.audit.chain import _SELECT, _entry_from, _Row
from gateway.records.audit.values import AuditEntry, AuditProblem, AuditReport, NoAuditLogError
from gateway.storage.migrations.audit import (
    GENESIS_HASH,
    HEAD_ID,
    HEAD_TABLE,
    LOG_TABLE,
    m001_create_audit_log,
    migrations,
)


def _require_log(db: Database) -> None:
    if not db.table(LOG_TABLE).exists():
        raise NoAuditLogError(
            f"this database has no {LOG_TABLE} table: nothing has ever been audited in it"
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
    return db.table(HEAD_TABLE).exists() or any(
        applied.name == m001_create_audit_log.__name__ for applied in migrations.applied(db)
    )


def _read_head(db: Database) -> tuple[int, str] | None:
    if not db.table(HEAD_TABLE).exists():
        return None
    rows = list(db.query(
        "SELECT count, last_hash FROM audit_head WHERE id = ?",
        [HEAD_ID],
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
    row_count = db.table(LOG_TABLE).count
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
    if not db.table(LOG_TABLE).exists() and _was_created(db):
        return AuditReport(
            ok=False, checked=0,
            problem=AuditProblem(1, "missing", f"the {LOG_TABLE} table has been dropped."),
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
