"""Pillow helpers shared by the image functions: safe opening and encoding."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from PIL import Image, ImageOps, UnidentifiedImageError

from functions.errors import MediaError, UnsupportedMedia

# Formats Pillow may even try to decode. Anything else (EPS, PSD, SVG via plugins...) is refused
# before a decoder runs: the allow-list is what stops format-confusion attacks.
DECODE_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")

OutputFormat = Literal["jpeg", "webp", "png"]
EXTENSIONS: dict[str, str] = {"jpeg": "jpg", "webp": "webp", "png": "png"}
CONTENT_TYPES: dict[str, str] = {"jpeg": "image/jpeg", "webp": "image/webp", "png": "image/png"}


@contextmanager
def open_image(path: Path, *, max_pixels: int) -> Iterator[Image.Image]:
    """Open an image from the allow-list, refusing decompression bombs before any pixel is decoded."""
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            # Pillow only *warns* between MAX_IMAGE_PIXELS and twice that; we treat it as the limit.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=DECODE_FORMATS) as img:
                yield img
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise MediaError(f"image too large: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise UnsupportedMedia(f"not an image of an allowed format ({', '.join(DECODE_FORMATS)})") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise MediaError(f"cannot decode image: {exc}") from exc


def upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation so the pixels are the way the camera's user saw them."""
    return ImageOps.exif_transpose(img) or img


def for_format(img: Image.Image, fmt: OutputFormat, background: tuple[int, int, int]) -> Image.Image:
    """Convert to a mode the output format can store; JPEG has no alpha, so flatten it on `background`."""
    has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    if fmt == "jpeg":
        if has_alpha:
            rgba = img.convert("RGBA")
            flat = Image.new("RGB", rgba.size, background)
            flat.paste(rgba, mask=rgba.getchannel("A"))
            return flat
        return img if img.mode in ("RGB", "L") else img.convert("RGB")
    if has_alpha:
        return img if img.mode == "RGBA" else img.convert("RGBA")
    return img if img.mode in ("RGB", "L") else img.convert("RGB")


def save(img: Image.Image, path: Path, fmt: OutputFormat, *, quality: int, progressive: bool = False) -> None:
    """Encode without metadata: EXIF, XMP and comments never reach an output."""
    if fmt == "jpeg":
        img.save(path, "JPEG", quality=quality, optimize=True, progressive=progressive)
    elif fmt == "webp":
        img.save(path, "WEBP", quality=quality, method=4)
    else:
        img.save(path, "PNG", optimize=False, compress_level=6)
