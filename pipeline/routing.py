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

from pipeline.ceilings import apply_ceilings, ceilings
from pipeline.config import PipelineConfig, Rule
from pipeline.events.model import ObjectEvent
from pipeline.invocation import params_hash
from pipeline.output_target import MAX_KEY_BYTES
from pipeline.registry import Pipeline, merged_params

API_RULE = "api"  # the rule name of invocations asked for over HTTP (`POST /api/functions/{name}/invoke`)


@dataclass(frozen=True)
class Planned:
    """One invocation a rule asks for."""

    rule: str
    function: str
    params: dict[str, Any]
    params_hash: str
    output_bucket: str
    output_template: str


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


# Where the pipeline keeps its own data files in a bucket (hash lists): never routed to a rule.
INTERNAL_PREFIX = ".pipeline/"


def hash_list_key(name: str) -> str:
    return f"{INTERNAL_PREFIX}hashes/{name}.txt"


# output_areas per loaded pipeline file (its config is not changed once loaded): every
# notification asks twice. The config is kept with its areas, so its id cannot be reused.
_AREAS: dict[int, tuple[PipelineConfig, list[tuple[str | None, str]]]] = {}


def output_areas(config: PipelineConfig) -> list[tuple[str | None, str]]:
    """(bucket or None for "the source bucket", key prefix) of everywhere outputs are written,
    and the pipeline's own data files."""
    cached = _AREAS.get(id(config))
    if cached is not None and cached[0] is config:
        return cached[1]
    areas = _output_areas(config)
    if len(_AREAS) >= 16:
        _AREAS.clear()
    _AREAS[id(config)] = (config, areas)
    return areas


def _output_areas(config: PipelineConfig) -> list[tuple[str | None, str]]:
    areas: list[tuple[str | None, str]] = [
        (config.outputs.bucket, config.outputs.prefix),
        (None, INTERNAL_PREFIX),
    ]
    targets = [call.output for rule in config.rules for call in rule.functions]
    for flow in config.flows.values():
        targets += [step.output for step in flow.steps.values()]
    for target in targets:
        prefix = target.literal_prefix().replace("{prefix}", "")
        if target.template.startswith("{prefix}"):
            prefix = config.outputs.prefix
        areas.append((target.bucket or config.outputs.bucket, prefix))
    areas.append((None, config.screening.quarantine_prefix))
    if config.screening.rejected_prefix:
        areas.append((None, config.screening.rejected_prefix))
    return areas


def is_output_key(config: PipelineConfig, bucket: str, key: str) -> bool:
    """Outputs never trigger rules: without this, a rule watching the whole bucket would loop."""
    return any(
        (out_bucket is None or out_bucket == bucket) and key.startswith(prefix)
        for out_bucket, prefix in output_areas(config)
        if prefix or out_bucket is not None  # an empty prefix in the source bucket would mean "everything"
    )


def generation_of(event: ObjectEvent) -> int:
    """How many pipeline steps produced this object (0 = an upload), from its lineage metadata."""
    try:
        return int(event.metadata.get("pipeline-generation", "0") or 0)
    except ValueError:
        return 0


def loop_guarded(config: PipelineConfig, rule: Rule, generation: int) -> bool:
    """True if `rule` must not fire for an object of this generation (trigger-loop protection)."""
    return generation > 0 and (not rule.allow_derived or generation >= config.limits.max_generation)


def route(pipeline: Pipeline, event: ObjectEvent) -> list[Planned]:
    config = pipeline.config
    if is_output_key(config, event.bucket, event.key):
        return []
    generation = generation_of(event)
    planned: dict[tuple[str, str], Planned] = {}
    for rule in config.rules:
        if not rule_matches(rule, event) or loop_guarded(config, rule, generation):
            continue
        for call in rule.functions:
            spec = pipeline.function(call.function)
            parsed = apply_ceilings(
                spec.parse_params(merged_params(config, spec, call)), ceilings(config, call.function)
            )
            params = parsed.model_dump(mode="json")
            p_hash = params_hash(params)
            # Two rules asking for the same function with the same params are one unit of work.
            planned.setdefault(
                (call.function, p_hash),
                Planned(
                    rule=rule.name,
                    function=call.function,
                    params=params,
                    params_hash=p_hash,
                    output_bucket=call.output.bucket or config.outputs.bucket or event.bucket,
                    output_template=call.output.template.replace("{prefix}", config.outputs.prefix),
                ),
            )
    return list(planned.values())


def route_flows(pipeline: Pipeline, event: ObjectEvent) -> list[Rule]:
    """The rules with a flow that `event` starts (each starts one run)."""
    config = pipeline.config
    if is_output_key(config, event.bucket, event.key):
        return []
    generation = generation_of(event)
    return [
        rule
        for rule in config.rules
        if rule.flow is not None and rule_matches(rule, event) and not loop_guarded(config, rule, generation)
    ]


def output_key(template: str, source_key: str, function: str, name: str) -> str:
    """Deterministic output key from a validated template, so a re-run overwrites instead of adding
    a second copy. The source key stays readable; if the result would exceed S3's 1,024-byte limit,
    the source key is replaced by its hash."""
    stem, dot, ext = source_key.rpartition(".")
    if not dot or "/" in ext:
        stem, ext = source_key, ""
    fields = {"key": source_key, "stem": stem, "ext": ext, "function": function, "name": name}
    key = template.format(**fields)
    if len(key.encode()) <= MAX_KEY_BYTES:
        return key
    digest = hashlib.sha256(source_key.encode()).hexdigest()
    short = {**fields, "key": f"_long/{digest}", "stem": f"_long/{digest}"}
    return template.format(**short)


LOOP_GUARD = "loop guard: "


def why_unrouted(config: PipelineConfig, event: ObjectEvent) -> tuple[str, bool]:
    """Why nothing runs for `event`, and whether a rule matched it (worth a record: the loop guard
    stopped it) or not (worth only a counter: a notification may carry any number of records
    nobody wants)."""
    generation = generation_of(event)
    if generation and any(rule_matches(r, event) for r in config.rules):
        return f"{LOOP_GUARD}written by the pipeline (generation {generation})", True
    if is_output_key(config, event.bucket, event.key):
        return "a pipeline output (outputs never trigger rules)", False
    return "no rule matches", False
