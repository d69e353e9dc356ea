"""What the transcode kinds share: the heights to make, the widths they give, the audio encoder's
arguments, and the check that ffmpeg read the whole input."""

from __future__ import annotations

from typing import Any

from functions import _ffmpeg
from functions.errors import MediaError
from functions.transcode.params import _WithAudio


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


def audio_args(params: _WithAudio) -> dict[str, Any]:
    codec = "aac" if params.audio_codec == "aac" else "libmp3lame"
    return {"acodec": codec, "audio_bitrate": f"{params.audio_kbps}k", "ac": 2}
