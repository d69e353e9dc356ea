"""`pipeline bench functions`: the media functions against their baselines, side by side.

Each comparison runs its contenders interleaved (A, B, A, B, ...) in one process on the same input,
so machine noise hits both alike; the figure that matters is the ratio of the medians.
"""

from __future__ import annotations

import logging
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

from functions import _ffmpeg, thumbnail, transcode
from functions.thumbnail import ThumbnailParams
from functions.transcode import TranscodeParams
from pipeline.measure.docs import DocSection, machine
from pipeline.measure.samples import make_video

SIZES = [1024, 512, 256]
SECTION = DocSection("bench:functions", "Media functions against their baselines")


@dataclass
class Row:
    what: str
    contender: str
    baseline: str
    contender_s: float
    baseline_s: float
    goal: str

    @property
    def ratio(self) -> float:
        return self.contender_s / self.baseline_s


def _timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def side_by_side(a: Callable[[], object], b: Callable[[], object], repeat: int) -> tuple[float, float]:
    a(), b()  # warm caches and imports; not counted
    times_a, times_b = [], []
    for _ in range(repeat):
        times_a.append(_timed(a))
        times_b.append(_timed(b))
    return statistics.median(times_a), statistics.median(times_b)


def photo(path: Path, width: int = 4000, height: int = 3000) -> Path:
    """A 12 MP JPEG with camera-like detail (noise, edges, gradients), so it encodes like a photo."""
    base = Image.effect_noise((width // 4, height // 4), 40).convert("RGB").resize((width, height))
    draw = ImageDraw.Draw(base)
    for i in range(0, width, 97):
        draw.line([(i, 0), (width - i, height)], fill=(i % 255, 120, 255 - i % 255), width=7)
    base.filter(ImageFilter.SMOOTH).save(path, "JPEG", quality=90)
    return path


def bench_thumbnail(tmp: Path, repeat: int) -> list[Row]:
    src = photo(tmp / "12mp.jpg")

    def ours() -> None:
        out = tmp / "ours"
        out.mkdir(exist_ok=True)
        thumbnail.run(src, out, ThumbnailParams(sizes=SIZES))

    def pillow_one_size() -> None:
        with Image.open(src) as img:
            img.thumbnail((SIZES[0], SIZES[0]))
            img.save(tmp / "pillow.jpg", "JPEG", quality=82)

    ours_s, pillow_s = side_by_side(ours, pillow_one_size, repeat)
    rows = [
        Row("12 MP JPEG -> 3 JPEG thumbnails (1024/512/256)", "thumbnail, 3 sizes",
            "Pillow Image.thumbnail, 1 size", ours_s, pillow_s, "<= 1.3x"),
    ]  # fmt: skip
    try:
        import pyvips  # noqa: PLC0415 - optional: pip install -e ".[bench]"
    except ImportError:
        return rows

    def vips_three() -> None:
        for size in SIZES:
            pyvips.Image.thumbnail(str(src), size).write_to_file(str(tmp / f"vips{size}.jpg"), Q=82)

    ours_s, vips_s = side_by_side(ours, vips_three, repeat)
    rows.append(
        Row("same, time per output", "thumbnail, per output", "pyvips thumbnail, per output",
            ours_s / 3, vips_s / 3, "< 1.0x")
    )  # fmt: skip
    return rows


def bench_screen(tmp: Path, repeat: int) -> list[Row]:
    """The screen function on a 12 MP JPEG against a 1,000-entry hash list, with the nudity
    classifier when the [moderation] extra is installed (its model loaded beforehand, as a worker's
    warm-up does), and without it; each beside the thumbnail function on the same file."""
    from functions import assets, nsfw, perceptual, screen  # noqa: PLC0415

    src = photo(tmp / "12mp-screen.jpg")
    hash_list = tmp / "list.txt"
    listed = [
        perceptual.format_entry(perceptual.PerceptualHash(n * 7919 + 1, 100), f"n{n}") for n in range(1000)
    ]
    hash_list.write_text("\n".join(listed) + "\n")
    ref = "s3://bench/.pipeline/hashes/bench.txt"
    out = tmp / "screen-out"
    out.mkdir(exist_ok=True)
    classifier = nsfw.preload()

    def screening(params: screen.ScreenParams) -> Callable[[], None]:
        def run() -> None:
            with assets.provided({ref: hash_list}):
                screen.run(src, out, params)

        return run

    def thumbnails() -> None:
        thumb_out = tmp / "ours"
        thumb_out.mkdir(exist_ok=True)
        thumbnail.run(src, thumb_out, ThumbnailParams(sizes=SIZES))

    rows = []
    both = "hash + nudity classifier" if classifier else "hash; nudity classifier NOT INSTALLED"
    full_s, thumb_s = side_by_side(screening(screen.ScreenParams(hash_lists=[ref])), thumbnails, repeat)
    rows.append(
        Row(f"12 MP JPEG -> screen ({both}, one reduced decode, 1,000-entry hash list)", "screen",
            "thumbnail, 3 sizes, same file", full_s, thumb_s, "screen <= 150 ms")
    )  # fmt: skip
    if classifier:
        hash_s, thumb_s = side_by_side(
            screening(screen.ScreenParams(hash_lists=[ref], nsfw=False)), thumbnails, repeat
        )
        rows.append(
            Row("same, hash only (nsfw: false)", "screen, hash only",
                "thumbnail, 3 sizes, same file", hash_s, thumb_s, "-")
        )  # fmt: skip
    return rows


def bench_video(tmp: Path, repeat: int) -> list[Row]:
    clean = make_video(tmp / "10s720p.mp4", width=1280, height=720, seconds=10)
    camera = make_video(tmp / "camera720p.mp4", width=1280, height=720, seconds=10, noise=8, crf=20)

    def run(src: Path, kind: str, heights: list[int], name: str) -> Callable[[], None]:
        def go() -> None:
            _ffmpeg.clear_probe_cache()  # each run pays for its own probe, as a first call would
            out = tmp / name
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            # Always an encode, never a remux of a matching input: the comparison is encode vs encode.
            remux = {"only_when_needed": False} if kind == "mp4" else {}
            params = TranscodeParams.model_validate({"kind": kind, "heights": heights, **remux})
            transcode.run(src, out, params)

        return go

    rows = []
    for src, label in ((clean, "clean"), (camera, "camera-like grain")):
        one_pass = run(src, "hls", [720, 360], "hls1")
        first, second = run(src, "hls", [720], "hls720"), run(src, "hls", [360], "hls360")

        def separate(first: Callable[[], None] = first, second: Callable[[], None] = second) -> None:
            first()
            second()

        one_s, two_s = side_by_side(one_pass, separate, repeat)
        rows.append(
            Row(f"2-rung HLS ladder (720p+360p) of 10 s 720p, {label} ({_mbps(src)} Mbit/s)",
                "one pass (decode once, split)", "two separate encodes", one_s, two_s,
                "<= 0.71x (1.4x faster)")
        )  # fmt: skip

    bare_out = tmp / "bare.mp4"
    bare = [
        "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-threads", "2", "-y",
        "-f", "mov", "-protocol_whitelist", "file", "-i", str(clean),
        "-filter_complex", "[0:v]split=1[s0];[s0]scale=-2:720[v]", "-map", "[v]", "-map", "0:a",
        "-ac", "2", "-b:a", "128k", "-c:a", "aac", "-c:v", "libx264", "-crf", "23", "-movflags", "+faststart",
        "-pix_fmt", "yuv420p", "-preset", "veryfast", "-profile:v", "high", "-threads", "2", str(bare_out),
    ]  # fmt: skip
    ours_s, bare_s = side_by_side(
        run(clean, "mp4", [720], "mp4"), lambda: subprocess.run(bare, check=True), repeat
    )
    rows.append(
        Row("10 s 720p -> H.264/AAC 720p", "transcode function (probe + ffmpeg)",
            "bare ffmpeg command line", ours_s, bare_s, "< 1.05x")
    )  # fmt: skip
    return rows


def _mbps(path: Path, seconds: float = 10.0) -> int:
    return round(path.stat().st_size * 8 / seconds / 1e6)


def run_function_benchmarks(repeat: int = 5) -> list[Row]:
    logging.getLogger("pyvips").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="pipeline-bench-") as tmp:
        rows = bench_thumbnail(Path(tmp), repeat)
        rows += bench_screen(Path(tmp), repeat)
        if shutil.which("ffmpeg"):
            rows += bench_video(Path(tmp), repeat)
    return rows


def render(rows: list[Row], command: str) -> str:
    return SECTION.render(
        f"Command: `{command}`. Machine: {machine()}; medians of interleaved runs.",
        ["task", "contender", "baseline", "contender", "baseline", "ratio", "goal"],
        [
            (
                r.what,
                r.contender,
                r.baseline,
                f"{r.contender_s * 1000:.0f} ms",
                f"{r.baseline_s * 1000:.0f} ms",
                f"{r.ratio:.2f}x",
                r.goal,
            )
            for r in rows
        ],
    )
