"""Cut a replica snapshot into packets the broker accepts, and join them again.

A lane's snapshot grows with the site (cars inside, passes, lists): at a few thousand cars
it is past the broker's ``max_packet_size``, and a packet over it disconnects its sender.
So a snapshot never goes on the bus whole. Its JSON text is cut into pieces, each a
:class:`~wire.contract.messages.ReplicaChunk` whose *encoded* size stays within a byte budget
(measured, not estimated: a quote or a Chinese character takes more than one byte). The
pieces carry the snapshot's epoch, version, a publication id, ``index`` of ``count`` and the
SHA-256 of the whole text, so the receiver can tell when it has every piece of one snapshot
and that the joined text is the one that was cut. The joined text is then decoded by the
contract like any other message: a chunk adds no second way into the lane.

Cutting the text rather than the records keeps this module ignorant of what a snapshot
holds, and a record longer than a packet (a large tariff file) needs no special case.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable

from pydantic_core import to_json

from parkguard.errors import ContractError
from wire.contract.messages import MAX_CHUNKS, ReplicaChunk, ReplicaSnapshot

__all__ = ["ChunkAssembler", "join_chunks", "split_snapshot"]

_MIN_PIECE = 64
"""A budget that leaves less than this for the text itself is a configuration mistake."""


def _encoded(piece: str) -> int:
    """Bytes ``piece`` takes inside a chunk's JSON (without its two quotes)."""
    return len(to_json(piece)) - 2


def split_snapshot(snapshot: ReplicaSnapshot, *, max_payload: int,
                   snapshot_id: str) -> list[ReplicaChunk]:
    """``snapshot`` as chunks whose JSON is at most ``max_payload`` bytes each.

    Raises ``ValueError`` if ``max_payload`` leaves no room for text or the snapshot would
    need more than :data:`MAX_CHUNKS` pieces.
    """
    text = snapshot.model_dump_json()
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()

    def chunk(index: int, count: int, data: str) -> ReplicaChunk:
        return ReplicaChunk(site=snapshot.site, epoch=snapshot.epoch, version=snapshot.version,
                            snapshot=snapshot_id, index=index, count=count, sha256=digest,
                            data=data)

    envelope = len(chunk(MAX_CHUNKS - 1, MAX_CHUNKS, "").to_json())  # the widest numbers
    budget = max_payload - envelope
    if budget < _MIN_PIECE:
        raise ValueError(f"a replica chunk of at most {max_payload} bytes leaves {budget} "
                         f"bytes for the snapshot (at least {_MIN_PIECE} needed)")
    pieces: list[str] = []
    start = 0
    while start < len(text):
        end = min(len(text), start + budget)
        while (size := _encoded(text[start:end])) > budget:
            end = start + max(1, (end - start) * budget // size - 1)
        pieces.append(text[start:end])
        start = end
    pieces = pieces or [""]
    if len(pieces) > MAX_CHUNKS:
        raise ValueError(f"the snapshot needs {len(pieces)} chunks of {max_payload} bytes, "
                         f"more than {MAX_CHUNKS}")
    return [chunk(i, len(pieces), data) for i, data in enumerate(pieces)]


def join_chunks(chunks: Iterable[ReplicaChunk]) -> ReplicaSnapshot:
    """The snapshot the chunks were cut from; ContractError naming what does not fit."""
    pieces = sorted(chunks, key=lambda c: c.index)
    if not pieces:
        raise ContractError("replica chunks: none to join")
    first = pieces[0]
    for piece in pieces:
        if (piece.snapshot, piece.sha256, piece.count, piece.site, piece.epoch,
                piece.version) != (first.snapshot, first.sha256, first.count, first.site,
                                   first.epoch, first.version):
            raise ContractError(f"replica chunk {piece.index} of snapshot {piece.snapshot} "
                                f"does not belong with snapshot {first.snapshot}")
    if [p.index for p in pieces] != list(range(first.count)):
        raise ContractError(f"replica snapshot {first.snapshot}: have chunks "
                            f"{[p.index for p in pieces]} of {first.count}")
    text = "".join(p.data for p in pieces)
    if hashlib.sha256(text.encode("utf-8")).hexdigest() != first.sha256:
        raise ContractError(f"replica snapshot {first.snapshot}: sha256 does not match the "
                            "joined chunks: damaged on the way")
    snapshot = ReplicaSnapshot.from_json(text)
    if (snapshot.site, snapshot.epoch, snapshot.version) != (first.site, first.epoch,
                                                             first.version):
        raise ContractError(f"replica snapshot {first.snapshot}: its site, epoch or version "
                            "differ from its chunks'")
    return snapshot


class ChunkAssembler:
    """Collects chunks until one snapshot is whole; not thread-safe (the caller locks).

    At most ``keep`` snapshots are collected at once: when a chunk of yet another one
    arrives, the oldest unfinished one is dropped (a piece of it was lost: the next snapshot
    replaces it) and counted in ``abandoned``.
    """

    def __init__(self, *, keep: int = 2) -> None:
        self._keep = keep
        self._open: OrderedDict[str, dict[int, ReplicaChunk]] = OrderedDict()
        self.abandoned: list[ReplicaChunk] = []
        """The first chunk of each snapshot dropped unfinished (what it would have been)."""
        self._done: str | None = None  # the publication joined last: its repeats are ignored

    def offer(self, chunk: ReplicaChunk) -> ReplicaSnapshot | None:
        """Keep ``chunk``; the whole snapshot once its last piece is here, else None. A chunk
        that contradicts the others of its snapshot raises ContractError."""
        if chunk.snapshot == self._done:
            return None  # sent again (to complete another lane's copy): this one has it
        pieces = self._open.get(chunk.snapshot)
        if pieces is None:
            pieces = self._open[chunk.snapshot] = {}
            while len(self._open) > self._keep:
                _id, dropped = self._open.popitem(last=False)
                self.abandoned.append(next(iter(dropped.values())))
        elif pieces:
            first = next(iter(pieces.values()))
            if (chunk.sha256, chunk.count, chunk.epoch, chunk.version) != (
                    first.sha256, first.count, first.epoch, first.version):
                raise ContractError(f"replica chunk {chunk.index} of snapshot {chunk.snapshot} "
                                    "contradicts the chunks before it")
        pieces[chunk.index] = chunk  # a QoS 1 repeat replaces its identical twin
        if len(pieces) < chunk.count:
            return None
        del self._open[chunk.snapshot]
        self._done = chunk.snapshot
        return join_chunks(pieces.values())

    def drop_older_than(self, epoch: str, version: int) -> int:
        """Forget unfinished snapshots of ``epoch`` that a delta of ``version`` has overtaken:
        the gateway sent all their pieces before that delta, so one was lost. How many were
        dropped (also added to ``abandoned``)."""
        stale = [sid for sid, pieces in self._open.items() if pieces and (
            (first := next(iter(pieces.values()))).epoch == epoch and first.version < version)]
        for sid in stale:
            self.abandoned.append(next(iter(self._open.pop(sid).values())))
        return len(stale)

    @property
    def pending(self) -> int:
        """Snapshots being collected now."""
        return len(self._open)
