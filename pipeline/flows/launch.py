"""What a ready step launches: its input objects (the upload, or its parents' outputs narrowed by
`use`) and, for each, one invocation with the step's parameters, limits and output template."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

from pipeline.ceilings import apply_ceilings, ceilings
from pipeline.flows.model import Run
from pipeline.flows.spec import FlowStep
from pipeline.invocation import Invocation, OutputRef, params_hash
from pipeline.registry import Pipeline, merged_params


@dataclass(frozen=True)
class Launch:
    """One invocation a step asks for, on one input object."""

    step: str
    function: str
    params: dict[str, Any]
    params_hash: str
    bucket: str
    key: str
    key_in_outputs: str | None
    output_bucket: str
    output_template: str
    max_attempts: int
    time_limit: float
    condition: str | None  # decided by the worker once it has screened the input
    inv_id: str


def inputs(run: Run, step: FlowStep) -> list[tuple[str, str]]:
    if not step.needs or step.input == "source":
        return [(run.bucket, run.key)]
    found: list[tuple[str, str]] = []
    for need in step.needs:
        for output in run.steps[need].outputs:
            if wanted(step, output) and (output.bucket, output.key) not in found:
                found.append((output.bucket, output.key))
    return found


def wanted(step: FlowStep, output: OutputRef) -> bool:
    use = step.use
    if use.suffixes and not output.key.lower().endswith(tuple(s.lower() for s in use.suffixes)):
        return False
    return not use.content_types or any(
        fnmatch.fnmatchcase(output.content_type, p) for p in use.content_types
    )


# A step's parameters and their hash, per loaded pipeline file: they depend on the file alone,
# and every run of a flow launches its steps (the objects are kept, so their ids are not reused).
_PARAMS: dict[tuple[int, int], tuple[Pipeline, FlowStep, dict[str, Any], str]] = {}


def step_params(pipeline: Pipeline, step: FlowStep) -> tuple[dict[str, Any], str]:
    """The step's parameters (merged with its preset, checked against the ceilings) as JSON
    values, and their hash."""
    cached = _PARAMS.get((id(pipeline), id(step)))
    if cached is not None and cached[0] is pipeline and cached[1] is step:
        return dict(cached[2]), cached[3]
    config = pipeline.config
    spec = pipeline.function(step.function)
    parsed = apply_ceilings(
        spec.parse_params(merged_params(config, spec, step)), ceilings(config, step.function)
    )
    params = parsed.model_dump(mode="json")
    if len(_PARAMS) >= 256:
        _PARAMS.clear()
    _PARAMS[(id(pipeline), id(step))] = (pipeline, step, params, params_hash(params))
    return dict(params), _PARAMS[(id(pipeline), id(step))][3]


def launch(
    pipeline: Pipeline, run: Run, name: str, step: FlowStep, bucket: str, key: str, condition: str | None
) -> Launch:
    config = pipeline.config
    params, hashed = step_params(pipeline, step)
    prefix = config.outputs.prefix
    derived = (bucket, key) != (run.bucket, run.key)
    # An output named after another output drops the outputs prefix, so a poster's thumbnails land
    # in derived/uploads/a.mp4/transcode/poster.jpg/thumbnail/, not derived/derived/...
    base = key[len(prefix) :] if derived and prefix and key.startswith(prefix) else None
    return Launch(
        step=name,
        function=step.function,
        params=params,
        params_hash=hashed,
        bucket=bucket,
        key=key,
        key_in_outputs=base,
        output_bucket=step.output.bucket or config.outputs.bucket or run.bucket,
        output_template=(step.output.template or "{prefix}{key}/{function}/{name}").replace(
            "{prefix}", prefix
        ),
        max_attempts=step.max_attempts or config.max_attempts_for(step.function),
        time_limit=step.time_limit or config.time_limit_for(step.function),
        condition=condition,
        inv_id=Invocation.new_id(),
    )
