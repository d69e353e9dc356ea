"""Thumbnail: scale an image to several sizes from one decode.

Usage (pipeline.yaml):

    - function: thumbnail
      params: {sizes: [256, 1024], format: webp, quality: 80}

Each size is the longest edge of the box the image is fitted into (aspect kept, never upscaled).
Outputs are named `<size>.<ext>`, e.g. `256.webp`.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image
from pydantic import Field, field_validator

from functions import _imaging
from functions.spec import Output, Params, media_function


class ThumbnailParams(Params):
    sizes: list[int] = Field(default=[256, 1024], min_length=1, max_length=8)
    format: _imaging.OutputFormat = "jpeg"
    quality: int = Field(default=82, ge=1, le=100)
    progressive: bool = False
    background: tuple[int, int, int] = (255, 255, 255)
    max_pixels: int = Field(default=50_000_000, gt=0, description="Refuse images with more pixels.")

    @field_validator("sizes")
    @classmethod
    def _sizes_in_range(cls, sizes: list[int]) -> list[int]:
        for size in sizes:
            if not 8 <= size <= 8192:
                raise ValueError(f"size {size} is outside 8..8192")
        return sorted(set(sizes), reverse=True)


@media_function(name="thumbnail", accepts=("image/*",), params=ThumbnailParams)
def run(src: Path, out_dir: Path, params: ThumbnailParams) -> list[Output]:
    """Scale an image to several sizes (longest edge), EXIF orientation applied, metadata stripped."""
    largest = params.sizes[0]
    outputs: list[Output] = []
    with _imaging.open_image(src, max_pixels=params.max_pixels) as img:
        # JPEG can decode at 1/2, 1/4 or 1/8 scale directly: ask for the smallest scale that still
        # covers the largest box, which makes a 12 MP decode several times cheaper.
        img.draft("RGB", (largest, largest))
        current = _imaging.upright(img)
        current.load()
        ext = _imaging.EXTENSIONS[params.format]
        # Sizes are sorted largest first so each smaller one is derived from the previous result.
        for size in params.sizes:
            if max(current.size) > size:
                current = current.copy()
                current.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
            path = out_dir / f"{size}.{ext}"
            encoded = _imaging.for_format(current, params.format, params.background)
            _imaging.save(
                encoded, path, params.format, quality=params.quality, progressive=params.progressive
            )
            outputs.append(
                Output(
                    name=path.name,
                    path=path,
                    content_type=_imaging.CONTENT_TYPES[params.format],
                    meta={"width": encoded.width, "height": encoded.height},
                )
            )
    return outputs
