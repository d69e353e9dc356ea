"""Running a built ffmpeg-python graph in the sandbox, reporting progress as ffmpeg reports it."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from functions import progress
from functions._ffmpeg.sandbox import Limits, binary, run_sandboxed


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

    run_sandboxed([*head, *global_args, *tail], cwd, limits, on_line)
    return state.get("out", 0.0)
