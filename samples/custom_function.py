"""Invert: an example user function (add it in pipeline.yaml with `module: samples.custom_function`).

Usage:

    functions:
      invert:
        module: samples.custom_function
    rules:
      - name: negatives
        bucket: media
        prefix: uploads/
        functions:
          - function: invert
            params: {format: png}
"""

from __future__ import annotations

from pathlib import Path

from PIL import ImageOps

from functions import Output, Params, media_function
from functions.imaging import CONTENT_TYPES, EXTENSIONS, OutputFormat, for_format, open_image, save, upright


class InvertParams(Params):
    format: OutputFormat = "png"


@media_function(name="invert", accepts=("image/*",), params=InvertParams)
def run(src: Path, out_dir: Path, params: InvertParams) -> list[Output]:
    """Write the colour negative of an image."""
    with open_image(src, max_pixels=50_000_000) as img:
        inverted = ImageOps.invert(upright(img).convert("RGB"))
    path = out_dir / f"inverted.{EXTENSIONS[params.format]}"
    save(for_format(inverted, params.format, (255, 255, 255)), path, params.format, quality=90)
    return [Output(name=path.name, path=path, content_type=CONTENT_TYPES[params.format])]
