"""The lane's evidence images: a JPEG of the plate crop and of the whole view for every
read, kept in a bounded store on the lane's disk and served to the gateway on request.

A fee complaint or an accident is answered with what the camera saw (docs/evidence.md).
Frames never travel with events (an event must stay small and sure to arrive); the lane
keeps them and the gateway asks for the ones it wants on ``lane/{lane}/evidence/get``.

- The bounded store (count and bytes, oldest read out first; a pure policy and a file
  seam with an in-memory twin) is :mod:`parkguard.evidence`, shared with the gateway's cache.
- :func:`lane_store` opens it with the lane's ``[evidence]`` bounds.
- :class:`EvidenceKeeper` encodes and writes on a thread of its own behind a short queue:
  the barrier never waits for a JPEG; when the queue is full the read's images are dropped
  and counted.
- :class:`EvidenceServer` answers the gateway's requests in pieces
  (:mod:`wire.contract.evidence_chunks`) under the broker's packet limit.
"""

from __future__ import annotations

import io
import logging
import queue
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from firmware.lane.config import EvidenceSettings
from firmware.lane.devices.camera import Frame, PlateReading
from parkguard.clock import Clock
from parkguard.errors import ContractError
from parkguard.evidence import DirectoryFiles, EvidenceFiles, EvidenceStore
from wire.bus import Bus
from wire.contract import topics
from wire.contract.evidence_chunks import evidence_pieces
from wire.contract.messages import EvidenceImage, EvidenceRequest

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

#: Around the reader's plate box the crop keeps this share of the plate's width and height
#: (the box is a few pixels off; a person checking a read wants the whole plate).
CROP_MARGIN = (0.15, 0.35)


def lane_store(settings: EvidenceSettings, where: Path,
               files: EvidenceFiles | None = None) -> EvidenceStore:
    """The lane's store in ``where`` (or ``files``) with its ``[evidence]`` bounds."""
    return EvidenceStore(files or DirectoryFiles(where), max_reads=settings.max_reads,
                         max_bytes=settings.max_bytes)


def encode_images(image: bytes, box: tuple[float, float, float, float] | None,
                  settings: EvidenceSettings) -> dict[EvidenceImage, bytes]:
    """The JPEGs of one frame: the plate crop (when the reader found the plate) at the
    frame's full resolution, and the whole view scaled to ``car_width``."""
    from PIL import Image  # the keeper's thread only: a lane imports it when it keeps one

    out: dict[EvidenceImage, bytes] = {}
    with Image.open(io.BytesIO(image)) as opened:
        picture = opened.convert("RGB")
        if box is not None:
            left, top, right, bottom = box
            dx, dy = (right - left) * CROP_MARGIN[0], (bottom - top) * CROP_MARGIN[1]
            area = (max(0, round(left - dx)), max(0, round(top - dy)),
                    min(picture.width, round(right + dx)), min(picture.height, round(bottom + dy)))
            if area[2] - area[0] >= 4 and area[3] - area[1] >= 2:
                out["plate"] = _jpeg(picture.crop(area), settings.quality)
        whole = picture.copy()
        whole.thumbnail((settings.car_width, settings.car_width * 4))
        out["car"] = _jpeg(whole, settings.quality)
    return out


def _jpeg(picture: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


class EvidenceKeeper:
    """Encodes and stores each read's frame on its own thread (the lane's worker only
    queues it); a full queue drops the read's images and counts it in ``dropped``."""

    def __init__(self, store: EvidenceStore, settings: EvidenceSettings, *, lane: str) -> None:
        self.store = store
        self.settings = settings
        self._lane = lane
        self._queue: queue.Queue[tuple[str, Frame, PlateReading] | None] = queue.Queue(
            maxsize=settings.queue)
        self._thread: threading.Thread | None = None
        self._done = threading.Condition()
        self._finished = 0
        self._submitted = 0
        self.dropped = 0
        self.failed = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"evidence-{self._lane}",
                                        daemon=True)
        self._thread.start()

    def submit(self, event_id: str, frame: Frame | None, reading: PlateReading) -> None:
        """The worker: keep this read's images (a frame without an image has none)."""
        if frame is None or frame.image is None:
            return
        try:
            self._queue.put_nowait((event_id, frame, reading))
            self._submitted += 1
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:  # a flood says so, not each read
                log.warning("lane %s: evidence queue full, images of %s dropped (%d so far)",
                            self._lane, event_id, self.dropped)

    def wait_written(self, timeout: float = 30.0) -> bool:
        """Tests: True once everything submitted so far has been written (or failed)."""
        with self._done:
            return self._done.wait_for(lambda: self._finished >= self._submitted, timeout)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            event_id, frame, reading = item
            try:
                images = encode_images(frame.image or b"", reading.box, self.settings)
                self.store.keep(event_id, images, frame.taken)
            except Exception:  # a bad frame or a full disk must not stop the next read's
                self.failed += 1
                log.exception("lane %s: could not keep the images of %s", self._lane,
                              event_id)
            with self._done:
                self._finished += 1
                self._done.notify_all()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)


class EvidenceServer:
    """Answers ``lane/{lane}/evidence/get`` from the store (on the bus's thread: a lookup
    and a few hundred kilobytes of publishing, never the barrier's worker)."""

    def __init__(self, store: EvidenceStore, *, site: str, lane: str, bus: Bus,
                 clock: Clock, chunk_bytes: int) -> None:
        self.store = store
        self._chunk_bytes = chunk_bytes
        self._site = site
        self._lane = lane
        self._bus = bus
        self._clock = clock
        self.answered = 0
        self.missing = 0
        self.bad_requests = 0

    def topic(self) -> str:
        return topics.lane_evidence_get(self._site, self._lane)

    def on_request(self, topic: str, payload: bytes) -> None:
        try:
            request = EvidenceRequest.from_json(payload)
            if request.lane != self._lane:
                raise ContractError(f"evidence request for lane {request.lane!r} on {topic}")
        except ContractError as error:
            self.bad_requests += 1
            log.warning("lane %s: bad evidence request dropped: %s", self._lane, error)
            return
        found = self.store.get(request.event_id)
        images = found.images if found is not None else {}
        self.answered += 1
        self.missing += not images
        reply_topic = topics.lane_evidence_reply(self._site, self._lane)
        for reply in evidence_pieces(request, images,
                                     chunk_bytes=self._chunk_bytes,
                                     taken_at=found.taken if found else None,
                                     now=self._clock.now()):
            self._bus.publish(reply_topic, reply.to_json(), qos=1)
