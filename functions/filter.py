"""Filter: a declared chain of image operations, applied in order.

Usage (pipeline.yaml):

    - function: filter
      params:
        steps:
          - {op: resize, width: 1200}
          - {op: adjust, contrast: 1.1, saturation: 1.2}
          - {op: text, text: "© ACME", size: 0.04, position: bottom-right, opacity: 0.6}
          - {op: watermark, image: "s3://media/brand/logo.png", width: 0.15, position: top-left}
        format: webp
        metadata: keep          # strip (default) | keep; GPS is removed unless keep_gps: true

Operations: resize, crop, rotate, flip, grayscale, sepia, blur, sharpen, adjust (brightness,
contrast, saturation), text, watermark. EXIF orientation is applied before the first step.
Output: `<name>.<ext>` (default `filtered.jpg`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps
from pydantic import BaseModel, ConfigDict, Field, model_validator

from functions import assets, imaging
from functions.spec import Output, Params, media_function

Position = Literal[
    "top-left", "top", "top-right", "left", "center", "right", "bottom-left", "bottom", "bottom-right"
]
RGB = tuple[
    Annotated[int, Field(ge=0, le=255)],
    Annotated[int, Field(ge=0, le=255)],
    Annotated[int, Field(ge=0, le=255)],
]
GPS_IFD = 0x8825
ORIENTATION = 0x0112


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Resize(Step):
    op: Literal["resize"]
    width: int | None = Field(default=None, ge=1, le=16384, json_schema_extra={"ceiling": "max_dimension"})
    height: int | None = Field(default=None, ge=1, le=16384, json_schema_extra={"ceiling": "max_dimension"})
    fit: Literal["contain", "cover", "fill"] = "contain"
    upscale: bool = False

    @model_validator(mode="after")
    def _one_dimension(self) -> Resize:
        if self.width is None and self.height is None:
            raise ValueError("give width, height or both")
        return self


class Crop(Step):
    op: Literal["crop"]
    x: int = Field(default=0, ge=0)
    y: int = Field(default=0, ge=0)
    width: int | None = Field(default=None, ge=1)
    height: int | None = Field(default=None, ge=1)
    aspect: str | None = Field(
        default=None, pattern=r"^[1-9]\d*:[1-9]\d*$", description="Centred crop, e.g. '16:9'."
    )

    @model_validator(mode="after")
    def _box_or_aspect(self) -> Crop:
        if (self.aspect is None) == (self.width is None or self.height is None):
            raise ValueError("give either width and height (with x, y) or aspect")
        return self


class Rotate(Step):
    op: Literal["rotate"]
    degrees: float = Field(ge=-360, le=360)
    expand: bool = True
    fill: RGB = (255, 255, 255)


class Flip(Step):
    op: Literal["flip"]
    direction: Literal["horizontal", "vertical"] = "horizontal"


class Grayscale(Step):
    op: Literal["grayscale"]


class Sepia(Step):
    op: Literal["sepia"]
    strength: float = Field(default=1.0, ge=0, le=1)


class Blur(Step):
    op: Literal["blur"]
    radius: float = Field(default=2.0, gt=0, le=100)


class Sharpen(Step):
    op: Literal["sharpen"]
    radius: float = Field(default=2.0, gt=0, le=50)
    percent: int = Field(default=150, ge=1, le=500)
    threshold: int = Field(default=3, ge=0, le=255)


class Adjust(Step):
    op: Literal["adjust"]
    brightness: float = Field(default=1.0, ge=0, le=5)
    contrast: float = Field(default=1.0, ge=0, le=5)
    saturation: float = Field(default=1.0, ge=0, le=5)


class Text(Step):
    op: Literal["text"]
    text: str = Field(min_length=1, max_length=200)
    size: float = Field(
        default=0.05, gt=0, le=0.5, description="Font size as a fraction of the image height."
    )
    position: Position = "bottom-right"
    margin: float = Field(default=0.02, ge=0, le=0.25, description="Fraction of the shorter edge.")
    opacity: float = Field(default=0.7, ge=0, le=1)
    color: RGB = (255, 255, 255)


class Watermark(Step):
    op: Literal["watermark"]
    image: str = Field(description="s3://bucket/key: an object of the store, screened like inputs.")
    width: float = Field(default=0.2, gt=0, le=1, description="Fraction of the image width.")
    position: Position = "bottom-right"
    margin: float = Field(default=0.02, ge=0, le=0.25)
    opacity: float = Field(default=0.8, ge=0, le=1)


AnyStep = Annotated[
    Resize | Crop | Rotate | Flip | Grayscale | Sepia | Blur | Sharpen | Adjust | Text | Watermark,
    Field(discriminator="op"),
]


class FilterParams(Params):
    steps: list[AnyStep] = Field(min_length=1, max_length=32)
    format: imaging.OutputFormat = "jpeg"
    quality: int = Field(default=85, ge=1, le=100)
    metadata: Literal["strip", "keep"] = "strip"
    keep_gps: bool = False
    background: RGB = (255, 255, 255)
    name: str = Field(default="filtered", pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
    max_pixels: int = Field(default=50_000_000, gt=0, json_schema_extra={"ceiling": "max_pixels"})


def _assets_of(params: FilterParams) -> list[str]:
    return [s.image for s in params.steps if isinstance(s, Watermark)]


@media_function(
    name="filter",
    accepts=("image/*",),
    params=FilterParams,
    assets=_assets_of,
    reports={"width": 320, "height": 240, "steps": ["resize"]},
)
def run(src: Path, out_dir: Path, params: FilterParams) -> list[Output]:
    """Apply a chain of image operations (resize, crop, adjust, watermark...) and encode the result."""
    with imaging.open_image(src, max_pixels=params.max_pixels) as opened:
        exif = opened.getexif()
        img = imaging.upright(opened)
        img.load()
    for step in params.steps:
        img = apply(img, step)
    encoded = imaging.for_format(img, params.format, params.background)
    path = out_dir / f"{params.name}.{imaging.EXTENSIONS[params.format]}"
    kept = _kept_exif(exif, params) if params.metadata == "keep" else None
    imaging.save(encoded, path, params.format, quality=params.quality, exif=kept)
    meta = {"width": encoded.width, "height": encoded.height, "steps": [s.op for s in params.steps]}
    return [Output(name=path.name, path=path, content_type=imaging.CONTENT_TYPES[params.format], meta=meta)]


def _kept_exif(exif: Image.Exif, params: FilterParams) -> Image.Exif:
    if not params.keep_gps:
        exif.pop(GPS_IFD, None)  # location is the one thing people never mean to publish
    exif[ORIENTATION] = 1  # the pixels are upright now
    return exif


def apply(img: Image.Image, step: Step) -> Image.Image:
    if isinstance(step, Resize):
        return _resize(img, step)
    if isinstance(step, Crop):
        return _crop(img, step)
    if isinstance(step, Rotate):
        fill = step.fill if img.mode in ("RGB", "RGBA") else None
        return img.rotate(
            -step.degrees, resample=Image.Resampling.BICUBIC, expand=step.expand, fillcolor=fill
        )
    if isinstance(step, Flip):
        return ImageOps.mirror(img) if step.direction == "horizontal" else ImageOps.flip(img)
    if isinstance(step, Grayscale):
        return ImageOps.grayscale(img) if "A" not in img.mode else _grayscale_with_alpha(img)
    if isinstance(step, Sepia):
        return _sepia(img, step.strength)
    if isinstance(step, Blur):
        return img.filter(ImageFilter.GaussianBlur(step.radius))
    if isinstance(step, Sharpen):
        return img.filter(ImageFilter.UnsharpMask(step.radius, step.percent, step.threshold))
    if isinstance(step, Adjust):
        return _adjust(img, step)
    if isinstance(step, Text):
        return _text(img, step)
    if isinstance(step, Watermark):
        return _watermark(img, step)
    raise AssertionError(f"unhandled step {step!r}")


def _resize(img: Image.Image, step: Resize) -> Image.Image:
    w, h = img.size
    tw = step.width or round(w * (step.height or h) / h)
    th = step.height or round(h * (step.width or w) / w)
    if step.fit == "fill":
        size = (tw, th)
    elif step.fit == "cover":
        return ImageOps.fit(img, (tw, th), Image.Resampling.LANCZOS)
    else:
        scale = min(tw / w, th / h)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if not step.upscale and (size[0] > w or size[1] > h):
        return img
    return img.resize(size, Image.Resampling.LANCZOS)


def _crop(img: Image.Image, step: Crop) -> Image.Image:
    w, h = img.size
    if step.aspect:
        aw, ah = (int(p) for p in step.aspect.split(":"))
        cw, ch = (w, round(w * ah / aw)) if w * ah / aw <= h else (round(h * aw / ah), h)
        left, top = (w - cw) // 2, (h - ch) // 2
        return img.crop((left, top, left + cw, top + ch))
    assert step.width is not None and step.height is not None
    box = (min(step.x, w - 1), min(step.y, h - 1), min(step.x + step.width, w), min(step.y + step.height, h))
    return img.crop(box)


def _grayscale_with_alpha(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    alpha = rgba.getchannel("A")
    out = ImageOps.grayscale(rgba.convert("RGB")).convert("LA")
    out.putalpha(alpha)
    return out


def _sepia(img: Image.Image, strength: float) -> Image.Image:
    alpha = img.getchannel("A") if "A" in img.mode else None
    gray = ImageOps.grayscale(img.convert("RGB"))
    toned = ImageOps.colorize(gray, black=(45, 25, 10), white=(255, 240, 200), mid=(160, 120, 80))
    out = Image.blend(img.convert("RGB"), toned, strength)
    if alpha is not None:
        out.putalpha(alpha)
    return out


def _adjust(img: Image.Image, step: Adjust) -> Image.Image:
    alpha = img.getchannel("A") if "A" in img.mode else None
    out = img.convert("RGB")
    if step.brightness != 1:
        out = ImageEnhance.Brightness(out).enhance(step.brightness)
    if step.contrast != 1:
        out = ImageEnhance.Contrast(out).enhance(step.contrast)
    if step.saturation != 1:
        out = ImageEnhance.Color(out).enhance(step.saturation)
    if alpha is not None:
        out.putalpha(alpha)
    return out


def _place(
    canvas: tuple[int, int], item: tuple[int, int], position: Position, margin: float
) -> tuple[int, int]:
    cw, ch = canvas
    iw, ih = item
    m = round(min(cw, ch) * margin)
    x = {"left": m, "center": (cw - iw) // 2, "right": cw - iw - m}
    y = {"top": m, "center": (ch - ih) // 2, "bottom": ch - ih - m}
    vertical, _, horizontal = position.partition("-")
    if position in ("left", "right"):
        vertical, horizontal = "center", position
    elif position in ("top", "bottom"):
        horizontal = "center"
    elif position == "center":
        vertical = horizontal = "center"
    return x[horizontal], y[vertical]


def _overlay(img: Image.Image, layer: Image.Image, xy: tuple[int, int]) -> Image.Image:
    base = img.convert("RGBA")
    canvas = Image.new("RGBA", base.size, (0, 0, 0, 0))
    canvas.paste(layer, xy, layer)
    out = Image.alpha_composite(base, canvas)
    return out if "A" in img.mode else out.convert("RGB")


def _text(img: Image.Image, step: Text) -> Image.Image:
    font = ImageFont.load_default(size=max(8, round(img.height * step.size)))
    left, top, right, bottom = ImageDraw.Draw(img).textbbox((0, 0), step.text, font=font)
    layer = Image.new("RGBA", (int(right - left) + 2, int(bottom - top) + 2), (0, 0, 0, 0))
    ImageDraw.Draw(layer).text(
        (-left + 1, -top + 1), step.text, font=font, fill=(*step.color, round(255 * step.opacity))
    )
    return _overlay(img, layer, _place(img.size, layer.size, step.position, step.margin))


def _watermark(img: Image.Image, step: Watermark) -> Image.Image:
    with imaging.open_image(assets.path_of(step.image), max_pixels=50_000_000) as opened:
        mark = opened.convert("RGBA")
    width = max(1, round(img.width * step.width))
    mark = mark.resize((width, max(1, round(mark.height * width / mark.width))), Image.Resampling.LANCZOS)
    if step.opacity < 1:
        mark.putalpha(mark.getchannel("A").point(lambda a: round(a * step.opacity)))
    return _overlay(img, mark, _place(img.size, mark.size, step.position, step.margin))
