"""`mp4` and `webm`: an H.264/AAC or VP9/Opus ladder, `<height>p.mp4|webm`, never upscaled, even
dimensions, rotation applied, `+faststart`. A rung that the input already matches (H.264 yuv420p +
AAC, same height, no rotation) is remuxed, not re-encoded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ffmpeg

from functions import _ffmpeg
from functions.spec import Output
from functions.transcode.common import audio_args, check_complete, rungs, scaled_width
from functions.transcode.params import LadderParams


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


def ladder(
    src: Path, media_type: str, probed: _ffmpeg.Probe, out_dir: Path, params: LadderParams
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
                "profile:v": "high", "movflags": "+faststart", **audio_args(params),
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
