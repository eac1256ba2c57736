"""``parkguard read IMAGE...``: read plates from image files with the lane's TFLite reader.

Each IMAGE is a whole gate-camera frame (the detector finds the plate and its corners) or a
plate crop (wider than 2.2 : 1; ``--crop``/``--frame`` to say which). Prints the plate,
its confidence, the milliseconds per image and, for a frame, how wide the plate is in it;
``--json`` prints one JSON document. ``--fuse`` treats all images as frames of one car and
prints the fused plate as well.

The width is the installer's camera placement check (hardware/lane-commissioning.md): a
frame whose plate is narrower than ``MIN_PLATE_WIDTH_PX`` gets a note on stderr.

``--region LEFT,TOP,RIGHT,BOTTOM`` reads frames through the lane's plate region, as the lane
does (``camera.plate_region``); a frame that is not 4:3 read without one gets a note.
``--find-region`` searches each frame (a still of a car on the arming loop) for the plate and
prints the region to put in the lane's config (``firmware/lane/devices/reader/region.py``).

Exit codes: 0 every image read as a valid plate; 1 some image gave no valid plate; 2 a file
that cannot be opened or no TFLite runtime / models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from cli.errors import OneStyle, UnreadableInputError, plain_os_error
from cli.native_log import runtime_info_dropped


def _region(ctx: click.Context, param: click.Parameter,
            value: str | None) -> tuple[int, int, int, int] | None:
    if value is None:
        return None
    try:
        left, top, right, bottom = (int(v) for v in value.replace(" ", "").split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r}: want LEFT,TOP,RIGHT,BOTTOM in pixels, "
                                 "e.g. 360,240,920,660") from None
    if right <= left or bottom <= top:
        raise click.BadParameter(f"{value!r}: RIGHT must exceed LEFT and BOTTOM exceed TOP")
    from firmware.lane.config import MIN_REGION  # the lane refuses a smaller one at start

    if right - left < MIN_REGION[0] or bottom - top < MIN_REGION[1]:
        raise click.BadParameter(f"{value!r}: the lane needs a region of at least "
                                 f"{MIN_REGION[0]}x{MIN_REGION[1]} px")
    return left, top, right, bottom


@click.command("read", cls=OneStyle)
@click.argument("images", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of text.")
@click.option("--crop/--frame", "is_crop", default=None,
              help="The images are plate crops / whole frames (default: by aspect ratio).")
@click.option("--fuse", is_flag=True, help="The images are frames of one car: fuse them.")
@click.option("--models", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory with reader.json and the .tflite files (default: models/).")
@click.option("--threads", type=click.IntRange(1, 8), default=1, show_default=True)
@click.option("--region", callback=_region, default=None, metavar="L,T,R,B",
              help="Look for the plate in this part of each frame (the lane's "
                   "camera.plate_region), in pixels.")
@click.option("--find-region", is_flag=True,
              help="Search each frame for the plate and suggest the lane's plate_region.")
def read(images: tuple[Path, ...], as_json: bool, is_crop: bool | None, fuse: bool,
         models: Path | None, threads: int, region: tuple[int, int, int, int] | None,
         find_region: bool) -> None:
    """Read the plate in each IMAGE (frame or crop): plate, confidence, time."""
    from PIL import Image, UnidentifiedImageError

    from firmware.lane.devices.reader import DEFAULT_MODELS, TfliteReader
    from firmware.lane.devices.reader.fusion import fuse as fuse_reads
    from firmware.lane.devices.reader.preprocess import RegionOutsideFrameError
    from firmware.lane.devices.reader.reader import MIN_PLATE_WIDTH_PX
    from firmware.lane.devices.reader.region import NoPlateFoundError
    from firmware.lane.devices.reader.region import find_region as search
    from firmware.lane.devices.reader.runtime import RuntimeMissingError

    if find_region and (region is not None or is_crop):
        raise click.UsageError("--find-region searches whole frames: drop --region / --crop")
    try:
        with runtime_info_dropped():  # LiteRT's "INFO: Created ... XNNPACK delegate"
            reader = TfliteReader(models or DEFAULT_MODELS, threads=threads, region=region)
    except OSError as error:
        raise UnreadableInputError(f"cannot load the reader: {plain_os_error(error)}") from error
    except (RuntimeMissingError, ValueError) as error:
        raise UnreadableInputError(f"cannot load the reader: {error}") from error
    results: list[dict[str, Any]] = []
    reads = []
    for path in images:
        try:
            with Image.open(path) as picture:
                image = picture.convert("RGB")
        except UnidentifiedImageError as error:
            raise UnreadableInputError(f"{path}: not an image file (JPEG, PNG ...)") from error
        except OSError as error:
            raise UnreadableInputError(f"cannot read {plain_os_error(error, path)}") from error
        suggested = None
        try:
            if find_region:
                found = search(reader, image)
                suggested, result = found.region, found.read
            else:
                result = reader.read_image(image, is_crop=is_crop)
        except RegionOutsideFrameError as error:
            raise UnreadableInputError(f"{path}: {error}") from error
        except NoPlateFoundError as error:
            click.echo(f"{path}: {error}", err=True)
            raise SystemExit(1) from error
        reads.append(result)
        frame_read = result.corners is not None
        used_region = suggested or (region if frame_read else None)
        if (frame_read and used_region is None
                and image.width * 3 != image.height * 4):
            click.echo(f"note: {path} is {image.width}x{image.height}, not 4:3: read it "
                       "with the lane's --region, or find one with --find-region "
                       "(hardware/lane-commissioning.md)", err=True)
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
            "region": None if used_region is None else list(used_region),
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
                            "reads_used": fused.frames_used, "reads": fused.frames_total,
                            "frames": len(results)}
        click.echo(json.dumps(doc, ensure_ascii=False, indent=2))
    else:
        for r in results:
            plate = r["plate"] or "-"
            wide = "" if r["plate_width_px"] is None else f"\t{r['plate_width_px']} px wide"
            click.echo(f"{r['image']}\t{plate}\t{r['confidence']:.3f}\t"
                       f"{r['ms']['total']:.1f} ms{wide}")
            if find_region and r["region"] is not None:
                click.echo(f"plate region\t{', '.join(map(str, r['region']))}\t"
                           f"(lane.toml: [camera] plate_region = {r['region']})")
        if fused is not None:
            click.echo(f"fused\t{fused.plate or '-'}\t{fused.confidence:.3f}\t"
                       f"{fused.frames_used}/{fused.frames_total} crop reads of "
                       f"{len(results)} frames")
    if not all(r["plate"] and r["grammar_ok"] for r in results):
        raise SystemExit(1)
