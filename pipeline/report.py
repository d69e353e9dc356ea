"""Writing measured figures into the docs: a generated section between two HTML comment markers."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def write_section(doc: Path, section: str, *, start: str, end: str, heading: str) -> None:
    """Replace the text between `start` and `end` in `doc` with `section` (which includes the
    markers), or append it under `heading` the first time."""
    text = doc.read_text() if doc.exists() else ""
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + f"\n\n## {heading}\n\n" + section + "\n"
    doc.write_text(text)


def machine() -> str:
    """What the figures were measured on, for the line above each table."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.machine()}, {model}, {os.cpu_count()} cores, Python {platform.python_version()}"
