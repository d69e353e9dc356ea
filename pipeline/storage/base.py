"""The object store interface. Backends implement the private `_` methods; the base owns the rest."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path

from pydantic import BaseModel, Field

from pipeline.errors import InvalidKey, ObjectNotFound
from pipeline.events.model import EventSource, ObjectEvent

_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
MAX_KEY_BYTES = 1024


class ObjectInfo(BaseModel):
    bucket: str
    key: str
    size: int
    etag: str
    version_id: str | None = None
    content_type: str = "application/octet-stream"
    metadata: dict[str, str] = Field(default_factory=dict)
    last_modified: float = 0.0

    @property
    def version_tag(self) -> str:
        return self.version_id or self.etag

    def event(self, source: EventSource, event_name: str = "s3:ObjectCreated:Put") -> ObjectEvent:
        """The notification a bucket would send about this object version."""
        return ObjectEvent(
            source=source,
            event_name=event_name,
            bucket=self.bucket,
            key=self.key,
            size=self.size,
            etag=self.etag,
            version_id=self.version_id,
            content_type=self.content_type,
            sequencer=self.version_id,
            metadata=self.metadata,
        )


def check_bucket(bucket: str) -> None:
    if not _BUCKET_NAME.match(bucket) or ".." in bucket:
        raise InvalidKey(f"invalid bucket name {bucket!r}")


def check_key(key: str) -> None:
    if not key or len(key.encode()) > MAX_KEY_BYTES or "\x00" in key:
        raise InvalidKey(f"invalid object key {key[:80]!r} (empty, NUL, or over {MAX_KEY_BYTES} bytes)")


class ObjectStore(ABC):
    """Streams objects to and from local files; no method loads a whole object into memory."""

    name: str

    @property
    def notifies_writes(self) -> bool:
        """Whether the store itself hands an event to the intake for each write (the local store
        does); an S3 server notifies only as its bucket is configured to."""
        return False

    def notifying(self, on_write: Callable[[ObjectEvent], object]) -> ObjectStore:
        """The same store, its writes reported to `on_write` where the store itself reports them
        (the local one); an S3 server notifies as its bucket is configured, so it is itself."""
        return self

    def put_file(
        self,
        bucket: str,
        key: str,
        path: Path,
        *,
        content_type: str = "application/octet-stream",
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        check_bucket(bucket)
        check_key(key)
        return self._put_file(bucket, key, path, content_type, dict(metadata or {}))

    def get_file(self, bucket: str, key: str, dest: Path, *, version_id: str | None = None) -> ObjectInfo:
        """Download into `dest` (written completely or not at all)."""
        check_bucket(bucket)
        check_key(key)
        return self._get_file(bucket, key, dest, version_id)

    def stat(self, bucket: str, key: str, *, version_id: str | None = None) -> ObjectInfo:
        """The current version, or the version `version_id` (ObjectNotFound once it is gone)."""
        check_bucket(bucket)
        check_key(key)
        return self._stat(bucket, key, version_id)

    def list(self, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]:
        check_bucket(bucket)
        return self._list(bucket, prefix)

    def delete(self, bucket: str, key: str, *, version_id: str | None = None) -> None:
        """Delete the object; with `version_id`, that version for good (on a versioned bucket a
        plain delete only hides the object behind a delete marker)."""
        check_bucket(bucket)
        check_key(key)
        self._delete(bucket, key, version_id)

    def copy(
        self,
        bucket: str,
        key: str,
        dest_bucket: str,
        dest_key: str,
        *,
        version_id: str | None = None,
        etag: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        """Copy the version `version_id` (or the current one, if its ETag is still `etag`) to
        `dest_bucket/dest_key` with `metadata`, inside the store: the bytes never pass through this
        process. ObjectNotFound when that version is gone or was replaced."""
        check_bucket(bucket)
        check_key(key)
        check_bucket(dest_bucket)
        check_key(dest_key)
        # Checked here as well as by the copy itself: some S3 servers ignore copy-source-if-match.
        source = self._stat(bucket, key, version_id)
        if etag and source.etag != etag:
            raise ObjectNotFound(f"{bucket}/{key} was replaced (ETag {source.etag}, not {etag})")
        return self._copy(source, dest_bucket, dest_key, dict(metadata or {}))

    def ensure_bucket(self, bucket: str) -> None:
        check_bucket(bucket)
        self._ensure_bucket(bucket)

    def set_tags(self, bucket: str, key: str, tags: dict[str, str], *, version_id: str | None = None) -> None:
        """Replace the object tags of the current version, or of `version_id` (S3 object tagging:
        lifecycle rules and bucket policies can act on them; a new version starts without tags)."""
        check_bucket(bucket)
        check_key(key)
        self._set_tags(bucket, key, dict(tags), version_id)

    def get_tags(self, bucket: str, key: str) -> dict[str, str]:
        check_bucket(bucket)
        check_key(key)
        return self._get_tags(bucket, key)

    def presigned_get(self, bucket: str, key: str, seconds: int) -> str | None:
        """A time-limited download URL, where the backend has such a thing (the local store has not)."""
        return None

    @abstractmethod
    def describe(self) -> str:
        """Where the objects live, for logs and `pipeline doctor`."""

    @abstractmethod
    def check(self) -> None:
        """Raise StorageError if the store cannot be reached."""

    @abstractmethod
    def _put_file(
        self, bucket: str, key: str, path: Path, content_type: str, metadata: dict[str, str]
    ) -> ObjectInfo: ...

    @abstractmethod
    def _get_file(self, bucket: str, key: str, dest: Path, version_id: str | None) -> ObjectInfo: ...

    @abstractmethod
    def _stat(self, bucket: str, key: str, version_id: str | None) -> ObjectInfo: ...

    @abstractmethod
    def _list(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]: ...

    @abstractmethod
    def _delete(self, bucket: str, key: str, version_id: str | None) -> None: ...

    @abstractmethod
    def _copy(
        self, source: ObjectInfo, dest_bucket: str, dest_key: str, metadata: dict[str, str]
    ) -> ObjectInfo:
        """Copy the version `source` describes (as `_stat` found it); ObjectNotFound if it changed."""

    @abstractmethod
    def _ensure_bucket(self, bucket: str) -> None: ...

    @abstractmethod
    def _set_tags(self, bucket: str, key: str, tags: dict[str, str], version_id: str | None) -> None: ...

    @abstractmethod
    def _get_tags(self, bucket: str, key: str) -> dict[str, str]: ...
