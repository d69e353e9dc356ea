from __future__ import annotations

from pathlib import Path

from pipeline.measure.docs import DocSection


def test_section_is_appended_once_then_replaced_in_place(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("# Title\n\nprose before\n")
    section = DocSection("a", "Figures")
    section.write(doc, "<!-- a -->one<!-- /a -->")
    doc.write_text(doc.read_text() + "\nprose after\n")
    section.write(doc, "<!-- a -->two<!-- /a -->")
    text = doc.read_text()
    assert text.count("## Figures") == 1 and "one" not in text and "two" in text
    assert text.index("prose before") < text.index("two") < text.index("prose after")


def test_rendered_table_sits_between_the_markers() -> None:
    table = DocSection("t", "T").render("Command: `x`", ["a", "b"], [(1, "two")])
    assert table.splitlines() == [
        "<!-- t -->",
        "Command: `x`",
        "",
        "| a | b |",
        "|---|---|",
        "| 1 | two |",
        "<!-- /t -->",
    ]
