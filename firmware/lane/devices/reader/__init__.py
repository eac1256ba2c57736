"""The lane's TFLite plate reader: detector + CNN/CTC recogniser, multi-frame fusion.

>>> from firmware.lane.devices.reader import make_reader
>>> make_reader("tflite").name
'tflite'

A real lane needs nothing from ``simulator/``: the simulated camera and its ground-truth
reader are the simulator's (``simulator.camera.camera_and_reader``).
"""

from __future__ import annotations

from pathlib import Path

from firmware.lane.devices.camera import PlateReader
from firmware.lane.devices.reader.fusion import FusedPlate, fuse
from firmware.lane.devices.reader.preprocess import Box
from firmware.lane.devices.reader.reader import (
    DEFAULT_MODELS,
    DEFAULT_RECOGNISER,
    PlateRead,
    Precision,
    TfliteReader,
    fused_reading,
)


def make_reader(kind: str, *, models: Path = DEFAULT_MODELS, threads: int = 1,
                region: Box | None = None,
                recogniser: Precision = DEFAULT_RECOGNISER) -> PlateReader:
    """The reader a lane config's ``camera.type`` asks for: ``tflite``, the real reader (a
    ``picamera`` lane's too), looking in the lane's ``plate_region``. ``recogniser``:
    ``fp16`` or ``int8`` (``camera.recogniser``). The simulator's ground-truth reader is not
    made here (``simulator.camera``)."""
    if kind == "tflite":
        return TfliteReader(models, threads=threads, region=region, recogniser=recogniser)
    raise ValueError(f"unknown reader type {kind!r}: tflite (a simulated lane's reader comes "
                     "from simulator.camera.camera_and_reader)")


__all__ = ["DEFAULT_MODELS", "FusedPlate", "PlateRead", "TfliteReader", "fuse",
           "fused_reading", "make_reader"]
