"""The sandbox every ffmpeg and ffprobe process runs in: file protocol only, a forced demuxer, its
own session (killed as a group at the wall-clock limit), CPU and file-size rlimits, and death with
the worker that started it."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ffmpeg

from functions.child_usage import note_child_peak
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
    # Address space (RLIMIT_AS): a hostile file that makes a decoder allocate without end fails
    # its allocation instead of taking the host's memory.
    max_memory_bytes: int = 4 * 1024**3


# How an allocation refused under RLIMIT_AS shows in ffmpeg's last words.
_OUT_OF_MEMORY = ("Cannot allocate memory", "malloc of size", "failed to map segment")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


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


def _limits(limits: Limits) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 5))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.max_output_bytes, limits.max_output_bytes))
        resource.setrlimit(resource.RLIMIT_AS, (limits.max_memory_bytes, limits.max_memory_bytes))
        # ffmpeg runs in a session of its own (so a timeout can kill its whole group), which also
        # means it would outlive a worker that is SIGKILLed. Ask the kernel to kill it with us.
        if _libc is not None:
            _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    return apply


def _wait_killing_at(proc: subprocess.Popen[str], timeout: float) -> bool:
    """Wait for the child with wait4, which also tells its peak memory. At `timeout` kill its
    process group (and still reap it); False if it had to be killed."""

    def reap() -> None:
        _pid, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        note_child_peak(usage.ru_maxrss)

    reaper = threading.Thread(target=reap, daemon=True)
    reaper.start()
    reaper.join(timeout)
    if not reaper.is_alive():
        return True
    os.killpg(proc.pid, signal.SIGKILL)
    reaper.join()
    return False


def run_sandboxed(
    argv: Sequence[str], cwd: Path, limits: Limits, on_line: Callable[[str], None] | None = None
) -> subprocess.CompletedProcess[str]:
    stdout_lines: list[str] = []
    stderr_tail: list[str] = []
    cpu_before = _children_cpu()
    with subprocess.Popen(
        list(argv),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, so the kill reaches every child
        preexec_fn=_limits(limits),  # noqa: PLW1509 - rlimits only
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
            if not _wait_killing_at(proc, limits.wall_seconds):
                name = Path(argv[0]).name
                raise MediaError(f"{name} ran past the wall-clock limit of {limits.wall_seconds:g}s")
        finally:
            for reader in readers:
                reader.join(timeout=5)
    if proc.returncode != 0:
        name = Path(argv[0]).name
        used_cpu = _children_cpu() - cpu_before
        # RLIMIT_CPU sends SIGXCPU, then SIGKILL at the hard limit; a SIGKILL well before the CPU
        # limit came from elsewhere: the kernel's out-of-memory killer.
        if proc.returncode == -signal.SIGXCPU or (
            proc.returncode == -signal.SIGKILL and used_cpu >= limits.cpu_seconds
        ):
            raise MediaError(f"{name} exceeded its CPU limit of {limits.cpu_seconds}s")
        if proc.returncode == -signal.SIGKILL:
            raise MediaError(f"{name} was killed after {used_cpu:.0f}s of CPU: out of memory")
        if proc.returncode == -signal.SIGXFSZ:
            raise MediaError(f"output exceeded the size limit of {limits.max_output_bytes} bytes")
        tail = "".join(stderr_tail).strip().splitlines()[-6:]
        if any(sign in line for line in tail for sign in _OUT_OF_MEMORY):
            raise MediaError(f"{name} ran out of memory (limit {limits.max_memory_bytes} bytes): {tail[-1]}")
        raise MediaError(f"{Path(argv[0]).name} failed (exit {proc.returncode}): {' | '.join(tail)}")
    return subprocess.CompletedProcess(
        list(argv), proc.returncode, "".join(stdout_lines), "".join(stderr_tail)
    )


def safe_input(path: Path, media_type: str, **kwargs: Any) -> Any:
    """An ffmpeg-python input node for an untrusted file: demuxer forced, file protocol only."""
    return ffmpeg.input(path.name, f=demuxer_for(media_type), **SAFE_INPUT, **kwargs)
