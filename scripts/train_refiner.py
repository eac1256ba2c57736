"""Train the plate reader's corner refiner with TensorFlow (CPU) and export it to ``.tflite``.

    python scripts/make_refiner_data.py --out var/refiner-data --count 40000 --shards 8
    python scripts/train_refiner.py --data var/refiner-data --out models --minutes 14

The refiner reads the close-up window of ``firmware/lane/devices/reader/refine.py`` (the plate
straightened from the detector's corners, with room around it) and regresses the true corners
in it: 8 sigmoid outputs, Huber loss, the same conv blocks, brightness augmentation, cosine
schedule and fp16 export as ``train_reader.py`` (imported from it; run from the repository
root so ``scripts/`` is on the path). Writes the ``refiner`` section of ``--out/reader.json``.
"""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

import numpy as np
from train_reader import (
    augment_brightness,
    conv,
    init_from_tflite,
    run_batches,
    save_and_export,
    tf,
)

WINDOW = (64, 160)  # height, width: firmware.lane.devices.reader.refine.WINDOW_SIZE (no TF there)


def refiner() -> tf.keras.Model:
    inp = tf.keras.Input((*WINDOW, 1), name="window")
    x = inp
    for filters in (16, 32, 48, 64):
        x = conv(x, filters, strides=2)            # 32x80, 16x40, 8x20, 4x10
        x = conv(x, filters)
    x = tf.keras.layers.Flatten()(x)
    x = tf.keras.layers.Dense(128, activation="relu")(x)
    out = tf.keras.layers.Dense(8, activation="sigmoid", name="corners")(x)
    return tf.keras.Model(inp, out, name="plate_refiner")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", type=Path, default=Path("var/refiner-data"))
    p.add_argument("--out", type=Path, default=Path("models"))
    p.add_argument("--minutes", type=float, default=12)
    p.add_argument("--max-steps", type=int, default=30000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=0,
                   help="steps over which the learning rate rises to --lr (warm starts)")
    p.add_argument("--seed", type=int, default=8)
    p.add_argument("--resume", type=Path, default=None,
                   help="keep Keras weights here and continue from them next run")
    p.add_argument("--init-tflite", type=Path, default=None,
                   help="when --resume has no weights yet: start from this exported "
                        ".tflite (same architecture; BatchNorm refitted)")
    args = p.parse_args()
    tf.keras.utils.set_random_seed(args.seed)
    parts = [np.load(f) for f in sorted(glob.glob(str(args.data / "refiner-*.npz")))]
    x = np.concatenate([q["windows"] for q in parts])[..., None]
    y = np.concatenate([q["targets"] for q in parts])
    print("samples", len(x), flush=True)
    model = refiner()
    if args.resume and (args.resume / "refiner.weights.h5").exists():
        model.load_weights(args.resume / "refiner.weights.h5")
        print("resumed", flush=True)
    elif args.init_tflite:
        init_from_tflite(model, args.init_tflite, x[1000:1512, :, :, 0])
    print("params", model.count_params(), flush=True)
    opt = tf.keras.optimizers.Adam(args.lr)
    loss_fn = tf.keras.losses.Huber(delta=0.02)

    @tf.function(reduce_retracing=True)
    def step(xb: tf.Tensor, yb: tf.Tensor) -> tf.Tensor:
        xb = augment_brightness(xb)
        with tf.GradientTape() as tape:
            loss = loss_fn(yb, model(xb, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    def val_err() -> float:
        pred = model.predict(x[:1000].astype(np.float32) / 255.0, batch_size=256, verbose=0)
        d = (pred - y[:1000]).reshape(-1, 4, 2) * np.array([WINDOW[1], WINDOW[0]], float)
        return float(np.abs(d).mean())

    print(f"start val err {val_err():.3f} window px", flush=True)
    def train_on(idx: np.ndarray) -> float:
        return float(step(tf.constant(x[idx + 1000].astype(np.float32) / 255.0),
                          tf.constant(y[idx + 1000])))

    def report(done: int, loss: float, seconds: float) -> None:
        print(f"step {done} loss {loss:.5f} val err {val_err():.3f} px {seconds:.0f}s",
              flush=True)

    n = len(x) - 1000
    done = run_batches(args, opt, n, train_on, every=500, report=report)
    err = val_err()
    print(f"final val err {err:.3f} window px after {done} steps", flush=True)
    save_and_export(model, args, "refiner", {
        "input": [*WINDOW, 1],
        "output": "8 corner coordinates (x, y) * 4 as fractions of the window, TL TR BR BL",
        "steps": done, "batch": args.batch, "seed": args.seed, "train_samples": n,
        "val_mean_corner_error_window_px": err})


if __name__ == "__main__":
    main()
