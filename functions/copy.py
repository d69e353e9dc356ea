"""Copy: re-store the original elsewhere (another bucket or prefix), for the "transfer" use.

Usage (pipeline.yaml): keep the object's own key under a new prefix or bucket:

    - function: copy
      params: {normalize: true}
      output: {bucket: archive, template: "{key}"}

With `normalize`, an image is re-encoded upright (EXIF orientation applied) without GPS data;
everything else is copied byte for byte. Output: `original.<ext>`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pydantic import Field

from functions import imaging
from functions._media import sniff
from functions.spec import Output, Params, media_function

EXTENSIONS = {
    "image/jpeg": "jpg", "image/png": "png", "image/gif": "gif", "image/webp": "webp",
    "image/bmp": "bmp", "image/tiff": "tif", "video/mp4": "mp4", "video/quicktime": "mov",
    "video/webm": "webm", "video/x-msvideo": "avi", "audio/mpeg": "mp3", "audio/wav": "wav",
    "audio/ogg": "ogg", "audio/flac": "flac",
}  # fmt: skip
GPS_IFD = 0x8825
ORIENTATION = 0x0112
NORMALIZABLE: dict[str, imaging.OutputFormat] = {
    "image/jpeg": "jpeg",
    "image/png": "png",
    "image/webp": "webp",
}


class CopyParams(Params):
    normalize: bool = Field(default=False, description="Images: apply orientation, drop GPS (re-encodes).")
    quality: int = Field(default=92, ge=1, le=100, description="JPEG/WebP quality when normalizing.")


@media_function(name="copy", accepts=("*/*",), params=CopyParams, reports={"normalized": True})
def run(src: Path, out_dir: Path, params: CopyParams) -> list[Output]:
    """Copy the original (optionally upright and without GPS) to another bucket or prefix."""
    media_type = sniff(src)
    path = out_dir / f"original.{EXTENSIONS.get(media_type, 'bin')}"
    fmt = NORMALIZABLE.get(media_type)
    if not (params.normalize and fmt):
        shutil.copyfile(src, path)
        return [Output(name=path.name, path=path, content_type=media_type, meta={"normalized": False})]
    with imaging.open_image(src, max_pixels=100_000_000) as opened:
        exif = opened.getexif()
        icc = opened.info.get("icc_profile")
        img = imaging.upright(opened)
        img.load()
    exif.pop(GPS_IFD, None)
    exif[ORIENTATION] = 1
    encoded = imaging.for_format(img, fmt, (255, 255, 255))
    # A copy keeps its colour space (ICC profile); only derived web images are converted to sRGB.
    imaging.save(encoded, path, fmt, quality=params.quality, exif=exif, icc_profile=icc)
    return [Output(name=path.name, path=path, content_type=media_type, meta={"normalized": True})]
