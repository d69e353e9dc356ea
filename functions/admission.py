"""Admission: what may be processed at all (the file-type allow-list and the size limits).
Runs before any function, on the downloaded file.

The type comes from magic bytes and must be on the allow-list; images are measured by Pillow
without decoding pixels; video and audio by ffprobe with the demuxer forced. Only video and audio
streams are allowed: subtitle and data streams are how playlists hide inside containers.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from functions import _ffmpeg, imaging
from functions._media import sniff
from functions.errors import MediaError, Rejected, UnsupportedMedia

DEFAULT_ALLOW = [
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/webp",
    "image/bmp",
    "image/tiff",
    "video/mp4",
    "video/quicktime",
    "video/webm",
    "video/x-msvideo",
    "audio/mpeg",
    "audio/wav",
    "audio/ogg",
    "audio/flac",
]


DEFAULT_QUARANTINE_PREFIX = "quarantine/"


class ScreeningPolicy(BaseModel):
    """The `screening:` section of pipeline.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allow: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ALLOW), description="Media types by content."
    )
    max_bytes: int = Field(default=2 * 1024**3, gt=0)
    max_pixels: int = Field(
        default=50_000_000, gt=0, description="Width x height of an image or video frame."
    )
    max_dimension: int = Field(default=8192, gt=0, description="Longest edge, in pixels.")
    max_duration: float = Field(default=4 * 3600, gt=0, description="Seconds of video or audio.")
    max_streams: int = Field(default=4, ge=1)
    max_frames: int = Field(default=2000, ge=1, description="Frames of an animated image.")
    max_total_pixels: int = Field(
        default=500_000_000, gt=0, description="Pixels of all the frames or pages of one image together."
    )
    # Two different things are kept apart: a *rejected* object never entered (its type or size
    # is not admitted) and a copy is kept only when asked; a *quarantined* upload was admitted,
    # then blocked by a screen step or a reviewer, and is always moved or copied away.
    rejected_prefix: str | None = Field(
        default=None,
        description="Keep a copy of each object the admission check rejects under this prefix "
        "(same bucket), with the reason as metadata. Unset: none kept.",
    )
    quarantine_prefix: str = Field(
        default=DEFAULT_QUARANTINE_PREFIX,
        min_length=1,
        description="Where uploads a screening step blocks (or a reviewer rejects) are quarantined.",
    )
    on_block: Literal["move", "copy"] = Field(
        default="move",
        description="An upload a screening step blocks (or a reviewer rejects): move = copied under "
        "the quarantine prefix, then deleted; copy = copied there, the original kept and tagged "
        "pipeline-screen=blocked.",
    )
    clamd: str | None = Field(
        default=None,
        description="Scan uploads for malware in the screen function: clamd's socket, "
        "unix:///run/clamav/clamd.ctl or tcp://host:3310.",
    )


@dataclass(frozen=True)
class MediaInfo:
    """What screening learned; functions and the ledger can use it without probing again."""

    media_type: str
    size: int
    width: int | None = None
    height: int | None = None
    duration: float | None = None
    frames: int | None = None
    has_audio: bool = False
    rotation: int = 0  # degrees the container asks players to turn the video
    probe: _ffmpeg.Probe | None = field(default=None, compare=False)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "media_type": self.media_type,
            "size": self.size,
            "has_audio": self.has_audio,
            "rotation": self.rotation,
        }
        for name in ("width", "height", "duration", "frames"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out


def admit(path: Path, policy: ScreeningPolicy) -> MediaInfo:
    """Return what `path` is, or raise `Rejected` with the reason it may not be processed."""
    size = path.stat().st_size
    if size == 0:
        raise Rejected("empty object (0 bytes)")
    if size > policy.max_bytes:
        raise Rejected(f"{size} bytes is over the limit of {policy.max_bytes} bytes")
    media_type = sniff(path)
    if not any(fnmatch.fnmatchcase(media_type, pattern) for pattern in policy.allow):
        raise UnsupportedMedia(f"content is {media_type}, which is not allowed (screening.allow)")
    if media_type.startswith("image/"):
        return _admit_image(path, media_type, size, policy)
    return _admit_av(path, media_type, size, policy)


def _check_dimensions(width: int, height: int, policy: ScreeningPolicy) -> None:
    if width * height > policy.max_pixels:
        raise Rejected(f"{width}x{height} is {width * height} pixels, over the limit of {policy.max_pixels}")
    if max(width, height) > policy.max_dimension:
        raise Rejected(f"{width}x{height} has an edge over the limit of {policy.max_dimension} px")


def _admit_image(path: Path, media_type: str, size: int, policy: ScreeningPolicy) -> MediaInfo:
    try:
        return _measure_image(path, media_type, size, policy)
    except Rejected:
        raise
    except MediaError as exc:  # a bomb or an undecodable header: refused, never retried
        raise Rejected(str(exc)) from exc


def _measure_image(path: Path, media_type: str, size: int, policy: ScreeningPolicy) -> MediaInfo:
    # Opening reads the header only: dimensions are checked before a single pixel is decoded.
    with imaging.open_image(path, max_pixels=policy.max_pixels) as img:
        width, height = img.size
        _check_dimensions(width, height, policy)
        frames = int(getattr(img, "n_frames", 1))
        if frames > policy.max_frames:
            raise Rejected(f"{frames} frames is over the limit of {policy.max_frames}")
        # Every page or frame, not only the first: a multi-page TIFF with a tiny first page, or a
        # GIF whose later frames grow, must not reach a decoder that reads them all. Seeking reads
        # a frame's header; its pixels are decoded (if at all) only on the way to the next one.
        total = 0
        for index in range(frames):
            if index:
                img.seek(index)
            frame_w, frame_h = _frame_extent(img)
            try:
                _check_dimensions(frame_w, frame_h, policy)
            except Rejected as exc:
                raise Rejected(f"frame or page {index + 1} of {frames}: {exc}") from exc
            total += frame_w * frame_h
            if total > policy.max_total_pixels:
                raise Rejected(
                    f"{index + 1} of its {frames} frames or pages already hold {total} pixels, over the "
                    f"limit of {policy.max_total_pixels} (screening.max_total_pixels)"
                )
    return MediaInfo(media_type=media_type, size=size, width=width, height=height, frames=frames)


def _frame_extent(img: Image.Image) -> tuple[int, int]:
    """The size of the current frame, including any part of it drawn beyond the canvas."""
    width, height = img.size
    for tile in getattr(img, "tile", None) or []:
        width, height = max(width, tile.extents[2]), max(height, tile.extents[3])
    return width, height


def _admit_av(path: Path, media_type: str, size: int, policy: ScreeningPolicy) -> MediaInfo:
    try:
        probed = _ffmpeg.probe(path, media_type)
    except MediaError as exc:
        raise Rejected(f"cannot be read as {media_type}: {exc}") from exc
    if len(probed.streams) > policy.max_streams:
        raise Rejected(f"{len(probed.streams)} streams is over the limit of {policy.max_streams}")
    odd = sorted({s.kind for s in probed.streams} - {"video", "audio"})
    if odd:
        raise Rejected(f"contains {', '.join(odd)} streams; only video and audio are allowed")
    if not probed.streams:
        raise Rejected("contains no video or audio stream")
    if probed.duration <= 0:
        raise Rejected("has no readable duration")
    if probed.duration > policy.max_duration:
        raise Rejected(f"{probed.duration:.0f}s is over the duration limit of {policy.max_duration:g}s")
    # Every video stream: a decoder may be asked for any of them, not only the first.
    for stream in probed.streams:
        if stream.kind == "video" and stream.width and stream.height:
            try:
                _check_dimensions(stream.width, stream.height, policy)
            except Rejected as exc:
                raise Rejected(f"video stream {stream.index}: {exc}") from exc
    dims = probed.display_size()
    return MediaInfo(
        media_type=media_type,
        size=size,
        width=dims[0] if dims else None,
        height=dims[1] if dims else None,
        duration=probed.duration,
        has_audio=probed.audio is not None,
        rotation=probed.video.rotation if probed.video else 0,
        probe=probed,
    )
