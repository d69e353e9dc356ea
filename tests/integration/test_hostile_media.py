"""A hostile corpus against screening and the functions: each file is refused with a clear
reason, nothing is fetched or read outside the private temp dir, memory stays bounded."""

from __future__ import annotations

import http.server
import os
import re
import shutil
import struct
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from functions import _ffmpeg, transcode
from functions._ffmpeg.sandbox import run_sandboxed
from functions.admission import ScreeningPolicy, admit
from functions.errors import MediaError, Rejected, UnsupportedMedia
from functions.transcode import TranscodeParams
from pipeline.invocation import Invocation, Status
from pipeline.measure.samples import make_video
from pipeline.runtime import Runtime
from pipeline.storage import LocalStore
from tests.helpers import THUMBNAILS_ONLY, Proc, need, pipeline_runtime, wait_until

pytestmark = pytest.mark.integration

POLICY = ScreeningPolicy()


class Canary:
    """An HTTP server that counts requests: any fetch means a playlist was followed."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        hits = self.hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"#EXTM3U\n")

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def canary() -> Iterator[Canary]:
    c = Canary()
    yield c
    c.close()


def png_bomb(path: Path, width: int = 50_000, height: int = 50_000) -> Path:
    """A valid PNG header declaring 2.5 gigapixels, with a few bytes of data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )
    return path


def hls_playlist(target: str) -> bytes:
    return f"#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:10.0,\n{target}\n#EXT-X-ENDLIST\n".encode()


def avi_wrapping(payload: bytes) -> bytes:
    """A RIFF/AVI container whose only content is `payload` (a playlist), as in CVE-2017-9993."""
    movi = (
        b"LIST"
        + struct.pack("<I", 4 + 8 + len(payload))
        + b"movi"
        + b"00dc"
        + struct.pack("<I", len(payload))
        + payload
    )
    body = b"AVI " + movi
    return b"RIFF" + struct.pack("<I", len(body)) + body


def rejected(path: Path, policy: ScreeningPolicy = POLICY) -> str:
    with pytest.raises(Rejected) as info:
        admit(path, policy)
    return str(info.value)


def test_decompression_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    bomb = png_bomb(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 200
    reason = rejected(bomb)
    assert "pixels" in reason or "too large" in reason


def test_bomb_screening_keeps_memory_bounded(tmp_path: Path) -> None:
    bomb = png_bomb(tmp_path / "bomb.png")
    code = (
        "import resource, sys; from pathlib import Path\n"
        "from functions.admission import ScreeningPolicy, admit\n"
        "try:\n    admit(Path(sys.argv[1]), ScreeningPolicy())\nexcept Exception as e:\n    print(type(e).__name__)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(bomb)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[0] == "Rejected"
    assert int(out[1]) < 400_000  # KiB (interpreter and imports ~120-210 MB); decoding would need 7.5 GB


def test_many_frame_gif_is_refused(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (64, 64), (i * 6, 255 - i * 6, i)) for i in range(40)]
    gif = tmp_path / "many.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    assert "frames" in rejected(gif, ScreeningPolicy(max_frames=10))


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("cat.jpg", b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "image/svg+xml"),
        ("doc.jpg", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "application/pdf"),
        ("art.png", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "application/postscript"),
        ("page.gif", b"<!DOCTYPE html><html><script>alert(1)</script></html>", "text/html"),
        ("notes.jpg", b"just some text", "application/octet-stream"),
        ("passwd.mp4", hls_playlist("file:///etc/passwd"), "application/octet-stream"),
        ("concat.mp4", b"ffconcat version 1.0\nfile '/etc/passwd'\n", "application/octet-stream"),
        ("loop.mp4", hls_playlist("loop.mp4"), "application/octet-stream"),
    ],
)
def test_format_confusion_is_refused_by_content(
    tmp_path: Path, name: str, content: bytes, reason: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UnsupportedMedia, match=re.escape(reason)):
        admit(path, POLICY)


def test_empty_and_oversize(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    assert "empty object" in rejected(empty)
    big = tmp_path / "big.png"
    Image.new("RGB", (100, 100)).save(big)
    assert "over the limit" in rejected(big, ScreeningPolicy(max_bytes=100))


@pytest.fixture(scope="module")
def ffmpeg_ok() -> None:
    need(bool(shutil.which("ffmpeg")), "ffmpeg is not installed")


def test_playlist_in_an_avi_is_refused_and_never_followed(
    ffmpeg_ok: None, tmp_path: Path, canary: Canary
) -> None:
    for target in ("file:///etc/passwd", f"{canary.url}/stolen"):
        avi = tmp_path / "clip.avi"
        avi.write_bytes(avi_wrapping(hls_playlist(target)))
        reason = rejected(avi)
        assert "video/x-msvideo" in reason or "stream" in reason
    assert canary.hits == []


def test_subtitle_streams_are_refused(ffmpeg_ok: None, tmp_path: Path) -> None:
    srt = tmp_path / "subs.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:01,000\nhello\n")
    video = make_video(tmp_path / "v.mp4", width=160, height=90, seconds=1)
    mkv = tmp_path / "with-subs.mp4"  # a Matroska file named .mp4
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-i",
            str(video),
            "-i",
            str(srt),
            "-map",
            "0",
            "-map",
            "1",
            "-c",
            "copy",
            "-f",
            "matroska",
            str(mkv),
        ],
        check=True,
    )
    assert "subtitle streams; only video and audio are allowed" in rejected(mkv)


def test_duration_and_resolution_limits(ffmpeg_ok: None, tmp_path: Path) -> None:
    video = make_video(tmp_path / "v.mp4", width=640, height=360, seconds=2)
    assert "duration limit" in rejected(video, ScreeningPolicy(max_duration=1))
    assert "edge over the limit" in rejected(video, ScreeningPolicy(max_dimension=320))
    info = admit(video, POLICY)
    assert (info.width, info.height, info.media_type) == (
        640,
        360,
        "video/mp4",
    ) and info.duration == pytest.approx(2, abs=0.1)


def test_truncated_video_fails_with_a_clear_error(ffmpeg_ok: None, tmp_path: Path) -> None:
    video = make_video(tmp_path / "v.mp4", width=640, height=360, seconds=2)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(video.read_bytes()[: video.stat().st_size // 3])
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(MediaError, match=r"truncated or damaged|cannot be read"):
        admit(cut, POLICY)
        transcode.run(cut, out, TranscodeParams(kind="mp4", heights=[360], only_when_needed=False))


def test_tiny_input_huge_output_is_capped(ffmpeg_ok: None, tmp_path: Path) -> None:
    video = make_video(tmp_path / "v.mp4", width=160, height=90, seconds=2)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(MediaError):
        transcode.run(video, out, TranscodeParams(kind="webm", heights=[90], max_output_bytes=5_000))


def verdict_of_one_upload(
    runtime: Runtime, env: dict[str, str], tmp_path: Path, function: str, path: Path, key: str, kind: str
) -> Invocation:
    """Upload `path` while one real worker serves `function`; the invocation once it has finished."""
    worker = Proc(["worker", "--functions", function, "--concurrency", "1"], env, tmp_path / "worker.log")
    try:
        wait_until(runtime.ledger.workers.live, 30, "the worker")
        runtime.store.ensure_bucket("media")
        runtime.store.put_file("media", key, path, content_type=kind)
        wait_until(
            lambda: all(i.status.finished for i in runtime.ledger.invocations.query()), 60, "a verdict"
        )
    finally:
        worker.stop()
    [inv] = runtime.ledger.invocations.query()
    return inv


def test_a_huge_later_page_is_refused_by_a_real_worker(redis_url: str, tmp_path: Path) -> None:
    """A multi-page TIFF whose first page is 10x10 and whose second is 9000x9000: screening checks
    every page before any is decoded, so the upload is rejected, naming the page."""
    runtime, env = pipeline_runtime(THUMBNAILS_ONLY, redis_url, tmp_path)
    bomb = tmp_path / "pages.tiff"
    Image.new("1", (10, 10)).save(
        bomb, "TIFF", save_all=True, append_images=[Image.new("1", (9000, 9000))], compression="group4"
    )
    assert bomb.stat().st_size < 10_000
    inv = verdict_of_one_upload(runtime, env, tmp_path, "thumbnail", bomb, "uploads/pages.tiff", "image/tiff")
    assert inv.status == Status.REJECTED
    assert "frame or page 2 of 2: 9000x9000" in (inv.error or "") and inv.attempts == 1
    assert not list(runtime.store.list("media", "derived/"))


def test_a_huge_second_video_stream_is_refused_by_a_real_worker(
    ffmpeg_ok: None, redis_url: str, tmp_path: Path
) -> None:
    """The first video stream is small and the second is over the dimension limit: every video
    stream is checked, not only the one players show."""
    config = """
version: 1
buckets: [media]
screening: {max_dimension: 1000}
rules:
  - name: videos
    bucket: media
    prefix: uploads/
    content_types: ["video/*"]
    functions: [{function: transcode, preset: probe}]
"""
    runtime, env = pipeline_runtime(config, redis_url, tmp_path)
    video = tmp_path / "two.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:duration=1",
         "-f", "lavfi", "-i", "testsrc=size=1280x720:duration=1", "-map", "0", "-map", "1",
         "-c:v", "libx264", "-preset", "ultrafast", "-y", str(video)],
        check=True, timeout=60,
    )  # fmt: skip
    inv = verdict_of_one_upload(runtime, env, tmp_path, "transcode", video, "uploads/two.mp4", "video/mp4")
    assert inv.status == Status.REJECTED
    assert "video stream 1: 1280x720 has an edge over the limit of 1000 px" in (inv.error or "")


def test_objects_are_checked_by_head_before_a_byte_is_downloaded(redis_url: str, tmp_path: Path) -> None:
    """Each object's data is replaced by a named pipe, which nothing can download: a worker that
    tried would fail with "is a named pipe" and retry. The verdicts must come from the HEAD."""
    config = THUMBNAILS_ONLY + "screening: {max_bytes: 4000}\n"
    runtime, env = pipeline_runtime(config, redis_url, tmp_path)
    store = LocalStore(tmp_path / "data" / "store")  # writes without notifying: we send the events
    store.ensure_bucket("media")
    small, big = tmp_path / "small.png", tmp_path / "big.bmp"
    Image.new("RGB", (8, 8)).save(small)
    Image.new("RGB", (60, 60)).save(big)  # about 10 KB: over the 4,000-byte limit
    # A notification that understates the size (the intake checks the size the event claims).
    lying = store.put_file("media", "uploads/lying.bmp", big, content_type="image/bmp")
    runtime.intake.accept(lying.event("minio").model_copy(update={"size": 100}))
    # A notification for a version that was overwritten before a worker got to it.
    stale = store.put_file("media", "uploads/stale.png", small, content_type="image/png").event("minio")
    store.put_file("media", "uploads/stale.png", big, content_type="image/png")
    runtime.intake.accept(stale)
    for key in ("uploads/lying.bmp", "uploads/stale.png"):
        data = store.path_of("media", key)
        data.unlink()
        os.mkfifo(data)
    abandoned = tmp_path / "data" / "tmp" / "thumbnail-999999999-abcdefgh"  # a killed worker's
    abandoned.mkdir(parents=True)
    worker = Proc(["worker", "--functions", "thumbnail", "--concurrency", "1"], env, tmp_path / "worker.log")
    try:
        wait_until(lambda: all(i.status.finished for i in runtime.ledger.invocations.query()), 60, "verdicts")
    finally:
        worker.stop()
    verdicts = {i.key: i for i in runtime.ledger.invocations.query()}
    assert verdicts["uploads/lying.bmp"].status == Status.REJECTED
    assert "refused before download" in (verdicts["uploads/lying.bmp"].error or "")
    assert verdicts["uploads/stale.png"].status == Status.SKIPPED
    assert "stale event" in (verdicts["uploads/stale.png"].error or "")
    assert all(i.attempts == 1 for i in verdicts.values())
    assert not abandoned.exists(), "the work directory of a killed worker was left behind"


def test_ffmpeg_running_out_of_its_address_space_is_reported_as_memory(
    ffmpeg_ok: None, tmp_path: Path
) -> None:
    video = make_video(tmp_path / "hd.mp4", width=1920, height=1080, seconds=1)
    argv = [_ffmpeg.binary("ffmpeg"), "-v", "error", "-i", video.name, "-vf", "scale=7680:4320",
            "-c:v", "libx264", "-f", "null", "-"]  # fmt: skip
    with pytest.raises(MediaError, match="out of memory"):
        run_sandboxed(argv, tmp_path, _ffmpeg.Limits(max_memory_bytes=600 * 1024**2))
