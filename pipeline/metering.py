"""What one attempt used, measured in the worker process that runs it.

A prefork worker process runs one invocation at a time, so process-wide figures taken at the start
and end of an attempt are the attempt's: CPU time of the process and of the children it reaped
(ffmpeg), the peak resident memory (the process's own high-water mark, reset at the start where
the kernel allows, plus the largest child's), bytes moved, and whether this process had run an
invocation before (a cold start, in FaaS terms).
"""

from __future__ import annotations

import contextlib
import resource
from pathlib import Path

from functions.child_usage import take_child_peak_kib
from pipeline.usage import DEFAULT_BILLED_MEMORY_MB, Measured

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _reset_peak() -> bool:
    """Start the process's high-water mark (VmHWM) from its current size (Linux 4.0+: writing 5
    to clear_refs); False where that is not allowed, and the peak is then the process's own."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def _own_peak_kib() -> int:
    with contextlib.suppress(OSError):
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class Meter:
    """Measures the attempts of one worker process, one at a time."""

    def __init__(self) -> None:
        # One meter per worker process (the executor is built after the fork), so the first
        # attempt it measures is the process's first: its cold start.
        self._attempts = 0
        self._cpu_start: float | None = None
        self._cold = False
        self.memory_mb = DEFAULT_BILLED_MEMORY_MB
        self.bytes_read = 0
        self.bytes_written = 0

    def begin(self, memory_mb: int | None) -> None:
        self._cold = self._attempts == 0
        self._attempts += 1
        self.memory_mb = memory_mb or DEFAULT_BILLED_MEMORY_MB
        self.bytes_read = self.bytes_written = 0
        _reset_peak()
        take_child_peak_kib()
        self._cpu_start = cpu_seconds()

    def end(self) -> Measured | None:
        """The attempt's figures, once; None if no attempt is being measured."""
        if self._cpu_start is None:
            return None
        cpu_ms = round((cpu_seconds() - self._cpu_start) * 1000, 1)
        self._cpu_start = None
        peak_kib = _own_peak_kib() + take_child_peak_kib()
        return Measured(
            cpu_ms=cpu_ms,
            peak_memory_mb=round(peak_kib / 1024, 1),
            bytes_read=self.bytes_read,
            bytes_written=self.bytes_written,
            cold_start=self._cold,
            memory_mb=self.memory_mb,
        )
