"""thumbnail's advanced cases, filter and copy: real images in, decoded outputs checked."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops, ImageCms, ImageDraw, ImageStat

from functions import assets, screen, thumbnail
from functions import copy as copy_fn
from functions import filter as filter_fn
from functions.errors import ParamsError
from functions.imaging import avif_supported
from pipeline.config import parse_config
from pipeline.errors import ConfigError
from pipeline.registry import build_pipeline
from tests.helpers import assert_reports_declared
from tests.helpers import load_image as load

GPS_IFD, ORIENTATION, MAKE = 0x8825, 0x0112, 0x010F


def out(tmp_path: Path, name: str = "out") -> Path:
    path = tmp_path / name
    path.mkdir(exist_ok=True)
    return path


def mean_diff(a: Image.Image, b: Image.Image) -> float:
    b = b.convert("RGB").resize(a.size, Image.Resampling.BOX)
    return sum(ImageStat.Stat(ImageChops.difference(a.convert("RGB"), b)).mean) / 3


def quadrants(tmp_path: Path, size: tuple[int, int] = (400, 200)) -> Path:
    """Left half red, right half blue: easy to see where a crop landed."""
    img = Image.new("RGB", size, (220, 20, 20))
    ImageDraw.Draw(img).rectangle([size[0] // 2, 0, size[0], size[1]], fill=(20, 20, 220))
    path = tmp_path / "quadrants.png"
    img.save(path)
    return path


# --- thumbnail -------------------------------------------------------------------------------------


def test_cover_crops_to_aspect_around_the_focus(tmp_path: Path) -> None:
    src = quadrants(tmp_path)
    left = thumbnail.run(
        src,
        out(tmp_path, "l"),
        thumbnail.ThumbnailParams(sizes=[100], fit="cover", focus=(0.0, 0.5), format="png"),
    )
    right = thumbnail.run(
        src,
        out(tmp_path, "r"),
        thumbnail.ThumbnailParams(sizes=[100], fit="cover", focus=(1.0, 0.5), format="png"),
    )
    a, b = load(left[0].path), load(right[0].path)
    assert a.size == b.size == (100, 100)
    assert a.convert("RGB").getpixel((50, 50)) == pytest.approx((220, 20, 20), abs=10)
    assert b.convert("RGB").getpixel((50, 50)) == pytest.approx((20, 20, 220), abs=10)
    wide = thumbnail.run(
        src, out(tmp_path, "w"), thumbnail.ThumbnailParams(sizes=[160], fit="cover", aspect="16:9")
    )
    assert load(wide[0].path).size == (160, 90)


def test_cover_never_upscales(tmp_path: Path) -> None:
    src = quadrants(tmp_path, (120, 60))
    [result] = thumbnail.run(src, out(tmp_path), thumbnail.ThumbnailParams(sizes=[500], fit="cover"))
    assert load(result.path).size == (60, 60)


def test_sixteen_bit_greyscale_keeps_its_brightness(tmp_path: Path) -> None:
    src = tmp_path / "deep.png"
    Image.new("I;16", (300, 200), 32768).save(src)  # mid grey in 16 bits
    [result] = thumbnail.run(src, out(tmp_path), thumbnail.ThumbnailParams(sizes=[100]))
    pixel = load(result.path).convert("L").getpixel((50, 30))
    assert isinstance(pixel, int) and 120 <= pixel <= 136


def test_cmyk_jpeg_becomes_rgb_with_its_colours(tmp_path: Path) -> None:
    src = tmp_path / "cmyk.jpg"
    Image.new("RGB", (300, 200), (200, 40, 40)).convert("CMYK").save(src, quality=95)
    [result] = thumbnail.run(src, out(tmp_path), thumbnail.ThumbnailParams(sizes=[100]))
    img = load(result.path)
    assert img.mode == "RGB"
    assert img.getpixel((50, 30)) == pytest.approx((200, 40, 40), abs=12)


def test_icc_profile_converted_to_srgb_and_dropped(tmp_path: Path) -> None:
    # An image whose pixels are in the (very different) LAB space, tagged with a LAB profile.
    srgb_to_lab = ImageCms.buildTransform(
        ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB"
    )
    lab = ImageCms.applyTransform(Image.new("RGB", (200, 100), (30, 160, 60)), srgb_to_lab)
    assert lab is not None
    tiff = tmp_path / "tagged.tif"
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    lab.save(tiff, icc_profile=profile)
    [result] = thumbnail.run(tiff, out(tmp_path), thumbnail.ThumbnailParams(sizes=[64], format="png"))
    img = load(result.path)
    assert "icc_profile" not in img.info
    assert img.convert("RGB").getpixel((10, 10)) == pytest.approx((30, 160, 60), abs=12)


def test_palette_gif_animated_first_frame_and_animated_webp(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (200, 100), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    src = tmp_path / "anim.gif"
    frames[0].save(src, save_all=True, append_images=frames[1:], duration=80, loop=0)
    [still] = thumbnail.run(src, out(tmp_path, "s"), thumbnail.ThumbnailParams(sizes=[50], format="png"))
    assert load(still.path).convert("RGB").getpixel((10, 10)) == pytest.approx((255, 0, 0), abs=8)
    [moving] = thumbnail.run(
        src, out(tmp_path, "m"), thumbnail.ThumbnailParams(sizes=[50], format="webp", animated=True)
    )
    with Image.open(moving.path) as webp:
        assert getattr(webp, "n_frames", 1) == 3 and webp.size == (50, 25)
    with pytest.raises(ValueError, match="need format webp"):
        thumbnail.ThumbnailParams(animated=True, format="jpeg")


@pytest.mark.skipif(not avif_supported(), reason="this Pillow build has no AVIF encoder")
def test_avif_output(tmp_path: Path) -> None:
    src = quadrants(tmp_path)
    [result] = thumbnail.run(src, out(tmp_path), thumbnail.ThumbnailParams(sizes=[64], format="avif"))
    img = load(result.path)
    assert img.format == "AVIF" and result.content_type == "image/avif" and result.name == "64.avif"


def test_progressive_jpeg(tmp_path: Path) -> None:
    [result] = thumbnail.run(
        quadrants(tmp_path), out(tmp_path), thumbnail.ThumbnailParams(sizes=[64], progressive=True)
    )
    assert load(result.path).info.get("progressive") == 1


# --- filter ----------------------------------------------------------------------------------------


def run_filter(src: Path, tmp_path: Path, steps: list[dict[str, Any]], **params: Any) -> Image.Image:
    p = filter_fn.FilterParams.model_validate({"steps": steps, **params})
    [result] = filter_fn.run(src, out(tmp_path, f"f{len(list(tmp_path.iterdir()))}"), p)
    return load(result.path)


def photo_with_exif(tmp_path: Path) -> Path:
    exif = Image.Exif()
    exif[MAKE] = "TestCam"
    exif[ORIENTATION] = 6
    exif.get_ifd(GPS_IFD).update({1: "N", 2: (52.0, 31.0, 12.0)})
    path = tmp_path / "photo.jpg"
    Image.new("RGB", (300, 200), (120, 130, 140)).save(path, exif=exif.tobytes())
    return path


@pytest.mark.parametrize(
    ("steps", "size"),
    [
        ([{"op": "resize", "width": 150}], (150, 75)),
        ([{"op": "resize", "width": 100, "height": 100, "fit": "cover"}], (100, 100)),
        ([{"op": "resize", "width": 100, "height": 100, "fit": "fill"}], (100, 100)),
        ([{"op": "resize", "width": 1000}], (400, 200)),  # no upscale by default
        ([{"op": "crop", "x": 10, "y": 10, "width": 50, "height": 40}], (50, 40)),
        ([{"op": "crop", "aspect": "1:1"}], (200, 200)),
        ([{"op": "rotate", "degrees": 90}], (200, 400)),
    ],
)
def test_geometry_steps(tmp_path: Path, steps: list[dict[str, Any]], size: tuple[int, int]) -> None:
    assert run_filter(quadrants(tmp_path), tmp_path, steps, format="png").size == size


def test_flip_grayscale_sepia_blur_sharpen_adjust(tmp_path: Path) -> None:
    src = quadrants(tmp_path)
    flipped = run_filter(src, tmp_path, [{"op": "flip"}], format="png").convert("RGB")
    assert flipped.getpixel((10, 10)) == pytest.approx((20, 20, 220), abs=5)  # blue is on the left now
    gray = run_filter(src, tmp_path, [{"op": "grayscale"}], format="png")
    assert gray.mode == "L"
    sepia = run_filter(src, tmp_path, [{"op": "sepia"}], format="png").convert("RGB").getpixel((300, 100))
    assert isinstance(sepia, tuple) and sepia[0] > sepia[2]  # blue turned warm brown
    blurred = run_filter(src, tmp_path, [{"op": "blur", "radius": 8}], format="png").convert("RGB")
    edge = blurred.getpixel((200, 100))
    assert isinstance(edge, tuple) and 60 < edge[0] < 180  # the hard edge is now a ramp
    dark = (
        run_filter(src, tmp_path, [{"op": "adjust", "brightness": 0.5}], format="png")
        .convert("RGB")
        .getpixel((10, 10))
    )
    assert isinstance(dark, tuple) and dark[0] < 130
    soft_steps: list[dict[str, Any]] = [{"op": "blur", "radius": 3}]
    soft = run_filter(src, tmp_path, soft_steps, format="png")
    sharp = run_filter(src, tmp_path, [*soft_steps, {"op": "sharpen", "percent": 300}], format="png")
    assert sharp.size == (400, 200)
    assert edge_contrast(sharp) > 1.3 * edge_contrast(soft)  # the softened edge is steeper again


def edge_contrast(img: Image.Image, row: int = 100) -> int:
    """The steepest step of the red channel between neighbouring pixels along one row."""
    red = [img.getpixel((x, row)) for x in range(img.width)]
    values = [p[0] for p in red if isinstance(p, tuple)]
    return max(abs(a - b) for a, b in itertools.pairwise(values))


def test_text_and_image_watermarks_land_where_asked(tmp_path: Path) -> None:
    base = tmp_path / "white.png"
    Image.new("RGB", (400, 300), (255, 255, 255)).save(base)
    logo = tmp_path / "logo.png"
    Image.new("RGBA", (50, 50), (0, 0, 0, 255)).save(logo)
    with pytest.raises(ParamsError, match="was not provided"):  # a host path nobody provided
        run_filter(base, tmp_path, [{"op": "watermark", "image": str(logo)}], format="png")
    with assets.provided({str(logo): logo}):
        marked = run_filter(
            base,
            tmp_path,
            [
                {
                    "op": "text",
                    "text": "MARK",
                    "size": 0.1,
                    "position": "bottom-right",
                    "color": [0, 0, 0],
                    "opacity": 1,
                },
                {"op": "watermark", "image": str(logo), "width": 0.25, "position": "top-left", "margin": 0.0},
            ],
            format="png",
        ).convert("L")
    dark = [
        (x, y)
        for x in range(400)
        for y in range(300)
        if (p := marked.getpixel((x, y))) is not None and isinstance(p, int) and p < 100
    ]
    logo_pixels = [(x, y) for x, y in dark if x < 100 and y < 100]
    text_pixels = [(x, y) for x, y in dark if x > 200 and y > 200]
    assert len(logo_pixels) > 90 * 90  # a 100x100 black square in the corner
    assert text_pixels and not [(x, y) for x, y in dark if 120 < x < 200 and 120 < y < 200]


def test_metadata_strip_default_and_keep_without_gps(tmp_path: Path) -> None:
    src = photo_with_exif(tmp_path)
    stripped = run_filter(src, tmp_path, [{"op": "grayscale"}])
    assert not stripped.getexif()
    kept = run_filter(src, tmp_path, [{"op": "grayscale"}], metadata="keep").getexif()
    assert kept[MAKE] == "TestCam" and kept[ORIENTATION] == 1 and GPS_IFD not in kept
    with_gps = run_filter(src, tmp_path, [{"op": "grayscale"}], metadata="keep", keep_gps=True).getexif()
    assert GPS_IFD in with_gps


def test_orientation_applied_before_steps(tmp_path: Path) -> None:
    assert run_filter(photo_with_exif(tmp_path), tmp_path, [{"op": "blur"}]).size == (200, 300)


def filter_rule(steps: str) -> str:
    return (
        "rules:\n  - name: web\n    bucket: media\n    functions:\n"
        f"      - function: thumbnail\n      - function: filter\n        params: {{steps: {steps}}}\n"
    )


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ("[{op: resize, width: 10}, {op: posterize}]", "rules[0] (web).functions[1].params.steps[1]"),
        ("[{op: blur, radius: -1}]", "rules[0] (web).functions[1].params.steps[0].blur.radius"),
        ("[{op: text}]", "rules[0] (web).functions[1].params.steps[0].text.text: Field required"),
        ("[{op: resize}]", "rules[0] (web).functions[1].params.steps[0].resize"),
        ("[{op: crop, aspect: wide}]", "steps[0].crop.aspect"),
        ("[{op: resize, width: 10, colour: red}]", "steps[0].resize.colour: Extra inputs are not permitted"),
    ],
)
def test_bad_steps_fail_when_the_pipeline_file_loads(steps: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_pipeline(parse_config(filter_rule(steps), "p.yaml"), "p.yaml")
    assert expected in str(info.value)
    assert str(info.value).startswith("p.yaml: ")


def test_watermark_from_the_bucket_is_an_asset_to_download() -> None:
    p = filter_fn.FilterParams.model_validate(
        {
            "steps": [
                {"op": "watermark", "image": "s3://media/brand/logo.png"},
                {"op": "watermark", "image": "/srv/x.png"},
            ]
        }
    )
    assert filter_fn.run.asset_refs(p) == [
        "s3://media/brand/logo.png",
        "/srv/x.png",
    ]  # both refused unless provided


# --- copy ------------------------------------------------------------------------------------------


def test_copy_is_byte_identical_by_default(tmp_path: Path) -> None:
    src = photo_with_exif(tmp_path)
    [result] = copy_fn.run(src, out(tmp_path), copy_fn.CopyParams())
    assert result.path.read_bytes() == src.read_bytes() and result.name == "original.jpg"


def test_copy_normalized_is_upright_without_gps(tmp_path: Path) -> None:
    src = photo_with_exif(tmp_path)
    [result] = copy_fn.run(src, out(tmp_path), copy_fn.CopyParams(normalize=True))
    img = load(result.path)
    assert img.size == (200, 300)
    exif = img.getexif()
    assert GPS_IFD not in exif and exif[ORIENTATION] == 1 and exif[MAKE] == "TestCam"
    assert mean_diff(img, load(src).rotate(-90, expand=True)) < 4


def test_copy_of_non_images_is_plain(tmp_path: Path) -> None:
    src = tmp_path / "a.mp3"
    src.write_bytes(b"ID3" + bytes(100))
    [result] = copy_fn.run(src, out(tmp_path), copy_fn.CopyParams(normalize=True))
    assert result.name == "original.mp3" and result.path.read_bytes() == src.read_bytes()


# --- what each function reports ------------------------------------------------------------------


def test_image_functions_report_only_declared_fields(tmp_path: Path) -> None:
    """Flows check `steps.<id>.<field>` at load against `reports`: what the functions put in their
    outputs' meta must be declared there, with the declared type."""
    src = quadrants(tmp_path)
    frames = [Image.new("RGB", (200, 100), c) for c in ((255, 0, 0), (0, 0, 255))]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=80, loop=0)
    runs = [
        (thumbnail, thumbnail.run(src, out(tmp_path, "t"), thumbnail.ThumbnailParams(sizes=[64]))),
        (
            thumbnail,
            thumbnail.run(
                gif, out(tmp_path, "a"), thumbnail.ThumbnailParams(sizes=[64], format="webp", animated=True)
            ),
        ),
        (
            filter_fn,
            filter_fn.run(src, out(tmp_path, "f"), filter_fn.FilterParams(steps=[{"op": "grayscale"}])),
        ),
        (copy_fn, copy_fn.run(src, out(tmp_path, "c"), copy_fn.CopyParams())),
        (
            copy_fn,
            copy_fn.run(photo_with_exif(tmp_path), out(tmp_path, "n"), copy_fn.CopyParams(normalize=True)),
        ),
        (screen, screen.run(src, out(tmp_path, "s"), screen.ScreenParams())),
    ]
    for module, outputs in runs:
        assert outputs and any(o.meta for o in outputs)
        assert_reports_declared(module.run, outputs)
    assert {"verdict", "frames_checked", "pdq"} <= set(runs[-1][1][0].meta)
