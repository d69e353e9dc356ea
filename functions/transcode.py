"""Transcode: video and audio renditions with ffmpeg (commands built by ffmpeg-python).

Usage (pipeline.yaml), one invocation per preset so each runs and scales on its own:

    - function: transcode
      preset: hls                # built-in: mp4, webm, hls, audio, poster, preview, probe
      params: {heights: [720, 360]}

Kinds:
- `mp4`: H.264/AAC ladder (`<height>p.mp4`), never upscaled, even dimensions, rotation applied,
  `+faststart`. A rung that the input already matches (H.264 yuv420p + AAC, same height, no
  rotation) is remuxed, not re-encoded.
- `webm`: VP9/Opus ladder (`<height>p.webm`).
- `hls`: the ladder in ONE ffmpeg pass (decode once, split), `hls/<height>p/index.m3u8` + segments,
  and `hls/master.m3u8` with BANDWIDTH/AVERAGE-BANDWIDTH measured from the segments written.
- `audio`: `audio.m4a` (AAC) or `audio.mp3`.
- `poster`: `poster.jpg` at `at` seconds or percent, the most representative of the next frames
  (so a fade from black does not give a black poster).
- `preview`: a short silent animated `preview.webp` or `preview.gif`.
- `probe`: `probe.json` (duration, streams, codecs, dimensions, rotation, bit rate).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

import ffmpeg
from pydantic import Field, field_validator

from functions import _ffmpeg
from functions._media import sniff
from functions.errors import MediaError
from functions.spec import Output, Params, media_function

Kind = Literal["mp4", "webm", "hls", "audio", "poster", "preview", "probe"]

# Video bit rates for HLS rungs (kbit/s), by height; other heights use the nearest.
HLS_KBPS = {2160: 14000, 1440: 8000, 1080: 5000, 720: 2800, 540: 1800, 480: 1400, 360: 800, 240: 400}

PRESETS: dict[str, dict[str, Any]] = {
    "mp4": {"kind": "mp4", "heights": [1080, 720, 480, 360]},
    "webm": {"kind": "webm", "heights": [720]},
    "hls": {"kind": "hls", "heights": [720, 360]},
    "audio": {"kind": "audio"},
    "mp3": {"kind": "audio", "audio_codec": "mp3"},
    "poster": {"kind": "poster"},
    "preview": {"kind": "preview"},
    "probe": {"kind": "probe"},
}


class TranscodeParams(Params):
    kind: Kind = "mp4"
    heights: list[int] = Field(default=[1080, 720, 480, 360], min_length=1, max_length=6)
    crf: int = Field(default=23, ge=0, le=51, description="H.264 quality (VP9 uses crf + 10).")
    speed: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow"] = "veryfast"
    audio_codec: Literal["aac", "mp3"] = "aac"
    audio_kbps: int = Field(default=128, ge=32, le=512)
    segment_seconds: float = Field(default=4.0, ge=1, le=30)
    only_when_needed: bool = Field(default=True, description="Remux instead of re-encoding a matching input.")
    at: str = Field(default="10%", description="Poster time: seconds ('3.5') or percent ('10%').")
    poster_width: int = Field(default=1280, ge=16, le=4096)
    preview_seconds: float = Field(default=3.0, gt=0, le=30)
    preview_width: int = Field(default=320, ge=16, le=1280)
    preview_fps: int = Field(default=10, ge=1, le=30)
    preview_format: Literal["webp", "gif"] = "webp"
    threads: int = Field(default=2, ge=1, le=16)
    wall_seconds: float = Field(default=1800, gt=0, description="Kill ffmpeg after this long.")
    cpu_seconds: int = Field(default=3600, gt=0)
    max_output_bytes: int = Field(default=4 * 1024**3, gt=0)

    @field_validator("heights")
    @classmethod
    def _even_heights(cls, heights: list[int]) -> list[int]:
        for h in heights:
            if h < 32 or h > 4320 or h % 2:
                raise ValueError(f"height {h} must be even and within 32..4320")
        return sorted(set(heights), reverse=True)

    @field_validator("at")
    @classmethod
    def _time(cls, at: str) -> str:
        if not re.fullmatch(r"\d+(\.\d+)?%?", at.strip()):
            raise ValueError("use seconds ('3.5') or a percentage ('10%')")
        return at.strip()

    def limits(self) -> _ffmpeg.Limits:
        return _ffmpeg.Limits(self.wall_seconds, self.cpu_seconds, self.max_output_bytes, self.threads)


@media_function(name="transcode", accepts=("video/*", "audio/*"), params=TranscodeParams, presets=PRESETS)
def run(src: Path, out_dir: Path, params: TranscodeParams) -> list[Output]:
    """Video/audio renditions, HLS, poster, preview and probe with ffmpeg."""
    # ffmpeg runs in the input's directory, so every path it is given must be absolute.
    src, out_dir = src.resolve(), out_dir.resolve()
    media_type = sniff(src)
    probed = _ffmpeg.probe(src, media_type)
    if params.kind == "probe":
        return _probe(probed, out_dir)
    if params.kind == "audio":
        return _audio(src, media_type, probed, out_dir, params)
    if probed.video is None:
        raise MediaError(f"{params.kind} needs a video stream; the input has only {probed.streams[0].kind}")
    if params.kind in ("mp4", "webm"):
        return _ladder(src, media_type, probed, out_dir, params)
    if params.kind == "hls":
        return _hls(src, media_type, probed, out_dir, params)
    if params.kind == "poster":
        return _poster(src, media_type, probed, out_dir, params)
    return _preview(src, media_type, probed, out_dir, params)


def rungs(probed: _ffmpeg.Probe, heights: list[int]) -> list[int]:
    """Heights to produce: never above the source; a source below every rung gets its own height."""
    size = probed.display_size()
    assert size is not None
    source_h = size[1] - size[1] % 2
    chosen = [h for h in heights if h <= source_h]
    return chosen or [source_h]


def scaled_width(probed: _ffmpeg.Probe, height: int) -> int:
    """The width ffmpeg's `scale=-2:<height>` gives: the aspect kept, rounded to an even number."""
    size = probed.display_size()
    assert size is not None
    return max(2, round(height * size[0] / (size[1] * 2)) * 2)


def check_complete(got: float, expected: float, tolerance: float = 0.5) -> None:
    """ffmpeg exits 0 on a truncated input and writes a shorter file: compare the media time it
    reached with the duration the input declares."""
    if got < expected - max(tolerance, expected * 0.02):
        raise MediaError(
            f"the input looks truncated or damaged: its header says {expected:.2f}s, "
            f"but only {got:.2f}s could be decoded"
        )


def _probe(probed: _ffmpeg.Probe, out_dir: Path) -> list[Output]:
    path = out_dir / "probe.json"
    data = probed.as_json()
    path.write_text(json.dumps(data, indent=2))
    summary = {k: data[k] for k in ("duration", "width", "height", "rotation", "bit_rate")}
    summary["codecs"] = [s.codec for s in probed.streams]
    return [Output(name=path.name, path=path, content_type="application/json", meta=summary)]


def _audio_args(params: TranscodeParams) -> dict[str, Any]:
    codec = "aac" if params.audio_codec == "aac" else "libmp3lame"
    return {"acodec": codec, "audio_bitrate": f"{params.audio_kbps}k", "ac": 2}


def _audio(
    src: Path, media_type: str, probed: _ffmpeg.Probe, out_dir: Path, params: TranscodeParams
) -> list[Output]:
    if probed.audio is None:
        raise MediaError("the input has no audio stream")
    ext, content_type = ("m4a", "audio/mp4") if params.audio_codec == "aac" else ("mp3", "audio/mpeg")
    path = out_dir / f"audio.{ext}"
    inp = _ffmpeg.safe_input(src, media_type)
    extra = {"movflags": "+faststart"} if ext == "m4a" else {}
    stream = ffmpeg.output(inp.audio, str(path), vn=None, **_audio_args(params), **extra)
    check_complete(
        _ffmpeg.run(stream, src.parent, limits=params.limits(), duration=probed.duration), probed.duration
    )
    return [Output(name=path.name, path=path, content_type=content_type)]


def _matches(probed: _ffmpeg.Probe, height: int) -> bool:
    v, a = probed.video, probed.audio
    return (
        v is not None
        and v.codec == "h264"
        and v.pix_fmt == "yuv420p"
        and v.rotation == 0
        and v.height == height
        and (a is None or a.codec == "aac")
        and probed.format_name.startswith("mov")
    )


def _ladder(
    src: Path, media_type: str, probed: _ffmpeg.Probe, out_dir: Path, params: TranscodeParams
) -> list[Output]:
    heights = rungs(probed, params.heights)
    inp = _ffmpeg.safe_input(src, media_type)
    webm = params.kind == "webm"
    encode = [h for h in heights if webm or not (params.only_when_needed and _matches(probed, h))]
    outputs: list[Any] = []
    if len(encode) < len(heights):  # the input is already this rendition: copy its streams
        copied = next(h for h in heights if h not in encode)
        streams = [inp.video] + ([inp.audio] if probed.audio else [])
        outputs.append(
            ffmpeg.output(*streams, str(out_dir / f"{copied}p.mp4"), c="copy", movflags="+faststart")
        )
    split = inp.video.filter_multi_output("split", len(encode)) if encode else None
    for i, height in enumerate(encode):
        assert split is not None
        video = split.stream(i).filter("scale", -2, height)
        streams = [video] + ([inp.audio] if probed.audio else [])
        name = str(out_dir / f"{height}p.{'webm' if webm else 'mp4'}")
        if webm:
            codec_args: dict[str, Any] = {
                "vcodec": "libvpx-vp9", "crf": min(63, params.crf + 10), "b:v": "0", "row-mt": 1,
                "deadline": "good", "cpu-used": 4, "acodec": "libopus",
                "audio_bitrate": f"{params.audio_kbps}k",
            }  # fmt: skip
        else:
            codec_args = {
                "vcodec": "libx264", "crf": params.crf, "preset": params.speed, "pix_fmt": "yuv420p",
                "profile:v": "high", "movflags": "+faststart", **_audio_args(params),
            }  # fmt: skip
        outputs.append(ffmpeg.output(*streams, name, threads=params.threads, **codec_args))
    reached = _ffmpeg.run(
        ffmpeg.merge_outputs(*outputs), src.parent, limits=params.limits(), duration=probed.duration
    )
    check_complete(reached, probed.duration)
    content_type = "video/webm" if webm else "video/mp4"
    results = []
    for height in heights:
        path = out_dir / f"{height}p.{'webm' if webm else 'mp4'}"
        meta = {"width": scaled_width(probed, height), "height": height, "remuxed": height not in encode}
        results.append(Output(name=path.name, path=path, content_type=content_type, meta=meta))
    return results


def _kbps(height: int) -> int:
    nearest = min(HLS_KBPS, key=lambda h: abs(h - height))
    return HLS_KBPS[nearest]


def _hls(
    src: Path, media_type: str, probed: _ffmpeg.Probe, out_dir: Path, params: TranscodeParams
) -> list[Output]:
    heights = rungs(probed, params.heights)
    inp = _ffmpeg.safe_input(src, media_type)
    split = inp.video.filter_multi_output("split", len(heights))
    seg = params.segment_seconds
    outputs = []
    for i, height in enumerate(heights):
        variant = out_dir / "hls" / f"{height}p"
        variant.mkdir(parents=True)
        kbps = _kbps(height)
        streams = [split.stream(i).filter("scale", -2, height)] + ([inp.audio] if probed.audio else [])
        outputs.append(
            ffmpeg.output(
                *streams,
                str(variant / "index.m3u8"),
                f="hls",
                hls_time=seg,
                hls_playlist_type="vod",
                hls_segment_filename=str(variant / "seg_%04d.ts"),
                vcodec="libx264",
                preset=params.speed,
                pix_fmt="yuv420p",
                threads=params.threads,
                # Same keyframe times in every rung, so players can switch at segment boundaries.
                force_key_frames=f"expr:gte(t,n_forced*{seg:g})",
                sc_threshold=0,
                **{"b:v": f"{kbps}k", "maxrate": f"{int(kbps * 1.2)}k", "bufsize": f"{kbps * 2}k"},
                **_audio_args(params),
            )
        )
    reached = _ffmpeg.run(
        ffmpeg.merge_outputs(*outputs), src.parent, limits=params.limits(), duration=probed.duration
    )
    check_complete(reached, probed.duration)
    results: list[Output] = []
    variants: list[tuple[int, int, str, int, int]] = []
    for height in heights:
        variant = out_dir / "hls" / f"{height}p"
        playlist = variant / "index.m3u8"
        segments = _segments(playlist)
        peak = max(size * 8 / dur for _, size, dur in segments if dur > 0)
        average = sum(s for _, s, _ in segments) * 8 / max(1e-6, sum(d for _, _, d in segments))
        first = _ffmpeg.probe(variant / segments[0][0], "video/mp2t")
        shown = first.display_size() or (0, height)
        variants.append((height, shown[0], f"{height}p/index.m3u8", int(peak), int(average)))
        for name, _, _ in segments:
            results.append(
                Output(name=f"hls/{height}p/{name}", path=variant / name, content_type="video/mp2t")
            )
        results.append(
            Output(
                name=f"hls/{height}p/index.m3u8", path=playlist, content_type="application/vnd.apple.mpegurl"
            )
        )
    master = out_dir / "hls" / "master.m3u8"
    lines = ["#EXTM3U", "#EXT-X-VERSION:3"]
    for height, width, uri, peak, average in variants:
        lines.append(
            f"#EXT-X-STREAM-INF:BANDWIDTH={peak},AVERAGE-BANDWIDTH={average},RESOLUTION={width}x{height}"
        )
        lines.append(uri)
    master.write_text("\n".join(lines) + "\n")
    # The master goes last: a player that finds it finds every playlist and segment it names.
    results.append(
        Output(
            name="hls/master.m3u8",
            path=master,
            content_type="application/vnd.apple.mpegurl",
            meta={"variants": [{"height": h, "width": w, "bandwidth": p} for h, w, _, p, _ in variants]},
        )
    )
    return results


def _segments(playlist: Path) -> list[tuple[str, int, float]]:
    """(segment file, bytes, seconds) for each segment a media playlist lists."""
    out: list[tuple[str, int, float]] = []
    duration = 0.0
    for line in playlist.read_text().splitlines():
        if line.startswith("#EXTINF:"):
            duration = float(line[len("#EXTINF:") :].split(",")[0])
        elif line and not line.startswith("#"):
            if "/" in line or line.startswith("."):
                raise MediaError(f"unexpected segment name {line!r} in {playlist.name}")
            out.append((line, (playlist.parent / line).stat().st_size, duration))
    if not out:
        raise MediaError(f"{playlist.name} lists no segments")
    return out


def _seek(probed: _ffmpeg.Probe, at: str) -> float:
    seconds = probed.duration * float(at[:-1]) / 100 if at.endswith("%") else float(at)
    return max(0.0, min(seconds, max(0.0, probed.duration - 0.5)))


def _poster(
    src: Path, media_type: str, probed: _ffmpeg.Probe, out_dir: Path, params: TranscodeParams
) -> list[Output]:
    path = out_dir / "poster.jpg"
    size = probed.display_size() or (params.poster_width, 0)
    width = min(params.poster_width, size[0]) // 2 * 2
    inp = _ffmpeg.safe_input(src, media_type, ss=f"{_seek(probed, params.at):.3f}")
    # `thumbnail` picks the most representative of the next frames, which skips black ones.
    video = inp.video.filter("thumbnail", 30).filter("scale", width, -2)
    stream = ffmpeg.output(video, str(path), vframes=1, **{"q:v": 3})
    _ffmpeg.run(stream, src.parent, limits=params.limits())
    if not path.exists():
        raise MediaError("no frame could be read for the poster")
    return [Output(name=path.name, path=path, content_type="image/jpeg", meta={"at": params.at})]


def _preview(
    src: Path, media_type: str, probed: _ffmpeg.Probe, out_dir: Path, params: TranscodeParams
) -> list[Output]:
    start = _seek(probed, params.at) if probed.duration > params.preview_seconds * 2 else 0.0
    inp = _ffmpeg.safe_input(src, media_type, ss=f"{start:.3f}", t=f"{params.preview_seconds:g}")
    video = inp.video.filter("fps", params.preview_fps).filter("scale", params.preview_width, -2)
    path = out_dir / f"preview.{params.preview_format}"
    if params.preview_format == "webp":
        stream = ffmpeg.output(video, str(path), vcodec="libwebp_anim", loop=0, quality=70, an=None)
    else:
        # A palette made from these very frames keeps a GIF from looking posterised.
        split = video.filter_multi_output("split", 2)
        palette = split.stream(0).filter("palettegen", stats_mode="diff")
        stream = ffmpeg.output(
            ffmpeg.filter([split.stream(1), palette], "paletteuse"), str(path), loop=0, an=None
        )
    _ffmpeg.run(stream, src.parent, limits=params.limits(), duration=params.preview_seconds)
    return [Output(name=path.name, path=path, content_type=f"image/{params.preview_format}")]
