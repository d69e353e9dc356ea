"""Pillow helpers shared by the image functions: safe opening and encoding."""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError, features

from functions.errors import MediaError, UnsupportedMedia

# Formats Pillow may even try to decode. Anything else (EPS, PSD, SVG via plugins...) is refused
# before a decoder runs: the allow-list is what stops format-confusion attacks.
DECODE_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")

OutputFormat = Literal["jpeg", "webp", "png", "avif"]
EXTENSIONS: dict[str, str] = {"jpeg": "jpg", "webp": "webp", "png": "png", "avif": "avif"}
CONTENT_TYPES: dict[str, str] = {
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "png": "image/png",
    "avif": "image/avif",
}
SRGB = ImageCms.createProfile("sRGB")


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


def to_srgb(img: Image.Image) -> Image.Image:
    """Convert from an embedded ICC profile (Adobe RGB, Display P3, a CMYK press profile...) to sRGB,
    the only colour space browsers assume for untagged images. Without this, stripping metadata
    would silently shift colours."""
    icc = img.info.get("icc_profile")
    if not icc:
        return img
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        mode = "RGBA" if "A" in img.getbands() else "RGB"
        if img.mode not in ("RGB", "RGBA", "CMYK", "L", "LAB"):
            img = img.convert(mode)
        converted = ImageCms.profileToProfile(img, source, SRGB, outputMode=mode)
    except (ImageCms.PyCMSError, OSError, ValueError):
        return img  # a broken profile: keep the pixels as they are rather than fail the image
    if converted is None:
        return img
    converted.info.pop("icc_profile", None)
    return converted


def normalise_mode(img: Image.Image) -> Image.Image:
    """16-bit, CMYK, palette and other modes -> 8-bit RGB(A) or L(A) for resampling and encoding."""
    if img.mode in ("RGB", "RGBA", "L", "LA"):
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: scale to 8 bits instead of clipping at 255.
        return img.point(lambda v: v / 256).convert("L")
    if img.mode == "P":
        return img.convert("RGBA" if "transparency" in img.info else "RGB")
    return img.convert("RGBA" if "A" in img.getbands() else "RGB")


def avif_supported() -> bool:
    return bool(features.check("avif"))


def for_format(img: Image.Image, fmt: OutputFormat, background: tuple[int, int, int]) -> Image.Image:
    """Convert to a mode the output format can store; JPEG has no alpha, so flatten it on `background`."""
    img = normalise_mode(img)
    has_alpha = img.mode in ("RGBA", "LA")
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


def save(
    img: Image.Image,
    path: Path,
    fmt: OutputFormat,
    *,
    quality: int,
    progressive: bool = False,
    exif: Image.Exif | None = None,
    icc_profile: bytes | None = None,
) -> None:
    """Encode. Without `exif`, no metadata at all reaches the output (no EXIF, XMP or comments)."""
    extra: dict[str, Any] = {"exif": exif.tobytes()} if exif is not None else {}
    if icc_profile:
        extra["icc_profile"] = icc_profile
    # Some encoders (PNG) copy metadata from `info` on their own: keep only what encoding needs.
    img.info = {k: v for k, v in img.info.items() if k in ("transparency", "duration", "loop")}
    if fmt == "jpeg":
        img.save(path, "JPEG", quality=quality, optimize=True, progressive=progressive, **extra)
    elif fmt == "webp":
        img.save(path, "WEBP", quality=quality, method=4, **extra)
    elif fmt == "avif":
        if not avif_supported():
            raise MediaError("this Pillow build cannot write AVIF")
        img.save(path, "AVIF", quality=quality, **extra)
    else:
        img.save(path, "PNG", optimize=False, compress_level=6, **extra)
