"""The fleet service: a durable JetStream pull consumer into PostgreSQL, ack after commit.

It reads ``$MQTT_msgs``, the copy of each site message NATS stored before it acknowledged the
site's publish (``fleet/stream.py``), not PARKGUARD, which misses what arrives while it has
no leader.

One loop fetches up to ``batch`` messages; a writer process (``fleet/writer.py``) reads them
with the sites' contract and writes them in one transaction; then the loop acknowledges them.
Killed anywhere, it loses nothing: what was not acknowledged comes again after ``ack_wait``
and the database keeps each event once (``fleet/store.py``). A NATS node going away is the
client's business (it reconnects to another node); PostgreSQL going away makes the loop wait
and retry, with the batch still unacknowledged; so does the writer process dying (another is
started).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import nats
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.errors import FetchTimeoutError

from fleet import writer
from fleet.config import FleetConfig
from fleet.schema import migrate
from fleet.stream import MQTT_SOURCE, IngestSource, consumer_config, ensure_stream
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

    def __init__(self, config: FleetConfig, source: IngestSource = MQTT_SOURCE) -> None:
        self.config = config
        #: What the durable consumer reads: NATS's stored copy of the sites' QoS 1 publishes
        #: (fleet/stream.py says why not PARKGUARD); the bench reads PARKGUARD.
        self.source = source
        self.counters = Counters()
        self._stopping = asyncio.Event()
        #: Set once the consumer is subscribed and the writer has started (the bench times
        #: from here).
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
        pool = _writer_pool()
        try:
            sub = await self._subscribe(nc.jetstream(timeout=10.0))
            if sub is None:
                return
            # The writer process started and connected before the first batch (and before
            # ``ready``, when the bench's clock starts, as its bare consumer's starts after its
            # subscribe); if PostgreSQL is away now, the first write retries (``_write``).
            with contextlib.suppress(writer.DatabaseUnavailable):
                await asyncio.get_running_loop().run_in_executor(pool, writer.connect, dsn)
            self.ready.set()
            # Two things at once: this loop fetches batch N+1 while the writer process reads
            # and commits batch N. Batches are still written one after another, each acked
            # only after its own commit.
            upcoming = asyncio.create_task(self._fetch(sub))
            writing: asyncio.Task[ProcessPoolExecutor] | None = None
            while not self._stopping.is_set():
                messages = await upcoming
                upcoming = asyncio.create_task(self._fetch(sub))
                if writing is not None:
                    pool = await writing
                    writing = None
                if messages:
                    writing = asyncio.create_task(self._commit_and_ack(pool, dsn, messages))
            upcoming.cancel()  # not acked: whatever it fetched comes again after ack_wait
            if writing is not None:  # stopping: finish the batch being written, ack it
                pool = await writing
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
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

    def _raw(self, messages: list[Msg]) -> list[writer.Raw]:
        """What the writer process needs of each message: the site's subject, the payload
        and the stream sequence (plain values: they are pickled to it)."""
        subject = self.source.subject
        return [(subject(m.subject), m.data, stream_seq(m)) for m in messages]

    async def _commit_and_ack(self, pool: ProcessPoolExecutor, dsn: str,
                              messages: list[Msg]) -> ProcessPoolExecutor:
        """Write a batch, then acknowledge its messages at once (not when the loop comes
        round: an ack later than ``ack_wait`` would have NATS deliver the batch again)."""
        pool = await self._write(pool, dsn, self._raw(messages))
        for message in messages:
            await message.ack()
        self.counters.batches += 1
        return pool

    async def _write(self, pool: ProcessPoolExecutor, dsn: str,
                     raw: list[writer.Raw]) -> ProcessPoolExecutor:
        """Commit the batch in the writer process, retrying until it succeeds: PostgreSQL
        away, or the writer process gone (a new one is started)."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                new, repeated, dead = await loop.run_in_executor(pool, writer.write, dsn, raw)
            except writer.DatabaseUnavailable as error:
                log.warning("fleet: database unavailable (%s), retrying", error)
                await asyncio.sleep(self.config.postgres.retry_s)
                continue
            except BrokenProcessPool:
                log.warning("fleet: the writer process died, starting another")
                pool.shutdown(wait=False, cancel_futures=True)
                pool = _writer_pool()
                await asyncio.sleep(self.config.postgres.retry_s)
                continue
            self.counters.new += new
            self.counters.repeated += repeated
            self.counters.dead += dead
            if dead:
                log.warning("fleet: %d messages dead-lettered (see dead_letters)", dead)
            return pool


def _writer_pool() -> ProcessPoolExecutor:
    """One writer process (fleet/writer.py), started fresh (``spawn``: this process has
    threads, which ``fork`` would copy in whatever state they are)."""
    return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                               initializer=writer.start, initargs=(os.getpid(),))


#: ``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>``,
#: the reply subject of a message JetStream delivers (without a domain: nine tokens).
_PLAIN_ACK_TOKENS = 9


def stream_seq(message: Msg) -> int:
    """The message's sequence in its stream, read from its reply subject. ``Msg.metadata``
    parses every field of it (two dataclasses and a datetime per message, about a sixth of
    the fleet's reading time, docs/fleet.md "Scale"); the fleet needs one. Any other form (a
    domain's twelve tokens) goes to ``Msg.metadata``, which also refuses what is not JetStream's."""
    tokens = (message.reply or "").split(".")
    if len(tokens) == _PLAIN_ACK_TOKENS and tokens[0] == "$JS" and tokens[1] == "ACK":
        return int(tokens[5])
    return message.metadata.sequence.stream
