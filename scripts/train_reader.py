"""Train the plate reader's two models with TensorFlow (CPU) and export them to ``.tflite``.

    python scripts/train_reader.py recogniser --data var/reader-data --out models --minutes 11
    python scripts/train_reader.py detector --data var/reader-data --out models --minutes 5

Only this script needs ``tensorflow-cpu`` (the ``train`` extra); the lane, the tests and the
bench load the exported ``.tflite`` files with ``ai-edge-litert``. Weights are stored fp16.

* recogniser: CNN + CTC (no recurrent head: it converts badly); input 40 × 128 grey, output
  (32 time steps, 77 classes) softmax, class 0 = CTC blank.
* detector: a small CNN regressing the plate's 4 corners from the 96 × 128 grey frame.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

THREADS = int(os.environ.get("TRAIN_THREADS", "2"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))

import tensorflow as tf  # noqa: E402  (thread settings must come first)

tf.config.threading.set_intra_op_parallelism_threads(THREADS)
tf.config.threading.set_inter_op_parallelism_threads(1)


def load(data: list[Path]) -> dict[str, np.ndarray]:
    """Every shard of every ``--data`` directory, each directory's in name order; the first
    ``--val`` samples (the validation split) come from the first shard of the first
    directory. Shards of real crops (``scripts/real_plates.py shards``) have no detector
    frames: with any of them, only the recogniser can train."""
    parts = [np.load(p) for d in data for p in sorted(glob.glob(str(d / "train-*.npz")))]
    print("shards", len(parts), flush=True)
    if not parts:
        raise SystemExit(f"no shards in {data}: run scripts/make_reader_data.py first")
    keys = [k for k in ("crops", "labels", "lengths", "frames", "corners")
            if all(k in p for p in parts)]
    out = {k: np.concatenate([p[k] for p in parts]) for k in keys}
    if "alphabet" in parts[0]:
        out["alphabet"] = parts[0]["alphabet"]
    return out


def conv(x: tf.Tensor, filters: int, kernel: tuple[int, int] = (3, 3), **kw: object) -> tf.Tensor:
    x = tf.keras.layers.Conv2D(filters, kernel, padding=kw.pop("padding", "same"),
                               use_bias=False, **kw)(x)
    x = tf.keras.layers.BatchNormalization()(x)
    return tf.keras.layers.ReLU()(x)


RECOGNISER_CHANNELS = (24, 48, 64, 64, 96, 160, 160)


def recogniser(num_classes: int, width: float = 1.0) -> tf.keras.Model:
    """``width`` scales every layer's channels (1.0: the 299 k-parameter model of runs 1-4)."""
    c = [round(n * width) for n in RECOGNISER_CHANNELS]
    inp = tf.keras.Input((40, 128, 1), name="crop")
    x = conv(inp, c[0])
    x = tf.keras.layers.MaxPool2D((2, 2))(x)          # 20 x 64
    x = conv(x, c[1])
    x = tf.keras.layers.MaxPool2D((2, 2))(x)          # 10 x 32
    x = conv(x, c[2])
    x = conv(x, c[3])
    x = tf.keras.layers.MaxPool2D((2, 1))(x)          # 5 x 32
    x = conv(x, c[4])
    x = conv(x, c[5], (5, 1), padding="valid")        # 1 x 32
    x = tf.keras.layers.Dropout(0.15)(x)
    x = conv(x, c[6], (1, 3))
    x = tf.keras.layers.Conv2D(num_classes, (1, 1))(x)
    x = tf.keras.layers.Reshape((32, num_classes))(x)
    out = tf.keras.layers.Softmax(name="probs")(x)
    return tf.keras.Model(inp, out, name="plate_recogniser")


def detector() -> tf.keras.Model:
    inp = tf.keras.Input((96, 128, 1), name="frame")
    x = inp
    for filters in (16, 32, 48, 64, 96):
        x = conv(x, filters, strides=2)            # 48x64, 24x32, 12x16, 6x8, 3x4
        x = conv(x, filters)
    x = tf.keras.layers.Flatten()(x)
    x = tf.keras.layers.Dense(128, activation="relu")(x)
    out = tf.keras.layers.Dense(8, activation="sigmoid", name="corners")(x)
    return tf.keras.Model(inp, out, name="plate_detector")


def augment_brightness(x: tf.Tensor) -> tf.Tensor:
    b = tf.shape(x)[0]
    gain = tf.random.uniform((b, 1, 1, 1), 0.7, 1.3)
    bias = tf.random.uniform((b, 1, 1, 1), -0.1, 0.1)
    invert = tf.cast(tf.random.uniform((b, 1, 1, 1)) < 0.1, tf.float32)
    x = tf.clip_by_value(x * gain + bias, 0.0, 1.0)
    return invert * (1.0 - x) + (1.0 - invert) * x


def augment_camera(x: tf.Tensor) -> tf.Tensor:
    """A little more camera trouble on top of the rendered kind, drawn afresh every step so
    the recogniser cannot learn one crop's noise: a quarter of a batch blurred by part of a
    3x3 Gaussian, a third given sensor noise of up to 6 % of full scale."""
    b = tf.shape(x)[0]
    kernel = tf.constant([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]])[:, :, None, None]
    edges = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
    blurred = tf.nn.conv2d(edges, kernel / 16.0, strides=1, padding="VALID")
    mix = tf.cast(tf.random.uniform((b, 1, 1, 1)) < 0.25, tf.float32) * tf.random.uniform(
        (b, 1, 1, 1))
    x = mix * blurred + (1.0 - mix) * x
    sigma = tf.cast(tf.random.uniform((b, 1, 1, 1)) < 0.3, tf.float32) * tf.random.uniform(
        (b, 1, 1, 1), 0.0, 0.06)
    return tf.clip_by_value(x + sigma * tf.random.normal(tf.shape(x)), 0.0, 1.0)


#: Gaussian sigmas (crop pixels) of ``augment_blur``: a blurred 320 x 240 plate of 70-170 px
#: (render sigma 1-2 px) is 1-3.5 px of blur in the 128 px wide crop
BLUR_SIGMAS = (0.8, 1.4, 2.0)


def _blur_matrix(n: int, sigma: float) -> np.ndarray:
    """(n, n) matrix that blurs a length-n signal by a Gaussian, edges mirrored: blurring as a
    matmul is ~20x faster on this CPU than a one-channel conv2d (measured)."""
    taps = np.arange(-4, 5)
    g = np.exp(-(taps**2) / (2 * sigma * sigma))
    g /= g.sum()
    m = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        for t, w in zip(taps, g, strict=True):
            j = i + int(t)
            j = -j - 1 if j < 0 else (2 * n - j - 1 if j >= n else j)  # mirrored edge
            m[i, j] += w
    return m


def augment_blur(x: tf.Tensor, share: float) -> tf.Tensor:
    """Deblurring practice (recogniser run 7): ``share`` of a batch blurred afresh each step
    by a Gaussian of one of :data:`BLUR_SIGMAS`, on top of whatever blur was rendered, so
    blurred plates are not only the ones the renderer happened to draw."""
    b = tf.shape(x)[0]
    height, width = x.shape[1], x.shape[2]
    rows = tf.constant(np.stack([_blur_matrix(height, s) for s in BLUR_SIGMAS]))
    cols = tf.constant(np.stack([_blur_matrix(width, s).T for s in BLUR_SIGMAS]))
    pick = tf.random.uniform((b,), 0, len(BLUR_SIGMAS), dtype=tf.int32)
    blurred = tf.gather(rows, pick) @ x[..., 0] @ tf.gather(cols, pick)
    on = tf.cast(tf.random.uniform((b, 1, 1, 1)) < share, tf.float32)
    return on * blurred[..., None] + (1.0 - on) * x


def widen(kernel: np.ndarray, bias: np.ndarray, copies: np.ndarray, out_channels: int,
          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Net2WiderNet (Chen et al. 2016): a wider conv that computes the same function.

    ``copies[j]`` is the old channel the layer's input channel ``j`` repeats; each repeat's
    weights are divided by how often its channel repeats, so the sum is unchanged. New output
    channels copy random old ones, with 1 % noise on the copy so the twins can drift apart
    (identical twins would get identical gradients for ever). Returns the kernel, the bias and
    this layer's ``copies`` for the next layer.
    """
    counts = np.bincount(copies, minlength=kernel.shape[2]).astype(np.float32)
    w = kernel[:, :, copies, :] / counts[copies][None, None, :, None]
    old = w.shape[-1]
    if out_channels == old:
        return w, bias, np.arange(old)
    mapping = np.concatenate([np.arange(old), rng.integers(0, old, out_channels - old)])
    w, bias = w[..., mapping], bias[mapping]
    extra = w[..., old:]
    w[..., old:] = extra + 0.01 * extra.std() * rng.standard_normal(extra.shape)
    return w.astype(np.float32), bias.astype(np.float32), mapping


def init_from_tflite(model: tf.keras.Model, path: Path, sample: np.ndarray) -> None:
    """Warm-start a Keras model from an exported ``.tflite`` of the same architecture.

    The export folded each BatchNorm into its conv (kernel scaled, bias added), so every
    ``Conv2D`` takes the folded kernel and its ``BatchNormalization`` is set to pass it through
    both in inference *and* in training mode: moving mean/variance and gamma/beta are the
    per-channel mean and spread of the conv's output on ``sample`` (uint8 inputs), so
    ``gamma * (x - mean) / std + beta`` = ``x + bias`` for batches like the sample.
    ``Dense`` layers (the refiner's and the detector's heads) take their weights as they are.
    A model with more channels than the export (``--width``) is widened by :func:`widen`
    first.
    """
    interp = tf.lite.Interpreter(
        model_path=str(path),
        experimental_op_resolver_type=(
            tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
    interp.allocate_tensors()
    ops = interp._get_ops_details()  # the only way to read the graph
    source = {int(op["outputs"][0]): int(op["inputs"][0]) for op in ops
              if op["op_name"] == "DEQUANTIZE"}

    def tensor(index: int) -> np.ndarray:
        return np.asarray(interp.get_tensor(source.get(index, index)), dtype=np.float32)

    folded = [(tensor(int(op["inputs"][1])), tensor(int(op["inputs"][2]))) for op in ops
              if op["op_name"] == "CONV_2D"]
    convs = [layer for layer in model.layers if isinstance(layer, tf.keras.layers.Conv2D)]
    if len(folded) != len(convs):
        raise SystemExit(f"{path}: {len(folded)} convs, the model has {len(convs)}")
    dense = [(tensor(int(op["inputs"][1])), tensor(int(op["inputs"][2]))) for op in ops
             if op["op_name"] == "FULLY_CONNECTED"]
    denses = [layer for layer in model.layers if isinstance(layer, tf.keras.layers.Dense)]
    if len(dense) != len(denses):
        raise SystemExit(f"{path}: {len(dense)} dense layers, the model has {len(denses)}")
    for layer, (kernel, bias) in zip(denses, dense, strict=True):
        layer.set_weights([kernel.T, bias])  # TFLite (out, in) -> Keras (in, out)
    x = sample.astype(np.float32)[..., None] / 255.0
    rng = np.random.default_rng(0)
    copies = np.arange(1)  # which old channel each of the model's input channels copies
    for k, (layer, (kernel, bias)) in enumerate(zip(convs, folded, strict=True)):
        w = kernel.transpose(1, 2, 3, 0)  # TFLite OHWI -> Keras HWIO
        w, bias, copies = widen(w, bias, copies, int(layer.kernel.shape[-1]), rng)
        if tuple(layer.kernel.shape) != w.shape:
            raise SystemExit(f"{path}: conv {k} is {w.shape}, the model's {layer.kernel.shape}")
        if layer.use_bias:
            layer.set_weights([w, bias])
            continue
        layer.set_weights([w])
        bn = model.layers[model.layers.index(layer) + 1]
        out = tf.keras.Model(model.input, layer.output)(x, training=False).numpy()
        mean = out.reshape(-1, out.shape[-1]).mean(0)
        var = out.reshape(-1, out.shape[-1]).var(0) + 1e-6
        std = np.sqrt(var + bn.epsilon)
        bn.set_weights([std, mean + bias, mean, var])
    probs = model.predict(x[:64], verbose=0)
    interp.resize_tensor_input(interp.get_input_details()[0]["index"], [64, *x.shape[1:]])
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x[:64])
    interp.invoke()
    ref = interp.get_tensor(interp.get_output_details()[0]["index"])
    print(f"warm start from {path}: max |keras - tflite| = {np.abs(probs - ref).max():.4f}",
          flush=True)


def cosine_lr(start: float, step: int, args: argparse.Namespace) -> float:
    """Cosine decay over whichever budget runs out first: steps or wall-clock minutes, after
    a linear rise over ``--warmup`` steps (a warm start: Adam's first steps, with no history,
    move every weight by about the learning rate and undo some of what the model knew)."""
    frac = max(step / args.max_steps, (time.monotonic() - start) / (args.minutes * 60))
    rise = min(1.0, (step + 1) / args.warmup) if args.warmup else 1.0
    return float(args.lr) * rise * (0.02 + 0.98 * 0.5 * (1 + np.cos(np.pi * min(frac, 1.0))))


def run_batches(args: argparse.Namespace, opt: tf.keras.optimizers.Optimizer, samples: int,
                train_on: Callable[[np.ndarray], float], *, every: int,
                report: Callable[[int, float, float], None]) -> int:
    """Shuffled batches of ``samples`` indices through ``train_on`` until ``--max-steps`` or
    ``--minutes`` runs out, the learning rate on the cosine schedule; ``report(steps, loss,
    seconds)`` every ``every`` steps. Returns the steps done."""
    rng = np.random.default_rng(args.seed)
    start = time.monotonic()
    done = 0

    def out_of_budget() -> bool:
        return done >= args.max_steps or time.monotonic() - start > args.minutes * 60

    while not out_of_budget():
        order = rng.permutation(samples)
        for b in range(samples // args.batch):
            opt.learning_rate.assign(cosine_lr(start, done, args))
            loss = train_on(order[b * args.batch:(b + 1) * args.batch])
            done += 1
            if done % every == 0:
                report(done, loss, time.monotonic() - start)
            if out_of_budget():
                break
    return done


def export(model: tf.keras.Model, path: Path) -> int:
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    blob = converter.convert()
    path.write_bytes(blob)
    return len(blob)


def save_and_export(model: tf.keras.Model, args: argparse.Namespace, name: str,
                    facts: dict[str, object]) -> None:
    """Keep the Keras weights for ``--resume``, export ``plate_<name>.tflite`` and write its
    section of ``--out/reader.json`` (the other models' sections are kept)."""
    args.out.mkdir(parents=True, exist_ok=True)
    if args.resume:
        args.resume.mkdir(parents=True, exist_ok=True)
        model.save_weights(args.resume / f"{name}.weights.h5")
    file = f"plate_{name}.tflite"
    size = export(model, args.out / file)
    meta_path = args.out / "reader.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    meta[name] = {"file": file, **facts, "params": int(model.count_params()), "bytes": size}
    meta_path.write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n")
    print("exported", size, "bytes")


def train_recogniser(args: argparse.Namespace) -> None:
    tf.keras.utils.set_random_seed(args.seed)
    d = load(args.data)
    if "crops" not in d:
        raise SystemExit("recogniser: every --data shard needs crops (real-scene shards have "
                         "none: leave their directory out)")
    alphabet = str(d["alphabet"])
    n_cls = len(alphabet) + 1
    x_all = d["crops"][..., None]  # uint8; scaled per batch
    y_all, len_all = d["labels"], d["lengths"]
    n_val = args.val
    x_val, y_val, l_val = x_all[:n_val], y_all[:n_val], len_all[:n_val]
    x_tr, y_tr, l_tr = x_all[n_val:], y_all[n_val:], len_all[n_val:]
    model = recogniser(n_cls, args.width)
    if args.resume and (args.resume / "recogniser.weights.h5").exists():
        model.load_weights(args.resume / "recogniser.weights.h5")
        print("resumed from", args.resume, flush=True)
    elif args.init_tflite:
        init_from_tflite(model, args.init_tflite, x_tr[:512, :, :, 0])
    print("recogniser params", model.count_params(), flush=True)
    opt = tf.keras.optimizers.Adam(2e-3)

    @tf.function(reduce_retracing=True)
    def step(x: tf.Tensor, y: tf.Tensor, lens: tf.Tensor) -> tf.Tensor:
        x = augment_brightness(x)
        if args.blur_aug > 0:  # optical, so before the sensor noise
            x = augment_blur(x, args.blur_aug)
        x = augment_camera(x)
        with tf.GradientTape() as tape:
            probs = model(x, training=True)
            logits = tf.math.log(probs + 1e-8)
            loss = tf.reduce_mean(tf.nn.ctc_loss(
                labels=y, logits=logits, label_length=lens,
                logit_length=tf.fill([tf.shape(x)[0]], 32), logits_time_major=False,
                blank_index=0))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    def accuracy() -> float:
        probs = model.predict(x_val.astype(np.float32) / 255.0, batch_size=256, verbose=0)
        best = probs.argmax(-1)
        ok = 0
        for k in range(n_val):
            row = best[k]
            seq = [int(c) for i, c in enumerate(row) if c != 0 and (i == 0 or c != row[i - 1])]
            ok += seq == list(y_val[k, : l_val[k]])
        return ok / n_val

    def train_on(idx: np.ndarray) -> float:
        batch = tf.constant(x_tr[idx].astype(np.float32) / 255.0)
        return float(step(batch, tf.constant(y_tr[idx]), tf.constant(l_tr[idx])))

    def report(done: int, loss: float, seconds: float) -> None:
        print(f"step {done} loss {loss:.3f} {seconds:.0f}s", flush=True)
        if done % 1000 == 0:
            print(f"  val plate accuracy {accuracy():.3f}", flush=True)

    done = run_batches(args, opt, len(x_tr), train_on, every=200, report=report)
    acc = accuracy()
    print(f"final val plate accuracy {acc:.4f} after {done} steps", flush=True)
    save_and_export(model, args, "recogniser", {
        "input": [40, 128, 1], "width": args.width, "time_steps": 32, "alphabet": alphabet,
        "blank": 0,
        "steps": done, "batch": args.batch, "seed": args.seed, "train_samples": len(x_tr),
        "val_plate_accuracy": acc})


def train_detector(args: argparse.Namespace) -> None:
    tf.keras.utils.set_random_seed(args.seed)
    d = load(args.data)
    if "frames" not in d:
        raise SystemExit("detector: every --data shard needs frames (real-crop shards have "
                         "none: leave their directory out)")
    x = d["frames"].astype(np.float32)[..., None] / 255.0
    y = d["corners"]
    model = detector()
    if args.resume and (args.resume / "detector.weights.h5").exists():
        model.load_weights(args.resume / "detector.weights.h5")
        print("resumed from", args.resume, flush=True)
    elif args.init_tflite:
        init_from_tflite(model, args.init_tflite, d["frames"][1000:1512])
    print("detector params", model.count_params(), flush=True)
    steps = len(x) // args.batch
    epochs = max(1, args.max_steps // steps)
    opt = tf.keras.optimizers.Adam(2e-3)
    model.compile(opt, loss=tf.keras.losses.Huber(delta=0.02))

    class Deadline(tf.keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.start = time.monotonic()
            self.step = 0

        def on_train_batch_begin(self, batch: int, logs: dict[str, float] | None = None) -> None:
            opt.learning_rate.assign(cosine_lr(self.start, self.step, args))
            self.step += 1

        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            print(f"epoch {epoch} {logs} {time.monotonic() - self.start:.0f}s", flush=True)
            if time.monotonic() - self.start > args.minutes * 60:
                self.model.stop_training = True

    history = model.fit(x[1000:], y[1000:], batch_size=args.batch, epochs=epochs, verbose=0,
                        validation_data=(x[:1000], y[:1000]), callbacks=[Deadline()])
    err = np.abs(model.predict(x[:1000], verbose=0) - y[:1000]).mean()
    print(f"val mean corner error {err:.4f} of the frame", flush=True)
    save_and_export(model, args, "detector", {
        "input": [96, 128, 1],
        "output": "8 corner coordinates (x, y) * 4 as fractions, TL TR BR BL",
        "epochs": len(history.history["loss"]), "batch": args.batch, "seed": args.seed,
        "val_mean_corner_error": float(err)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", choices=["recogniser", "detector"])
    parser.add_argument("--data", type=Path, nargs="+", default=[Path("var/reader-data")],
                        help="directories of shards from scripts/make_reader_data.py")
    parser.add_argument("--out", type=Path, default=Path("models"))
    parser.add_argument("--minutes", type=float, default=11.0)
    parser.add_argument("--max-steps", type=int, default=12000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (cosine)")
    parser.add_argument("--warmup", type=int, default=0,
                        help="steps over which the learning rate rises to --lr (warm starts)")
    parser.add_argument("--resume", type=Path, default=None,
                        help="keep Keras weights here and continue from them next run "
                             "(a run is bounded by --minutes; chain runs to train longer)")
    parser.add_argument("--init-tflite", type=Path, default=None,
                        help="when --resume has no weights yet: start from this exported "
                             ".tflite (same architecture; BatchNorm refitted)")
    parser.add_argument("--width", type=float, default=1.0,
                        help="recogniser only: scale every layer's channels (with "
                             "--init-tflite, the narrower export is widened to it)")
    parser.add_argument("--val", type=int, default=1000,
                        help="recogniser: the first N samples are the validation split")
    parser.add_argument("--blur-aug", type=float, default=0.0,
                        help="recogniser only: share of each batch given extra Gaussian "
                             "blur (augment_blur; run 7)")
    args = parser.parse_args()
    (train_recogniser if args.model == "recogniser" else train_detector)(args)


if __name__ == "__main__":
    main()
