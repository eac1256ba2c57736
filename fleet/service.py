"""The fleet service: a durable JetStream pull consumer into PostgreSQL, ack after commit.

It reads ``$MQTT_msgs``, the copy of each site message NATS stored before it acknowledged the
site's publish (``fleet/stream.py``), not PARKGUARD, which misses what arrives while it has
no leader.

One loop: fetch up to ``batch`` messages, write them in one transaction, then acknowledge
them. Killed anywhere, it loses nothing: what was not acknowledged comes again after
``ack_wait`` and the database keeps each event once (``fleet/store.py``). A NATS node going
away is the client's business (it reconnects to another node); PostgreSQL going away makes
the loop wait and reconnect, with the batch still unacknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import nats
import psycopg
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.errors import FetchTimeoutError

from fleet.config import FleetConfig
from fleet.rows import Delivered
from fleet.schema import migrate
from fleet.store import Batch, prepare, write_prepared
from fleet.stream import MQTT_SOURCE, IngestSource, consumer_config, ensure_stream
from parkguard.configfile import reveal

log = logging.getLogger(__name__)
#: Messages read between two turns of the event loop (see ``FleetService._prepare``).
_SLICE = 100
Connection = psycopg.Connection[tuple[object, ...]]


@dataclass(slots=True)
class Counters:
    """What the service has done since it started (for logs, tests and the bench)."""

    batches: int = 0
    new: int = 0
    repeated: int = 0
    dead: int = 0


class FleetService:
    """Run with :meth:`run` until :meth:`stop` (or a signal) ends it."""

    def __init__(self, config: FleetConfig, source: IngestSource = MQTT_SOURCE) -> None:
        self.config = config
        #: What the durable consumer reads: NATS's stored copy of the sites' QoS 1 publishes
        #: (fleet/stream.py says why not PARKGUARD); the bench reads PARKGUARD.
        self.source = source
        self.counters = Counters()
        self._stopping = asyncio.Event()
        #: Set once the consumer is subscribed (the bench times from here).
        self.ready = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        settings = self.config.nats
        dsn = reveal(self.config.postgres.dsn) or ""
        await asyncio.to_thread(migrate, dsn)
        nc = await nats.connect(servers=list(settings.servers), user=settings.user,
                                password=reveal(settings.password),
                                max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                                name="parkguard-fleet")
        try:
            sub = await self._subscribe(nc.jetstream(timeout=10.0))
            if sub is None:
                return
            self.ready.set()
            conn: psycopg.Connection[tuple[object, ...]] | None = None
            # Three things at once: NATS fetches batch N+2 and this loop reads batch N+1
            # (CPU) while PostgreSQL writes batch N (its thread waits on the server). Batches
            # are still written one after another, each acked only after its own commit.
            upcoming = asyncio.create_task(self._fetch(sub))
            writing: asyncio.Task[Connection] | None = None
            while not self._stopping.is_set():
                messages = await upcoming
                upcoming = asyncio.create_task(self._fetch(sub))
                batch = await self._prepare(messages) if messages else None
                if writing is not None:
                    conn = await writing
                    writing = None
                if batch is not None:
                    writing = asyncio.create_task(self._commit_and_ack(conn, dsn, batch,
                                                                       messages))
            upcoming.cancel()  # not acked: whatever it fetched comes again after ack_wait
            if writing is not None:  # stopping: finish the batch being written, ack it
                conn = await writing
            if conn is not None:
                conn.close()
        finally:
            # Acks are published: flush them, then close (drain would wait on the pull
            # subscription's open request).
            with contextlib.suppress(nats.errors.Error, asyncio.TimeoutError):
                await nc.flush(timeout=2)
            await nc.close()

    async def _fetch(self, sub: JetStreamContext.PullSubscription) -> list[Msg]:
        """Up to one batch; empty when nothing came within a second or a node went away."""
        try:
            return await sub.fetch(self.config.nats.batch, timeout=1.0)
        except (TimeoutError, NatsTimeout, FetchTimeoutError):
            return []
        except nats.errors.Error as error:  # a node went away mid-fetch: try again
            log.warning("fleet: fetch failed (%s), retrying", error)
            await asyncio.sleep(0.2)
            return []

    async def _subscribe(self, js: JetStreamContext) -> JetStreamContext.PullSubscription | None:
        """The stream and our durable consumer, retried while the cluster cannot answer (a
        node just lost: JetStream elects new leaders within seconds). None if stopped."""
        settings = self.config.nats
        while not self._stopping.is_set():
            try:
                await ensure_stream(js, settings)
                return await js.pull_subscribe(self.source.subjects,
                                               durable=settings.durable,
                                               stream=self.source.stream,
                                               config=consumer_config(settings, self.source))
            except nats.errors.Error as error:
                log.warning("fleet: JetStream not ready (%s), retrying", error or type(error))
                await asyncio.sleep(0.5)
        return None

    async def _prepare(self, messages: list[Msg]) -> Batch:
        """Read a batch in slices, letting the event loop run between them: the next fetch's
        pull request goes out at once (not after the whole batch is read) and its messages
        are taken in meanwhile, and the writing thread gets the GIL back sooner. Read all at
        once, the loop's wait for the next batch was its whole round trip after the reading
        (docs/fleet.md, "Scale")."""
        subject = self.source.subject
        parts = []
        for start in range(0, len(messages), _SLICE):
            await asyncio.sleep(0)
            parts.append(prepare([Delivered(subject(m.subject), m.data,
                                            m.metadata.sequence.stream)
                                  for m in messages[start:start + _SLICE]]))
        return Batch(tuple(row for part in parts for row in part.rows),
                     tuple(dead for part in parts for dead in part.dead))

    async def _commit_and_ack(self, conn: Connection | None, dsn: str, batch: Batch,
                              messages: list[Msg]) -> Connection:
        """Write a batch, then acknowledge its messages at once (not when the loop comes
        round: an ack later than ``ack_wait`` would have NATS deliver the batch again)."""
        conn = await self._write(conn, dsn, batch)
        for message in messages:
            await message.ack()
        self.counters.batches += 1
        return conn

    async def _write(self, conn: Connection | None, dsn: str, batch: Batch) -> Connection:
        """Commit the batch, reconnecting to PostgreSQL until it succeeds."""
        while True:
            try:
                live = conn if conn is not None and not conn.closed \
                    else await asyncio.to_thread(_connect, dsn)
                conn = live
                result = await asyncio.to_thread(write_prepared, live, batch)
            except psycopg.OperationalError as error:
                log.warning("fleet: database unavailable (%s), retrying", error)
                if conn is not None:
                    conn.close()
                conn = None
                await asyncio.sleep(self.config.postgres.retry_s)
                continue
            self.counters.new += result.new
            self.counters.repeated += result.repeated
            self.counters.dead += result.dead
            if result.dead:
                log.warning("fleet: %d messages dead-lettered (see dead_letters)", result.dead)
            return live


def _connect(dsn: str) -> Connection:
    return psycopg.connect(dsn)
