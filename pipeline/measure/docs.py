"""Measured figures written into the docs: a generated Markdown table between two HTML comment
markers, replaced in place on every run (`--write FILE` of the measuring commands)."""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DocSection:
    name: str  # the marker: <!-- name --> ... <!-- /name -->
    heading: str  # the heading it is appended under the first time

    @property
    def start(self) -> str:
        return f"<!-- {self.name} -->"

    @property
    def end(self) -> str:
        return f"<!-- /{self.name} -->"

    def render(self, intro: str, header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
        """The section: markers, an intro line, and a table."""
        lines = [self.start, intro, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
        lines.append(self.end)
        return "\n".join(lines)

    def write(self, doc: Path, section: str) -> None:
        """Replace the text between the markers in `doc` with `section` (which includes them), or
        append it under the heading the first time."""
        text = doc.read_text() if doc.exists() else ""
        if self.start in text and self.end in text:
            head, rest = text.split(self.start, 1)
            text = head + section + rest.split(self.end, 1)[1]
        else:
            text = text.rstrip() + f"\n\n## {self.heading}\n\n" + section + "\n"
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
