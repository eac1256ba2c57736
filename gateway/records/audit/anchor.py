"""Send the audit chain's head to the fleet, so a chain rewritten from the start is caught.

The chain has no secret key (see the package docstring): only a copy of its head kept off the
site tells a full rewrite from the real thing. The gateway publishes the head, retained, on
``audit/head`` when it connects and every ``period_s`` of its clock; the site's bridge takes
it to the fleet, which keeps every (length, hash) it is sent (docs/fleet.md). The head is read
on the gateway's worker (``run_on_worker``), which owns the database connection.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from sqlite_utils import Database

from gateway.records.audit.checking import _read_head  # the one reader of audit_head
from gateway.safety.alerts import Ticker
from gateway.storage.migrations.audit import GENESIS_HASH
from parkguard.clock import Clock
from wire.bus import Bus
from wire.contract import topics
from wire.contract.messages import AuditHead

log = logging.getLogger(__name__)

#: Every five minutes: what the fleet can miss of a site's audit trail is that long at most.
PERIOD_S = 300.0


def read_head(db: Database) -> tuple[int, str]:
    """(length, last hash) of the chain; an empty or absent log is (0, sixty-four zeros)."""
    return _read_head(db) or (0, GENESIS_HASH)


class AuditHeadPublisher:
    def __init__(self, bus: Bus, site: str, clock: Clock, db: Database, *,
                 run_on_worker: Callable[[Callable[[], object]], object],
                 period_s: float = PERIOD_S) -> None:
        self._bus = bus
        self._site = site
        self._clock = clock
        self._db = db
        self._run_on_worker = run_on_worker
        self._ticker = Ticker(clock, self._due, period_s=period_s)

    def start(self) -> None:
        self._bus.when_connected(self._due_now)
        if self._bus.connected.is_set():
            self._run_on_worker(self.publish_now)
        self._ticker.start()

    def stop(self) -> None:
        self._ticker.stop()

    def _due_now(self) -> None:
        self._run_on_worker(self.publish_now)

    def _due(self, _now: datetime) -> None:
        self._run_on_worker(self.publish_now)

    def publish_now(self) -> AuditHead:
        """On the worker: read the head and publish it (retained)."""
        length, head_hash = read_head(self._db)
        head = AuditHead(site=self._site, length=length, head_hash=head_hash,
                         ts=self._clock.now())
        self._bus.publish(topics.audit_head(self._site), head, retain=True)
        return head
