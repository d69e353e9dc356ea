"""Where a step's outputs go: a bucket and a key template (shared by rules and flow steps)."""

from __future__ import annotations

import hashlib
import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

TEMPLATE_FIELDS = ("prefix", "key", "stem", "ext", "function", "name")
MAX_KEY_BYTES = 1024  # S3's limit on a key
DEFAULT_TEMPLATE = "{prefix}{key}/{function}/{name}"


class OutputTarget(BaseModel):
    """Where one step's outputs go. The template's fields: {prefix} (outputs.prefix), {key} (the
    source key), {stem} and {ext} (the key without / only its extension), {function}, {name}."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bucket: str | None = Field(default=None, description="Default: outputs.bucket, else the source bucket.")
    template: str = DEFAULT_TEMPLATE

    @field_validator("template")
    @classmethod
    def _template(cls, template: str) -> str:
        fields = set(re.findall(r"{(\w*)}", template))
        unknown = fields - set(TEMPLATE_FIELDS)
        if unknown or re.search(r"{[^}]*[^\w}][^}]*}", template):
            raise ValueError(f"unknown template field(s) {sorted(unknown)}; use {', '.join(TEMPLATE_FIELDS)}")
        if template.startswith("/") or any(s in (".", "..") for s in template.split("/")):
            raise ValueError("the template may not start with / or contain . or .. segments")
        return template

    def literal_prefix(self) -> str:
        """The fixed start of every key this template makes (used to keep outputs from re-triggering)."""
        return self.template.split("{", 1)[0]


def prefixed_key(prefix: str, source_key: str) -> str:
    """Where a quarantined or rejected upload is kept: under its prefix, shortened as output
    keys are (`routing.output_key`) when the two together exceed S3's 1,024-byte limit."""
    key = prefix + source_key
    if len(key.encode()) <= MAX_KEY_BYTES:
        return key
    return f"{prefix}_long/{hashlib.sha256(source_key.encode()).hexdigest()}"
