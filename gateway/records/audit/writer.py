"""Writing the audit log: one entry at a time, chained to the last under the head record's
write lock, in the caller's transaction."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from sqlite_utils import Database

from gateway.records.audit.chain import _entry_from, _entry_hash, _Row, _to_stored_json
from gateway.records.audit.checking import read_entries, verify
from gateway.records.audit.values import AuditEntry, AuditReport, IncompleteEntryError
from gateway.storage.migrations.audit import HEAD_ID, LOG_TABLE
from parkguard.clock import Clock, utc_iso
from parkguard.errors import AuditError

_log = logging.getLogger(__name__)


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
                [HEAD_ID],
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
            self.db.table(LOG_TABLE).insert(fields)
            self.db.execute(
                "UPDATE audit_head SET last_hash = ? WHERE id = ?",
                [fields["hash"], HEAD_ID],
            )
        _log.info("audit entry %d recorded: %s", seq, action)
        return _entry_from(_Row(fields))

    def entries(self, *, last: int | None = None) -> Iterator[AuditEntry]:
        """Every entry in seq order, or only the ``last`` few."""
        return read_entries(self.db, last=last)

    def verify(self) -> AuditReport:
        """Check this log's chain; see :func:`verify`."""
        return verify(self.db)
