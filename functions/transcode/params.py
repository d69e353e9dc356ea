"""Transcode parameters: one model per kind, chosen by `kind` (default `mp4`). A parameter that
means nothing for the kind (heights for a poster, say) is an error, not silently ignored."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, RootModel, field_validator, model_validator

from functions import _ffmpeg
from functions.spec import Params

Speed = Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow"]


class _Common(Params):
    """What every kind shares: how much of the machine one run may take."""

    threads: int = Field(default=2, ge=1, le=16)
    wall_seconds: float = Field(
        default=1800,
        gt=0,
        description="Kill ffmpeg after this long.",
        json_schema_extra={"ceiling": "time_limit"},
    )
    cpu_seconds: int = Field(default=3600, gt=0, json_schema_extra={"ceiling": "cpu_time"})
    max_output_bytes: int = Field(default=4 * 1024**3, gt=0, json_schema_extra={"ceiling": "max_bytes"})

    def limits(self) -> _ffmpeg.Limits:
        return _ffmpeg.Limits(self.wall_seconds, self.cpu_seconds, self.max_output_bytes, self.threads)


class _WithAudio(_Common):
    audio_codec: Literal["aac", "mp3"] = "aac"
    audio_kbps: int = Field(default=128, ge=32, le=512)


class _WithHeights(_WithAudio):
    heights: list[int] = Field(default=[1080, 720, 480, 360], min_length=1, max_length=6)
    speed: Speed = "veryfast"

    @field_validator("heights")
    @classmethod
    def _even_heights(cls, heights: list[int]) -> list[int]:
        for h in heights:
            if h < 32 or h > 4320 or h % 2:
                raise ValueError(f"height {h} must be even and within 32..4320")
        return sorted(set(heights), reverse=True)


class _AtTime(_Common):
    at: str = Field(default="10%", description="Poster time: seconds ('3.5') or percent ('10%').")

    @field_validator("at")
    @classmethod
    def _time(cls, at: str) -> str:
        if not re.fullmatch(r"\d+(\.\d+)?%?", at.strip()):
            raise ValueError("use seconds ('3.5') or a percentage ('10%')")
        return at.strip()


class LadderParams(_WithHeights):
    """`mp4` (H.264/AAC) or `webm` (VP9/Opus) renditions, one file per height."""

    kind: Literal["mp4", "webm"] = "mp4"
    crf: int = Field(default=23, ge=0, le=51, description="H.264 quality (VP9 uses crf + 10).")
    only_when_needed: bool = Field(default=True, description="Remux instead of re-encoding a matching input.")


class HlsParams(_WithHeights):
    """The ladder as HLS, in one ffmpeg pass."""

    kind: Literal["hls"]
    segment_seconds: float = Field(default=4.0, ge=1, le=30)


class AudioParams(_WithAudio):
    """The audio track alone."""

    kind: Literal["audio"]


class PosterParams(_AtTime):
    """One representative frame as a JPEG."""

    kind: Literal["poster"]
    poster_width: int = Field(default=1280, ge=16, le=4096)


class PreviewParams(_AtTime):
    """A short silent animation."""

    kind: Literal["preview"]
    preview_seconds: float = Field(default=3.0, gt=0, le=30)
    preview_width: int = Field(default=320, ge=16, le=1280)
    preview_fps: int = Field(default=10, ge=1, le=30)
    preview_format: Literal["webp", "gif"] = "webp"


class ProbeParams(_Common):
    """Container and stream facts as JSON."""

    kind: Literal["probe"]


KindParams = LadderParams | HlsParams | AudioParams | PosterParams | PreviewParams | ProbeParams


class TranscodeParams(RootModel[Annotated[KindParams, Field(discriminator="kind")]]):
    """The parameters of one transcode invocation: `kind` picks the model."""

    model_config = {"frozen": True}

    @model_validator(mode="before")
    @classmethod
    def _default_kind(cls, data: Any) -> Any:
        if isinstance(data, dict) and "kind" not in data:
            return {**data, "kind": "mp4"}
        return data
