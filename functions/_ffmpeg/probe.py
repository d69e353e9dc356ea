"""Container and stream facts from ffprobe, run in the sandbox with the demuxer forced."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from functions._ffmpeg.sandbox import Limits, binary, demuxer_for, run_sandboxed
from functions.errors import MediaError


@dataclass(frozen=True)
class Stream:
    index: int
    kind: str  # video | audio | subtitle | data | attachment
    codec: str
    width: int | None = None
    height: int | None = None
    rotation: int = 0
    fps: float | None = None
    pix_fmt: str | None = None
    bit_rate: int | None = None
    channels: int | None = None
    sample_rate: int | None = None


@dataclass(frozen=True)
class Probe:
    format_name: str
    duration: float
    bit_rate: int | None
    size: int
    streams: list[Stream] = field(default_factory=list)

    @property
    def video(self) -> Stream | None:
        return next((s for s in self.streams if s.kind == "video"), None)

    @property
    def audio(self) -> Stream | None:
        return next((s for s in self.streams if s.kind == "audio"), None)

    def display_size(self) -> tuple[int, int] | None:
        """Width and height as shown, i.e. after the rotation the container asks for."""
        v = self.video
        if v is None or not v.width or not v.height:
            return None
        return (v.height, v.width) if v.rotation % 180 else (v.width, v.height)

    def as_json(self) -> dict[str, Any]:
        size = self.display_size()
        return {
            "format": self.format_name,
            "duration": round(self.duration, 3),
            "bit_rate": self.bit_rate,
            "size": self.size,
            "width": size[0] if size else None,
            "height": size[1] if size else None,
            "rotation": self.video.rotation if self.video else 0,
            "streams": [s.__dict__ for s in self.streams],
        }


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _rotation(stream: dict[str, Any]) -> int:
    rotate = _int((stream.get("tags") or {}).get("rotate"))
    if rotate is None:
        for side in stream.get("side_data_list") or []:
            if "rotation" in side:
                rotate = _int(side["rotation"])
    return (rotate or 0) % 360


def _fps(rate: str | None) -> float | None:
    if not rate or "/" not in rate:
        return None
    num, den = rate.split("/", 1)
    try:
        return float(num) / float(den) if float(den) else None
    except ValueError:
        return None


_probe_cache: dict[tuple[str, int, int, str], Probe] = {}


def clear_probe_cache() -> None:
    """Forget earlier probes (a benchmark's runs each pay for their own, as a first call would)."""
    _probe_cache.clear()


def probe(path: Path, media_type: str, limits: Limits | None = None) -> Probe:
    """Read container and stream facts with ffprobe, the demuxer forced from the magic bytes.

    Results are cached by (path, size, mtime): screening and then the function probe the same
    downloaded file in the same worker process, and ffprobe costs ~0.1 s just to start."""
    stat = path.stat()
    cache_key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, media_type)
    if cache_key in _probe_cache:
        return _probe_cache[cache_key]
    result = _probe(path, media_type, limits or Limits(wall_seconds=30, cpu_seconds=30))
    if len(_probe_cache) > 64:
        _probe_cache.clear()
    _probe_cache[cache_key] = result
    return result


def _probe(path: Path, media_type: str, limits: Limits) -> Probe:
    argv = [
        binary("ffprobe"),
        "-v", "error",
        "-protocol_whitelist", "file",
        "-f", demuxer_for(media_type),
        "-show_format", "-show_streams",
        "-of", "json",
        path.name,
    ]  # fmt: skip
    result = run_sandboxed(argv, path.parent, limits)
    try:
        data = json.loads(result.stdout)
    except json.JSONDecodeError as exc:
        raise MediaError("ffprobe returned no readable metadata") from exc
    fmt = data.get("format") or {}
    streams = [
        Stream(
            index=int(s.get("index", i)),
            kind=str(s.get("codec_type") or "data"),
            codec=str(s.get("codec_name") or "unknown"),
            width=_int(s.get("width")),
            height=_int(s.get("height")),
            rotation=_rotation(s),
            fps=_fps(s.get("avg_frame_rate")),
            pix_fmt=s.get("pix_fmt"),
            bit_rate=_int(s.get("bit_rate")),
            channels=_int(s.get("channels")),
            sample_rate=_int(s.get("sample_rate")),
        )
        for i, s in enumerate(data.get("streams") or [])
    ]
    try:
        duration = float(fmt.get("duration") or 0.0)
    except ValueError:
        duration = 0.0
    return Probe(
        format_name=str(fmt.get("format_name") or ""),
        duration=duration,
        bit_rate=_int(fmt.get("bit_rate")),
        size=_int(fmt.get("size")) or path.stat().st_size,
        streams=streams,
    )
