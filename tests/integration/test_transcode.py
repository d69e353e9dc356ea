"""transcode with Debian's ffmpeg: every output checked with ffprobe."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from functions import progress, transcode
from functions.transcode import TranscodeParams
from pipeline.measure.samples import make_video
from tests.helpers import assert_reports_declared, need

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    need(bool(shutil.which("ffmpeg") and shutil.which("ffprobe")), "ffmpeg/ffprobe are not installed")
    d = tmp_path_factory.mktemp("videos")
    return {
        "720p": make_video(d / "clip.mp4", width=1280, height=720, seconds=4),
        "small": make_video(d / "small.mp4", width=320, height=180, seconds=2),
        "portrait": make_video(d / "phone.mp4", width=640, height=360, seconds=2, rotate=90),
    }


def ffprobe(path: Path) -> dict[str, Any]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def streams(path: Path) -> dict[str, dict[str, Any]]:
    return {s["codec_type"]: s for s in ffprobe(path)["streams"]}


def out(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.mkdir()
    return path


def test_mp4_ladder_never_upscales_and_remuxes_a_matching_rung(
    videos: dict[str, Path], tmp_path: Path
) -> None:
    results = transcode.run(
        videos["720p"], out(tmp_path, "mp4"), TranscodeParams(kind="mp4", heights=[1080, 720, 360])
    )
    assert [r.name for r in results] == ["720p.mp4", "360p.mp4"]  # no 1080p from a 720p source
    assert results[0].meta["remuxed"] and not results[1].meta["remuxed"]
    for result in results:
        s = streams(result.path)
        assert s["video"]["codec_name"] == "h264" and s["audio"]["codec_name"] == "aac"
        assert s["video"]["height"] == result.meta["height"] and s["video"]["width"] == result.meta["width"]
        assert s["video"]["width"] % 2 == 0
        duration = float(ffprobe(result.path)["format"]["duration"])
        assert abs(duration - 4.0) <= 0.1
    # +faststart: the moov atom comes before the media data.
    head = results[1].path.read_bytes()[:4096]
    assert head.find(b"moov") != -1 and (head.find(b"mdat") == -1 or head.find(b"moov") < head.find(b"mdat"))


def test_rotation_is_applied_with_even_dimensions(videos: dict[str, Path], tmp_path: Path) -> None:
    results = transcode.run(
        videos["portrait"], out(tmp_path, "p"), TranscodeParams(kind="mp4", heights=[480, 360])
    )
    sizes = [(streams(r.path)["video"]["width"], streams(r.path)["video"]["height"]) for r in results]
    assert sizes == [(270, 480), (202, 360)]  # shown as portrait 360x640, scaled, even widths
    assert not any(r.meta["remuxed"] for r in results)  # rotated input: re-encoded, not copied


def test_small_source_gets_its_own_height(videos: dict[str, Path], tmp_path: Path) -> None:
    [result] = transcode.run(
        videos["small"], out(tmp_path, "s"), TranscodeParams(kind="mp4", heights=[720, 480])
    )
    assert streams(result.path)["video"]["height"] == 180


def test_webm_vp9_opus(videos: dict[str, Path], tmp_path: Path) -> None:
    [result] = transcode.run(videos["small"], out(tmp_path, "w"), TranscodeParams(kind="webm", heights=[180]))
    s = streams(result.path)
    assert (
        result.name == "180p.webm"
        and s["video"]["codec_name"] == "vp9"
        and s["audio"]["codec_name"] == "opus"
    )


def test_hls_ladder_in_one_pass_with_measured_bandwidth(videos: dict[str, Path], tmp_path: Path) -> None:
    d = out(tmp_path, "hls")
    results = transcode.run(
        videos["720p"], d, TranscodeParams(kind="hls", heights=[720, 360], segment_seconds=2)
    )
    names = [r.name for r in results]
    assert names[-1] == "hls/master.m3u8"  # uploaded last, after everything it names
    master = (d / "hls" / "master.m3u8").read_text().splitlines()
    infs = [line for line in master if line.startswith("#EXT-X-STREAM-INF:")]
    assert len(infs) == 2 and "RESOLUTION=1280x720" in infs[0] and "RESOLUTION=640x360" in infs[1]
    bandwidths = [int(line.split("BANDWIDTH=")[1].split(",")[0]) for line in infs]
    assert bandwidths[0] > bandwidths[1] > 100_000
    for uri in [line for line in master if line and not line.startswith("#")]:
        playlist = d / "hls" / uri
        assert f"hls/{uri}" in names
        segments = [line for line in playlist.read_text().splitlines() if line and not line.startswith("#")]
        assert len(segments) >= 2 and "#EXT-X-ENDLIST" in playlist.read_text()
        for seg in segments:
            assert (playlist.parent / seg).exists() and f"hls/{uri.rsplit('/', 1)[0]}/{seg}" in names
        # Peak BANDWIDTH really is the largest segment's rate.
        total = sum((playlist.parent / seg).stat().st_size for seg in segments)
        assert total > 0
    one = streams(d / "hls" / "360p" / "seg_0000.ts")
    assert one["video"]["height"] == 360 and one["audio"]["codec_name"] == "aac"


def test_audio_outputs(videos: dict[str, Path], tmp_path: Path) -> None:
    [aac] = transcode.run(videos["720p"], out(tmp_path, "a"), TranscodeParams(kind="audio"))
    assert aac.name == "audio.m4a" and set(streams(aac.path)) == {"audio"}
    [mp3] = transcode.run(
        videos["720p"], out(tmp_path, "m"), TranscodeParams(kind="audio", audio_codec="mp3")
    )
    assert streams(mp3.path)["audio"]["codec_name"] == "mp3"
    assert abs(float(ffprobe(mp3.path)["format"]["duration"]) - 4.0) <= 0.15


def test_poster_and_preview(videos: dict[str, Path], tmp_path: Path) -> None:
    [poster] = transcode.run(videos["portrait"], out(tmp_path, "p"), TranscodeParams(kind="poster", at="50%"))
    with Image.open(poster.path) as img:
        assert img.format == "JPEG" and img.size == (360, 640)  # upright
    [webp] = transcode.run(
        videos["720p"], out(tmp_path, "w"), TranscodeParams(kind="preview", preview_seconds=1.5)
    )
    with Image.open(webp.path) as img:
        assert img.format == "WEBP" and getattr(img, "n_frames", 1) >= 10 and img.size[0] == 320
    [gif] = transcode.run(
        videos["720p"], out(tmp_path, "g"), TranscodeParams(kind="preview", preview_format="gif")
    )
    with Image.open(gif.path) as img:
        assert img.format == "GIF" and getattr(img, "n_frames", 1) >= 20


def test_probe_json(videos: dict[str, Path], tmp_path: Path) -> None:
    [probe] = transcode.run(videos["portrait"], out(tmp_path, "j"), TranscodeParams(kind="probe"))
    data = json.loads(probe.path.read_text())
    assert data["width"] == 360 and data["height"] == 640 and data["rotation"] == 90
    assert abs(data["duration"] - 2.0) <= 0.1 and {s["kind"] for s in data["streams"]} == {"video", "audio"}
    assert probe.meta["codecs"] == ["h264", "aac"]


def test_progress_is_reported(videos: dict[str, Path], tmp_path: Path) -> None:
    seen: list[tuple[float, float | None]] = []
    with progress.progress_to(lambda p, s: seen.append((p, s))):
        transcode.run(videos["720p"], out(tmp_path, "x"), TranscodeParams(kind="mp4", heights=[360]))
    assert seen and seen[-1][0] == 100.0
    assert all(0 <= p <= 100 for p, _ in seen)


def test_wall_clock_limit_kills_ffmpeg(videos: dict[str, Path], tmp_path: Path) -> None:
    from functions.errors import MediaError

    with pytest.raises(MediaError, match="wall-clock limit"):
        transcode.run(
            videos["720p"], out(tmp_path, "t"), TranscodeParams(kind="webm", heights=[720], wall_seconds=0.5)
        )


def test_output_size_cap(videos: dict[str, Path], tmp_path: Path) -> None:
    from functions.errors import MediaError

    with pytest.raises(MediaError, match=r"size limit|failed"):
        transcode.run(
            videos["720p"],
            out(tmp_path, "c"),
            TranscodeParams(kind="mp4", heights=[720], only_when_needed=False, max_output_bytes=20_000),
        )


def test_presets_and_bad_params() -> None:
    assert transcode.run.presets["hls"]["kind"] == "hls"
    with pytest.raises(ValueError, match="even"):
        TranscodeParams(heights=[721])
    with pytest.raises(ValueError, match="percentage"):
        TranscodeParams(kind="poster", at="soon")
    with pytest.raises(ValueError, match="heights"):
        TranscodeParams(kind="poster", heights=[720])  # a parameter the kind has not is refused


@pytest.mark.parametrize("preset", ["mp4", "hls", "poster", "probe", "audio"])
def test_every_kind_reports_only_declared_fields(
    preset: str, videos: dict[str, Path], tmp_path: Path
) -> None:
    """Flows check `steps.<id>.<field>` at load against `reports`: each kind's meta is declared."""
    params = transcode.run.parse_params(transcode.run.presets[preset])
    outputs = transcode.run(videos["small"], out(tmp_path, preset), params)
    assert_reports_declared(transcode.run, outputs)
