"""`ObjectEvent`: what every notification format is parsed into."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

EventSource = Literal["minio", "s3", "sns", "local", "api", "reconcile"]


# The source of events a backfill makes by listing a bucket (`pipeline reconcile`): their work
# goes to the backfill lanes, behind fresh uploads.
BACKFILL_SOURCE = "reconcile"


class ObjectEvent(BaseModel):
    """One change to one object. `key` is decoded (exactly once) and never used as a local path."""

    model_config = ConfigDict(frozen=True)

    source: EventSource
    event_name: str = Field(description="Always with the `s3:` prefix, e.g. `s3:ObjectCreated:Put`.")
    bucket: str
    key: str
    size: int | None = None
    etag: str | None = None
    version_id: str | None = None
    content_type: str | None = None
    sequencer: str | None = None
    event_time: datetime | None = None
    metadata: dict[str, str] = Field(default_factory=dict)

    def not_utf8(self) -> str | None:
        """The name of the first field that cannot be written (UTF-8), if any. JSON lets a sender
        write a lone surrogate (`"\\ud800"`), which Python decodes and Redis cannot store."""
        fields = {
            "bucket": self.bucket,
            "key": self.key,
            "content type": self.content_type,
            "version id": self.version_id,
            "ETag": self.etag,
            "sequencer": self.sequencer,
            "event name": self.event_name,
        }
        fields.update({f"metadata {k!r}": f"{k}{v}" for k, v in self.metadata.items()})
        for name, value in fields.items():
            try:
                (value or "").encode("utf-8")
            except UnicodeEncodeError:
                return name
        return None

    @property
    def version_tag(self) -> str:
        """What identifies this version of the object: version id, else ETag, else the sequencer."""
        return self.version_id or self.etag or self.sequencer or ""
