"""The function registry: built-ins by dotted path plus user functions named in pipeline.yaml."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from functions import BUILTIN_FUNCTIONS, FunctionSpec
from pipeline.ceilings import AboveCeiling, apply_ceilings, ceilings
from pipeline.config import FunctionCall, PipelineConfig, backfill_lane, format_location, load_config
from pipeline.errors import ConfigError
from pipeline.flows.conditions import Condition, ConditionError, check_condition, compile_condition
from pipeline.flows.graph import GraphError, ancestors, check_graph
from pipeline.flows.spec import Flow, FlowStep
from pipeline.settings import Settings


def load_spec(module_path: str) -> FunctionSpec[Any]:
    """Import `module_path` and return the FunctionSpec it declares (its `run`)."""
    try:
        module = importlib.import_module(module_path)
    except ImportError as exc:
        raise ConfigError(f"cannot import function module {module_path!r}: {exc}") from exc
    spec = getattr(module, "run", None)
    if not isinstance(spec, FunctionSpec):
        raise ConfigError(f"{module_path!r} has no `run` decorated with @media_function")
    return spec


def presets_for(config: PipelineConfig, name: str, spec: FunctionSpec[Any]) -> dict[str, dict[str, Any]]:
    """Built-in presets of a function, extended (or overridden) by pipeline.yaml's `presets:`."""
    return {**spec.presets, **config.presets.get(name, {})}


def merged_params(
    config: PipelineConfig, spec: FunctionSpec[Any], call: FunctionCall | FlowStep
) -> dict[str, Any]:
    base = presets_for(config, call.function, spec)[call.preset] if call.preset else {}
    params = {**base, **call.params}
    # A function that can scan for malware gets the installation's clamd unless the call names one.
    return {**operator_params(config, spec), **params}


def operator_only(spec: FunctionSpec[Any]) -> list[str]:
    """Params only the pipeline file may set (they reach beyond the object: a socket a worker opens)."""
    return [
        name
        for name, field in spec.params_model.model_fields.items()
        if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("operator_only")
    ]


def operator_params(config: PipelineConfig, spec: FunctionSpec[Any]) -> dict[str, Any]:
    """What the installation sets for a function's operator-only params (clamd: screening.clamd)."""
    if config.screening.clamd and "clamd" in operator_only(spec):
        return {"clamd": config.screening.clamd}
    return {}


@dataclass(frozen=True)
class Pipeline:
    """A validated pipeline file with the functions it can call."""

    config: PipelineConfig
    functions: dict[str, FunctionSpec[Any]]
    source: str
    # Each flow step's `if`, compiled once at load: (flow, step) -> condition.
    conditions: dict[tuple[str, str], Condition] = field(default_factory=dict)
    # The data files (hash lists) its rules and steps name: ref -> where in the file.
    data_files: dict[str, str] = field(default_factory=dict)

    def function(self, name: str) -> FunctionSpec[Any]:
        return self.functions[name]

    def flow(self, name: str) -> Flow:
        return self.config.flows[name]

    def queues(self, names: list[str] | None = None) -> list[str]:
        return [self.config.queue_for(name) for name in (names or sorted(self.functions))]

    def consumed_queues(self, names: list[str] | None = None) -> list[str]:
        """What a worker for `names` takes from: their queues, then their backfill lanes."""
        fresh = self.queues(names)
        return fresh + [backfill_lane(q) for q in fresh]


def build_pipeline(config: PipelineConfig, source: str) -> Pipeline:
    functions: dict[str, FunctionSpec[Any]] = {}
    for module_path in BUILTIN_FUNCTIONS:
        spec = load_spec(module_path)
        functions[spec.name] = spec
    for name in config.presets:
        if name not in functions and name not in config.functions:
            raise ConfigError(f"{source}: presets.{name}: no function of that name")
    for name, fn_settings in config.functions.items():
        if fn_settings.module:
            try:
                functions[name] = load_spec(fn_settings.module)
            except ConfigError as exc:
                raise ConfigError(f"{source}: functions.{name}.module: {exc}") from exc
        elif name not in functions:
            raise ConfigError(f"{source}: functions.{name}: no built-in function of that name; set `module`")
    data_files: dict[str, str] = {}
    for i, rule in enumerate(config.rules):
        for j, call in enumerate(rule.functions):
            where = f"rules[{i}] ({rule.name}).functions[{j}]"
            for ref in _check_call(config, functions, call, f"{source}: {where}"):
                data_files.setdefault(ref, where)
        if rule.flow is not None and rule.flow not in config.flows:
            known = ", ".join(sorted(config.flows)) or "none"
            raise ConfigError(
                f"{source}: rules[{i}] ({rule.name}).flow: unknown flow {rule.flow!r} (flows: {known})"
            )
    conditions: dict[tuple[str, str], Condition] = {}
    for name, flow in config.flows.items():
        conditions.update(_check_flow(config, functions, name, flow, f"{source}: flows.{name}", data_files))
    return Pipeline(
        config=config, functions=functions, source=source, conditions=conditions, data_files=data_files
    )


def _check_call(
    config: PipelineConfig, functions: dict[str, FunctionSpec[Any]], call: FunctionCall | FlowStep, where: str
) -> list[str]:
    """A function call (a rule's or a flow step's): known function and preset, valid params
    within the ceilings, assets and data files that are objects. Returns its data files."""
    if call.function not in functions:
        known = ", ".join(sorted(functions))
        raise ConfigError(f"{where}.function: unknown function {call.function!r} (known: {known})")
    spec = functions[call.function]
    available = presets_for(config, call.function, spec)
    if call.preset is not None and call.preset not in available:
        known = ", ".join(sorted(available)) or "none"
        raise ConfigError(f"{where}.preset: unknown preset {call.preset!r} (known: {known})")
    try:
        params = spec.parse_params(merged_params(config, spec, call))
    except ValidationError as exc:
        problems = [f"{where}.params.{format_location(err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise ConfigError("\n".join(problems)) from exc
    try:
        apply_ceilings(params, ceilings(config, call.function))
    except AboveCeiling as exc:
        raise ConfigError(f"{where}.{exc}") from exc
    for ref in spec.asset_refs(params) + spec.data_refs(params):
        if not ref.startswith("s3://"):
            raise ConfigError(f"{where}.params: {ref!r} must be an object, s3://bucket/key")
    return spec.data_refs(params)


def _check_flow(
    config: PipelineConfig,
    functions: dict[str, FunctionSpec[Any]],
    name: str,
    flow: Flow,
    where: str,
    data_files: dict[str, str],
) -> dict[tuple[str, str], Condition]:
    """A flow: acyclic, known steps and functions, valid params, `needs` naming steps that make
    files, and every `if` compiling and naming only `source` and the step's ancestors. Its steps'
    data files are added to `data_files`."""
    try:
        check_graph(flow)
    except GraphError as exc:
        raise ConfigError(f"{where}.{exc}") from exc
    conditions: dict[tuple[str, str], Condition] = {}
    for step_name, step in flow.steps.items():
        at = f"{where}.steps.{step_name}"
        for ref in _check_call(config, functions, step, at):
            data_files.setdefault(ref, f"flows.{name}.steps.{step_name}")
        for need in step.needs if step.input == "outputs" else []:
            if not functions[flow.steps[need].function].produces:
                raise ConfigError(f"{at}.needs: step {need!r} makes no files for this step to run on")
        if step.condition is None:
            continue
        earlier = ancestors(flow, step_name)
        try:
            condition = compile_condition(step.condition)
            unknown = condition.steps_named() - earlier
            if unknown:
                raise ConditionError(
                    f"reads steps {sorted(unknown)}, which are not among this step's needs "
                    f"(directly or further up): {sorted(earlier) or 'none'}"
                )
            check_condition(condition, {n: functions[flow.steps[n].function].reports for n in earlier})
        except ConditionError as exc:
            raise ConfigError(f"{at}.if: {exc}") from exc
        conditions[(name, step_name)] = condition
    return conditions


def load_pipeline(settings: Settings) -> Pipeline:
    config, source = load_config(settings.config)
    return build_pipeline(config, source)
