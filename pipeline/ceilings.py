"""Operator limits are ceilings that parameters can only lower.

A function marks a parameter that is a limit with the ceiling it answers to
(`Field(..., json_schema_extra={"ceiling": "max_pixels"})`); the pipeline file sets the ceilings
(its `screening` section, and the function's `time_limit`). A parameter given above its ceiling is
refused, naming the ceiling: never silently clamped. A default above it (the function's own
default, when the operator set a lower ceiling) is lowered to it, since nobody asked for more.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, RootModel

from pipeline.config import PipelineConfig

# How many times its wall-clock limit a run may spend in CPU time (ffmpeg uses several threads).
CPU_PER_WALL = 4


class AboveCeiling(ValueError):
    """Raised when a parameter is set above the operator's ceiling for it."""


def ceilings(config: PipelineConfig, function: str) -> dict[str, float]:
    """The ceilings of one function's parameters, by the names functions mark them with."""
    screening = config.screening
    time_limit = config.time_limit_for(function)
    return {
        "max_pixels": screening.max_pixels,
        "max_frames": screening.max_frames,
        "max_dimension": screening.max_dimension,
        "max_bytes": screening.max_bytes,
        "time_limit": time_limit,
        "cpu_time": time_limit * CPU_PER_WALL,
    }


def _where(name: str) -> str:
    return {
        "time_limit": "the function's time_limit",
        "cpu_time": f"{CPU_PER_WALL} x the function's time_limit",
    }.get(name, f"screening.{name}")


def apply_ceilings(params: BaseModel, limits: dict[str, float], path: str = "params") -> BaseModel:
    """`params` with its defaults lowered to their ceilings; AboveCeiling if a parameter was set
    above one. Walks nested models (filter steps, transcode kinds)."""
    if isinstance(params, RootModel):
        inner = params.root
        if isinstance(inner, BaseModel):
            return type(params)(apply_ceilings(inner, limits, path))
        return params
    update: dict[str, Any] = {}
    for name, field in type(params).model_fields.items():
        value = getattr(params, name)
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        ceiling_name = extra.get("ceiling")
        if isinstance(ceiling_name, str) and isinstance(value, int | float) and ceiling_name in limits:
            ceiling = limits[ceiling_name]
            if value > ceiling:
                if name in params.model_fields_set:
                    where = _where(ceiling_name)
                    raise AboveCeiling(
                        f"{path}.{name}: {value:g} is above the ceiling of {ceiling:g} ({where})"
                    )
                update[name] = type(value)(ceiling)
        elif isinstance(value, BaseModel):
            checked = apply_ceilings(value, limits, f"{path}.{name}")
            if checked is not value:
                update[name] = checked
        elif isinstance(value, list) and any(isinstance(v, BaseModel) for v in value):
            items = [
                apply_ceilings(v, limits, f"{path}.{name}[{i}]") if isinstance(v, BaseModel) else v
                for i, v in enumerate(value)
            ]
            if any(a is not b for a, b in zip(items, value, strict=True)):
                update[name] = items
    return params.model_copy(update=update) if update else params
