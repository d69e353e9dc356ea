from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat

from functions import MediaError, UnsupportedMedia
from functions._media import sniff, sniff_bytes
from functions.thumbnail import ThumbnailParams, run
from pipeline.measure.samples import ORIENTATION_TAG, generate
from tests.helpers import load_image as load


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {p.name: p for p in generate(tmp_path_factory.mktemp("samples"))}


def thumbs(src: Path, out: Path, **params: object) -> dict[str, Image.Image]:
    out.mkdir(exist_ok=True)
    result = run(src, out, ThumbnailParams.model_validate(params))
    return {o.name: load(o.path) for o in result}


def test_sizes_keep_aspect_and_never_upscale(samples: dict[str, Path], tmp_path: Path) -> None:
    images = thumbs(samples["landscape.jpg"], tmp_path, sizes=[256, 1024, 4000])
    assert images["256.jpg"].size == (256, 171)
    assert images["1024.jpg"].size == (1024, 683)
    assert images["4000.jpg"].size == (1600, 1067)  # the source size, not upscaled


def test_thumbnail_looks_like_its_source(samples: dict[str, Path], tmp_path: Path) -> None:
    thumb = thumbs(samples["landscape.jpg"], tmp_path, sizes=[256])["256.jpg"].convert("RGB")
    with Image.open(samples["landscape.jpg"]) as src:
        reference = src.convert("RGB").resize(thumb.size, Image.Resampling.BOX)
    mean_abs_diff = sum(ImageStat.Stat(ImageChops.difference(thumb, reference)).mean) / 3
    assert mean_abs_diff < 6


def test_exif_orientation_applied_and_metadata_stripped(samples: dict[str, Path], tmp_path: Path) -> None:
    src = samples["portrait-exif-rotated.jpg"]
    with Image.open(src) as raw:
        assert raw.size == (1200, 900) and raw.getexif()[ORIENTATION_TAG] == 6
    thumb = thumbs(src, tmp_path, sizes=[256])["256.jpg"]
    assert thumb.size == (192, 256)  # portrait, as the camera's user saw it
    assert ORIENTATION_TAG not in thumb.getexif()
    assert "exif" not in thumb.info
    # The red arrow is drawn in the left tenth, upright: the red pixels must be on the left.
    rgb = thumb.convert("RGB")
    red = [
        (x, y)
        for x in range(rgb.width)
        for y in range(rgb.height)
        if (p := rgb.getpixel((x, y))) and isinstance(p, tuple) and p[0] > 180 and p[1] < 110 and p[2] < 110
    ]
    assert red and max(x for x, _ in red) < rgb.width * 0.3


def test_alpha_flattened_for_jpeg_and_kept_for_png(samples: dict[str, Path], tmp_path: Path) -> None:
    jpeg = thumbs(samples["logo-alpha.png"], tmp_path / "j", sizes=[128], background=[255, 0, 255])["128.jpg"]
    assert jpeg.mode == "RGB"
    corner = jpeg.convert("RGB").getpixel((1, 1))
    assert isinstance(corner, tuple) and corner[0] > 200 and corner[1] < 60 and corner[2] > 200
    png = thumbs(samples["logo-alpha.png"], tmp_path / "p", sizes=[128], format="png")["128.png"]
    assert png.mode == "RGBA" and png.getpixel((1, 1)) == (0, 0, 0, 0)


@pytest.mark.parametrize(("fmt", "ext"), [("jpeg", "jpg"), ("webp", "webp"), ("png", "png")])
def test_output_formats(samples: dict[str, Path], tmp_path: Path, fmt: str, ext: str) -> None:
    image = thumbs(samples["palette.gif"], tmp_path, sizes=[100], format=fmt)[f"100.{ext}"]
    assert image.format == {"jpeg": "JPEG", "webp": "WEBP", "png": "PNG"}[fmt]


def test_quality_changes_size(samples: dict[str, Path], tmp_path: Path) -> None:
    low = run(samples["landscape.jpg"], mk(tmp_path / "lo"), ThumbnailParams(sizes=[512], quality=20))[0]
    high = run(samples["landscape.jpg"], mk(tmp_path / "hi"), ThumbnailParams(sizes=[512], quality=95))[0]
    assert low.path.stat().st_size < high.path.stat().st_size


def mk(path: Path) -> Path:
    path.mkdir()
    return path


def test_decompression_bomb_refused_before_decoding(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    Image.new("1", (20_000, 20_000)).save(bomb)  # 400 MP, a few KB on disk
    assert bomb.stat().st_size < 200_000
    with pytest.raises(MediaError, match="too large"):
        run(bomb, mk(tmp_path / "out"), ThumbnailParams(sizes=[64]))


def test_svg_named_jpg_is_identified_and_refused(tmp_path: Path) -> None:
    fake = tmp_path / "cat.jpg"
    fake.write_text(
        '<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><image href="file:///etc/passwd"/></svg>'
    )
    assert sniff(fake) == "image/svg+xml"
    with pytest.raises(UnsupportedMedia):
        run(fake, mk(tmp_path / "out"), ThumbnailParams(sizes=[64]))


def test_truncated_image_is_a_clear_error(samples: dict[str, Path], tmp_path: Path) -> None:
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(samples["landscape.jpg"].read_bytes()[:2000])
    with pytest.raises(MediaError):
        run(cut, mk(tmp_path / "out"), ThumbnailParams(sizes=[64]))


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\xff\xd8\xff\xe0", "image/jpeg"),
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"\x00\x00\x00\x18ftypmp42", "video/mp4"),
        (b"\x00\x00\x00\x18ftypavif", "image/avif"),
        (b"%PDF-1.7", "application/pdf"),
        (b"%!PS-Adobe-3.0 EPSF", "application/postscript"),
        (b"  <svg xmlns=", "image/svg+xml"),
        (b"#EXTM3U\n", "application/octet-stream"),
    ],
)
def test_magic_bytes(head: bytes, kind: str) -> None:
    assert sniff_bytes(head) == kind


def test_params_validation() -> None:
    assert ThumbnailParams(sizes=[64, 512, 64]).sizes == [512, 64]
    with pytest.raises(ValueError, match="outside"):
        ThumbnailParams(sizes=[4])
    with pytest.raises(ValueError):
        ThumbnailParams.model_validate({"sizes": [64], "unknown": 1})
