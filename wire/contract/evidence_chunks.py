"""Cut a read's evidence images into ``evidence/reply`` pieces, and join them again.

A lane's JPEG of the whole view is tens to hundreds of kilobytes; the broker disconnects a
sender whose packet is over its ``max_packet_size`` (256 KiB here) and paho sends the same
packet again on reconnect, so an image never goes on the bus whole. Each image is cut into
pieces of at most ``chunk_bytes`` of JPEG (base64 on the wire, 4/3 larger), every piece
naming the images of the answer, its index of count, the image's size and SHA-256: the
gateway knows when it has everything and that what it joined is what the lane kept.
Both sides import this module, so the cut and the join cannot disagree.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from parkguard.errors import ContractError
from wire.contract.messages import (
    MAX_EVIDENCE_CHUNKS,
    EvidenceImage,
    EvidenceReply,
    EvidenceRequest,
)

__all__ = ["EvidenceAssembler", "evidence_pieces"]


def evidence_pieces(request: EvidenceRequest, images: Mapping[EvidenceImage, bytes], *,
                    chunk_bytes: int, taken_at: datetime | None,
                    now: datetime) -> list[EvidenceReply]:
    """The replies that carry ``images`` (plate crop, whole view) to ``request``; one reply
    with no images when there are none. ValueError if an image needs more pieces than
    :data:`MAX_EVIDENCE_CHUNKS` of ``chunk_bytes``."""
    order: tuple[EvidenceImage, ...] = ("plate", "car")
    names = tuple(name for name in order if name in images)

    def reply(**piece: Any) -> EvidenceReply:
        return EvidenceReply(correlation_id=request.correlation_id, lane=request.lane,
                             event_id=request.event_id, images=names, ts=now, **piece)

    if not names:
        return [reply()]
    replies = []
    for name in names:
        data = images[name]
        count = max(1, -(-len(data) // chunk_bytes))
        if count > MAX_EVIDENCE_CHUNKS:
            raise ValueError(f"the {name} image of {len(data)} bytes needs {count} pieces of "
                             f"{chunk_bytes}, more than {MAX_EVIDENCE_CHUNKS}")
        digest = hashlib.sha256(data).hexdigest()
        for index in range(count):
            piece = data[index * chunk_bytes:(index + 1) * chunk_bytes]
            replies.append(reply(
                image=name, index=index, count=count, size=len(data),
                sha256=digest, data=base64.b64encode(piece).decode("ascii"),
                taken_at=taken_at))
    return replies


class EvidenceAssembler:
    """Collects the pieces of one answer (one correlation id) until every image is whole.

    Not thread-safe: the caller locks. A repeated piece (QoS 1 sends again) replaces its
    twin; a piece that contradicts the ones before it raises ContractError.
    """

    def __init__(self) -> None:
        self._names: tuple[EvidenceImage, ...] | None = None
        self._pieces: dict[EvidenceImage, dict[int, EvidenceReply]] = {}
        self.taken_at: datetime | None = None

    def offer(self, reply: EvidenceReply) -> dict[EvidenceImage, bytes] | None:
        """Keep ``reply``; the images (possibly none) once the answer is whole, else None."""
        if self._names is None:
            self._names = reply.images
        elif reply.images != self._names:
            raise ContractError(f"evidence piece for {reply.event_id} names images "
                                f"{reply.images}, the pieces before it {self._names}")
        if reply.image is not None:
            pieces = self._pieces.setdefault(reply.image, {})
            first = next(iter(pieces.values()), reply)
            if (reply.count, reply.size, reply.sha256) != (first.count, first.size,
                                                          first.sha256):
                raise ContractError(f"evidence piece {reply.index} of the {reply.image} image "
                                    "contradicts the pieces before it")
            pieces[reply.index] = reply
            self.taken_at = reply.taken_at or self.taken_at
        if any(len(self._pieces.get(name, {})) < self._count(name) for name in self._names):
            return None
        return {name: self._join(name) for name in self._names}

    def _count(self, name: EvidenceImage) -> int:
        pieces = self._pieces.get(name)
        return next(iter(pieces.values())).count if pieces else 1

    def _join(self, name: EvidenceImage) -> bytes:
        pieces = self._pieces[name]
        first = pieces[0]
        data = b"".join(base64.b64decode(pieces[i].data) for i in range(first.count))
        if len(data) != first.size or hashlib.sha256(data).hexdigest() != first.sha256:
            raise ContractError(f"the {name} image of {first.event_id}: size or sha256 does "
                                "not match the joined pieces: damaged on the way")
        return data
