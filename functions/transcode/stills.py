"""Stills: `poster` (`poster.jpg` at `at` seconds or percent, the most representative of the next
frames, so a fade from black does not give a black poster) and `preview` (a short silent animated
`preview.webp` or `preview.gif`)."""

from __future__ import annotations

from pathlib import Path

import ffmpeg

from functions import _ffmpeg
from functions.errors import MediaError
from functions.spec import Output
from functions.transcode.params import PosterParams, PreviewParams


def _seek(probed: _ffmpeg.Probe, at: str) -> float:
    seconds = probed.duration * float(at[:-1]) / 100 if at.endswith("%") else float(at)
    return max(0.0, min(seconds, max(0.0, probed.duration - 0.5)))


def poster(
    src: Path, media_type: str, probed: _ffmpeg.Probe, out_dir: Path, params: PosterParams
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


def preview(
    src: Path, media_type: str, probed: _ffmpeg.Probe, out_dir: Path, params: PreviewParams
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
