"""`audio`: the audio track alone, `audio.m4a` (AAC) or `audio.mp3`; and `probe`: `probe.json`
(duration, streams, codecs, dimensions, rotation, bit rate)."""

from __future__ import annotations

import json
from pathlib import Path

import ffmpeg

from functions import _ffmpeg
from functions.errors import MediaError
from functions.spec import Output
from functions.transcode.common import audio_args, check_complete
from functions.transcode.params import AudioParams


def probe_json(probed: _ffmpeg.Probe, out_dir: Path) -> list[Output]:
    path = out_dir / "probe.json"
    data = probed.as_json()
    path.write_text(json.dumps(data, indent=2))
    summary = {k: data[k] for k in ("duration", "width", "height", "rotation", "bit_rate")}
    summary["codecs"] = [s.codec for s in probed.streams]
    return [Output(name=path.name, path=path, content_type="application/json", meta=summary)]


def audio(
    src: Path, media_type: str, probed: _ffmpeg.Probe, out_dir: Path, params: AudioParams
) -> list[Output]:
    if probed.audio is None:
        raise MediaError("the input has no audio stream")
    ext, content_type = ("m4a", "audio/mp4") if params.audio_codec == "aac" else ("mp3", "audio/mpeg")
    path = out_dir / f"audio.{ext}"
    inp = _ffmpeg.safe_input(src, media_type)
    extra = {"movflags": "+faststart"} if ext == "m4a" else {}
    stream = ffmpeg.output(inp.audio, str(path), vn=None, **audio_args(params), **extra)
    check_complete(
        _ffmpeg.run(stream, src.parent, limits=params.limits(), duration=probed.duration), probed.duration
    )
    return [Output(name=path.name, path=path, content_type=content_type)]
