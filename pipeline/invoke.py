"""Invoking a function by name on a stored object: the API-gateway entry of a FaaS.

The same intake as bucket events (dedup claim, ledger record, the function's queue, limits, the
upload's join for `object.processed` webhooks); only the plan comes from the caller instead of the
rules. An idempotency key makes a retried request return the first request's invocation.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from pipeline.config import DEFAULT_TEMPLATE
from pipeline.errors import Conflict, InvalidParams, NotFound, ObjectNotFound
from pipeline.invocation import Invocation, params_hash
from pipeline.routing import API_RULE, Planned
from pipeline.runtime import Runtime


def invoke(
    runtime: Runtime,
    function: str,
    bucket: str,
    key: str,
    params: dict[str, Any],
    idempotency_key: str | None = None,
) -> Invocation:
    """Queue `function` on bucket/key. Raises NotFound (unknown function), InvalidParams,
    ObjectNotFound, Conflict (the function is disabled), BrokerUnavailable."""
    pipeline, ledger = runtime.pipeline, runtime.ledger
    if function not in pipeline.functions:
        raise NotFound(f"no function {function}; known: {', '.join(sorted(pipeline.functions))}")
    if idempotency_key:
        earlier = ledger.claims.idempotent(function, idempotency_key)
        found = ledger.invocations.get(earlier) if earlier else None
        if found is not None:
            return found
    spec = pipeline.function(function)
    try:
        parsed = spec.parse_params(params).model_dump(mode="json")
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise InvalidParams(f"{function} params: {problems}") from exc
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
