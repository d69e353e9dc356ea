"""Transcode: video and audio renditions with ffmpeg (commands built by ffmpeg-python).

Usage (pipeline.yaml), one invocation per preset so each runs and scales on its own:

    - function: transcode
      preset: hls                # built-in: mp4, webm, hls, audio, mp3, poster, preview, probe
      params: {heights: [720, 360]}

Kinds (`kind`, default `mp4`), each with its own parameters (`params.py`):
- `mp4`, `webm`: a rendition ladder (`ladder.py`);
- `hls`: the ladder as HLS in one pass, with a master playlist (`hls.py`);
- `audio`: the audio track; `probe`: stream facts as JSON (`audio.py`);
- `poster`: one representative frame; `preview`: a short animation (`stills.py`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from functions import _ffmpeg
from functions._media import sniff
from functions.errors import MediaError
from functions.spec import Output, media_function
from functions.transcode.audio import audio, probe_json
from functions.transcode.hls import hls
from functions.transcode.ladder import ladder
from functions.transcode.params import (
    AudioParams,
    HlsParams,
    LadderParams,
    PosterParams,
    PreviewParams,
    ProbeParams,
    TranscodeParams,
)
from functions.transcode.stills import poster, preview

__all__ = ["PRESETS", "TranscodeParams", "run"]

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


# What each kind reports: renditions their size, hls its variants, poster its time, probe a summary.
REPORTS = {
    "width": 1280,
    "height": 720,
    "remuxed": False,
    "variants": [{"height": 720, "width": 1280, "bandwidth": 3_000_000}],
    "at": "10%",
    "duration": 10.0,
    "rotation": 0,
    "bit_rate": 1_000_000,
    "codecs": ["h264"],
}


@media_function(
    name="transcode",
    accepts=("video/*", "audio/*"),
    params=TranscodeParams,
    presets=PRESETS,
    reports=REPORTS,
)
def run(src: Path, out_dir: Path, params: TranscodeParams) -> list[Output]:
    """Video/audio renditions, HLS, poster, preview and probe with ffmpeg."""
    # ffmpeg runs in the input's directory, so every path it is given must be absolute.
    src, out_dir = src.resolve(), out_dir.resolve()
    media_type = sniff(src)
    probed = _ffmpeg.probe(src, media_type)
    kind = params.root
    if isinstance(kind, ProbeParams):
        return probe_json(probed, out_dir)
    if isinstance(kind, AudioParams):
        return audio(src, media_type, probed, out_dir, kind)
    if probed.video is None:
        raise MediaError(f"{kind.kind} needs a video stream; the input has only {probed.streams[0].kind}")
    if isinstance(kind, LadderParams):
        return ladder(src, media_type, probed, out_dir, kind)
    if isinstance(kind, HlsParams):
        return hls(src, media_type, probed, out_dir, kind)
    if isinstance(kind, PosterParams):
        return poster(src, media_type, probed, out_dir, kind)
    assert isinstance(kind, PreviewParams)
    return preview(src, media_type, probed, out_dir, kind)
