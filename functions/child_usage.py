"""Peak memory of the tools a function ran (ffmpeg, ffprobe), for the worker's usage figures.

The kernel tells a process the peak of each child it reaps (`wait4`); the sandbox notes it here and
the worker adapter reads the largest since it last reset, so functions stay free of metrics."""

from __future__ import annotations

import threading

_lock = threading.Lock()
_peak_kib = 0


def note_child_peak(max_rss_kib: int) -> None:
    global _peak_kib  # noqa: PLW0603 - one figure per process, like the kernel's own
    with _lock:
        _peak_kib = max(_peak_kib, max_rss_kib)


def take_child_peak_kib() -> int:
    """The largest child peak noted since the last call, and start again from zero."""
    global _peak_kib
    with _lock:
        peak, _peak_kib = _peak_kib, 0
    return peak
