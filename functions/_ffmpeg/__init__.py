"""Running ffprobe and ffmpeg on untrusted input, safely: the sandbox (`sandbox`), stream facts
(`probe`) and a run with progress (`runner`).

ffmpeg-python builds the command lines; they run with:
- `-protocol_whitelist file` (no network protocols, no `concat:`/`subfile:` tricks),
- the input demuxer forced from the magic bytes (never chosen by ffmpeg's own probing, which is how
  a playlist disguised as a video gets opened),
- the process in a private working directory and a session of its own, killed as a group at the
  wall-clock limit, with RLIMIT_CPU (CPU seconds) and RLIMIT_FSIZE (largest file it may write).
"""

from functions._ffmpeg.probe import Probe, Stream, clear_probe_cache, probe
from functions._ffmpeg.runner import run
from functions._ffmpeg.sandbox import DEMUXERS, Limits, binary, demuxer_for, safe_input

__all__ = [
    "DEMUXERS",
    "Limits",
    "Probe",
    "Stream",
    "binary",
    "clear_probe_cache",
    "demuxer_for",
    "probe",
    "run",
    "safe_input",
]
