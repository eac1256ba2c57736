"""The lane's SQLite journal and outbox: no event is lost, not even when the power goes.

Every event the lane emits is on the card here **before** anything tries to publish it
(:meth:`Journal.append`, ``synchronous=FULL``: the row is on the card when ``append``
returns; a row committed with ``durable=False`` waits for the next FULL commit or
:meth:`Journal.sync` before the outbox sees it). The :class:`Outbox` thread then publishes
the unsent rows in ``seq`` order, QoS 1, and marks a row sent only when the broker has
acknowledged it (its PUBACK). So:

- broker down or network gone: events pile up in the journal, the lane keeps working;
- broker back: paho resends what it had in flight, the outbox hands over the rest, in order;
- power lost or process killed: the next start finds the unsent rows and publishes them
  first, and ``seq`` continues from the highest one journaled.

A row whose PUBACK was lost is published again after a restart: the gateway ingests each
``event_id`` once, so a repeat is harmless, a loss is not.

The same file keeps what must survive a reboot besides events: the last known site alarms
(a fire latched before a power cut still holds the barrier up after it), the replica
(snapshot + the deltas applied since, see :mod:`firmware.lane.replica`) and the nonces of
the signed commands the lane accepted, until they expire (a recording of an order the
lane obeyed must not open the barrier again after a restart, see
:mod:`firmware.lane.commands`).

One connection, shared by the lane's worker (append), the outbox (mark sent) and paho's
thread (replica, alarms) under a lock; WAL so readers never wait for the writer.
"""

from __future__ import annotations

import fcntl
import logging
import sqlite3
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from parkguard.errors import ConfigError
from wire.bus import Bus, Receipt
from wire.contract.messages import LANE_EVENT

log = logging.getLogger(__name__)

SCHEMA_VERSION: Final = 1

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    sent INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX IF NOT EXISTS events_unsent ON events (seq) WHERE sent = 0;
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS replica_snapshot (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    payload TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS replica_deltas (
    version INTEGER PRIMARY KEY,
    payload TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS command_nonces (
    nonce TEXT PRIMARY KEY,
    expires_us INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS command_nonces_expiry ON command_nonces (expires_us);
"""
# command_nonces came after version 1 without a version bump on purpose: it is a table an
# older firmware never reads, so a journal stays usable by the release before (a bump would
# stop a downgraded lane from starting at all).

_NONCE_FLOOR_KEY: Final = "command_nonce_floor_us"
_SYNCED_KEY: Final = "events_synced_seq"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _micros(moment: datetime) -> int:
    """A UTC instant as integer microseconds since the epoch (exact, orderable in SQL)."""
    delta = moment.astimezone(UTC) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _instant(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


@dataclass(frozen=True, slots=True)
class JournalRow:
    seq: int
    event_id: str
    type: str
    topic: str
    payload: bytes


class Journal:
    """The lane's SQLite file: events (the outbox), alarms and the replica."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # One lane process per journal: two would hand out the same seq and replay each
        # other's events. The lock goes with the process (a crash releases it).
        self._lockfile = open(path.with_name(path.name + ".lock"), "a+")
        try:
            fcntl.flock(self._lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lockfile.close()
            raise ConfigError(f"{path}: the journal is in use by another lane process "
                              "(give each lane its own journal.path)") from None
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None,
                                   timeout=10.0)
        found = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if found > SCHEMA_VERSION:
            self._db.close()
            self._lockfile.close()
            raise ConfigError(
                f"{path}: this lane journal has schema version {found}, newer than the "
                f"version {SCHEMA_VERSION} this firmware knows: it was written by a newer "
                "release. Run that release again (or move the file aside to start afresh; "
                "its unsent events would then be lost)")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self._synchronous = "FULL"
        self._written_seq = int(
            self._db.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])
        """Highest ``seq`` committed; ``_durable_seq``: highest known to be on the card (see
        :meth:`append_many`): the outbox publishes only up to the latter."""
        self._durable_seq = -1
        # Rows a killed process committed with NORMAL may still be only in the kernel's
        # cache: on the card before any of them is published.
        self.sync()

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self._lockfile.close()

    def _sync(self, level: str) -> None:
        if self._synchronous != level:
            self._db.execute(f"PRAGMA synchronous={level}")
            self._synchronous = level

    def _synced(self) -> None:
        """A ``synchronous=FULL`` commit just returned (lock held): the WAL is on the card up
        to it, so every event committed before it is durable too, NORMAL or not."""
        self._durable_seq = self._written_seq

    # events ---------------------------------------------------------------------------------

    def last_seq(self) -> int:
        """The highest ``seq`` ever journaled (0 for a new file): the next event gets + 1."""
        with self._lock:
            row = self._db.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
        return int(row[0])

    def append(self, row: JournalRow) -> None:
        """Keep an event for good before it is published (``synchronous=FULL``: durable
        when this returns, power cut or not)."""
        self.append_many([row])

    def append_many(self, rows: list[JournalRow], *, durable: bool = True) -> None:
        """Keep several events in one transaction: one wait for the card, not one per event.

        ``durable=False`` (``synchronous=NORMAL``): committed to the WAL without waiting for
        the card. The row then survives a crash of the process (the kernel has it) but not
        a power cut, until the next FULL commit or :meth:`sync` puts the WAL on the card;
        the outbox does not publish it before that (:meth:`unsent`), so a row a power cut
        takes was never told to anyone and its ``seq`` is free again. The lane uses it for
        the few rows written between a car's arrival and its barrier rising
        (docs/lane.md, "Journal and outbox")."""
        with self._lock:
            self._sync("FULL" if durable else "NORMAL")
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT INTO events (seq, event_id, type, topic, payload) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [(r.seq, r.event_id, r.type, r.topic, r.payload) for r in rows])
                self._db.execute("COMMIT")
            except BaseException:
                # A full card (SQLITE_FULL) or an I/O error may have rolled the transaction
                # back already: roll back only what is still open, then say what failed.
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            self._written_seq = max([self._written_seq, *(r.seq for r in rows)])
            if durable:
                self._synced()

    def sync(self) -> bool:
        """Put every event committed so far on the card (one FULL commit, of the highest
        durable ``seq`` into ``kv``); nothing to do if they all are. True if it synced."""
        with self._lock:
            if self._durable_seq >= self._written_seq:
                return False
            self._sync("FULL")
            self._db.execute("INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) "
                             "DO UPDATE SET value = excluded.value",
                             (_SYNCED_KEY, str(self._written_seq)))
            self._synced()
            return True

    @property
    def durable_seq(self) -> int:
        """The highest ``seq`` on the card (every event at or below it survives a power cut)."""
        return self._durable_seq

    def unsent(self, *, after: int = 0, limit: int = 100) -> list[JournalRow]:
        """Unacknowledged durable events with ``seq`` > ``after``, oldest first (one only
        committed with ``durable=False`` waits for the next sync)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, event_id, type, topic, payload FROM events "
                "WHERE sent = 0 AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
                (after, self._durable_seq, limit)).fetchall()
        return [JournalRow(int(r[0]), r[1], r[2], r[3], bytes(r[4])) for r in rows]

    def unsent_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM events WHERE sent = 0")
                       .fetchone()[0])

    def mark_sent(self, seqs: list[int]) -> None:
        """The broker has these (PUBACK). Losing this mark in a power cut only means the
        event is sent once more, so it need not wait for the card."""
        if not seqs:
            return
        with self._lock:
            self._sync("NORMAL")
            self._db.execute("BEGIN")
            self._db.executemany("UPDATE events SET sent = 1 WHERE seq = ?",
                                 [(s,) for s in seqs])
            self._db.execute("COMMIT")

    def events(self) -> list[tuple[int, str, bool]]:
        """(seq, type, sent) of every journaled event, for tests and the selftest."""
        with self._lock:
            return [(int(s), t, bool(x)) for s, t, x in self._db.execute(
                "SELECT seq, type, sent FROM events ORDER BY seq")]

    # small state ------------------------------------------------------------------------------

    def get(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def put(self, key: str, value: str, *, durable: bool = True) -> None:
        with self._lock:
            self._sync("FULL" if durable else "NORMAL")
            self._db.execute("INSERT INTO kv (key, value) VALUES (?, ?) "
                             "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                             (key, value))
            if durable:
                self._synced()

    # spent command nonces ---------------------------------------------------------------------

    def spend_nonce(self, nonce: str, expires: datetime) -> None:
        """Keep an accepted command's nonce until ``expires``; durable when this returns, so
        the barrier moves only for an order whose nonce a power cut cannot bring back."""
        with self._lock:
            self._sync("FULL")
            self._db.execute("INSERT OR REPLACE INTO command_nonces (nonce, expires_us) "
                             "VALUES (?, ?)", (nonce, _micros(expires)))
            self._synced()

    def forget_nonces(self, expired_by: datetime, *, floor: datetime | None) -> None:
        """Drop the nonces whose commands expired at or before ``expired_by`` and keep
        ``floor`` (every command expiring at or before it counts as spent). Losing this in a
        power cut only keeps a few nonces longer."""
        with self._lock:
            self._sync("NORMAL")
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM command_nonces WHERE expires_us <= ?",
                             (_micros(expired_by),))
            if floor is not None:
                self._db.execute(
                    "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE "
                    "SET value = CAST(max(CAST(value AS INTEGER), "
                    "CAST(excluded.value AS INTEGER)) AS TEXT)",
                    (_NONCE_FLOOR_KEY, str(_micros(floor))))
            self._db.execute("COMMIT")

    def spent_nonces(self) -> tuple[dict[str, datetime], datetime | None]:
        """The nonces kept (nonce -> its command's expiry) and the floor, if any."""
        with self._lock:
            rows = self._db.execute("SELECT nonce, expires_us FROM command_nonces").fetchall()
            floor = self._db.execute("SELECT value FROM kv WHERE key = ?",
                                     (_NONCE_FLOOR_KEY,)).fetchone()
        return ({str(n): _instant(int(e)) for n, e in rows},
                None if floor is None else _instant(int(floor[0])))

    # replica ----------------------------------------------------------------------------------

    def save_snapshot(self, payload: str) -> None:
        """A new snapshot replaces the old one and every delta after it."""
        with self._lock:
            self._sync("NORMAL")
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM replica_deltas")
            self._db.execute("INSERT INTO replica_snapshot (id, payload) VALUES (1, ?) "
                             "ON CONFLICT (id) DO UPDATE SET payload = excluded.payload",
                             (payload,))
            self._db.execute("COMMIT")

    def save_delta(self, version: int, payload: str) -> None:
        with self._lock:
            self._sync("NORMAL")
            self._db.execute("INSERT OR REPLACE INTO replica_deltas (version, payload) "
                             "VALUES (?, ?)", (version, payload))

    def load_replica(self) -> tuple[str | None, list[str]]:
        """The stored snapshot (None if never had one) and the deltas applied after it."""
        with self._lock:
            row = self._db.execute("SELECT payload FROM replica_snapshot WHERE id = 1").fetchone()
            deltas = [str(r[0]) for r in self._db.execute(
                "SELECT payload FROM replica_deltas ORDER BY version")]
        return (None if row is None else str(row[0])), deltas


class Outbox:
    """Publishes the journal's unsent events in ``seq`` order and marks them on PUBACK.

    At most ``window`` events are with paho at once. After a reconnect, new events wait
    until paho's resent in-flight ones are acknowledged, so the broker sees ``seq`` in order.
    """

    def __init__(self, journal: Journal, bus: Bus, *, window: int = 100,
                 name: str = "outbox") -> None:
        self._journal = journal
        self._bus = bus
        self._window = window
        self._name = name
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._idle = threading.Event()
        self._connects = 0
        self._thread: threading.Thread | None = None
        self.sent = 0
        self.failed = 0
        bus.when_connected(self._connected)

    def _connected(self) -> None:
        self._connects += 1
        self._wake.set()

    def alive(self) -> bool:
        """Whether the outbox thread runs (the watchdog asks)."""
        return self._thread is not None and self._thread.is_alive()

    def wake(self) -> None:
        """A new event is in the journal."""
        self._idle.clear()
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def flush(self, timeout: float) -> bool:
        """Wait (real time) until nothing is unsent; False if that did not happen in time."""
        deadline = time.monotonic() + timeout
        self._journal.sync()  # rows written with durable=False are published once on the card
        while True:
            self.wake()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self._idle.wait(remaining) and self._journal.unsent_count() == 0:
                return True

    def stop(self, *, flush_timeout: float = 5.0) -> None:
        """Publish what is left if the broker is there (bounded), then stop. What is still
        unsent stays in the journal for the next start."""
        if self._bus.connected.is_set():
            self.flush(flush_timeout)
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        inflight: OrderedDict[int, Receipt] = OrderedDict()
        handed = 0  # highest seq handed to paho by this process
        connects_seen = self._connects
        while not self._stopping.is_set():
            try:
                done: list[int] = []
                for seq, info in list(inflight.items()):
                    acked = info.acknowledged()
                    if acked:
                        done.append(seq)
                    elif acked is None:  # paho will never send it: hand it over again later
                        self.failed += 1
                        log.warning("%s: seq %d not accepted by the bus, will retry",
                                    self._name, seq)
                        del inflight[seq]
                        handed = min(handed, seq - 1)
                if done:
                    self._journal.mark_sent(done)
                    for seq in done:
                        del inflight[seq]
                    self.sent += len(done)
                if self._bus.connected.is_set():
                    if connects_seen != self._connects and not inflight:
                        connects_seen = self._connects
                    if connects_seen == self._connects and len(inflight) < self._window:
                        rows = self._journal.unsent(after=handed,
                                                    limit=self._window - len(inflight))
                        for row in rows:
                            # As the model, so whoever taps the bus sees the event it was.
                            event = LANE_EVENT.validate_json(row.payload)
                            inflight[row.seq] = self._bus.publish(row.topic, event, qos=1)
                            handed = row.seq
                if not inflight and not self._wake.is_set() \
                        and self._journal.unsent_count() == 0:
                    self._idle.set()
                if inflight:
                    self._wake.wait(0.002 if self._bus.connected.is_set() else 0.05)
                else:
                    self._wake.wait(0.5)
                self._wake.clear()
            except Exception:  # the outbox must outlive a bad moment (disk full, closed db)
                log.exception("%s: outbox round failed", self._name)
                self._stopping.wait(0.5)
