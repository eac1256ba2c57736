"""The plate typeface of GA 36-2018 (letters and digits), drawn by us as strokes.

A real plate's letters and digits are none of the fonts the renderer trains with: GA 36 has
its own narrow, upright sans. Each character fills a box 45 mm wide and 90 mm tall with a
stroke about 10 mm thick; terminals are cut flat, the '1' is a plain bar, '0' has straight
sides, and strokes that run out of the box (the feet of A, the top of T, the corners of
E, Z, 7) are cut flush with it. No font file or outline data is used: every character is a
few centre lines (straight runs and elliptical arcs, in millimetres inside the box) that
:func:`glyph` strokes with a uniform pen and rasterises with Pillow at any size. The shapes
are our drawing of the known characters, close to the standard's proportions, not a copy of
its artwork.

Only the training split draws with these faces (``render_plate(..., ga36_share=...)``); the
Chinese characters have no drawn version, see ``render.py``.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterable
from typing import Final

from PIL import Image, ImageDraw, ImageFilter

#: The character box and the pen, in millimetres (GA 36-2018).
BOX_W: Final = 45.0
BOX_H: Final = 90.0
STROKE: Final = 10.0

Point = tuple[float, float]
Polyline = tuple[Point, ...]

# Centre lines run half a stroke inside the box, so the ink reaches its edges.
_L, _R, _C = 5.0, 40.0, 22.5  # left, right, centre (x)
_T, _B, _M = 5.0, 85.0, 45.0  # top, bottom, middle (y)
_OUT = 8.0  # how far a terminal that is cut by the box runs past it


def _arc(cx: float, cy: float, rx: float, ry: float, a0: float, a1: float) -> list[Point]:
    """Points of an elliptical arc from angle ``a0`` to ``a1`` (degrees, y down: 90 is the
    bottom, 270 the top), about every 5 degrees, both ends included."""
    steps = max(2, math.ceil(abs(a1 - a0) / 5))
    return [(cx + rx * math.cos(math.radians(a0 + (a1 - a0) * k / steps)),
             cy + ry * math.sin(math.radians(a0 + (a1 - a0) * k / steps)))
            for k in range(steps + 1)]


def _line(*points: Point) -> Polyline:
    return tuple(points)


def _path(*parts: Iterable[Point]) -> Polyline:
    return tuple(p for part in parts for p in part)


def _stadium(rx: float, ry: float, top: float = _T, bottom: float = _B) -> Polyline:
    """A closed loop with straight sides and elliptical ends (the '0')."""
    upper, lower = top + ry, bottom - ry
    return _path([(_L, _M)], _arc(_C, upper, rx, ry, 180, 360), _arc(_C, lower, rx, ry, 0, 180),
                 [(_L, _M - 1)])


def _flip(lines: tuple[Polyline, ...]) -> tuple[Polyline, ...]:
    """Turned half a circle in the box (the '9' is the '6' upside down)."""
    return tuple(tuple((BOX_W - x, BOX_H - y) for x, y in line) for line in lines)


def _shapes() -> dict[str, tuple[Polyline, ...]]:
    top_bowl, low_bowl = 19.0, 21.0  # the half-heights of the two bowls of B, P, R, 3, 8, S
    six = (_path(_arc(_C, 22.5, 17.5, 17.5, 335, 180), _arc(_C, 64.0, 17.5, 21.0, 180, -185)),)
    o_letter = _path([(_L, _M)], _arc(_C, 27.0, 17.5, 22.0, 180, 360),
                     _arc(_C, 63.0, 17.5, 22.0, 0, 180), [(_L, _M - 1)])
    a_left = ((1.0, BOX_H + _OUT), (_C, 2.0))
    return {
        # digits
        "0": (_stadium(17.5, 17.5),),
        "1": (_line((_C, -_OUT), (_C, BOX_H + _OUT)),),
        "2": (_path(_arc(_C, 22.5, 17.5, 17.5, 180, 390), [(_L + 0.5, _B), (BOX_W + _OUT, _B)]),),
        "3": (_path(_arc(_C, _T + top_bowl, 16.5, top_bowl, 165, 450), [(16.0, 43.0)]),
              _path([(16.0, 43.0)], _arc(_C, 64.0, 17.5, low_bowl, 270, 525))),
        "4": (_line((31.0, 1.0), (_L, 62.0), (BOX_W + _OUT, 62.0)),
              _line((31.0, -_OUT), (31.0, BOX_H + _OUT))),
        "5": (_path([(BOX_W + _OUT, _T), (7.0, _T), (7.0, 43.0), (21.0, 43.0)],
                    _arc(21.0, 63.5, 19.0, 20.5, 270, 520)),),
        "6": six,
        "7": (_line((-_OUT, _T), (_R, _T), (15.0, BOX_H + _OUT)),),
        "8": (_path(_arc(_C, _T + top_bowl, 15.5, top_bowl, 0, 361)),
              _path(_arc(_C, 64.0, 17.5, low_bowl, 0, 361))),
        "9": _flip(six),
        # letters
        "A": (_line(a_left[0], a_left[1], (BOX_W - 1, BOX_H + _OUT)),
              _line((9.5, 64.0), (35.5, 64.0))),
        "B": (_line((_L, -_OUT), (_L, BOX_H + _OUT)),
              _path([(_L, _T), (24.0, _T)], _arc(24.0, 24.0, 16.0, top_bowl, 270, 450),
                    [(_L, 43.0)]),
              _path([(_L, 43.0), (24.0, 43.0)], _arc(24.0, 64.0, 16.0, low_bowl, 270, 450),
                    [(_L, _B)])),
        "C": (_path(_arc(_C, 22.5, 17.5, 17.5, 340, 180), _arc(_C, 67.5, 17.5, 17.5, 180, 20)),),
        "D": (_path([(_L, _T), (20.0, _T)], _arc(20.0, 25.0, 20.0, 20.0, 270, 360),
                    _arc(20.0, 65.0, 20.0, 20.0, 0, 90), [(_L, _B), (_L, _T - _OUT)]),),
        "E": (_line((BOX_W + _OUT, _T), (_L, _T), (_L, _B), (BOX_W + _OUT, _B)),
              _line((_L, _M), (38.0, _M))),
        "F": (_line((BOX_W + _OUT, _T), (_L, _T), (_L, BOX_H + _OUT)),
              _line((_L, 46.0), (37.0, 46.0))),
        "G": (_path(_arc(_C, 22.5, 17.5, 17.5, 340, 180), _arc(_C, 67.5, 17.5, 17.5, 180, 0),
                    [(_R, 48.0), (24.0, 48.0)]),),
        "H": (_line((_L, -_OUT), (_L, BOX_H + _OUT)), _line((_R, -_OUT), (_R, BOX_H + _OUT)),
              _line((_L, _M), (_R, _M))),
        "J": (_path([(_R, -_OUT)], _arc(_C, 67.5, 17.5, 17.5, 0, 165)),),
        "K": (_line((_L, -_OUT), (_L, BOX_H + _OUT)),
              _line((BOX_W + 2, -4.0), (_L, 60.0)),
              _line((17.0, 41.0), (BOX_W + 2, BOX_H + 4))),
        "L": (_line((_L, -_OUT), (_L, _B), (BOX_W + _OUT, _B)),),
        "M": (_line((_L, BOX_H + _OUT), (_L, _T), (_C, 58.0), (_R, _T), (_R, BOX_H + _OUT)),),
        "N": (_line((_L, BOX_H + _OUT), (_L, _T), (_R, _B), (_R, -_OUT)),),
        "O": (o_letter,),
        "P": (_path([(_L, BOX_H + _OUT), (_L, _T), (24.0, _T)],
                    _arc(24.0, 25.0, 16.0, 20.0, 270, 450), [(_L, 45.0)]),),
        "Q": (o_letter, _line((23.0, 60.0), (BOX_W + 3, BOX_H + 6))),
        "R": (_path([(_L, BOX_H + _OUT), (_L, _T), (24.0, _T)],
                    _arc(24.0, 24.5, 16.0, 19.5, 270, 450), [(_L, 44.0)]),
              _line((21.0, 44.0), (BOX_W + 1, BOX_H + _OUT))),
        "S": (_path(_arc(_C, 24.0, 17.0, top_bowl, 335, 140),
                    _arc(_C, 64.0, 17.5, low_bowl, 320, 520)),),
        "T": (_line((-_OUT, _T), (BOX_W + _OUT, _T)), _line((_C, _T), (_C, BOX_H + _OUT))),
        "U": (_path([(_L, -_OUT)], _arc(_C, 67.5, 17.5, 17.5, 180, 0), [(_R, -_OUT)]),),
        "V": (_line((1.0, -_OUT), (_C, 86.0), (BOX_W - 1, -_OUT)),),
        "W": (_line((0.0, -_OUT), (9.5, 87.0), (_C, 28.0), (35.5, 87.0), (BOX_W, -_OUT)),),
        "X": (_line((1.0, -_OUT), (BOX_W - 1, BOX_H + _OUT)),
              _line((BOX_W - 1, -_OUT), (1.0, BOX_H + _OUT))),
        "Y": (_line((1.0, -_OUT), (_C, 47.0), (BOX_W - 1, -_OUT)),
              _line((_C, 47.0), (_C, BOX_H + _OUT))),
        "Z": (_line((-_OUT, _T), (_R, _T), (_L, _B), (BOX_W + _OUT, _B)),),
    }


#: Centre lines of every character, in millimetres inside the 45 × 90 box.
SHAPES: Final[dict[str, tuple[Polyline, ...]]] = _shapes()
#: The characters drawn: A–Z but I, and 0–9 (O too: police and government series use it).
CHARACTERS: Final = "".join(sorted(SHAPES))
#: Thinner pens where four strokes share the box (M, W): the standard's M and W are lighter.
_PEN: Final = {"M": 0.85, "W": 0.75}
_MITER_LIMIT: Final = 6.0
_SUPERSAMPLE: Final = 4


def has(char: str) -> bool:
    """Whether the GA 36 face draws ``char``."""
    return char in SHAPES


def _polygons(line: Polyline, half: float) -> list[list[Point]]:
    """The ink of one centre line stroked with a pen ``2 * half`` wide: a quad per segment
    (flat ends), and at each bend the wedge between them (mitred; bevelled past the limit)."""
    pts = [p for k, p in enumerate(line) if k == 0 or math.dist(p, line[k - 1]) > 1e-6]
    polys: list[list[Point]] = []
    dirs: list[Point] = []
    for (x0, y0), (x1, y1) in itertools.pairwise(pts):
        length = math.hypot(x1 - x0, y1 - y0)
        dx, dy = (x1 - x0) / length, (y1 - y0) / length
        nx, ny = -dy * half, dx * half
        polys.append([(x0 + nx, y0 + ny), (x1 + nx, y1 + ny), (x1 - nx, y1 - ny),
                      (x0 - nx, y0 - ny)])
        dirs.append((dx, dy))
    for k in range(1, len(pts) - 1):
        (vx, vy), (d1x, d1y), (d2x, d2y) = pts[k], dirs[k - 1], dirs[k]
        cross = d1x * d2y - d1y * d2x
        if abs(cross) < 1e-9:
            continue
        for sign in (1.0, -1.0):
            ax, ay = vx - sign * d1y * half, vy + sign * d1x * half
            bx, by = vx - sign * d2y * half, vy + sign * d2x * half
            t = ((bx - ax) * d2y - (by - ay) * d2x) / cross
            mx, my = ax + d1x * t, ay + d1y * t
            if math.hypot(mx - vx, my - vy) > _MITER_LIMIT * half:
                polys.append([(vx, vy), (ax, ay), (bx, by)])
            else:
                polys.append([(vx, vy), (ax, ay), (mx, my), (bx, by)])
    return polys


@functools.lru_cache(maxsize=2048)
def glyph(char: str, height_px: int, stroke_scale: float = 1.0,
          width_px: int | None = None) -> Image.Image:
    """``char`` in the GA 36 face as an ``L`` mask (255 ink) filling its box: ``height_px``
    tall and ``width_px`` wide (default: the standard's 45 : 90, half the height; another
    width squeezes or stretches the character). ``stroke_scale`` thins or thickens the 10 mm
    pen. Antialiased (drawn at 4× and box-averaged). KeyError for a character not drawn."""
    lines = SHAPES[char]
    width = max(1, round(height_px * BOX_W / BOX_H)) if width_px is None else width_px
    if height_px < 1 or width < 1:
        raise ValueError(f"glyph size must be positive, not {width}x{height_px}")
    sx, sy = width * _SUPERSAMPLE / BOX_W, height_px * _SUPERSAMPLE / BOX_H
    canvas = Image.new("L", (width * _SUPERSAMPLE, height_px * _SUPERSAMPLE), 0)
    draw = ImageDraw.Draw(canvas)
    half = STROKE * stroke_scale * _PEN.get(char, 1.0) / 2
    for line in lines:
        for poly in _polygons(line, half):
            draw.polygon([(x * sx, y * sy) for x, y in poly], fill=255)
    # closing: the pieces of a stroke only touch, and rasterised apart they leave a pixel of
    # the 4x canvas unfilled here and there where three or four of them meet
    canvas = canvas.filter(ImageFilter.MaxFilter(3)).filter(ImageFilter.MinFilter(3))
    return canvas.resize((width, height_px), Image.Resampling.BOX)


def sheet(height_px: int = 90, stroke_scale: float = 1.0) -> Image.Image:
    """Every character side by side in black on white, their boxes outlined (to look at)."""
    width = round(height_px * BOX_W / BOX_H)
    pad = max(4, height_px // 10)
    per_row = 12
    rows = math.ceil(len(CHARACTERS) / per_row)
    out = Image.new("L", (per_row * (width + pad) + pad, rows * (height_px + pad) + pad), 255)
    draw = ImageDraw.Draw(out)
    for k, char in enumerate(CHARACTERS):
        x = pad + (k % per_row) * (width + pad)
        y = pad + (k // per_row) * (height_px + pad)
        draw.rectangle((x - 1, y - 1, x + width, y + height_px), outline=200)
        out.paste(0, (x, y, x + width, y + height_px), glyph(char, height_px, stroke_scale))
    return out
