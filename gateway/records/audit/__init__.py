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
>>> from gateway.storage.migrations import migrate
>>> log = AuditLog(migrate(sqlite_utils.Database(memory=True)),
...                clock=ManualClock(datetime(2026, 5, 1, 10, 0, tzinfo=UTC)))
>>> entry = log.record(actor="guard:0042", action="lane.manual_open", subject="lane:A1",
...                    reason="help button: ticket machine jammed")
>>> entry.seq, entry.ts, entry.prev_hash == GENESIS_HASH
(1, '2026-05-01T10:00:00.000Z', True)
>>> verify(log.db).ok
True
"""

from __future__ import annotations

from gateway.records.audit.chain import canonical_json
from gateway.records.audit.checking import read_entries, verify
from gateway.records.audit.values import (
    AuditEntry,
    AuditProblem,
    AuditReport,
    IncompleteEntryError,
    JSONValue,
    NoAuditLogError,
    ProblemKind,
    UnserialisableValueError,
)
from gateway.records.audit.writer import AuditLog
from gateway.storage.migrations.audit import GENESIS_HASH, migrations

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
