"""The pipeline file (pipeline.yaml): functions, rules, outputs and limits.

Loading validates everything up front, including each rule's function parameters against the
function's own `Params` model, so a typo fails at start with the file, the path inside it and the
reason, never half-way through processing an upload.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from functions.admission import ScreeningPolicy
from pipeline.errors import ConfigError
from pipeline.event_types import EventType
from pipeline.flows.spec import Flow
from pipeline.output_target import OutputTarget
from pipeline.retry_policy import RetryPolicy

BUILTIN_NAME = "<built-in pipeline.yaml>"


BACKFILL_SUFFIX = ".backfill"


def backfill_lane(queue: str) -> str:
    return f"{queue}{BACKFILL_SUFFIX}"


def is_backfill_lane(queue: str) -> bool:
    return queue.endswith(BACKFILL_SUFFIX)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FunctionCall(_Strict):
    """A function a rule fires, with its parameters (a preset's, overridden by `params`)."""

    function: str
    preset: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    output: OutputTarget = OutputTarget()


class Rule(_Strict):
    """Which object events trigger which functions: a list of independent `functions`, or a
    `flow` (a graph of steps, see `flows:`)."""

    name: str
    bucket: str
    prefix: str = ""
    suffixes: list[str] = Field(default_factory=list, description="Key endings, case-insensitive.")
    events: list[str] = Field(default_factory=lambda: ["s3:ObjectCreated:*"])
    content_types: list[str] = Field(default_factory=lambda: ["*/*"])
    functions: list[FunctionCall] = Field(default_factory=list)
    flow: str | None = Field(default=None, description="The name of a flow under `flows:`.")
    on_delete: Literal["keep", "remove-outputs"] = Field(
        default="keep",
        description="When the source is deleted: its queued steps are cancelled either way; "
        "remove-outputs also deletes what was derived from it.",
    )
    allow_derived: bool = Field(
        default=False, description="Also fire on objects the pipeline wrote (up to limits.max_generation)."
    )
    callback: bool = Field(
        default=False,
        description="Send webhooks to a callback URL the uploader put in the object's metadata "
        "(x-amz-meta-<callbacks.metadata_key>).",
    )

    @model_validator(mode="after")
    def _functions_or_flow(self) -> Rule:
        if bool(self.functions) == bool(self.flow):
            raise ValueError("a rule has either `functions` (a list) or `flow` (a name), not both or neither")
        return self

    @field_validator("events")
    @classmethod
    def _event_names(cls, events: list[str]) -> list[str]:
        for name in events:
            if not name.startswith("s3:"):
                raise ValueError(f"event {name!r} must start with 's3:' (e.g. 's3:ObjectCreated:*')")
        return events


class FunctionSettings(_Strict):
    """Per-function runtime settings; `module` adds a user function by dotted path."""

    module: str | None = None
    queue: str | None = None
    concurrency: int = Field(default=2, ge=1, le=64)
    time_limit: float | None = Field(default=None, gt=0, description="Seconds; default limits.time_limit.")
    max_attempts: int | None = Field(default=None, ge=1, le=50)
    retry: RetryPolicy = Field(
        default_factory=RetryPolicy,
        description="How failed attempts are retried (its max_attempts, where set, wins over the one above).",
    )
    memory_mb: int | None = Field(
        default=None,
        ge=64,
        description="Memory one invocation may use. A worker process that grows past it is replaced "
        "after its task (the largest value among the functions a worker serves); size containers "
        "at concurrency x memory_mb.",
    )
    reserved_concurrency: int | None = Field(
        default=None,
        ge=0,
        le=10_000,
        description="At most this many invocations of the function run at once across all workers; "
        "0 switches the function off (its work waits in the queue). Unset: no cap.",
    )
    paused: bool = Field(
        default=False,
        description="Workers take no work from the function's queue; uploads still queue up. "
        "The dashboard's Pause adds to this, it cannot resume what the file pauses.",
    )

    def held_reason(self) -> str:
        """Why the file holds the function back, or "" if it does not."""
        if self.paused:
            return "paused: true"
        return "reserved_concurrency: 0" if self.reserved_concurrency == 0 else ""

    def takes_work(self) -> bool:
        return not self.held_reason()


class Outputs(_Strict):
    prefix: str = "derived/"
    bucket: str | None = Field(default=None, description="Bucket for outputs; default the source bucket.")


class Limits(_Strict):
    time_limit: float = Field(default=300, gt=0)
    max_generation: int = Field(
        default=3, ge=1, le=20, description="Outputs of outputs... stop after this many generations."
    )
    visibility_timeout: float | None = Field(
        default=None,
        gt=0,
        description="Seconds before Redis redelivers an unacknowledged task; "
        "default twice the longest time limit plus 60.",
    )
    lease_seconds: float = Field(
        default=30, ge=1, le=3600, description="How long a dead worker's claim on a running invocation lasts."
    )
    max_attempts: int = Field(default=3, ge=1, le=50)


class WebhookConfig(_Strict):
    """A webhook subscription defined in the pipeline file (others are made through the API)."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    url: str = Field(pattern=r"^https?://")
    secret_env: str | None = Field(
        default=None, description="Environment variable holding the `whsec_...` secret. Unset: generated."
    )
    previous_secret_env: str | None = Field(
        default=None, description="During a rotation: the old secret, still signing alongside the new one."
    )
    events: list[EventType] = Field(default_factory=list, description="Empty: every event type.")
    bucket: str | None = None
    prefix: str = ""
    functions: list[str] = Field(default_factory=list, description="Empty: every function.")
    enabled: bool = True
    description: str = ""

    def secret_envs(self) -> list[str]:
        return [n for n in (self.secret_env, self.previous_secret_env) if n]


class CallbackConfig(_Strict):
    """Per-upload callbacks, for rules with `callback: true`."""

    metadata_key: str = Field(
        default="callback-url", description="Object metadata holding the URL (x-amz-meta-callback-url)."
    )
    secret_env: str | None = Field(
        default=None, description="Environment variable holding the signing secret. Unset: generated."
    )
    events: list[EventType] = Field(
        default_factory=lambda: [EventType.OBJECT_PROCESSED, EventType.OBJECT_REJECTED]
    )
    ttl_seconds: float = Field(
        default=86400, gt=0, description="A callback destination is forgotten this long after its last use."
    )
    max_per_rule: int = Field(
        default=100, ge=1, description="Callback destinations one rule may have at once."
    )
    max_destinations: int = Field(default=1000, ge=1, description="Callback destinations in all.")


class InvokeConfig(_Strict):
    """Who may name what through `POST /api/functions/{name}/invoke`."""

    buckets: list[str] = Field(
        default_factory=list,
        description="Buckets callers may invoke functions on, besides the watched ones.",
    )


class PipelineConfig(_Strict):
    version: Literal[1] = 1
    buckets: list[str] = Field(default_factory=list, description="Buckets created at start if missing.")
    functions: dict[str, FunctionSettings] = Field(default_factory=dict)
    rules: list[Rule] = Field(default_factory=list)
    outputs: Outputs = Outputs()
    limits: Limits = Limits()
    screening: ScreeningPolicy = ScreeningPolicy()
    presets: dict[str, dict[str, dict[str, Any]]] = Field(
        default_factory=dict, description="Named parameter sets per function: presets.<function>.<name>."
    )
    webhooks: list[WebhookConfig] = Field(default_factory=list)
    callbacks: CallbackConfig = CallbackConfig()
    invoke: InvokeConfig = InvokeConfig()
    flows: dict[str, Flow] = Field(
        default_factory=dict, description="Named graphs of steps; see docs/flows.md."
    )

    @field_validator("webhooks")
    @classmethod
    def _unique_webhooks(cls, webhooks: list[WebhookConfig]) -> list[WebhookConfig]:
        ids = [w.id for w in webhooks]
        if len(ids) != len(set(ids)):
            raise ValueError(f"webhook ids must be unique: {ids}")
        return webhooks

    def function_settings(self, name: str) -> FunctionSettings:
        return self.functions.get(name) or FunctionSettings()

    def lane_for(self, name: str, backfill: bool) -> str:
        """The queue an invocation of `name` goes to: its function's queue, or for work a backfill
        found (`pipeline reconcile`) the backfill lane beside it, which workers take from only
        when the function's own queue is empty (`pipeline.queue.lanes`)."""
        queue = self.queue_for(name)
        return backfill_lane(queue) if backfill else queue

    def queue_for(self, name: str) -> str:
        return self.function_settings(name).queue or f"fn.{name}"

    def time_limit_for(self, name: str) -> float:
        return self.function_settings(name).time_limit or self.limits.time_limit

    def longest_time_limit(self, functions: list[str]) -> float:
        """The longest time limit any invocation can have: the functions' and the flow steps'."""
        limits = [self.time_limit_for(name) for name in functions]
        limits += [s.time_limit for flow in self.flows.values() for s in flow.steps.values() if s.time_limit]
        return max(limits, default=self.limits.time_limit)

    def max_attempts_for(self, name: str) -> int:
        fn = self.function_settings(name)
        return fn.retry.max_attempts or fn.max_attempts or self.limits.max_attempts

    def retry_policy(self, name: str) -> RetryPolicy:
        return self.function_settings(name).retry

    def held_by_config(self) -> set[str]:
        """Functions the file holds back (`paused: true` or `reserved_concurrency: 0`)."""
        return {name for name, fn in self.functions.items() if not fn.takes_work()}

    def watched_buckets(self) -> list[str]:
        return sorted({*self.buckets, *(rule.bucket for rule in self.rules)})

    def invocable_buckets(self) -> list[str]:
        """Buckets a caller of the invoke API may name: the watched ones and `invoke.buckets`."""
        return sorted({*self.watched_buckets(), *self.invoke.buckets})


def format_location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def parse_config(text: str, source: str) -> PipelineConfig:
    """Parse and validate pipeline-file text; errors name `source`, the path inside it and the reason."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        problems = [f"{source}: {format_location(err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise ConfigError("\n".join(problems)) from exc


def load_config(path: Path | None) -> tuple[PipelineConfig, str]:
    """Load the pipeline file at `path`, or the built-in default when `path` is None."""
    if path is None:
        text = resources.files("pipeline").joinpath("default_pipeline.yaml").read_text("utf-8")
        return parse_config(text, BUILTIN_NAME), BUILTIN_NAME
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the pipeline file: {exc.strerror}") from exc
    return parse_config(text, str(path)), str(path)
