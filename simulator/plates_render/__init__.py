"""Synthetic Chinese plates and gate-camera scenes for training, testing and simulating the
plate reader, in the legacy 320 × 240 view (``GATE_320``, the default) or at the lane camera's
1280 × 720 (``LANE_720``, with the plate region an installer would set; ``lane_view`` for
another region).
``python -m simulator.plates_render --help`` writes a data set to disk."""

from simulator.plates_render.camera import RenderingCamera
from simulator.plates_render.dataset import HELDOUT_SEED, TRAIN_SEED, arrays, sample
from simulator.plates_render.render import (
    GATE_320,
    LANE_720,
    CameraView,
    Scene,
    lane_view,
    render_plate,
    render_scene,
)
from simulator.plates_render.texts import random_plate

__all__ = ["GATE_320", "HELDOUT_SEED", "LANE_720", "TRAIN_SEED", "CameraView", "RenderingCamera",
           "Scene", "arrays", "lane_view", "random_plate", "render_plate", "render_scene", "sample"]
