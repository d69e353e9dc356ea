"""A directory as an object store: the embedded default.

Layout: `<root>/<bucket>/objects/<h[:2]>/<h>/` where `h` is the SHA-256 of the key, so no key can
name a path (`../`, `%2e%2e`, NUL, 1,024-byte keys are all just hashes). Each object directory holds
versions as `<version>.data` + `<version>.json`, the current version's object tags as `tags.json`,
and a `current` pointer replaced atomically by rename: a reader sees the old object or the new
one, never half of one.

Like a bucket with notifications configured, every completed write or delete is reported to
`on_write` as an `ObjectEvent`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from pipeline.errors import ObjectNotFound, StorageError
from pipeline.events.model import ObjectEvent
from pipeline.storage.base import ObjectInfo, ObjectStore

_CHUNK = 1024 * 1024
_TAGS = "tags.json"


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


class LocalStore(ObjectStore):
    name = "local"

    def __init__(self, root: Path, on_write: Callable[[ObjectEvent], object] | None = None) -> None:
        self.root = root
        self.on_write = on_write

    def notifying(self, on_write: Callable[[ObjectEvent], object]) -> LocalStore:
        return LocalStore(self.root, on_write=on_write)

    @property
    def notifies_writes(self) -> bool:
        return self.on_write is not None

    def describe(self) -> str:
        return f"local directory {self.root.resolve()}"

    def check(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if not os.access(self.root, os.W_OK):
            raise StorageError(f"{self.root} is not writable")

    def _bucket_dir(self, bucket: str) -> Path:
        return self.root / bucket

    def _object_dir(self, bucket: str, key: str) -> Path:
        digest = hashlib.sha256(key.encode()).hexdigest()
        return self._bucket_dir(bucket) / "objects" / digest[:2] / digest

    def _require_bucket(self, bucket: str) -> None:
        if not self._bucket_dir(bucket).is_dir():
            raise ObjectNotFound(f"bucket {bucket!r} does not exist")

    def _ensure_bucket(self, bucket: str) -> None:
        (self._bucket_dir(bucket) / "objects").mkdir(parents=True, exist_ok=True)

    def _put_file(
        self, bucket: str, key: str, path: Path, content_type: str, metadata: dict[str, str]
    ) -> ObjectInfo:
        self._require_bucket(bucket)
        obj_dir = self._object_dir(bucket, key)
        obj_dir.mkdir(parents=True, exist_ok=True)
        version = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        tmp = obj_dir / f".tmp-{version}"
        md5 = hashlib.md5()  # noqa: S324 - S3-style ETag, not a security boundary
        size = 0
        try:
            with path.open("rb") as src, tmp.open("wb") as dst:
                while chunk := src.read(_CHUNK):
                    md5.update(chunk)
                    dst.write(chunk)
                    size += len(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            tmp.replace(obj_dir / f"{version}.data")
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StorageError(f"cannot write {bucket}/{key}: {exc}") from exc
        info = ObjectInfo(
            bucket=bucket,
            key=key,
            size=size,
            etag=md5.hexdigest(),
            version_id=version,
            content_type=content_type,
            metadata=metadata,
            last_modified=time.time(),
        )
        _write_atomic(obj_dir / f"{version}.json", info.model_dump_json().encode())
        previous = self._current_version(obj_dir)
        _write_atomic(obj_dir / "current", version.encode())  # the moment the new version is visible
        (obj_dir / _TAGS).unlink(missing_ok=True)  # tags belong to a version, as in S3
        if previous:
            for suffix in (".data", ".json"):
                (obj_dir / f"{previous}{suffix}").unlink(missing_ok=True)
        self._emit("s3:ObjectCreated:Put", info)
        return info

    @staticmethod
    def _current_version(obj_dir: Path) -> str | None:
        try:
            return (obj_dir / "current").read_text().strip() or None
        except FileNotFoundError:
            return None

    def _read_info(self, bucket: str, key: str) -> tuple[ObjectInfo, Path]:
        obj_dir = self._object_dir(bucket, key)
        # A writer may replace the version between reading `current` and opening it: read again.
        for _ in range(5):
            version = self._current_version(obj_dir)
            if version is None:
                break
            with contextlib.suppress(FileNotFoundError):
                info = ObjectInfo.model_validate_json((obj_dir / f"{version}.json").read_bytes())
                return info, obj_dir / f"{version}.data"
        self._require_bucket(bucket)
        raise ObjectNotFound(f"object {bucket}/{key} does not exist")

    def _get_file(self, bucket: str, key: str, dest: Path, version_id: str | None) -> ObjectInfo:
        info, data = self._version(bucket, key, version_id)
        tmp = dest.with_name(f".{dest.name}.part")
        try:
            shutil.copyfile(data, tmp)
            tmp.replace(dest)
        except FileNotFoundError as exc:
            raise ObjectNotFound(f"object {bucket}/{key} was replaced while reading; retry") from exc
        return info

    def _stat(self, bucket: str, key: str, version_id: str | None) -> ObjectInfo:
        return self._version(bucket, key, version_id)[0]

    def _version(self, bucket: str, key: str, version_id: str | None) -> tuple[ObjectInfo, Path]:
        """The current version; this store keeps no other, so an older `version_id` is gone."""
        info, data = self._read_info(bucket, key)
        if version_id and version_id != info.version_id:
            raise ObjectNotFound(f"version {version_id} of {bucket}/{key} is no longer current")
        return info, data

    def _copy(
        self, source: ObjectInfo, dest_bucket: str, dest_key: str, metadata: dict[str, str]
    ) -> ObjectInfo:
        info, data = self._version(source.bucket, source.key, source.version_id)
        if info.etag != source.etag:
            raise ObjectNotFound(f"{source.bucket}/{source.key} was replaced while copying")
        try:
            return self._put_file(dest_bucket, dest_key, data, info.content_type, metadata)
        except StorageError as exc:
            if not data.exists():  # replaced while copying
                raise ObjectNotFound(f"{source.bucket}/{source.key} was replaced while copying") from exc
            raise

    def path_of(self, bucket: str, key: str) -> Path:
        """The file holding the current version (for people looking at results on disk)."""
        return self._read_info(bucket, key)[1]

    def _list(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        self._require_bucket(bucket)
        found: list[ObjectInfo] = []
        for pointer in (self._bucket_dir(bucket) / "objects").glob("*/*/current"):
            version = pointer.read_text().strip()
            with contextlib.suppress(FileNotFoundError):
                info = ObjectInfo.model_validate_json((pointer.parent / f"{version}.json").read_bytes())
                if info.key.startswith(prefix):
                    found.append(info)
        return iter(sorted(found, key=lambda i: i.key))

    def _delete(self, bucket: str, key: str, version_id: str | None) -> None:
        try:
            info, _ = self._version(bucket, key, version_id)
        except ObjectNotFound:
            return
        shutil.rmtree(self._object_dir(bucket, key), ignore_errors=True)
        self._emit("s3:ObjectRemoved:Delete", info)

    def _set_tags(self, bucket: str, key: str, tags: dict[str, str], version_id: str | None) -> None:
        self._version(bucket, key, version_id)
        _write_atomic(self._object_dir(bucket, key) / _TAGS, json.dumps(tags).encode())

    def _get_tags(self, bucket: str, key: str) -> dict[str, str]:
        self._read_info(bucket, key)
        try:
            tags: dict[str, str] = json.loads((self._object_dir(bucket, key) / _TAGS).read_bytes())
        except FileNotFoundError:
            return {}
        return tags

    def _emit(self, event_name: str, info: ObjectInfo) -> None:
        if self.on_write is None:
            return
        self.on_write(info.event("local", event_name))
