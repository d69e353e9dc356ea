"""Invoking a function by name on a stored object: the API-gateway entry of a FaaS.

The same intake as bucket events (dedup claim, ledger record, the function's queue, limits, the
upload's join for `object.processed` webhooks); only the plan comes from the caller instead of the
rules. An idempotency key makes a retried request return the first request's invocation.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from functions.assets import split_ref
from pipeline.ceilings import AboveCeiling, apply_ceilings, ceilings
from pipeline.config import PipelineConfig
from pipeline.errors import Conflict, Forbidden, InvalidParams, NotFound, ObjectNotFound, ParamsError
from pipeline.invocation import Invocation, params_hash
from pipeline.output_target import DEFAULT_TEMPLATE
from pipeline.registry import Pipeline, operator_only, operator_params
from pipeline.routing import API_RULE, Planned
from pipeline.runtime import Runtime


def check_bucket_allowed(config: PipelineConfig, bucket: str) -> None:
    """Callers reach only the buckets the pipeline file names, whatever the store's credentials
    could read."""
    allowed = config.invocable_buckets()
    if bucket not in allowed:
        open_to = ", ".join(allowed) or "none"
        raise Forbidden(
            f"bucket {bucket!r} is not open to invoke (watched buckets and invoke.buckets: {open_to})"
        )


def checked_params(pipeline: Pipeline, function: str, bucket: str, params: dict[str, Any]) -> dict[str, Any]:
    """What a caller asked for, checked before anything is stored or queued: a known function, a
    bucket open to callers, valid params (none of those only the pipeline file sets), and assets
    and data files that are objects of such buckets."""
    if function not in pipeline.functions:
        raise NotFound(f"no function {function}; known: {', '.join(sorted(pipeline.functions))}")
    check_bucket_allowed(pipeline.config, bucket)
    spec = pipeline.function(function)
    reserved = sorted(set(params) & set(operator_only(spec)))
    if reserved:
        raise InvalidParams(
            f"{function} params: {', '.join(reserved)} is set by the pipeline file only "
            "(screening.clamd), never by a caller"
        )
    params = {**params, **operator_params(pipeline.config, spec)}
    try:
        model = apply_ceilings(spec.parse_params(params), ceilings(pipeline.config, function))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise InvalidParams(f"{function} params: {problems}") from exc
    except AboveCeiling as exc:
        raise InvalidParams(f"{function} {exc}") from exc
    # Data files (hash lists) are read by the worker as assets are: the same buckets only.
    for ref in [*spec.asset_refs(model), *spec.data_refs(model)]:
        try:
            asset_bucket, _ = split_ref(ref)  # objects of the store only, never a path on a host
        except ParamsError as exc:
            raise InvalidParams(f"{function} params: {exc}") from exc
        check_bucket_allowed(pipeline.config, asset_bucket)
    return dict(model.model_dump(mode="json"))


def invoke(
    runtime: Runtime,
    function: str,
    bucket: str,
    key: str,
    params: dict[str, Any],
    idempotency_key: str | None = None,
) -> Invocation:
    """Queue `function` on bucket/key. Raises NotFound (unknown function), Forbidden (a bucket the
    pipeline file does not open to callers), InvalidParams, ObjectNotFound, Conflict (the function
    is disabled), BrokerUnavailable."""
    pipeline, ledger = runtime.pipeline, runtime.ledger
    if idempotency_key:
        earlier = ledger.claims.idempotent(function, idempotency_key)
        found = ledger.invocations.get(earlier) if earlier else None
        if found is not None:
            return found
    parsed = checked_params(pipeline, function, bucket, params)
    try:
        info = runtime.store.stat(bucket, key)
    except ObjectNotFound as exc:
        raise ObjectNotFound(f"{bucket}/{key}: {exc}") from exc
    config = pipeline.config
    plan = Planned(
        rule=API_RULE,
        function=function,
        params=parsed,
        params_hash=params_hash(parsed),
        output_bucket=config.outputs.bucket or bucket,
        output_template=DEFAULT_TEMPLATE.replace("{prefix}", config.outputs.prefix),
    )
    record = runtime.intake.accept(info.event("api"), plans=[plan])
    if not record.invocations:
        raise Conflict(f"{function} was not invoked: {record.reason}")
    inv_id = record.invocations[0]  # new, or the earlier claim of the same version and params
    if idempotency_key:
        inv_id = ledger.claims.remember_idempotent(function, idempotency_key, inv_id)
    inv = ledger.invocations.get(inv_id)
    assert inv is not None
    return inv
