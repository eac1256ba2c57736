"""Fetches a read's evidence images from its lane, and keeps what it fetched (docs/evidence.md).

The lane keeps the JPEGs (plate crop, whole view) of every read; the gateway asks for the
ones a person wants to see, on ``lane/{lane}/evidence/get``, and joins the answer's pieces
(:mod:`wire.contract.evidence_chunks`). What arrived goes into a bounded cache on the
gateway's disk (:mod:`parkguard.evidence`), so the live view's thumbnail is asked for once;
the images an incident or a dispute concerns are copied into a second store, ``kept``,
that an ordinary day's reads do not push out.

A lane that is offline (its retained state says so), a gateway without the broker, or a
lane that does not answer within ``timeout_s`` gives ``unavailable``; a lane that has no
images of the read (dropped from its bounded store, or none taken) gives ``missing``. Both
are remembered for a little while, so a page polled every two seconds does not ask a dead
lane every two seconds.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field

from parkguard.clock import Clock
from parkguard.configfile import StrictModel
from parkguard.errors import ContractError
from parkguard.evidence import DirectoryFiles, EvidenceFiles, EvidenceStore, ImageName
from wire.bus import Bus
from wire.contract import topics
from wire.contract.evidence_chunks import EvidenceAssembler
from wire.contract.messages import EvidenceReply, EvidenceRequest

log = logging.getLogger(__name__)

Status = Literal["ok", "missing", "unavailable"]


class EvidenceCacheSettings(StrictModel):
    """The gateway's stores of fetched evidence images and how long it waits for a lane."""

    path: Path | None = Field(
        default=None, description="directory of the stores; default evidence/ beside the "
                                  "gateway's database")
    max_reads: int = Field(default=2000, ge=1, le=1_000_000,
                           description="fetched reads cached at most")
    max_bytes: int = Field(default=256 * 1024 * 1024, ge=1024 * 1024, le=64 * 1024**3,
                           description="bytes of JPEG cached at most")
    kept_max_reads: int = Field(default=20_000, ge=1, le=1_000_000,
                                description="reads kept for incidents and disputes at most")
    kept_max_bytes: int = Field(default=2 * 1024**3, ge=1024 * 1024, le=256 * 1024**3,
                                description="bytes kept for incidents and disputes at most")
    timeout_s: float = Field(default=5.0, gt=0, le=60,
                             description="how long to wait for a lane's answer")
    remember_missing_s: float = Field(
        default=30.0, ge=0, le=3600,
        description="how long an answer of no images (or no answer) is believed before the "
                    "lane is asked again")


@dataclass(frozen=True, slots=True)
class Fetched:
    """A fetch's outcome: ``ok`` with the images, or why there are none."""

    status: Status
    images: dict[ImageName, bytes] = field(default_factory=dict)
    why: str = ""


@dataclass(slots=True)
class _Asking:
    lane: str
    event_id: str
    done: threading.Event = field(default_factory=threading.Event)
    assembler: EvidenceAssembler = field(default_factory=EvidenceAssembler)
    images: dict[ImageName, bytes] | None = None


def gateway_stores(settings: EvidenceCacheSettings, database: Path,
                   files: tuple[EvidenceFiles, EvidenceFiles] | None = None
                   ) -> tuple[EvidenceStore, EvidenceStore]:
    """The cache and the kept store, in ``settings.path`` or beside the database."""
    root = settings.path or database.parent / "evidence"
    cache_files, kept_files = files or (DirectoryFiles(root / "cache"),
                                        DirectoryFiles(root / "kept"))
    return (EvidenceStore(cache_files, max_reads=settings.max_reads,
                          max_bytes=settings.max_bytes),
            EvidenceStore(kept_files, max_reads=settings.kept_max_reads,
                          max_bytes=settings.kept_max_bytes))


class EvidenceFetcher:
    """Asks lanes for the images of reads; thread-safe (web requests run in a pool)."""

    def __init__(self, bus: Bus, site: str, *, clock: Clock, cache: EvidenceStore,
                 kept: EvidenceStore, settings: EvidenceCacheSettings,
                 lane_online: Callable[[str], bool | None] = lambda _lane: None) -> None:
        self._bus = bus
        self._site = site
        self._clock = clock
        self.cache = cache
        self.kept = kept
        self.settings = settings
        self._lane_online = lane_online
        self._lock = threading.Lock()
        self._asking: dict[str, _Asking] = {}
        self._failed: dict[str, tuple[datetime, Fetched]] = {}
        self.bad_replies = 0
        bus.subscribe(topics.all_lane_evidence_replies(site), self._on_reply)

    def fetch(self, lane: str, event_id: str) -> Fetched:
        """The images of read ``event_id`` at ``lane``: from the stores, else from the lane
        (waiting up to ``timeout_s``)."""
        for store in (self.kept, self.cache):
            found = store.get(event_id)
            if found is not None and found.images:
                return Fetched("ok", dict(found.images))
        now = self._clock.now()
        with self._lock:
            remembered = self._failed.get(event_id)
        if remembered is not None and now - remembered[0] < timedelta(
                seconds=self.settings.remember_missing_s):
            return remembered[1]
        outcome = self._ask(lane, event_id)
        if outcome.status != "ok":
            with self._lock:
                self._failed[event_id] = (now, outcome)
                while len(self._failed) > 10_000:
                    self._failed.pop(next(iter(self._failed)))
        return outcome

    def keep(self, lane: str, event_id: str) -> Fetched:
        """Fetch and copy into the kept store (an incident's or a dispute's reads)."""
        outcome = self.fetch(lane, event_id)
        if outcome.status == "ok" and self.kept.get(event_id) is None:
            self.kept.keep(event_id, outcome.images, None)
        return outcome

    def _ask(self, lane: str, event_id: str) -> Fetched:
        if not self._bus.connected.is_set():
            return Fetched("unavailable", why="网关与消息总线断开 gateway lost the broker")
        if self._lane_online(lane) is False:
            return Fetched("unavailable", why="车道离线 lane offline")
        correlation_id = f"ev-{uuid.uuid4().hex[:20]}"
        asking = _Asking(lane, event_id)
        with self._lock:
            self._asking[correlation_id] = asking
        try:
            request = EvidenceRequest(correlation_id=correlation_id, lane=lane,
                                      event_id=event_id, ts=self._clock.now())
            self._bus.publish(topics.lane_evidence_get(self._site, lane), request.to_json())
            if not asking.done.wait(self.settings.timeout_s):
                return Fetched("unavailable", why="车道无回应 lane did not answer")
        finally:
            with self._lock:
                self._asking.pop(correlation_id, None)
        images = asking.images or {}
        if not images:
            return Fetched("missing", why="车道未保存该图像 the lane has no image of this read")
        self.cache.keep(event_id, images, asking.assembler.taken_at)
        return Fetched("ok", images)

    def _on_reply(self, topic: str, payload: bytes) -> None:
        """The bus's thread: one piece of an answer."""
        try:
            where = topics.parse_topic(topic)
            reply = EvidenceReply.from_json(payload)
            if reply.lane != where.node:
                raise ContractError(f"evidence reply from lane {reply.lane!r} on {topic}")
            with self._lock:
                asking = self._asking.get(reply.correlation_id)
                if asking is None or (asking.lane, asking.event_id) != (reply.lane,
                                                                       reply.event_id):
                    return  # late (after the timeout) or not ours
                images = asking.assembler.offer(reply)
                if images is not None:
                    asking.images = images
                    asking.done.set()
        except ContractError as error:
            self.bad_replies += 1
            log.warning("gateway: bad evidence reply on %s dropped: %s", topic, error)
