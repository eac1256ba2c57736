"""``parkguard read IMAGE...``: read plates from image files with the lane's TFLite reader.

Each IMAGE is a whole gate-camera frame (the detector finds the plate and its corners) or a
plate crop (wider than 2.2 : 1; ``--crop``/``--frame`` to say which). Prints the plate,
its confidence, the milliseconds per image and, for a frame, how wide the plate is in it;
``--json`` prints one JSON document. ``--fuse`` treats all images as frames of one car and
prints the fused plate as well.

The width is the installer's camera placement check (hardware/lane-commissioning.md): a
frame whose plate is narrower than ``MIN_PLATE_WIDTH_PX`` gets a note on stderr.

Exit codes: 0 every image read as a valid plate; 1 some image gave no valid plate; 2 a file
that cannot be opened or no TFLite runtime / models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from parkguard.cli_errors import UnreadableInputError


@click.command("read")
@click.argument("images", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of text.")
@click.option("--crop/--frame", "is_crop", default=None,
              help="The images are plate crops / whole frames (default: by aspect ratio).")
@click.option("--fuse", is_flag=True, help="The images are frames of one car: fuse them.")
@click.option("--models", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory with reader.json and the .tflite files (default: models/).")
@click.option("--threads", type=click.IntRange(1, 8), default=1, show_default=True)
def read(images: tuple[Path, ...], as_json: bool, is_crop: bool | None, fuse: bool,
         models: Path | None, threads: int) -> None:
    """Read the plate in each IMAGE (frame or crop): plate, confidence, time."""
    from PIL import Image, UnidentifiedImageError

    from firmware.lane.reader import DEFAULT_MODELS, TfliteReader
    from firmware.lane.reader.fusion import fuse as fuse_reads
    from firmware.lane.reader.reader import MIN_PLATE_WIDTH_PX
    from firmware.lane.reader.runtime import RuntimeMissingError

    try:
        reader = TfliteReader(models or DEFAULT_MODELS, threads=threads)
    except (RuntimeMissingError, OSError, ValueError) as error:
        raise UnreadableInputError(f"cannot load the reader: {error}") from error
    results: list[dict[str, Any]] = []
    reads = []
    for path in images:
        try:
            with Image.open(path) as picture:
                image = picture.convert("RGB")
        except (UnidentifiedImageError, OSError) as error:
            raise UnreadableInputError(f"{path}: not an image ({error})") from error
        result = reader.read_image(image, is_crop=is_crop)
        reads.append(result)
        width = None if result.width_px is None else round(result.width_px)
        if result.grammar_ok and width is not None and width < MIN_PLATE_WIDTH_PX:
            click.echo(f"note: {path}: the plate is {width} px wide; the reader wants "
                       f"{MIN_PLATE_WIDTH_PX} px or more: move the camera closer or zoom in "
                       "(hardware/lane-commissioning.md)", err=True)
        results.append({
            "image": str(path), "plate": result.plate, "raw": result.raw,
            "confidence": round(result.confidence, 4),
            "char_confidences": [round(c, 4) for c in result.char_confidences],
            "corners": None if result.corners is None
            else [[round(x, 1), round(y, 1)] for x, y in result.corners],
            "plate_width_px": width,
            "grammar_ok": result.grammar_ok,
            "ms": {"detect": round(result.detect_ms, 2),
                   "recognise": round(result.recognise_ms, 2),
                   "total": round(result.total_ms, 2)},
        })
    fused = (fuse_reads([list(c) for r in reads for c in r.crop_reads]) if fuse
             else None)
    if as_json:
        doc: dict[str, Any] = {"runtime": reader.runtime, "reads": results}
        if fused is not None:
            doc["fused"] = {"plate": fused.plate, "confidence": round(fused.confidence, 4),
                            "frames_used": fused.frames_used}
        click.echo(json.dumps(doc, ensure_ascii=False, indent=2))
    else:
        for r in results:
            plate = r["plate"] or "-"
            wide = "" if r["plate_width_px"] is None else f"\t{r['plate_width_px']} px wide"
            click.echo(f"{r['image']}\t{plate}\t{r['confidence']:.3f}\t"
                       f"{r['ms']['total']:.1f} ms{wide}")
        if fused is not None:
            click.echo(f"fused\t{fused.plate or '-'}\t{fused.confidence:.3f}\t"
                       f"{fused.frames_used}/{fused.frames_total} frames")
    if not all(r["plate"] and r["grammar_ok"] for r in results):
        raise SystemExit(1)
