"""Synthetic Chinese plates and gate-camera scenes for training, testing and simulating the
plate reader. ``python -m simulator.plates_render --help`` writes a data set to disk."""

from simulator.plates_render.camera import RenderingCamera
from simulator.plates_render.dataset import HELDOUT_SEED, TRAIN_SEED, arrays, sample
from simulator.plates_render.render import Scene, render_plate, render_scene
from simulator.plates_render.texts import random_plate

__all__ = ["HELDOUT_SEED", "TRAIN_SEED", "RenderingCamera", "Scene", "arrays", "random_plate",
           "render_plate", "render_scene", "sample"]
