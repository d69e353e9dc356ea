from __future__ import annotations

from pathlib import Path

from pipeline.report import write_section


def test_section_is_appended_once_then_replaced_in_place(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("# Title\n\nprose before\n")
    write_section(doc, "<!-- a -->one<!-- /a -->", start="<!-- a -->", end="<!-- /a -->", heading="Figures")
    doc.write_text(doc.read_text() + "\nprose after\n")
    write_section(doc, "<!-- a -->two<!-- /a -->", start="<!-- a -->", end="<!-- /a -->", heading="Figures")
    text = doc.read_text()
    assert text.count("## Figures") == 1 and "one" not in text and "two" in text
    assert text.index("prose before") < text.index("two") < text.index("prose after")
