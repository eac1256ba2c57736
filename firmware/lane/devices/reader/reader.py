"""The TFLite plate reader behind the lane's ``PlateReader`` seam.

Two models from ``models/`` (see ``models/README.md``): a detector that finds the plate's
four corners in the whole frame, and a CNN + CTC recogniser that reads the straightened
crop. :meth:`TfliteReader.read_frames` fuses 3–5 frames of one car (see
:mod:`firmware.lane.devices.reader.fusion`).
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final, Literal

from PIL import Image

from firmware.lane.devices.camera import Frame, PlateReading
from firmware.lane.devices.reader.alphabet import ALPHABET, NUM_CLASSES
from firmware.lane.devices.reader.constrained import REPAIRABLE_LENGTHS, decode_with_best_path
from firmware.lane.devices.reader.decode import CharRead
from firmware.lane.devices.reader.fusion import FusedPlate, fuse
from firmware.lane.devices.reader.geometry import Quad, as_quad, box_of, expand, plate_width
from firmware.lane.devices.reader.preprocess import (
    Box,
    corners_from_output,
    detector_tensor,
    detector_view,
    recogniser_crop,
    recogniser_tensor,
)
from firmware.lane.devices.reader.refine import corners_from_window, window, window_tensor
from firmware.lane.devices.reader.runtime import Runtime, TfliteModel

#: Where the committed models live (the repository's ``models/``).
DEFAULT_MODELS: Final = Path(__file__).resolve().parents[4] / "models"
#: Width / height above which an image is taken to be a plate crop, not a whole frame.
CROP_ASPECT: Final = 2.2
#: Crops of one detection the recogniser reads and fuses: the detector's corners are a few
#: pixels off, so a second, tighter crop is read and voted with the first. With the int8
#: recogniser (0.5 ms a crop) that costs ~1 ms a frame and gains 0.2-0.5 points of degraded
#: plates (training-split validation, 1 000 frames each view; models/README.md).
CROP_MARGINS: Final = ((0.04, 0.10), (0.02, 0.06))
#: The narrowest plate (pixels, in the frame the reader gets) a camera should be placed for.
#: Degraded frames of narrower plates are read much worse (models/README.md, "by plate
#: width"); plate-reading vendors ask for about as much (130-170 px, or characters 15 px
#: tall). ``parkguard read`` warns below it, for the installer's placement check.
MIN_PLATE_WIDTH_PX: Final = 140


#: The most an image's read is trusted when its crops read different texts: fusion picks the
#: likelier characters and more often mends a read than spoils one (models/README.md, "Real
#: plates"), but a lane should read more frames before it bills on it. Below the lane's
#: default trust level (0.98).
DISAGREEMENT_CONFIDENCE: Final = 0.9
#: A plate narrower than this share of the detector's view gets a second look (a frame with
#: no plate region, a photograph): the detector reads corners well when the plate is a fifth
#: to a half of its 128 px wide input, and only roughly below. 0.3, not 0.2, since detector
#: run 4 (models/README.md, run 8): it finds a small plate in a wide view a little too wide,
#: so at 0.2 some got no second look (training-split lane frames without a region: 55 of 60
#: read at 0.2, 59 at 0.25-0.35; run 3's detector 58 and 59). Under the zoomed view's own
#: share (1 / ZOOM_PLATE_WIDTHS), so a plate found in it never asks for a third look.
ZOOM_BELOW: Final = 0.3
#: The second look's view is this many plate widths wide, centred on the first look's plate.
ZOOM_PLATE_WIDTHS: Final = 3.0
#: A whole frame whose read is less sure than this (the lane's default trust level) is read
#: again at other corners, and the surest read kept: the refiner run once more from its own
#: corners, and from them grown by :data:`RETRY_GROWN` (a share of the width, of the height,
#: on each side). On real photographs most misses are corners a little off, often a whole
#: edge a character in (a blue plate's lighter province panel left out), and read right from
#: the true corners: on 383 training photographs no committed model had seen, 359 -> 366
#: exact, trusted wrong reads 1 -> 1 (models/README.md, ninth session). A sure read is not
#: read again, so it costs nothing on most frames; an unsure one about two refiner runs and
#: four crops more.
RETRY_BELOW: Final = 0.98
RETRY_GROWN: Final = (0.1, 0.15)
#: A plate read first is replaced only by a read this much surer: an unsure right read was
#: sometimes outdone by a little surer wrong one at the other corners (on those 383
#: photographs: 363 exact with no margin, 364-366 with 0.1-0.5, 366 at 0.3; on the 65
#: choosing photographs 59 up to 0.3, 58 above it).
RETRY_MARGIN: Final = 0.3


def zoom_view(quad: Quad) -> Box:
    """A 4:3 view :data:`ZOOM_PLATE_WIDTHS` plate widths wide centred on ``quad`` (it may
    reach past the frame: that part reads black, as in training)."""
    x0, y0, x1, y1 = box_of(quad)
    width = max(plate_width(quad) * ZOOM_PLATE_WIDTHS, (y1 - y0) * 4 / 3 * 1.5, 8.0)
    height = width * 3 / 4
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return (round(cx - width / 2), round(cy - height / 2), round(cx + width / 2),
            round(cy + height / 2))


def refined(refiner: TfliteModel, image: Image.Image, coarse: Quad) -> Quad:
    """The refiner's corners on a close-up of ``image`` straightened from ``coarse``."""
    return corners_from_window(refiner(window_tensor(window(image, coarse)))[0], coarse)


#: Which recogniser a lane reads with: the fp16 export or its int8 quantisation.
Precision = Literal["fp16", "int8"]
#: int8 reading two crops is as accurate as fp16 reading one, and faster (models/README.md).
DEFAULT_RECOGNISER: Final[Precision] = "int8"


class ModelMismatchError(RuntimeError):
    """The model files do not fit this code (alphabet or shapes changed: retrain)."""


@dataclass(frozen=True, slots=True)
class PlateRead:
    """One image read: the (grammar-repaired) plate, the raw CTC text (the first crop's best
    path, before any grammar), per-character confidences, where the plate is, and how long
    each stage took (an unsure frame's second reading counts as finding the plate:
    ``detect_ms``; ``recognise_ms`` is the kept reading's)."""

    plate: str | None
    confidence: float
    char_confidences: tuple[float, ...]
    raw: str
    corners: Quad | None
    detect_ms: float
    recognise_ms: float
    #: The recogniser's reads of each crop of this image (fused into ``plate``).
    crop_reads: tuple[tuple[CharRead, ...], ...]
    grammar_ok: bool

    @property
    def box(self) -> tuple[float, float, float, float] | None:
        return None if self.corners is None else box_of(self.corners)

    @property
    def width_px(self) -> float | None:
        """How wide the plate is in the image: the camera placement check (see
        :data:`MIN_PLATE_WIDTH_PX`)."""
        return None if self.corners is None else plate_width(self.corners)

    @property
    def total_ms(self) -> float:
        return self.detect_ms + self.recognise_ms

    def reading(self) -> PlateReading:
        return lane_reading(self.plate, self.confidence, self.char_confidences, self.total_ms,
                            self.box)


def reported(plate: str | None) -> str | None:
    """The read the lane reports: None unless it is a plate's length or one character off
    (what fuzzy matching can use). A car with no plate, or a plate hidden, reads a character
    or three of background (measured: 8 of 8 such frames), and the gateway would let a car in
    under that "plate"; unread, it gets the no-plate path (kiosk, help) instead."""
    return plate if plate is not None and len(plate) in REPAIRABLE_LENGTHS else None


def lane_reading(plate: str | None, confidence: float, char_confidences: tuple[float, ...],
                 read_ms: float, box: tuple[float, float, float, float] | None = None
                 ) -> PlateReading:
    """What the lane gets: the read, or for a read :func:`reported` turns down an unread
    plate with no confidence (so the lane reads more frames before it gives up on it).
    ``box`` is kept either way: the crop of an unread plate is evidence too."""
    if reported(plate) is None:
        return PlateReading(None, 0.0, (), read_ms, box)
    return PlateReading(plate, confidence, char_confidences, read_ms, box)


class TfliteReader:
    """Detector (+ corner refiner, when ``reader.json`` names one and ``refine`` is on) +
    recogniser on ``threads`` CPU threads (1 on a Pi lane: the rest is the lane's own work).

    ``region``: the lane's plate region in the camera's frames (``camera.plate_region``),
    where the detector looks (see :func:`~firmware.lane.devices.reader.preprocess.detector_view`);
    the crop the recogniser reads still comes from the whole frame at full resolution.
    ``recogniser``: ``int8`` (the default: ~4x faster per crop than fp16, which buys the
    second crop of :data:`CROP_MARGINS`) or ``fp16`` (``camera.recogniser``; docs/reader.md
    "Speed").
    """

    name = "tflite"

    def __init__(self, models: Path = DEFAULT_MODELS, *, threads: int = 1,
                 runtime: Runtime | None = None, refine: bool = True,
                 margins: Sequence[tuple[float, float]] = CROP_MARGINS,
                 region: Box | None = None,
                 recogniser: Precision = DEFAULT_RECOGNISER) -> None:
        self.margins = tuple(margins)
        self.region = region
        meta = json.loads((models / "reader.json").read_text(encoding="utf-8"))
        rec, det = meta["recogniser"], meta["detector"]
        if rec["alphabet"] != ALPHABET:
            raise ModelMismatchError("the recogniser was trained on another alphabet: retrain")
        if recogniser == "int8" and "int8_file" not in rec:
            raise ModelMismatchError(f"{models / 'reader.json'} names no int8 recogniser: "
                                     "run scripts/quantise_reader.py, or use fp16")
        file = rec["int8_file"] if recogniser == "int8" else rec["file"]
        self.recogniser = TfliteModel(models / file, threads=threads, runtime=runtime)
        self.detector = TfliteModel(models / det["file"], threads=threads, runtime=runtime)
        self.refiner = (TfliteModel(models / meta["refiner"]["file"], threads=threads,
                                    runtime=runtime)
                        if refine and "refiner" in meta else None)
        self.runtime = self.recogniser.runtime
        #: The last frame :meth:`read` read and what it made of it: the lane reads one frame,
        #: and when it does not trust that read, fuses it with more (read once, not twice).
        self._last: tuple[Frame, PlateRead] | None = None
        if self.recogniser.output_shape[-1] != NUM_CLASSES:
            raise ModelMismatchError(
                f"recogniser has {self.recogniser.output_shape[-1]} classes, "
                f"code expects {NUM_CLASSES}")

    def detect(self, image: Image.Image, region: Box | None = None) -> tuple[Quad, float]:
        """The plate's corners in ``image`` and the milliseconds it took: the detector's on
        its view of the frame (``region``, default the reader's; see ``detector_view``); when
        the plate it finds is small in that view (a photograph, a camera with no region), a
        second look through a view zoomed onto it (:func:`zoom_view`); then (with a refiner)
        made exact on a close-up of the frame (``refine.py``)."""
        start = time.perf_counter()
        view = detector_view(image.size, self.region if region is None else region)
        quad = self._look(image, view)
        if plate_width(quad) < (view[2] - view[0]) * ZOOM_BELOW:
            quad = self._look(image, zoom_view(quad))
        if self.refiner is not None:
            quad = refined(self.refiner, image, quad)
        return quad, (time.perf_counter() - start) * 1000

    def _look(self, image: Image.Image, view: Box) -> Quad:
        """The detector's corners of the plate in one 4:3 view of the frame, in the frame."""
        left, top = view[0], view[1]
        part = image if view == (0, 0, *image.size) else image.crop(view)
        found = corners_from_output(self.detector(detector_tensor(part))[0], part.size)
        return as_quad([(x + left, y + top) for x, y in found])

    def recognise(self, crop: Image.Image) -> tuple[list[CharRead], float]:
        """The characters of a straightened crop and the milliseconds it took."""
        chars, _best_path, ms = self._recognise(crop)
        return chars, ms

    def _recognise(self, crop: Image.Image) -> tuple[list[CharRead], str, float]:
        """As :meth:`recognise`, with the best-path text before the grammar's repair."""
        start = time.perf_counter()
        probs = self.recogniser(recogniser_tensor(crop))[0]
        chars, best_path = decode_with_best_path(probs)
        return chars, best_path, (time.perf_counter() - start) * 1000

    def read_image(self, image: Image.Image, *, is_crop: bool | None = None,
                   region: Box | None = None) -> PlateRead:
        """Read one picture: a whole frame (detect, straighten, recognise) or a plate crop
        (``is_crop`` None: decided from the aspect ratio). ``region``: where in the frame to
        look, instead of the reader's."""
        if is_crop is None:
            is_crop = image.width / max(image.height, 1) > CROP_ASPECT
        if is_crop:
            return self._read_crops([image], None, 0.0)
        corners, detect_ms = self.detect(image, region)
        read = self._read_at(image, corners, detect_ms)
        if self.refiner is None or (read.confidence >= RETRY_BELOW
                                    and reported(read.plate) is not None):
            return read
        first, spent = read, read.total_ms  # the retries' time counts as finding the plate
        for coarse in (corners, expand(corners, *RETRY_GROWN)):
            start = time.perf_counter()
            quad = refined(self.refiner, image, coarse)
            other = self._read_at(image, quad, (time.perf_counter() - start) * 1000)
            spent += other.total_ms
            needed = read.confidence + (RETRY_MARGIN if read is first else 0.0)
            if reported(other.plate) is not None and (
                    reported(read.plate) is None or other.confidence > needed):
                read = other
        return replace(read, detect_ms=spent - read.recognise_ms)

    def _read_at(self, image: Image.Image, corners: Quad, detect_ms: float) -> PlateRead:
        """Read a frame's plate at ``corners``: a crop at each of the reader's margins."""
        start = time.perf_counter()
        crops = [recogniser_crop(image, corners, margin) for margin in self.margins]
        detect_ms += (time.perf_counter() - start) * 1000
        return self._read_crops(crops, corners, detect_ms)

    def _read_crops(self, crops: list[Image.Image], corners: Quad | None,
                    detect_ms: float) -> PlateRead:
        """Recognise ``crops`` of one plate and fuse them into one read."""
        reads = []
        best_paths = []
        rec_ms = 0.0
        for crop in crops:
            chars, best_path, ms = self._recognise(crop)
            reads.append(chars)
            best_paths.append(best_path)
            rec_ms += ms
        fused = fuse(reads)
        raw = best_paths[0]
        confidence = fused.confidence
        if len({"".join(c.char for c in r) for r in reads}) > 1:
            confidence = min(confidence, DISAGREEMENT_CONFIDENCE)
        return PlateRead(fused.plate, confidence, fused.char_confidences, raw, corners,
                         detect_ms, rec_ms, tuple(tuple(r) for r in reads),
                         fused.grammar_ok)

    def read(self, frame: Frame) -> PlateReading:
        """The lane's seam: one frame (encoded image bytes) in, one reading out."""
        if frame.image is None:
            return lane_reading(None, 0.0, (), 0.0)
        read = self._read_frame(frame)
        self._last = (frame, read)
        return read.reading()

    def _read_frame(self, frame: Frame) -> PlateRead:
        """A frame with an image: the cached read when :meth:`read` has just read it."""
        if self._last is not None and self._last[0] is frame:
            return self._last[1]
        with Image.open(io.BytesIO(frame.image or b"")) as picture:
            # The reader reads grey: a JPEG decoded straight to its luma is ~1.6x faster to
            # decode (1280 x 720: 3.0 -> 1.9 ms here) and needs no conversion after.
            picture.draft("L", picture.size)
            return self.read_image(picture.convert("L"), is_crop=False)

    def read_many(self, frames: Sequence[Frame]) -> PlateReading:
        """The lane's seam for several frames of one car: read each, fuse (see ``fusion``).
        A frame :meth:`read` has just read is not read again; its time counts once, here."""
        return fused_reading(*self.read_frames(frames))

    def read_frames(self, frames: Sequence[Frame | Image.Image]) -> tuple[FusedPlate,
                                                                          list[PlateRead]]:
        """Read 3–5 frames of one arriving car and fuse them into one plate."""
        reads = []
        for frame in frames:
            if isinstance(frame, Image.Image):
                reads.append(self.read_image(frame, is_crop=False))
            elif frame.image is not None:
                reads.append(self._read_frame(frame))
        return fuse([list(c) for r in reads for c in r.crop_reads]), reads


def fused_reading(fused: FusedPlate, reads: Sequence[PlateRead]) -> PlateReading:
    """A fused plate as the lane's :class:`PlateReading` (time: all frames' reads)."""
    return lane_reading(fused.plate, fused.confidence, fused.char_confidences,
                        sum(r.total_ms for r in reads), reads[0].box if reads else None)
