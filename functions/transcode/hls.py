"""`hls`: the ladder in ONE ffmpeg pass (decode once, split), `hls/<height>p/index.m3u8` + segments,
and `hls/master.m3u8` with BANDWIDTH/AVERAGE-BANDWIDTH measured from the segments written."""

from __future__ import annotations

from pathlib import Path

import ffmpeg

from functions import _ffmpeg
from functions.errors import MediaError
from functions.spec import Output
from functions.transcode.common import audio_args, check_complete, rungs
from functions.transcode.params import HlsParams

# Video bit rates for HLS rungs (kbit/s), by height; other heights use the nearest.
HLS_KBPS = {2160: 14000, 1440: 8000, 1080: 5000, 720: 2800, 540: 1800, 480: 1400, 360: 800, 240: 400}


def _kbps(height: int) -> int:
    nearest = min(HLS_KBPS, key=lambda h: abs(h - height))
    return HLS_KBPS[nearest]


def hls(src: Path, media_type: str, probed: _ffmpeg.Probe, out_dir: Path, params: HlsParams) -> list[Output]:
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
                **audio_args(params),
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
