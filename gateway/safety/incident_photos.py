"""Photos a guard takes of an incident (an accident's scene, damage), kept so a swap is seen.

The operations plan asks for the scene to be photographed. The guard uploads from the
incidents page (a phone's camera or the dashboard); :meth:`IncidentPhotos.add` takes the
bytes only if Pillow decodes them as a JPEG or PNG within the bounds below, and never keeps
the upload as it came: the picture is re-encoded (JPEG stays JPEG at quality 90, PNG stays
PNG), turned upright by its EXIF orientation, and every other metadata block is dropped.
That is a choice: a phone writes the GPS position, the phone's make and serial numbers into
EXIF, and none of it is needed (the site is known, the upload time is ours); the re-encode
is also what makes a file a picture and not whatever a crafted upload carried.

The stored file's SHA-256 goes into the hash-chained audit log (``incident.photo``, with
size, format and pixels) in the transaction that writes the ``incident_photos`` row.
:func:`check_photos` recomputes each file's hash against the *audit entries* (not the row,
which anyone with the file can edit): a swapped, edited or missing file is named.
``parkguard audit verify`` runs it (docs/incidents.md).

The files live under ``photos/`` in the gateway's evidence directory, one folder per
incident, behind :class:`PhotoFiles` (on disk :class:`DirectoryPhotos`, in tests also
:class:`MemoryPhotos`). ``db`` is the gateway worker's connection (run through
``Gateway.call``).
"""

from __future__ import annotations

import hashlib
import io
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

import sqlite_utils
from PIL import Image, ImageOps, UnidentifiedImageError

from gateway.records.audit import AuditLog, read_entries
from parkguard.clock import Clock, utc_iso
from parkguard.errors import ParkGuardError

__all__ = ["MAX_BYTES", "MAX_PHOTOS", "MAX_PIXELS", "DirectoryPhotos", "IncidentPhotos",
           "MemoryPhotos", "Photo", "PhotoError", "PhotoFiles", "PhotoProblem",
           "check_photos", "clean_image", "photo_root"]

MAX_BYTES: Final = 10 * 1024 * 1024
"""An upload larger than this is refused (a phone's full-size JPEG is 2-6 MB)."""
MAX_PHOTOS: Final = 12
"""Photos one incident may carry."""
MAX_PIXELS: Final = 50_000_000
"""Width × height at most (a 50 MP camera); larger is refused before it is decoded."""
_FORMATS: Final = {"JPEG": ("jpg", "image/jpeg"), "PNG": ("png", "image/png")}
_ID = re.compile(r"^ph-[0-9a-f]{16}$")
_INCIDENT = re.compile(r"^inc-[0-9a-f]{16}$")


class PhotoError(ParkGuardError, ValueError):
    """A photo was refused: not a JPEG or PNG picture, too big, too many, or a closed or
    unknown incident. The message says which, in Chinese and English."""


@dataclass(frozen=True, slots=True)
class Photo:
    """One stored photo; ``sha256`` is of the stored (re-encoded) file."""

    photo_id: str
    incident_id: str
    format: str
    bytes: int
    width: int
    height: int
    sha256: str
    uploaded_by: str
    uploaded_at: str

    @classmethod
    def of(cls, row: dict[str, Any]) -> Photo:
        return cls(**{name: row[name] for name in cls.__slots__})

    @property
    def file_name(self) -> str:
        return f"{self.photo_id}.{_FORMATS[self.format][0]}"

    @property
    def media_type(self) -> str:
        return _FORMATS[self.format][1]

    @property
    def url(self) -> str:
        return f"/incidents/{self.incident_id}/photos/{self.file_name}"


@dataclass(frozen=True, slots=True)
class PhotoProblem:
    """A photo whose file is not the one the audit log recorded."""

    incident_id: str
    photo_id: str
    kind: str  # "missing" or "changed"
    detail: str


class PhotoFiles(Protocol):
    """Where the photo files are kept."""

    def write(self, incident_id: str, name: str, data: bytes) -> None: ...

    def read(self, incident_id: str, name: str) -> bytes | None: ...


class DirectoryPhotos:
    """Photo files on disk: ``{root}/{incident_id}/{photo_id}.{jpg|png}``, written whole
    (a temporary file renamed) so a crash never leaves half a picture under the real name."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, incident_id: str, name: str) -> Path:
        if not _INCIDENT.match(incident_id) or not _ID.match(name.rsplit(".", 1)[0]):
            raise PhotoError(f"not a photo name: {incident_id}/{name}")
        return self.root / incident_id / name

    def write(self, incident_id: str, name: str, data: bytes) -> None:
        path = self._path(incident_id, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(path.suffix + ".part")
        partial.write_bytes(data)
        partial.replace(path)

    def read(self, incident_id: str, name: str) -> bytes | None:
        path = self._path(incident_id, name)
        return path.read_bytes() if path.is_file() else None


class MemoryPhotos:
    """Photo files in a dict (tests)."""

    def __init__(self) -> None:
        self.files: dict[tuple[str, str], bytes] = {}

    def write(self, incident_id: str, name: str, data: bytes) -> None:
        self.files[(incident_id, name)] = data

    def read(self, incident_id: str, name: str) -> bytes | None:
        return self.files.get((incident_id, name))


def clean_image(data: bytes) -> tuple[bytes, str, int, int]:
    """``data`` decoded and re-encoded without its metadata: ``(bytes, format, width,
    height)``; :class:`PhotoError` if it is not a JPEG or PNG picture within the bounds."""
    if not data:
        raise PhotoError("照片为空 the photo is empty")
    if len(data) > MAX_BYTES:
        raise PhotoError(f"照片太大 the photo is {len(data) // 1024} KB; at most "
                         f"{MAX_BYTES // (1024 * 1024)} MB")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            kind = probe.format or ""
            if kind not in _FORMATS:
                raise PhotoError(f"只收 JPEG 或 PNG 照片 only JPEG or PNG photos are taken "
                                 f"(this is {kind or 'unknown'})")
            if probe.width * probe.height > MAX_PIXELS:
                raise PhotoError(f"照片像素太多 the photo has {probe.width}×{probe.height} "
                                 f"pixels; at most {MAX_PIXELS // 1_000_000} million")
            probe.load()  # the whole picture decodes, not just its header
            upright = ImageOps.exif_transpose(probe)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombError) as error:
        if isinstance(error, PhotoError):
            raise
        raise PhotoError("不是照片 this file is not a JPEG or PNG picture "
                         f"({type(error).__name__})") from error
    out = io.BytesIO()
    if kind == "JPEG":
        upright.convert("RGB").save(out, "JPEG", quality=90)
    else:
        keep = upright if upright.mode in ("RGB", "RGBA", "L", "LA", "P") \
            else upright.convert("RGBA")
        keep.save(out, "PNG", optimize=False)
    return out.getvalue(), kind, upright.width, upright.height


class IncidentPhotos:
    """Takes, lists and serves an incident's photos; each one's hash in the audit chain."""

    def __init__(self, db: sqlite_utils.Database, *, clock: Clock, audit: AuditLog,
                 files: PhotoFiles) -> None:
        self.db = db
        self._clock = clock
        self._audit = audit
        self.files = files

    def add(self, incident_id: str, data: bytes, *, actor: str) -> Photo:
        """Check, clean and keep one photo of an open incident; audited with its hash."""
        return self.keep(incident_id, clean_image(data), actor=actor)

    def keep(self, incident_id: str, cleaned: tuple[bytes, str, int, int], *,
             actor: str) -> Photo:
        """Keep a photo :func:`clean_image` made (the dashboard decodes it off the worker,
        then keeps it on the worker)."""
        if not actor.strip():
            raise PhotoError("actor must not be blank")
        row = self.db.execute("SELECT state FROM incidents WHERE incident_id = ?",
                              [incident_id]).fetchone()
        if row is None:
            raise PhotoError(f"没有该事件 no incident {incident_id!r}")
        if row[0] != "open":
            raise PhotoError(f"事件已关闭 incident {incident_id} is closed: no more photos")
        count = self.db.execute("SELECT count(*) FROM incident_photos WHERE incident_id = ?",
                                [incident_id]).fetchone()[0]
        if count >= MAX_PHOTOS:
            raise PhotoError(f"照片已满 incident {incident_id} already has {MAX_PHOTOS} photos")
        data, kind, width, height = cleaned
        photo = Photo(f"ph-{uuid.uuid4().hex[:16]}", incident_id, kind, len(data), width,
                      height, hashlib.sha256(data).hexdigest(), actor,
                      utc_iso(self._clock.now()))
        # The file first: a row (and an audit entry) never names a file that was not written.
        self.files.write(incident_id, photo.file_name, data)
        with self.db.atomic():
            self.db.table("incident_photos").insert(
                {name: getattr(photo, name) for name in Photo.__slots__})
            self._audit.record(
                actor=actor, action="incident.photo", subject=f"incident:{incident_id}",
                reason=f"photo {photo.photo_id}",
                after={"photo_id": photo.photo_id, "sha256": photo.sha256,
                       "bytes": photo.bytes, "format": kind, "width": width,
                       "height": height})
        return photo

    def photos(self, incident_id: str) -> list[Photo]:
        """The incident's photos, oldest first."""
        return [Photo.of(row) for row in self.db.query(
            "SELECT * FROM incident_photos WHERE incident_id = ? ORDER BY uploaded_at, "
            "rowid", [incident_id])]

    def by_incident(self) -> dict[str, list[Photo]]:
        """Every incident's photos (for the incidents page)."""
        found: dict[str, list[Photo]] = {}
        for row in self.db.query("SELECT * FROM incident_photos ORDER BY uploaded_at, "
                                 "rowid"):
            found.setdefault(row["incident_id"], []).append(Photo.of(row))
        return found

    def read(self, incident_id: str, file_name: str) -> tuple[Photo, bytes] | None:
        """A stored photo and its bytes, or None (unknown, or its file is gone)."""
        photo_id = file_name.rsplit(".", 1)[0]
        rows = list(self.db.query("SELECT * FROM incident_photos WHERE incident_id = ? AND "
                                  "photo_id = ?", [incident_id, photo_id]))
        if not rows:
            return None
        photo = Photo.of(rows[0])
        if photo.file_name != file_name:
            return None
        data = self.files.read(incident_id, photo.file_name)
        return None if data is None else (photo, data)


def check_photos(db: sqlite_utils.Database, files: PhotoFiles) -> list[PhotoProblem]:
    """Every photo the audit log recorded, its file hashed again: the ones missing or not
    the file that was recorded. Read-only (``db`` may be opened read-only)."""
    problems: list[PhotoProblem] = []
    for entry in read_entries(db):
        if entry.action != "incident.photo" or not isinstance(entry.after, dict):
            continue
        incident_id = entry.subject.removeprefix("incident:")
        photo_id = str(entry.after.get("photo_id", ""))
        kind = str(entry.after.get("format", ""))
        if kind not in _FORMATS:
            problems.append(PhotoProblem(incident_id, photo_id, "changed",
                                         f"audit entry {entry.seq} names format {kind!r}"))
            continue
        name = f"{photo_id}.{_FORMATS[kind][0]}"
        try:
            data = files.read(incident_id, name)
        except PhotoError as error:
            problems.append(PhotoProblem(incident_id, photo_id, "changed", str(error)))
            continue
        if data is None:
            problems.append(PhotoProblem(incident_id, photo_id, "missing",
                                         f"{incident_id}/{name} recorded in audit entry "
                                         f"{entry.seq} is missing"))
        elif hashlib.sha256(data).hexdigest() != entry.after.get("sha256"):
            problems.append(PhotoProblem(incident_id, photo_id, "changed",
                                         f"{incident_id}/{name} is not the file recorded in "
                                         f"audit entry {entry.seq} (SHA-256 differs)"))
    return problems


def photo_root(evidence_path: Path | None, database: Path) -> Path:
    """The photos' directory: ``photos/`` in the gateway's evidence directory (its
    ``evidence.path``, by default ``evidence/`` beside the database)."""
    return (evidence_path or database.parent / "evidence") / "photos"
