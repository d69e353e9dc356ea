"""The README's configuration table, generated from `Settings` (a test keeps the README in sync)."""

from __future__ import annotations

from pipeline.settings import Settings


def markdown_table() -> str:
    rows = ["| Variable | Default | Description |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        shown = "" if default is None else getattr(default, "get_secret_value", lambda d=default: d)()
        shown = f"`{shown}`" if shown not in ("", []) else "(unset)"
        rows.append(f"| `PIPELINE_{name.upper()}` | {shown} | {field.description or ''} |")
    return "\n".join(rows)
