"""Thumbnail: scale an image to several sizes from one decode.

Usage (pipeline.yaml):

    - function: thumbnail
      params: {sizes: [256, 1024], format: webp, quality: 80, fit: cover, aspect: "1:1"}

- `sizes`: the longest edge (fit `contain`, aspect kept) or the width (fit `cover`, cropped to
  `aspect` around `focus`, default the centre). Never upscaled.
- EXIF orientation applied; ICC profiles converted to sRGB; CMYK, palette, 16-bit and alpha handled
  (alpha flattened onto `background` for JPEG); all metadata stripped.
- Formats: jpeg (optionally progressive), webp, png, avif (when Pillow has AVIF support).
- Animated GIF/WebP: the first frame, or with `animated: true` and format webp an animated WebP.
Outputs are named `<size>.<ext>`, e.g. `256.webp`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from PIL import Image, ImageOps, ImageSequence
from pydantic import Field, field_validator, model_validator

from functions import imaging
from functions.errors import ParamsError
from functions.spec import Output, Params, media_function


class ThumbnailParams(Params):
    sizes: list[int] = Field(default=[256, 1024], min_length=1, max_length=8)
    fit: Literal["contain", "cover"] = "contain"
    aspect: str = Field(
        default="1:1", pattern=r"^[1-9]\d*:[1-9]\d*$", description="Shape of a `cover` thumbnail."
    )
    focus: tuple[float, float] = Field(
        default=(0.5, 0.5), description="Focal point (x, y) in 0..1 for cover."
    )
    format: imaging.OutputFormat = "jpeg"
    quality: int = Field(default=82, ge=1, le=100)
    progressive: bool = False
    background: tuple[int, int, int] = (255, 255, 255)
    animated: bool = Field(default=False, description="Keep animation (format webp only).")
    max_pixels: int = Field(
        default=50_000_000,
        gt=0,
        description="Refuse images with more pixels.",
        json_schema_extra={"ceiling": "max_pixels"},
    )
    max_frames: int = Field(
        default=300,
        ge=1,
        description="Frames decoded for an animated thumbnail.",
        json_schema_extra={"ceiling": "max_frames"},
    )

    @field_validator("sizes")
    @classmethod
    def _sizes_in_range(cls, sizes: list[int]) -> list[int]:
        for size in sizes:
            if not 8 <= size <= 8192:
                raise ValueError(f"size {size} is outside 8..8192")
        return sorted(set(sizes), reverse=True)

    @field_validator("focus")
    @classmethod
    def _focus_in_range(cls, focus: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= v <= 1 for v in focus):
            raise ValueError("focus coordinates are fractions of the image, 0..1")
        return focus

    @model_validator(mode="after")
    def _animation_needs_webp(self) -> ThumbnailParams:
        if self.animated and self.format != "webp":
            raise ValueError("animated thumbnails need format webp")
        if self.format == "avif" and not imaging.avif_supported():
            raise ValueError("this Pillow build cannot write AVIF")
        return self

    def box(self, size: int) -> tuple[int, int]:
        if self.fit == "contain":
            return size, size
        aw, ah = (int(p) for p in self.aspect.split(":"))
        return size, max(1, round(size * ah / aw))


@media_function(
    name="thumbnail",
    accepts=("image/*",),
    params=ThumbnailParams,
    reports={"width": 320, "height": 240, "frames": 1},
)
def run(src: Path, out_dir: Path, params: ThumbnailParams) -> list[Output]:
    """Scale an image to several sizes (longest edge), EXIF orientation applied, metadata stripped."""
    with imaging.open_image(src, max_pixels=params.max_pixels) as img:
        if params.animated and getattr(img, "n_frames", 1) > 1:
            return _animated(img, out_dir, params)
        largest = params.box(params.sizes[0])
        # JPEG can decode at 1/2, 1/4 or 1/8 scale directly: ask for the smallest scale that still
        # covers the largest box, which makes a 12 MP decode several times cheaper.
        img.draft("RGB", (largest[0], largest[0]))
        current = imaging.normalise_mode(imaging.to_srgb(imaging.upright(img)))
        current.load()
    outputs: list[Output] = []
    ext = imaging.EXTENSIONS[params.format]
    # Sizes are sorted largest first so each smaller one is derived from the previous result.
    for size in params.sizes:
        current = _scaled(current, params, size)
        path = out_dir / f"{size}.{ext}"
        encoded = imaging.for_format(current, params.format, params.background)
        imaging.save(encoded, path, params.format, quality=params.quality, progressive=params.progressive)
        meta = {"width": encoded.width, "height": encoded.height}
        outputs.append(
            Output(name=path.name, path=path, content_type=imaging.CONTENT_TYPES[params.format], meta=meta)
        )
    return outputs


def _scaled(img: Image.Image, params: ThumbnailParams, size: int) -> Image.Image:
    box = params.box(size)
    if params.fit == "contain":
        if max(img.size) <= size:
            return img
        out = img.copy()
        out.thumbnail(box, Image.Resampling.LANCZOS, reducing_gap=3.0)
        return out
    w, h = img.size
    if w < box[0] or h < box[1]:
        # Never upscale: crop to the aspect at the size the image has.
        scale = min(w / box[0], h / box[1])
        box = (max(1, int(box[0] * scale)), max(1, int(box[1] * scale)))
    if img.size == box:
        return img
    return ImageOps.fit(img, box, Image.Resampling.LANCZOS, centering=params.focus)


def _animated(img: Image.Image, out_dir: Path, params: ThumbnailParams) -> list[Output]:
    frames: list[Image.Image] = []
    durations: list[int] = []
    for i, frame in enumerate(ImageSequence.Iterator(img)):
        if i >= params.max_frames:
            break
        frames.append(frame.convert("RGBA"))
        durations.append(int(frame.info.get("duration", 100)))
    if not frames:
        raise ParamsError("no frames to animate")
    outputs = []
    for size in params.sizes:
        scaled = [_scaled(f, params, size) for f in frames]
        path = out_dir / f"{size}.webp"
        scaled[0].save(
            path,
            "WEBP",
            save_all=True,
            append_images=scaled[1:],
            duration=durations,
            loop=0,
            quality=params.quality,
        )
        meta = {"width": scaled[0].width, "height": scaled[0].height, "frames": len(scaled)}
        outputs.append(Output(name=path.name, path=path, content_type="image/webp", meta=meta))
    return outputs
