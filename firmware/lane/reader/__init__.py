"""The lane's TFLite plate reader: detector + CNN/CTC recogniser, multi-frame fusion.

>>> from firmware.lane.reader import make_reader
>>> make_reader("ground_truth").name
'ground_truth'
"""

from __future__ import annotations

from pathlib import Path

from firmware.lane.camera import PlateReader
from firmware.lane.reader.fusion import FusedPlate, fuse
from firmware.lane.reader.preprocess import Box
from firmware.lane.reader.reader import (
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
    """The reader a lane config's ``camera.type`` asks for: ``tflite`` (the real reader on
    rendered or real frames, looking in the lane's ``plate_region``) or
    ``simulated``/``ground_truth`` (the simulator's oracle). ``recogniser``: ``fp16`` or
    ``int8`` (``camera.recogniser``)."""
    if kind == "tflite":
        return TfliteReader(models, threads=threads, region=region, recogniser=recogniser)
    if kind in ("simulated", "ground_truth"):
        from simulator.camera import GroundTruthReader

        return GroundTruthReader()
    raise ValueError(f"unknown reader type {kind!r}: tflite, simulated")


__all__ = ["DEFAULT_MODELS", "FusedPlate", "PlateRead", "TfliteReader", "fuse",
           "fused_reading", "make_reader"]
