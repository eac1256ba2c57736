"""The fleet service: a durable JetStream pull consumer into PostgreSQL, ack after commit.

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
from fleet.store import write_batch
from fleet.stream import SUBJECTS, consumer_config, ensure_stream
from parkguard.configfile import reveal

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Counters:
    """What the service has done since it started (for logs, tests and the bench)."""

    batches: int = 0
    new: int = 0
    repeated: int = 0
    dead: int = 0


class FleetService:
    """Run with :meth:`run` until :meth:`stop` (or a signal) ends it."""

    def __init__(self, config: FleetConfig) -> None:
        self.config = config
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
            # The next batch is fetched while this one is written: NATS and PostgreSQL work
            # at the same time. Each batch is still acked only after its own commit.
            upcoming = asyncio.create_task(self._fetch(sub))
            while not self._stopping.is_set():
                messages = await upcoming
                upcoming = asyncio.create_task(self._fetch(sub))
                if not messages:
                    continue
                delivered = [Delivered(m.subject, m.data, m.metadata.sequence.stream)
                             for m in messages]
                conn = await self._write(conn, dsn, delivered)
                for message in messages:
                    await message.ack()
                self.counters.batches += 1
            upcoming.cancel()  # not acked: whatever it fetched comes again after ack_wait
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
                return await js.pull_subscribe(SUBJECTS, durable=settings.durable,
                                               stream=settings.stream,
                                               config=consumer_config(settings))
            except nats.errors.Error as error:
                log.warning("fleet: JetStream not ready (%s), retrying", error or type(error))
                await asyncio.sleep(0.5)
        return None

    async def _write(self, conn: psycopg.Connection[tuple[object, ...]] | None, dsn: str,
                     delivered: list[Delivered]) -> psycopg.Connection[tuple[object, ...]]:
        """Commit the batch, reconnecting to PostgreSQL until it succeeds."""
        while True:
            try:
                live = conn if conn is not None and not conn.closed \
                    else await asyncio.to_thread(_connect, dsn)
                conn = live
                result = await asyncio.to_thread(write_batch, live, delivered)
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


def _connect(dsn: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(dsn)
