"""A bounded store of evidence images by read (event id): the lane keeps every read's, the
gateway caches the ones it fetched (docs/evidence.md).

Bounded by count and by bytes, oldest read first out: a lane on an SD card and a gateway
on a mini PC must never fill their disk with pictures. :func:`to_drop` is the whole policy,
pure. :class:`EvidenceFiles` is the IO seam: :class:`DirectoryFiles` on disk (one
directory per read, written under a temporary name and renamed, so a half-written read is
never served; kept across restarts), :class:`MemoryFiles` its in-memory twin.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal, Protocol

from parkguard.clock import utc_iso

ImageName = Literal["plate", "car"]
"""``plate``: the plate's crop; ``car``: the whole camera view of the read."""
IMAGES: tuple[ImageName, ...] = ("plate", "car")


@dataclass(frozen=True, slots=True)
class Kept:
    """One read in the store: its event id and the bytes its images take."""

    event_id: str
    size: int


@dataclass(frozen=True, slots=True)
class ImageNames:
    """The images kept of one read (a missing one was never made: no plate box)."""

    event_id: str
    taken: datetime | None
    images: dict[ImageName, bytes]


def to_drop(kept: Sequence[Kept], *, incoming: int, max_reads: int, max_bytes: int) -> list[str]:
    """Event ids to drop, oldest first (``kept`` is oldest first), so that one more read of
    ``incoming`` bytes fits within ``max_reads`` and ``max_bytes``. A read larger than
    ``max_bytes`` by itself empties the store (the caller then refuses it)."""
    count = len(kept) + 1
    total = sum(k.size for k in kept) + incoming
    drop = []
    for read in kept:
        if count <= max_reads and total <= max_bytes:
            break
        drop.append(read.event_id)
        count -= 1
        total -= read.size
    return drop


class EvidenceFiles(Protocol):
    """Where the images live: listed oldest first, written whole, read, deleted."""

    def listing(self) -> list[Kept]: ...

    def write(self, event_id: str, images: dict[ImageName, bytes],
              taken: datetime | None) -> None: ...

    def read(self, event_id: str) -> ImageNames | None: ...

    def delete(self, event_id: str) -> None: ...


class MemoryFiles:
    """The in-memory twin of :class:`DirectoryFiles`."""

    def __init__(self) -> None:
        self._reads: OrderedDict[str, ImageNames] = OrderedDict()

    def listing(self) -> list[Kept]:
        return [Kept(e, sum(map(len, r.images.values()))) for e, r in self._reads.items()]

    def write(self, event_id: str, images: dict[ImageName, bytes],
              taken: datetime | None) -> None:
        self._reads[event_id] = ImageNames(event_id, taken, dict(images))

    def read(self, event_id: str) -> ImageNames | None:
        return self._reads.get(event_id)

    def delete(self, event_id: str) -> None:
        self._reads.pop(event_id, None)


class DirectoryFiles:
    """One directory per read, ``{n:012d}-{event_id}/`` with ``plate.jpg``, ``car.jpg`` and
    ``meta.json``: ``n`` counts up across restarts, so the names sort oldest first."""

    def __init__(self, root: Path) -> None:
        self.root = root  # made at the first write
        self._dirs: OrderedDict[str, Path] = OrderedDict()
        self._next = 0
        if not root.is_dir():
            return
        for stale in root.glob(".tmp-*"):  # a write cut short by a power cut
            shutil.rmtree(stale, ignore_errors=True)
        for path in sorted(p for p in root.iterdir() if p.is_dir() and "-" in p.name):
            number, _, event_id = path.name.partition("-")
            if number.isdigit():
                self._dirs[event_id] = path
                self._next = int(number) + 1

    def listing(self) -> list[Kept]:
        return [Kept(event_id, sum(f.stat().st_size for f in path.glob("*.jpg")))
                for event_id, path in self._dirs.items()]

    def write(self, event_id: str, images: dict[ImageName, bytes],
              taken: datetime | None) -> None:
        self.delete(event_id)
        name = f"{self._next:012d}-{event_id}"
        self._next += 1
        scratch = self.root / f".tmp-{name}"
        scratch.mkdir(parents=True)
        for image, data in images.items():
            (scratch / f"{image}.jpg").write_bytes(data)
        meta = {"taken": utc_iso(taken) if taken else None}
        (scratch / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        final = self.root / name
        scratch.rename(final)
        self._dirs[event_id] = final

    def read(self, event_id: str) -> ImageNames | None:
        path = self._dirs.get(event_id)
        if path is None:
            return None
        try:
            images = {image: (path / f"{image}.jpg").read_bytes() for image in IMAGES
                      if (path / f"{image}.jpg").exists()}
            meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # deleted under us by the bound, or damaged: as if dropped
        taken = datetime.fromisoformat(meta["taken"].replace("Z", "+00:00")) \
            if meta.get("taken") else None
        return ImageNames(event_id, taken, images)

    def delete(self, event_id: str) -> None:
        path = self._dirs.pop(event_id, None)
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)




class EvidenceStore:
    """The bounded store: encode, make room (oldest first), write; look up by event id."""

    def __init__(self, files: EvidenceFiles, *, max_reads: int, max_bytes: int) -> None:
        self.files = files
        self.max_reads = max_reads
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self.kept = 0
        self.evicted = 0
        self.refused = 0

    def keep(self, event_id: str, images: dict[ImageName, bytes],
             taken: datetime | None) -> bool:
        """Keep one read's images, dropping the oldest reads to make room; False (and
        counted) when the read alone is over ``max_bytes``."""
        size = sum(map(len, images.values()))
        with self._lock:
            if size > self.max_bytes:
                self.refused += 1
                return False
            for old in to_drop(self.files.listing(), incoming=size,
                               max_reads=self.max_reads,
                               max_bytes=self.max_bytes):
                self.files.delete(old)
                self.evicted += 1
            self.files.write(event_id, images, taken)
            self.kept += 1
            return True

    def get(self, event_id: str) -> ImageNames | None:
        with self._lock:
            return self.files.read(event_id)

    def listing(self) -> list[Kept]:
        with self._lock:
            return self.files.listing()
