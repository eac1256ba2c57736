"""Loading a ``.tflite`` model: ``ai-edge-litert`` first, ``tflite-runtime`` when it is the one
installed (it needs ``numpy<2``). Never TensorFlow: the lane only has the runtime."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import NDArray

Runtime = Literal["ai_edge_litert", "tflite_runtime"]
RUNTIMES: Final[tuple[Runtime, ...]] = ("ai_edge_litert", "tflite_runtime")
_MODULES: Final[dict[Runtime, str]] = {
    "ai_edge_litert": "ai_edge_litert.interpreter",
    "tflite_runtime": "tflite_runtime.interpreter",
}


class RuntimeMissingError(RuntimeError):
    """Neither TFLite runtime is importable."""


def interpreter_class(runtime: Runtime | None = None) -> tuple[Runtime, Any]:
    """The ``Interpreter`` class of ``runtime`` (None: the first one that imports)."""
    errors = []
    for name in (runtime,) if runtime else RUNTIMES:
        try:
            module = importlib.import_module(_MODULES[name])
        except ImportError as error:
            errors.append(f"{name}: {error}")
            continue
        return name, module.Interpreter
    raise RuntimeMissingError("no TFLite runtime: pip install ai-edge-litert ("
                              + "; ".join(errors) + ")")


class TfliteModel:
    """One model with one input and one output, run on ``threads`` CPU threads."""

    def __init__(self, path: Path, *, threads: int = 1, runtime: Runtime | None = None) -> None:
        self.path = path
        self.runtime, interpreter = interpreter_class(runtime)
        self._interpreter = interpreter(model_path=str(path), num_threads=threads)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self._input["shape"])

    @property
    def output_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self._output["shape"])

    def __call__(self, tensor: NDArray[np.float32]) -> NDArray[np.float32]:
        self._interpreter.set_tensor(self._input["index"], tensor.astype(np.float32))
        self._interpreter.invoke()
        out: NDArray[np.float32] = np.array(self._interpreter.get_tensor(self._output["index"]),
                                            dtype=np.float32)
        return out
