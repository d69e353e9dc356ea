"""Small sample media for the demo and tests, drawn with Pillow (deterministic, no downloads)."""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

ORIENTATION_TAG = 0x0112


def _scene(width: int, height: int, label: str) -> Image.Image:
    img = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(img)
    for y in range(height):  # sky gradient
        t = y / height
        draw.line([(0, y), (width, y)], fill=(int(40 + 150 * t), int(90 + 120 * t), int(200 - 60 * t)))
    sun = (int(width * 0.75), int(height * 0.28))
    r = height // 9
    draw.ellipse([sun[0] - r, sun[1] - r, sun[0] + r, sun[1] + r], fill=(255, 214, 90))
    for i, colour in enumerate([(60, 90, 70), (40, 70, 55)]):
        points = [(0, height)]
        for x in range(0, width + 1, max(1, width // 40)):
            wave = math.sin(x / width * math.pi * (3 + i) + i) * height * 0.08
            points.append((x, int(height * (0.62 + 0.1 * i) + wave)))
        points.append((width, height))
        draw.polygon(points, fill=colour)
    font = ImageFont.load_default(size=max(12, height // 12))
    draw.text((width // 20, height // 20), label, fill=(255, 255, 255), font=font)
    # An arrow pointing up, so a wrongly rotated thumbnail is obvious at a glance.
    ax, ay = width // 10, height // 2
    draw.polygon(
        [(ax, ay - height // 8), (ax - height // 16, ay), (ax + height // 16, ay)], fill=(230, 60, 60)
    )
    draw.rectangle([ax - height // 40, ay, ax + height // 40, ay + height // 8], fill=(230, 60, 60))
    return img


def make_photo(path: Path, width: int = 1224, height: int = 816) -> Path:
    """A photo-like JPEG (1224x816 is 1.0 MP), as the benchmarks upload."""
    _scene(width, height, f"{width}x{height}").save(path, "JPEG", quality=88)
    return path


def generate(out_dir: Path) -> list[Path]:
    """Write the sample set into `out_dir` and return the files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []

    landscape = out_dir / "landscape.jpg"
    _scene(1600, 1067, "landscape 1600x1067").save(landscape, "JPEG", quality=88)
    files.append(landscape)

    # Stored sideways with EXIF orientation 6 ("rotate 90 CW to view"), as phones do.
    portrait = out_dir / "portrait-exif-rotated.jpg"
    upright = _scene(900, 1200, "portrait (EXIF 6)")
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 6
    upright.transpose(Image.Transpose.ROTATE_90).save(portrait, "JPEG", quality=88, exif=exif.tobytes())
    files.append(portrait)

    logo = out_dir / "logo-alpha.png"
    rgba = Image.new("RGBA", (800, 800), (0, 0, 0, 0))
    d = ImageDraw.Draw(rgba)
    d.ellipse([50, 50, 750, 750], fill=(30, 120, 220, 255))
    d.ellipse([250, 250, 550, 550], fill=(255, 255, 255, 0))
    d.text((40, 20), "alpha", fill=(200, 40, 40, 255), font=ImageFont.load_default(size=64))
    rgba.save(logo, "PNG")
    files.append(logo)

    webp = out_dir / "sunset.webp"
    _scene(1280, 720, "webp 1280x720").save(webp, "WEBP", quality=80)
    files.append(webp)

    gif = out_dir / "palette.gif"
    _scene(640, 480, "gif palette").convert("P", palette=Image.Palette.ADAPTIVE, colors=64).save(gif, "GIF")
    files.append(gif)

    if shutil.which("ffmpeg"):
        files.append(make_video(out_dir / "clip.mp4"))
    return files


def make_video(
    path: Path,
    *,
    width: int = 1280,
    height: int = 720,
    seconds: float = 3.0,
    rotate: int = 0,
    noise: int = 0,
    crf: int = 30,
) -> Path:
    """An H.264/AAC test clip (moving pattern, a tone) made by ffmpeg's own generators. `noise`
    adds camera-like grain, which raises the bit rate and the cost of decoding it."""
    tmp = path.with_name(f".{path.name}.tmp.mp4")
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate=25:duration={seconds}",
            "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
            *(["-vf", f"noise=alls={noise}:allf=t"] if noise else []),
            "-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf), "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-b:a", "64k", "-shortest", "-movflags", "+faststart", str(tmp),
        ],
        check=True,
    )  # fmt: skip
    if rotate:
        # Phones store portrait video as landscape pixels plus a rotation in the container.
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-i", str(tmp), "-c", "copy",
             "-metadata:s:v:0", f"rotate={rotate}", str(path)],
            check=True,
        )  # fmt: skip
        tmp.unlink()
    else:
        tmp.replace(path)
    return path
