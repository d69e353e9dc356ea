"""Routing: an `ObjectEvent` and the rules -> the invocations to run (fan-out). Pure code.

The gateway, the local store and the rule dry-run all use `route`, so what a dry-run shows is
exactly what an upload does.
"""

from __future__ import annotations

import fnmatch
import hashlib
import mimetypes
from dataclasses import dataclass
from typing import Any

from pipeline.config import PipelineConfig, Rule
from pipeline.events.model import ObjectEvent
from pipeline.invocation import params_hash
from pipeline.registry import Pipeline

MAX_KEY_BYTES = 1024


@dataclass(frozen=True)
class Planned:
    """One invocation a rule asks for."""

    rule: str
    function: str
    params: dict[str, Any]
    params_hash: str
    output_bucket: str
    output_prefix: str


def content_type_of(event: ObjectEvent) -> str:
    """The event's content type, or one guessed from the key. Only a routing hint: workers check
    the real type by magic bytes before any function runs."""
    if event.content_type:
        return event.content_type.split(";")[0].strip().lower()
    guessed, _ = mimetypes.guess_type(event.key, strict=False)
    return guessed or "application/octet-stream"


def rule_matches(rule: Rule, event: ObjectEvent) -> bool:
    if rule.bucket != event.bucket or not event.key.startswith(rule.prefix):
        return False
    if rule.suffixes and not event.key.lower().endswith(tuple(s.lower() for s in rule.suffixes)):
        return False
    if not any(fnmatch.fnmatchcase(event.event_name, pattern) for pattern in rule.events):
        return False
    content_type = content_type_of(event)
    return any(fnmatch.fnmatchcase(content_type, pattern) for pattern in rule.content_types)


def is_output_key(config: PipelineConfig, bucket: str, key: str) -> bool:
    """Outputs never trigger rules: without this, a rule watching the whole bucket would loop."""
    out_bucket = config.outputs.bucket
    return (out_bucket is None or out_bucket == bucket) and key.startswith(config.outputs.prefix)


def route(pipeline: Pipeline, event: ObjectEvent) -> list[Planned]:
    config = pipeline.config
    if is_output_key(config, event.bucket, event.key):
        return []
    planned: dict[tuple[str, str], Planned] = {}
    for rule in config.rules:
        if not rule_matches(rule, event):
            continue
        for call in rule.functions:
            spec = pipeline.function(call.function)
            params = spec.parse_params(call.params).model_dump(mode="json")
            p_hash = params_hash(params)
            # Two rules asking for the same function with the same params are one unit of work.
            planned.setdefault(
                (call.function, p_hash),
                Planned(
                    rule=rule.name,
                    function=call.function,
                    params=params,
                    params_hash=p_hash,
                    output_bucket=config.outputs.bucket or event.bucket,
                    output_prefix=config.outputs.prefix,
                ),
            )
    return list(planned.values())


def output_key(prefix: str, source_key: str, function: str, name: str) -> str:
    """Deterministic output key, so a re-run overwrites instead of adding a second copy.

    The source key is kept readable; if the result would exceed S3's 1,024-byte limit, the source
    key is replaced by its hash."""
    key = f"{prefix}{source_key}/{function}/{name}"
    if len(key.encode()) <= MAX_KEY_BYTES:
        return key
    digest = hashlib.sha256(source_key.encode()).hexdigest()
    return f"{prefix}_long/{digest}/{function}/{name}"
