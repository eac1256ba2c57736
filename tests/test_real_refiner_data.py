"""scripts/real_refiner_data.py: every window it cuts can say where the true corners are."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.lane.devices.reader.geometry import plate_width
from firmware.lane.devices.reader.refine import corners_from_window

ROOT = Path(__file__).resolve().parents[1]


def _script() -> ModuleType:
    """The script as a module (it imports ``real_plates`` from ``scripts/``)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        spec = importlib.util.spec_from_file_location("real_refiner_data",
                                                      ROOT / "scripts" / "real_refiner_data.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(ROOT / "scripts"))


script = _script()


@settings(max_examples=300, deadline=None)
@given(cx=st.floats(200, 1000), cy=st.floats(150, 600), width=st.floats(60, 600),
       tilt=st.floats(-0.15, 0.15), seed=st.integers(0, 2**32 - 1))
def test_a_window_holds_the_true_corners_and_gives_them_back(
        cx: float, cy: float, width: float, tilt: float, seed: int) -> None:
    height = width * 140 / 440
    dy = tilt * width / 2
    true = ((cx - width / 2, cy - height / 2 + dy), (cx + width / 2, cy - height / 2 - dy),
            (cx + width / 2, cy + height / 2 - dy), (cx - width / 2, cy + height / 2 + dy))
    coarse, target = script.coarse_for(true, np.random.default_rng(seed))
    assert target.min() >= script.INSIDE and target.max() <= 1 - script.INSIDE
    assert np.allclose(corners_from_window(target, coarse), true, atol=1e-6)


def test_half_the_coarse_quads_move_a_whole_edge_by_up_to_a_tenth_of_the_width() -> None:
    true = ((100.0, 100.0), (540.0, 100.0), (540.0, 240.0), (100.0, 240.0))
    rng = np.random.default_rng(7)
    lefts = []
    for _ in range(400):
        moved = script.shifted(true, rng)
        lefts.append((moved[0][0] + moved[3][0]) / 2 - 100.0)  # the left edge's move
    width = plate_width(true)
    assert max(abs(v) for v in lefts) <= (script.EDGE_SHIFT + 0.05 * 140 / 440) * width
    assert max(abs(v) for v in lefts) > 0.8 * script.EDGE_SHIFT * width  # they do reach it
