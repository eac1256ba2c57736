"""Plates drawn as GA 36-2018 paints them, and gate-camera scenes with a plate in them.

A plate is drawn at 1 px per mm (440 × 140, new-energy 480 × 140), character boxes 45 × 90
with the gap after the issuing authority, in its series' colours; then warped into a frame
with perspective and whatever the camera suffers (blur, dirt, occlusion, night, glare, rain).
A :class:`CameraView` sets the frame: :data:`GATE_320` (320 × 240, the plate anywhere; what
every data set so far was drawn in, bit for bit) or :data:`LANE_720` (the lane camera's
1280 × 720, the plate inside the plate region an installer would set).

Fonts come from Debian packages: ``fonts-wqy-microhei`` (Chinese), ``fonts-dejavu-core``,
``fonts-dejavu-extra`` (the Condensed faces) and ``fonts-liberation`` (letters and digits);
training also draws with ``fonts-wqy-zenhei`` and ``fonts-noto-cjk`` (Chinese),
``fonts-urw-base35``, ``fonts-freefont-ttf``, ``fonts-jetbrains-mono``, ``fonts-firacode``,
``fonts-go`` and ``fonts-mononoki`` (Latin); on request (``ga36_share``) a share of the
training plates have their letters and digits drawn in the GA 36 plate faces instead
(:mod:`.ga36`, no font file). Every random choice comes from the numpy ``Generator`` passed
in, so a sample is a pure function of its seed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from firmware.lane.devices.reader.geometry import Quad, perspective_coeffs
from parkguard.core.plates.grammar import PlateSeries
from simulator.plates_render import ga36

Rng = np.random.Generator
RGB = tuple[int, int, int]
#: ``fresh`` is the held-out split with other Latin faces, picked after the marked-zero
#: training faces were added and before any result on them was seen: the check on faces
#: that no training or model decision has looked at (bench row "fresh faces").
Split = Literal["train", "heldout", "fresh"]

FONT_DIRS: Final = (Path("/usr/share/fonts/truetype"), Path("/usr/share/fonts"))
#: (file, ttc index) per split. The held-out split uses other faces than training, and no
#: training face is one of them or derived from one (no Arimo/croscore, whose derivative
#: Liberation Sans is held out; no DejaVu Sans Mono; no WenQuanYi Micro Hei Mono).
#: Droid Sans Fallback (fonts-droid-fallback) is left out on purpose: WenQuanYi Micro Hei's
#: Chinese glyphs are derived from it, so it adds no new Chinese shapes.
CJK_FONTS: Final[dict[Split, tuple[tuple[str, int], ...]]] = {
    "train": (("wqy/wqy-microhei.ttc", 0),           # first entry: drawn half of the time
              ("wqy/wqy-zenhei.ttc", 0),             # WenQuanYi Zen Hei
              ("opentype/noto/NotoSansCJK-Regular.ttc", 2),  # Noto Sans CJK SC
              ("opentype/noto/NotoSansCJK-Bold.ttc", 2)),
    "heldout": (("wqy/wqy-microhei.ttc", 1),),
    "fresh": (("wqy/wqy-microhei.ttc", 1),),
}
LATIN_FONTS: Final[dict[Split, tuple[tuple[str, int], ...]]] = {
    "train": (("dejavu/DejaVuSansCondensed-Bold.ttf", 0), ("dejavu/DejaVuSansCondensed.ttf", 0),
              ("liberation/LiberationSansNarrow-Bold.ttf", 0),
              ("dejavu/DejaVuSans-Bold.ttf", 0),
              ("opentype/urw-base35/NimbusSansNarrow-Regular.otf", 0),
              ("opentype/urw-base35/NimbusSansNarrow-Bold.otf", 0),
              ("freefont/FreeSans.ttf", 0), ("freefont/FreeSansBold.ttf", 0),
              # zeros with a dot or a slash inside, so a marked 0 (or dirt in one) still reads
              # 0 and not 8, 6 or 9; none derives from the held-out DejaVu Sans Mono
              ("jetbrains-mono/JetBrainsMono-Bold.ttf", 0), ("firacode/FiraCode-Bold.ttf", 0),
              ("fonts-go/Go-Mono-Bold.ttf", 0), ("mononoki/mononoki-Bold.ttf", 0)),
    "heldout": (("liberation/LiberationSansNarrow-Regular.ttf", 0),
                ("liberation/LiberationSans-Bold.ttf", 0),
                ("dejavu/DejaVuSansMono-Bold.ttf", 0)),
    "fresh": (("inconsolata/Inconsolata.otf", 0), ("anonymous-pro/Anonymous Pro B.ttf", 0),
              ("roboto/unhinted/RobotoCondensed-Bold.ttf", 0),
              ("noto/NotoSansMono-Bold.ttf", 0)),
}
#: Debian packages the renderer needs (``make test`` installs them).
FONT_PACKAGES: Final = ("fonts-wqy-microhei", "fonts-dejavu-core", "fonts-dejavu-extra",
                        "fonts-liberation", "fonts-wqy-zenhei", "fonts-noto-cjk",
                        "fonts-urw-base35", "fonts-freefont-ttf", "fonts-jetbrains-mono",
                        "fonts-firacode", "fonts-go", "fonts-mononoki", "fonts-inconsolata",
                        "fonts-anonymous-pro", "fonts-roboto-unhinted", "fonts-noto-mono")

WHITE: Final = (245, 245, 245)
BLACK: Final = (20, 20, 20)
RED: Final = (200, 25, 25)
BLUE: Final = (10, 70, 190)
YELLOW: Final = (245, 190, 20)
GREEN: Final = (70, 190, 90)


class FontMissingError(RuntimeError):
    """A font the renderer needs is not installed."""


def font_path(name: str) -> Path:
    for base in FONT_DIRS:
        path = base / name
        if path.exists():
            return path
    raise FontMissingError(
        f"font {name} not found; install the Debian packages {' '.join(FONT_PACKAGES)}")


@functools.lru_cache(maxsize=64)
def _font(name: str, index: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_path(name)), 96, index=index)


@functools.lru_cache(maxsize=4096)
def _glyph(char: str, name: str, index: int, stroke: int) -> Image.Image:
    """The glyph's ink, tightly cropped, as an L mask (cached: rendering is the slow part)."""
    font = _font(name, index)
    canvas = Image.new("L", (160, 160), 0)
    ImageDraw.Draw(canvas).text((20, 10), char, font=font, fill=255, stroke_width=stroke,
                                stroke_fill=255)
    bbox = canvas.getbbox()
    return canvas.crop(bbox) if bbox else canvas


@dataclass(frozen=True, slots=True)
class PlateStyle:
    """Colours of one plate: background (one colour, or a top→bottom / left-part gradient),
    text colour, and which character positions are painted red."""

    background: RGB
    text: RGB
    background2: RGB | None = None
    gradient: Literal["none", "vertical", "split"] = "none"
    red: frozenset[int] = field(default_factory=frozenset)


def style_for(series: PlateSeries, text: str, rng: Rng) -> PlateStyle:
    """The colours of a plate of ``series`` (ordinary plates: blue for cars, yellow for large)."""
    if series is PlateSeries.ORDINARY:
        return (PlateStyle(BLUE, WHITE) if rng.random() < 0.8 else PlateStyle(YELLOW, BLACK))
    if series in (PlateSeries.TRAILER, PlateSeries.COACH):
        return PlateStyle(YELLOW, BLACK)
    if series is PlateSeries.NEW_ENERGY_SMALL:
        return PlateStyle((235, 250, 235), BLACK, GREEN, "vertical")
    if series is PlateSeries.NEW_ENERGY_LARGE:
        return PlateStyle(YELLOW, BLACK, GREEN, "split")
    if series is PlateSeries.POLICE:
        return PlateStyle(WHITE, BLACK, red=frozenset({len(text) - 1}))
    if series is PlateSeries.EMERGENCY:
        return PlateStyle(WHITE, BLACK, red=frozenset({len(text) - 2, len(text) - 1}))
    if series is PlateSeries.ARMED_POLICE:
        return PlateStyle(WHITE, BLACK, red=frozenset({0, 1}))
    if series is PlateSeries.MILITARY:
        return PlateStyle(WHITE, BLACK, red=frozenset({0}))
    if series in (PlateSeries.CONSULATE, PlateSeries.EMBASSY):
        red = text.index("领") if "领" in text else text.index("使")
        return PlateStyle(BLACK, WHITE, red=frozenset({red}))
    return PlateStyle(BLACK, WHITE)  # Hong Kong / Macau


def _background(style: PlateStyle, width: int, height: int) -> Image.Image:
    if style.gradient == "none" or style.background2 is None:
        return Image.new("RGB", (width, height), style.background)
    a = np.asarray(style.background, dtype=np.float32)
    b = np.asarray(style.background2, dtype=np.float32)
    if style.gradient == "vertical":
        t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
        pixels = np.broadcast_to(a + (b - a) * t, (height, width, 3))
    else:  # yellow left part (province + authority), green the rest
        cut = int(width * 0.27)
        pixels = np.empty((height, width, 3), dtype=np.float32)
        pixels[:, :cut] = a
        pixels[:, cut:] = b
    return Image.fromarray(pixels.astype(np.uint8), "RGB")


def _is_cjk(char: str) -> bool:
    return ord(char) > 0x2E80


#: The share of training plates drawn with the GA 36 faces when asked for (``ga36_share``;
#: ``scripts/make_reader_data.py --ga36``).
GA36_SHARE: Final = 0.4


@dataclass(frozen=True, slots=True)
class Ga36Face:
    """How one training plate is drawn in the GA 36 faces: the pen of the drawn letters and
    digits (× the standard's 10 mm) and their width (× the character box), and, as the
    Chinese characters have no drawn version, the stroke added to the training CJK face (in
    its 96 px em) and how much it is squeezed across, for the plate's heavy, blocky strokes."""

    stroke_scale: float
    width: float
    cjk_stroke: int
    cjk_squeeze: float


def side_rng(rng: Rng) -> Rng:
    """A generator seeded from ``rng``'s state without drawing from it (its PCG64 stream
    jumped far ahead): new randomness that leaves every later draw of ``rng`` as it was."""
    bits = rng.bit_generator
    if not isinstance(bits, np.random.PCG64):
        raise TypeError(f"need a PCG64 generator (np.random.default_rng), not {bits!r}")
    return np.random.Generator(bits.jumped())


def ga36_face(rng: Rng, share: float) -> Ga36Face | None:
    """The GA 36 drawing of a training plate ``share`` of the time, else None. Draws only from
    :func:`side_rng`, so with or without it a plate's other draws (and the scene's) are the
    same."""
    side = side_rng(rng)
    if side.random() >= share:
        return None
    return Ga36Face(stroke_scale=float(side.uniform(0.85, 1.15)),
                    width=float(side.uniform(0.9, 1.02)),
                    cjk_stroke=int(side.integers(1, 3)),
                    cjk_squeeze=float(side.uniform(0.8, 0.95)))


def render_plate(text: str, series: PlateSeries, rng: Rng, split: Split = "train", *,
                 ga36_share: float = 0.0) -> Image.Image:
    """The plate ``text`` painted flat, 1 px per mm, in its series' colours.

    ``ga36_share`` (training only): the share of plates whose letters and digits are drawn in
    the GA 36 plate faces (:mod:`.ga36`) and whose Chinese characters get heavier strokes,
    squeezed across. The choice and its parameters come from a side generator, so every
    other draw is the legacy one: the same plates, scenes and troubles, some in another face.
    At 0 (the default) nothing changes, bit for bit.
    """
    if ga36_share and split != "train":
        raise ValueError(f"the GA 36 faces are for the training split only, not {split!r}")
    n = len(text)
    width = 480 if n == 8 else 440
    height = 140
    style = style_for(series, text, rng)
    plate = _background(style, width, height)
    draw = ImageDraw.Draw(plate)
    # the border line, in the text colour, 3 mm in
    draw.rounded_rectangle((3, 3, width - 4, height - 4), radius=8, outline=style.text, width=3)
    cjks, latins = CJK_FONTS[split], LATIN_FONTS[split]
    if split == "train":  # the first Chinese face half the time, the others share the rest
        cjk = 0 if rng.random() < 0.5 else 1 + int(rng.integers(len(cjks) - 1))
    else:
        cjk = int(rng.integers(len(cjks)))
    cjk_name, cjk_index = cjks[cjk]
    latin_name, latin_index = latins[int(rng.integers(len(latins)))]
    stroke = int(rng.integers(0, 4)) if split == "train" else int(rng.integers(1, 4))
    # training only: glyphs a little narrower or wider than their box, per plate
    squeeze = float(rng.uniform(0.8, 1.05)) if split == "train" else 1.0
    gap = 34 if n == 7 else 18  # the dot gap after the 2nd character
    margin = 15.5
    char_w = (width - 2 * margin - gap - 12 * (n - 1)) / n
    face = ga36_face(rng, ga36_share) if ga36_share > 0 else None
    x = margin
    for i, char in enumerate(text):
        name, index = (cjk_name, cjk_index) if _is_cjk(char) else (latin_name, latin_index)
        if face is not None and ga36.has(char):
            box_w = max(round(char_w * face.width), 4)
            pen = round(face.stroke_scale * 20) / 20  # in steps of 5 %: glyphs are cached
            mask = ga36.glyph(char, 90, pen, box_w)
        elif face is not None and _is_cjk(char):
            box_w = round(char_w * face.cjk_squeeze)
            mask = _glyph(char, name, index, face.cjk_stroke).resize(
                (max(box_w, 4), 90), Image.Resampling.BILINEAR)
        else:
            glyph = _glyph(char, name, index, stroke if not _is_cjk(char) else min(stroke, 1))
            box_w = round(char_w * (0.75 if char == "1" else 1.0) * squeeze)
            mask = glyph.resize((max(box_w, 4), 90), Image.Resampling.BILINEAR)
        colour = RED if i in style.red else style.text
        left = round(x + (char_w - box_w) / 2)
        plate.paste(Image.new("RGB", mask.size, colour), (left, 25), mask)
        x += char_w + 12 + (gap if i == 1 else 0)
        if i == 1 and n <= 8 and text[:2] != "WJ":
            cx = round(x - 12 - gap / 2 - 6)
            draw.ellipse((cx - 5, 65, cx + 5, 75), fill=style.text)
    return plate


# Scenes ----------------------------------------------------------------------------------

#: The legacy view's frame and mean plate width: the sizes the scene's pixel constants were
#: tuned at, so other views scale them from these.
_LEGACY_SIZE: Final = (320, 240)
_LEGACY_PLATE_WIDTH: Final = 120.0


@dataclass(frozen=True, slots=True)
class CameraView:
    """What a gate camera sees: the frame size and where in it, how large, the plate lands.

    The reader was trained and benched on 320 × 240 frames with the plate anywhere in them
    (:data:`GATE_320`), but the real lane camera captures 1280 × 720 and the reader crops the
    lane's plate region out of that before detecting. To test and bench that path the renderer
    draws scenes at the real capture size (:data:`LANE_720`), with everything drawn in pixels
    (the car, blur, glare, rain) scaled so a frame looks like the legacy one, only larger.
    """

    #: frame (width, height) in pixels
    size: tuple[int, int]
    #: the range the plate's width in pixels is drawn from (uniformly)
    plate_width: tuple[float, float]
    #: (x0, y0, x1, y1) in frame pixels the plate's centre is drawn from (uniformly); None:
    #: anywhere with the whole plate at least 8 px inside the frame
    plate_zone: tuple[float, float, float, float] | None = None
    #: (x0, y0, x1, y1): where an installer would set the lane's plate region for this view
    #: (the reader crops it before detection); every plate corner lies inside it
    region: tuple[int, int, int, int] | None = None

    @property
    def effect_scale(self) -> float:
        """How much larger than in the legacy view camera effects are drawn, in pixels: the
        mean plate width over the legacy one (blur sigma, glare, rain streaks)."""
        return (self.plate_width[0] + self.plate_width[1]) / 2 / _LEGACY_PLATE_WIDTH

    @property
    def background_scale(self) -> tuple[float, float]:
        """(x, y) scale of the background's pixel sizes (car body, lights, stripes) against the
        legacy 320 × 240 frame."""
        return self.size[0] / _LEGACY_SIZE[0], self.size[1] / _LEGACY_SIZE[1]

    @property
    def area_scale(self) -> float:
        """The frame's area over the legacy frame's (rain streaks keep their density)."""
        return self.size[0] * self.size[1] / (_LEGACY_SIZE[0] * _LEGACY_SIZE[1])


#: The legacy view and the default everywhere: every data set, model and bench figure so far
#: was made with it, so its frames must stay bit-identical (tests pin their hashes).
GATE_320: Final = CameraView((320, 240), (70, 170), None, None)
#: A commissioned lane at the real capture size: the car stopped on the arming loop, the plate
#: low in the middle of the frame, the plate region 560 × 420 (4:3) around it. The plate's
#: centre zone is 550–730 across (not 530–750): with a 300 px plate at the worst rotation,
#: yaw and pitch of :func:`_place` a corner reaches 187 px from the centre across and 90 px
#: up or down, and every corner must stay inside the region.
_LANE_ZONE: Final = (550.0, 380.0, 730.0, 520.0)
_LANE_REGION: Final = (360, 240, 920, 660)
LANE_720: Final = CameraView((1280, 720), (120, 300), plate_zone=_LANE_ZONE, region=_LANE_REGION)


def lane_view(region: tuple[int, int, int, int]) -> CameraView:
    """The lane camera's view for a configured plate region: :data:`LANE_720`'s plate sizes and
    zone scaled and moved with the region, so the simulated camera of a lane commissioned
    with another region puts the plate where that lane's reader looks (for its own region,
    exactly :data:`LANE_720`). The region is grown to 4:3 about its centre first, as the
    detector's view is (``detector_view``)."""
    if region == _LANE_REGION:
        return LANE_720
    x0, y0, x1, y1 = region
    rx0, ry0, rx1, ry1 = _LANE_REGION
    scale = min(x1 - x0, (y1 - y0) * 4 / 3) / (rx1 - rx0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    zx0, zy0, zx1, zy1 = _LANE_ZONE
    rcx, rcy = (rx0 + rx1) / 2, (ry0 + ry1) / 2
    zone = (cx + (zx0 - rcx) * scale, cy + (zy0 - rcy) * scale,
            cx + (zx1 - rcx) * scale, cy + (zy1 - rcy) * scale)
    widths = (LANE_720.plate_width[0] * scale, LANE_720.plate_width[1] * scale)
    return CameraView(LANE_720.size, widths, plate_zone=zone, region=region)


#: The legacy frame size (kept for existing callers; a scene's own size is ``image.size``).
SCENE_SIZE: Final = GATE_320.size
DEGRADATIONS: Final = ("blur", "dirt", "occlusion", "night", "glare", "rain")


@dataclass(frozen=True, slots=True)
class Scene:
    """A gate-camera frame with one plate: the image, the plate's corners, what it says."""

    image: Image.Image
    corners: Quad
    text: str
    series: PlateSeries
    degradations: tuple[str, ...]
    #: the flat plate as painted, dirt and occlusion included (reused for the car's next frame)
    plate: Image.Image
    #: the camera view the frame was drawn with (the car's later frames keep it)
    view: CameraView = GATE_320


def _scene_background(rng: Rng, split: Split, view: CameraView) -> Image.Image:
    """Concrete floor, a car body in some paint, a bumper; other generators for held-out.
    Pixel sizes are the legacy frame's, scaled by the view's background scale."""
    w, h = view.size
    sx, sy = view.background_scale
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if split == "train":
        base = rng.uniform(60, 160)
        img = (base + rng.uniform(-40, 40) * (yy / h)
               + 6 * rng.standard_normal((h, w), dtype=np.float32))
    else:  # stripes and blotches: a floor and walls the model has not seen
        base = rng.uniform(40, 180)
        img = (base + 25 * np.sin(xx / (rng.uniform(6, 30) * sx) + rng.uniform(0, 6))
               + 10 * rng.standard_normal((h, w), dtype=np.float32))
    rgb = np.repeat(img[:, :, None], 3, axis=2)
    tint = rng.uniform(0.85, 1.15, 3)
    rgb = np.clip(rgb * tint, 0, 255).astype(np.uint8)
    scene = Image.fromarray(rgb, "RGB")
    draw = ImageDraw.Draw(scene)
    paint = tuple(int(c) for c in rng.integers(0, 256, 3))
    x0, x1 = int(rng.integers(_px(-40, sx), _px(60, sx))), int(rng.integers(_px(260, sx),
                                                                           _px(360, sx)))
    y0, y1 = int(rng.integers(_px(20, sy), _px(90, sy))), int(rng.integers(_px(200, sy),
                                                                          _px(260, sy)))
    if split == "train":
        draw.rounded_rectangle((x0, y0, x1, y1), radius=_px(30, min(sx, sy)), fill=paint)
    else:
        draw.polygon([(x0, y1), (x0 + _px(30, sx), y0), (x1 - _px(30, sx), y0), (x1, y1)],
                     fill=paint)
    for _ in range(int(rng.integers(1, 4))):  # lights, grille bars, a bumper line
        c = int(rng.integers(0, 256))
        bx, by = int(rng.integers(0, w)), int(rng.integers(0, h))
        draw.rectangle((bx, by, bx + int(rng.integers(_px(10, sx), _px(80, sx))),
                        by + int(rng.integers(_px(3, sy), _px(20, sy)))), fill=(c, c, c))
    return scene


def _px(legacy: int, scale: float) -> int:
    """A legacy pixel size in the view's pixels (exactly ``legacy`` at scale 1)."""
    return round(legacy * scale)


def _place(rng: Rng, plate_size: tuple[int, int], view: CameraView) -> Quad:
    """Where the plate's corners land: a plate ``view.plate_width`` px wide (legacy 70–170),
    its centre in ``view.plate_zone``, seen a little from the side."""
    w, h = view.size
    pw = float(rng.uniform(*view.plate_width))
    ph = pw * plate_size[1] / plate_size[0] * float(rng.uniform(0.85, 1.15))
    if view.plate_zone is None:
        cx = float(rng.uniform(pw / 2 + 8, w - pw / 2 - 8))
        cy = float(rng.uniform(ph / 2 + 8, h - ph / 2 - 8))
    else:
        zx0, zy0, zx1, zy1 = view.plate_zone
        cx, cy = float(rng.uniform(zx0, zx1)), float(rng.uniform(zy0, zy1))
    angle = float(rng.uniform(-0.12, 0.12))
    ca, sa = np.cos(angle), np.sin(angle)
    yaw = float(rng.uniform(-0.12, 0.12)) * ph  # one side taller than the other
    pitch = float(rng.uniform(-0.10, 0.10)) * pw  # top wider than bottom
    base = [(-pw / 2 - pitch, -ph / 2 - yaw), (pw / 2 + pitch, -ph / 2 + yaw),
            (pw / 2 - pitch, ph / 2 - yaw), (-pw / 2 + pitch, ph / 2 + yaw)]
    pts = [(cx + x * ca - y * sa, cy + x * sa + y * ca) for x, y in base]
    return (pts[0], pts[1], pts[2], pts[3])


def _dirt(plate: Image.Image, rng: Rng) -> Image.Image:
    overlay = plate.copy()
    draw = ImageDraw.Draw(overlay)
    w, h = plate.size
    for _ in range(int(rng.integers(4, 12))):
        x, y, r = int(rng.integers(0, w)), int(rng.integers(0, h)), int(rng.integers(6, 26))
        c = int(rng.integers(60, 130))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(c, c - 10, c - 25))
    return Image.blend(plate, overlay, float(rng.uniform(0.3, 0.55)))


def _occlude(plate: Image.Image, rng: Rng) -> Image.Image:
    """A tow bar, a bracket or a leaf over part of the plate (at most a third of a glyph)."""
    draw = ImageDraw.Draw(plate)
    w, h = plate.size
    c = int(rng.integers(0, 90))
    if rng.random() < 0.5:  # a bar across the bottom edge
        y = int(rng.integers(int(h * 0.78), int(h * 0.9)))
        draw.rectangle((0, y, w, h), fill=(c, c, c))
    else:  # a blob at a side edge
        x = int(rng.choice([0, w]))
        r = int(rng.integers(10, 20))
        y = int(rng.integers(0, h))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(c, c, c))
    return plate


def render_scene(text: str, series: PlateSeries, rng: Rng, *, split: Split = "train",
                 degraded: bool = False, same_car_as: Scene | None = None,
                 view: CameraView = GATE_320, ga36_share: float = 0.0) -> Scene:
    """A frame with the plate ``text`` placed in it; ``degraded`` applies 1–3 of
    :data:`DEGRADATIONS` (clean frames still get mild blur, noise and exposure changes).
    ``view``: the frame's size and where the plate lands (:data:`GATE_320`, the legacy one,
    or :data:`LANE_720`, the real capture size).

    ``same_car_as``: a later frame of that scene's car. What belongs to the car and the hour
    stays (the painted plate with its face, dirt and occlusion; the night, the rain, the
    glare; a blurry car stays blurry); placement, surroundings, blur strength and sensor
    noise are drawn afresh. Without it every frame would be a new draw of trouble, and fusing
    three of them would be easier than a real car at night is. ``ga36_share``: see
    :func:`render_plate` (training only; a later frame keeps the first's plate). The car
    keeps its view too:
    ``view`` must be ``same_car_as.view`` (ValueError otherwise; a camera does not change its
    frame while a car waits, so a mismatch is a caller's mistake).
    """
    if same_car_as is not None:
        if view != same_car_as.view:
            raise ValueError(f"a later frame of a car keeps its view {same_car_as.view}, "
                             f"not {view}")
        chosen, plate = same_car_as.degradations, same_car_as.plate
    else:
        chosen = ()
        if degraded:
            k = int(rng.integers(1, 4))
            chosen = tuple(sorted(str(d) for d in rng.choice(DEGRADATIONS, size=k,
                                                             replace=False)))
        plate = render_plate(text, series, rng, split, ga36_share=ga36_share)
        if "dirt" in chosen:
            plate = _dirt(plate, rng)
        if "occlusion" in chosen:
            plate = _occlude(plate, rng)
    corners = _place(rng, plate.size, view)
    scene = _scene_background(rng, split, view)
    pw, ph = plate.size
    flat: Quad = ((0.0, 0.0), (float(pw), 0.0), (float(pw), float(ph)), (0.0, float(ph)))
    coeffs = perspective_coeffs(flat, corners)
    warped = plate.transform(view.size, Image.Transform.PERSPECTIVE, coeffs,
                             Image.Resampling.BILINEAR)
    mask = Image.new("L", plate.size, 255).transform(
        view.size, Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.BILINEAR)
    scene.paste(warped, (0, 0), mask)
    scene = _camera(scene, rng, chosen, corners, view)
    return Scene(scene, corners, text, series, chosen, plate, view)


def _camera(scene: Image.Image, rng: Rng, chosen: tuple[str, ...], corners: Quad,
            view: CameraView) -> Image.Image:
    """What the camera does to the frame. Sizes in pixels (blur sigma, glare, rain streaks)
    scale with the view's effect scale; per-pixel noise, gain and offset do not. At scale 1
    (:data:`GATE_320`) the draws and the arithmetic are the legacy ones, bit for bit."""
    w, h = view.size
    k = view.effect_scale
    blur = (float(rng.uniform(1.0, 2.0)) if "blur" in chosen
            else float(rng.uniform(0.0, 0.6))) * k
    if blur > 0.1:
        scene = scene.filter(ImageFilter.GaussianBlur(blur))
    px: NDArray[np.float32] = np.asarray(scene, dtype=np.float32)
    if "glare" in chosen:
        cx = float(np.mean([p[0] for p in corners]) + rng.uniform(-50, 50) * k)
        cy = float(np.mean([p[1] for p in corners]) + rng.uniform(-25, 25) * k)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        r = float(rng.uniform(15, 45)) * k
        spot = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r)).astype(np.float32)
        px = px + np.float32(rng.uniform(100, 170)) * spot[:, :, None]
    if "rain" in chosen:
        streaks = Image.new("L", view.size, 0)
        draw = ImageDraw.Draw(streaks)
        slant = float(rng.uniform(-4, 4)) * k  # the streaks' sideways drift: their angle stays
        width = max(1, round(k))
        count = round(int(rng.integers(60, 160)) * view.area_scale)  # the same density
        for _ in range(count):
            x, y = float(rng.uniform(0, w)), float(rng.uniform(0, h))
            length = float(rng.uniform(6, 16)) * k
            draw.line((x, y, x + slant, y + length), fill=int(rng.integers(60, 140)),
                      width=width)
        px = px + np.asarray(streaks, dtype=np.float32)[:, :, None] * np.float32(0.6)
    gain = float(rng.uniform(0.25, 0.45)) if "night" in chosen else float(rng.uniform(0.8, 1.2))
    noise = float(rng.uniform(8, 14)) if "night" in chosen else float(rng.uniform(0, 4))
    grain = noise * rng.standard_normal((h, w, 1), dtype=np.float32)
    px = px * np.float32(gain) + grain + np.float32(rng.uniform(-15, 15))
    return Image.fromarray(np.clip(px, 0, 255).astype(np.uint8), "RGB")
