"""Full-integer (int8) post-training quantisation of the reader's recogniser, written beside
its fp16 export: the recogniser a lane reads with (``camera.recogniser``, default int8).

    python scripts/quantise_reader.py --data var/q-data/gate var/q-data/lane

Why: the int8 recogniser reads a crop ~4x faster than the fp16 one on this CPU (0.5 against
2.2 ms, 1 thread) and is half the size. Crop for crop it reads 0-0.6 points fewer degraded
plates on the training-split validation (more calibration data or a float softmax did not
close it: models/README.md, "int8"), so the reader spends part of the time saved on a
second, tighter crop of each plate, and is then as accurate as fp16 on one crop and faster.
Why beside: training warm-starts from the fp16 export, and a lane may ask for it. Only the
recogniser by default: the int8 refiner's corners move in steps of 1/256 of its window, and
with all three models int8 the lane trusted more wrong reads (7 against 2 in 4 000 frames);
the int8 detector cost more on lane night frames.

The model is rebuilt as Keras from its fp16 ``.tflite`` (``train_reader.init_from_tflite``:
the folded convs and dense layers, BatchNorm set to pass them through) and converted with
``Optimize.DEFAULT``, a representative data set of real training-split inputs and
``TFLITE_BUILTINS_INT8`` only. Input and output stay float32, so the reader's code is the
same for both. ``reader.json`` gets ``int8_file`` (and ``int8_bytes``, ``quantised``) in the
model's section; ``file`` stays the fp16 export, which training warm-starts from.

Data: shards of ``scripts/make_reader_data.py`` (``train-*.npz``: recogniser crops, detector
frames) and ``scripts/make_refiner_data.py`` (``refiner-*.npz``: refiner windows), from seeds
no validation uses (``validate_reader.py`` draws 424 242). Reproducible: the samples are
drawn with ``--seed`` (a rerun writes the same bytes). Run from the repository root in the
training venv (``train`` extra), like ``train_reader.py``; prints, per model, how far the int8
outputs are from the fp16 ones on samples that neither warm start nor calibration saw, and
any op left in float.
"""

from __future__ import annotations

import argparse
import glob
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from train_reader import detector, init_from_tflite, recogniser, tf
from train_refiner import refiner

from firmware.lane.devices.reader.decode import greedy

MODELS = ("recogniser", "detector", "refiner")
#: Which array of which shards each model reads (uint8, height x width).
ARRAYS: dict[str, tuple[str, str]] = {
    "recogniser": ("train-*.npz", "crops"),
    "detector": ("train-*.npz", "frames"),
    "refiner": ("refiner-*.npz", "windows"),
}
#: Samples for refitting BatchNorm in ``init_from_tflite`` and for comparing int8 with fp16.
WARM_SAMPLES = 512
CHECK_SAMPLES = 256


def load_inputs(data: list[Path], name: str) -> np.ndarray:
    """Every ``name`` input (uint8) in the shards of the ``data`` directories."""
    pattern, key = ARRAYS[name]
    files = [f for d in data for f in sorted(glob.glob(str(d / pattern)))]
    if not files:
        raise SystemExit(f"no {pattern} in {data}: run make_reader_data.py / "
                         "make_refiner_data.py first")
    return np.concatenate([np.load(f)[key] for f in files])


def build(name: str, meta: dict[str, dict[str, Any]]) -> tf.keras.Model:
    """The Keras model of ``name`` with the committed export's architecture."""
    if name == "recogniser":
        facts = meta["recogniser"]
        return recogniser(len(facts["alphabet"]) + 1, float(facts.get("width", 1.0)))
    return detector() if name == "detector" else refiner()


def as_tensor(x: np.ndarray) -> np.ndarray:
    """uint8 (n, h, w) -> float32 (n, h, w, 1) in [0, 1], as ``preprocess.py`` feeds them."""
    return x.astype(np.float32)[..., None] / 255.0


def convert_int8(model: tf.keras.Model, calibration: np.ndarray) -> bytes:
    """Full-integer conversion with float32 input and output (the reader feeds float32)."""

    def representative() -> Iterator[list[np.ndarray]]:
        for x in calibration:
            yield [as_tensor(x[None])]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    blob: bytes = converter.convert()
    return blob


def run(path: Path, x: np.ndarray) -> np.ndarray:
    """The outputs of the ``.tflite`` at ``path`` on float32 inputs ``x``, one at a time."""
    interp = tf.lite.Interpreter(model_path=str(path), num_threads=1)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    rows = []
    for sample in x:
        interp.set_tensor(inp["index"], sample[None])
        interp.invoke()
        rows.append(np.array(interp.get_tensor(out["index"])[0], dtype=np.float32))
    return np.stack(rows)


def float_ops(path: Path) -> list[str]:
    """Ops of the model at ``path`` that compute in float32 (the QUANTIZE at the input and the
    DEQUANTIZE at the output, which the float interface needs, are left out)."""
    interp = tf.lite.Interpreter(
        model_path=str(path),
        experimental_op_resolver_type=(
            tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
    interp.allocate_tensors()
    dtypes = {t["index"]: t["dtype"] for t in interp.get_tensor_details()}
    return [op["op_name"] for op in interp._get_ops_details()  # the only way to read the graph
            if op["op_name"] not in ("QUANTIZE", "DEQUANTIZE")
            and any(dtypes.get(int(i)) == np.float32 for i in op["outputs"])]


def text(probs: np.ndarray) -> str:
    """The best-path read of one (steps, classes) output, as the reader decodes it."""
    return "".join(c.char for c in greedy(probs))


def compare(name: str, fp16: np.ndarray, int8: np.ndarray, shape: tuple[int, int]) -> str:
    """How far the int8 outputs are from the fp16 ones, in the units that matter."""
    if name == "recogniser":
        same = np.mean([text(a) == text(b) for a, b in zip(fp16, int8, strict=True)])
        conf = np.abs(fp16.max(-1) - int8.max(-1))
        return (f"best-path text same as fp16 {same:.1%}; |top prob diff| mean {conf.mean():.4f}"
                f" max {conf.max():.4f}")
    height, width = shape  # corners (x, y) * 4 as fractions of the input
    d = np.abs(fp16 - int8).reshape(-1, 4, 2) * np.array([width, height], np.float32)
    return (f"|corner diff| mean {d.mean():.3f} max {d.max():.3f} px of the {width}x{height} "
            "input")


def quantise(name: str, args: argparse.Namespace, meta: dict[str, dict[str, Any]],
             log: Callable[[str], None]) -> int:
    """Write the int8 ``name`` model to ``--out`` and return its size in bytes."""
    source = args.models / str(meta[name]["file"])
    target = args.out / f"plate_{name}_int8.tflite"
    x = load_inputs(args.data, name)
    need = WARM_SAMPLES + args.calibration + CHECK_SAMPLES
    if len(x) < need:
        raise SystemExit(f"{name}: {len(x)} samples, need {need}")
    order = np.random.default_rng([args.seed, MODELS.index(name)]).permutation(len(x))
    warm = x[order[:WARM_SAMPLES]]
    calibration = x[order[WARM_SAMPLES:WARM_SAMPLES + args.calibration]]
    check = x[order[WARM_SAMPLES + args.calibration:need]]
    tf.keras.utils.set_random_seed(args.seed)
    model = build(name, meta)
    init_from_tflite(model, source, warm)
    blob = convert_int8(model, calibration)
    target.write_bytes(blob)
    left = float_ops(target)
    fp16, int8 = run(source, as_tensor(check)), run(target, as_tensor(check))
    log(f"{name}: {source.stat().st_size} -> {len(blob)} bytes; "
        f"{compare(name, fp16, int8, x.shape[1:3])} on {len(check)} unseen samples; "
        f"float ops: {', '.join(left) or 'none'}")
    return len(blob)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=Path("models"),
                        help="directory of the fp16 models and their reader.json")
    parser.add_argument("--data", type=Path, nargs="+", required=True,
                        help="directories of train-*.npz and refiner-*.npz shards")
    parser.add_argument("--out", type=Path, default=Path("models"),
                        help="where the int8 models and reader.json go (--models itself by "
                             "default; elsewhere, the fp16 models are copied there too)")
    parser.add_argument("--int8", nargs="+", choices=MODELS, default=["recogniser"],
                        help="models to quantise (default: the recogniser; see above); the "
                             "others stay fp16")
    parser.add_argument("--calibration", type=int, default=300,
                        help="representative inputs per model (drawn from --data)")
    parser.add_argument("--seed", type=int, default=8)
    args = parser.parse_args()
    meta: dict[str, dict[str, Any]] = json.loads(
        (args.models / "reader.json").read_text(encoding="utf-8"))
    args.out.mkdir(parents=True, exist_ok=True)
    for name in MODELS:
        facts = meta[name]
        if args.out.resolve() != args.models.resolve():
            shutil.copyfile(args.models / facts["file"], args.out / facts["file"])
        if name not in args.int8:
            continue
        size = quantise(name, args, meta, lambda line: print(line, flush=True))
        facts.update({
            "int8_file": f"plate_{name}_int8.tflite", "int8_bytes": size,
            "quantised": (f"int8_file: int8 weights and activations, float32 input/output: "
                          f"scripts/quantise_reader.py from {facts['file']}, "
                          f"{args.calibration} representative inputs, seed {args.seed}; "
                          f"read when camera.{name} = int8")})
    (args.out / "reader.json").write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n",
                                          encoding="utf-8")
    print("wrote", args.out, flush=True)


if __name__ == "__main__":
    main()
