"""Running ffprobe and ffmpeg on untrusted input, safely.

ffmpeg-python builds the command lines; this module runs them with:
- `-protocol_whitelist file` (no network protocols, no `concat:`/`subfile:` tricks),
- the input demuxer forced from the magic bytes (never chosen by ffmpeg's own probing, which is how
  a playlist disguised as a video gets opened),
- the process in a private working directory and a session of its own, killed as a group at the
  wall-clock limit, with RLIMIT_CPU (CPU seconds) and RLIMIT_FSIZE (largest file it may write).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ffmpeg

from functions import progress
from functions.errors import MediaError, UnsupportedMedia

# Media type (from magic bytes) -> the only demuxer ffmpeg may use for it.
DEMUXERS: dict[str, str] = {
    "video/mp4": "mov",
    "video/quicktime": "mov",
    "video/webm": "matroska",
    "video/x-msvideo": "avi",
    "audio/mpeg": "mp3",
    "audio/wav": "wav",
    "audio/ogg": "ogg",
    "audio/flac": "flac",
    "image/gif": "gif",
    "video/mp2t": "mpegts",  # only for our own HLS segments: sniffing never yields it for an input
}
SAFE_INPUT = {"protocol_whitelist": "file"}


@dataclass(frozen=True)
class Limits:
    wall_seconds: float = 600.0
    cpu_seconds: int = 1800
    max_output_bytes: int = 4 * 1024**3
    threads: int = 2


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


def binary(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise MediaError(f"{name} is not installed (apt-get install -y ffmpeg)")
    return found


def demuxer_for(media_type: str) -> str:
    try:
        return DEMUXERS[media_type]
    except KeyError:
        raise UnsupportedMedia(f"{media_type} is not a video or audio type ffmpeg may open") from None


_PR_SET_PDEATHSIG = 1
_libc = (
    ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if sys.platform == "linux"
    else None
)


def _limits(cpu_seconds: int, max_output_bytes: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_output_bytes, max_output_bytes))
        # ffmpeg runs in a session of its own (so a timeout can kill its whole group), which also
        # means it would outlive a worker that is SIGKILLed. Ask the kernel to kill it with us.
        if _libc is not None:
            _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    return apply


def _run(
    argv: Sequence[str], cwd: Path, limits: Limits, on_line: Callable[[str], None] | None = None
) -> subprocess.CompletedProcess[str]:
    stdout_lines: list[str] = []
    stderr_tail: list[str] = []
    with subprocess.Popen(
        list(argv),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, so the kill reaches every child
        preexec_fn=_limits(limits.cpu_seconds, limits.max_output_bytes),  # noqa: PLW1509 - rlimits only
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
    ) as proc:

        def read_stdout() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                stdout_lines.append(line)
                if on_line is not None:
                    on_line(line.strip())

        def read_stderr() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                stderr_tail.append(line)
                del stderr_tail[:-40]  # keep the end: that is where ffmpeg says what went wrong

        readers = [
            threading.Thread(target=read_stdout, daemon=True),
            threading.Thread(target=read_stderr, daemon=True),
        ]
        for reader in readers:
            reader.start()
        try:
            proc.wait(timeout=limits.wall_seconds)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            name = Path(argv[0]).name
            raise MediaError(f"{name} ran past the wall-clock limit of {limits.wall_seconds:g}s") from None
        finally:
            for reader in readers:
                reader.join(timeout=5)
    if proc.returncode != 0:
        if proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
            raise MediaError(f"{Path(argv[0]).name} exceeded its CPU limit of {limits.cpu_seconds}s")
        if proc.returncode == -signal.SIGXFSZ:
            raise MediaError(f"output exceeded the size limit of {limits.max_output_bytes} bytes")
        tail = "".join(stderr_tail).strip().splitlines()[-6:]
        raise MediaError(f"{Path(argv[0]).name} failed (exit {proc.returncode}): {' | '.join(tail)}")
    return subprocess.CompletedProcess(
        list(argv), proc.returncode, "".join(stdout_lines), "".join(stderr_tail)
    )


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
    result = _run(argv, path.parent, limits)
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


def safe_input(path: Path, media_type: str, **kwargs: Any) -> Any:
    """An ffmpeg-python input node for an untrusted file: demuxer forced, file protocol only."""
    return ffmpeg.input(path.name, f=demuxer_for(media_type), **SAFE_INPUT, **kwargs)


def run(
    stream: Any,
    cwd: Path,
    *,
    limits: Limits,
    duration: float | None = None,
    extra_args: Sequence[str] = (),
) -> float:
    """Run a built ffmpeg-python graph in `cwd`, reporting progress when `duration` is known.
    Returns the media time ffmpeg reached (seconds), from its final progress report."""
    args = stream.compile(cmd=binary("ffmpeg"), overwrite_output=True)
    head, tail = args[:1], args[1:]
    global_args = ["-nostdin", "-hide_banner", "-loglevel", "error", "-threads", str(limits.threads)]
    global_args += ["-progress", "pipe:1", "-nostats", *extra_args]
    state: dict[str, float] = {"last": 0.0}
    report = progress.reporter()  # bound here: `on_line` runs in a reader thread

    def on_line(line: str) -> None:
        key, _, value = line.partition("=")
        if key == "out_time_us" and value.strip().lstrip("-").isdigit():
            state["out"] = int(value) / 1_000_000
        elif key == "speed" and value.endswith("x"):
            with contextlib.suppress(ValueError):
                state["speed"] = float(value[:-1])
        elif key == "progress" and duration:
            now = time.monotonic()
            if now - state["last"] >= 0.5 or value == "end":
                state["last"] = now
                done = 100.0 if value == "end" else 100.0 * state.get("out", 0.0) / duration
                report(done, state.get("speed"))

    _run([*head, *global_args, *tail], cwd, limits, on_line)
    return state.get("out", 0.0)
