"""Any S3-compatible server (MinIO, AWS S3, Ceph RGW, SeaweedFS, Garage...) through the minio SDK.

Only plain S3 calls are used; nothing here depends on MinIO-only APIs.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote, unquote

import urllib3
from minio import Minio
from minio.commonconfig import REPLACE, CopySource, Tags
from minio.error import MinioException, S3Error

from pipeline.errors import InvalidKey, ObjectNotFound, StorageError
from pipeline.settings import S3Settings
from pipeline.storage.base import ObjectInfo, ObjectStore

_META_PREFIX = "x-amz-meta-"
_NOT_FOUND = {"NoSuchKey", "NoSuchBucket", "NoSuchVersion", "NoSuchObject"}


def _encode_meta(metadata: dict[str, str]) -> dict[str, str | list[str] | tuple[str]]:
    # Metadata travels as HTTP headers, which are ASCII: percent-encode anything else.
    return {k: quote(v, safe=" !#$&'()*+,/:;=?@[]~") for k, v in metadata.items()}


def _decode_meta(headers: object) -> dict[str, str]:
    items = headers.items() if hasattr(headers, "items") else []
    return {
        k[len(_META_PREFIX) :].lower(): unquote(v)
        for k, v in items
        if isinstance(k, str) and k.lower().startswith(_META_PREFIX)
    }


class S3Store(ObjectStore):
    name = "s3"

    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=5.0, read=120.0),
            retries=urllib3.Retry(total=3, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504)),
            maxsize=16,
        )
        self.client = Minio(
            settings.endpoint,
            access_key=settings.access_key,
            secret_key=settings.secret_key,
            secure=settings.secure,
            region=settings.region,
            http_client=http,
        )

    def describe(self) -> str:
        scheme = "https" if self.settings.secure else "http"
        return f"S3 endpoint {scheme}://{self.settings.endpoint}"

    def check(self) -> None:
        try:
            self.client.list_buckets()
        except (MinioException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise StorageError(f"cannot reach {self.describe()}: {exc}") from exc

    def presigned_get(self, bucket: str, key: str, seconds: int) -> str | None:
        try:
            return str(self.client.presigned_get_object(bucket, key, expires=timedelta(seconds=seconds)))
        except (MinioException, ValueError) as exc:
            raise self._wrap(exc, f"presign {bucket}/{key}") from exc

    @staticmethod
    def _wrap(exc: Exception, what: str) -> StorageError:
        if isinstance(exc, ValueError):
            # The minio SDK refuses some keys S3 allows (e.g. with "." or ".." segments).
            return InvalidKey(f"{what}: {exc}")
        if isinstance(exc, S3Error) and exc.code in _NOT_FOUND:
            return ObjectNotFound(f"{what} does not exist ({exc.code})")
        return StorageError(f"{what}: {exc}")

    def _info(self, bucket: str, key: str, stat: object) -> ObjectInfo:
        modified = getattr(stat, "last_modified", None)
        return ObjectInfo(
            bucket=bucket,
            key=key,
            size=int(getattr(stat, "size", 0) or 0),
            etag=str(getattr(stat, "etag", "") or "").strip('"'),
            version_id=getattr(stat, "version_id", None) or None,
            content_type=getattr(stat, "content_type", None) or "application/octet-stream",
            metadata=_decode_meta(getattr(stat, "metadata", None) or {}),
            last_modified=modified.timestamp() if modified else 0.0,
        )

    def _put_file(
        self, bucket: str, key: str, path: Path, content_type: str, metadata: dict[str, str]
    ) -> ObjectInfo:
        try:
            result = self.client.fput_object(
                bucket, key, str(path), content_type=content_type, metadata=_encode_meta(metadata)
            )
        except (MinioException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise self._wrap(exc, f"put {bucket}/{key}") from exc
        return ObjectInfo(
            bucket=bucket,
            key=key,
            size=path.stat().st_size,
            etag=str(result.etag or "").strip('"'),
            version_id=result.version_id or None,
            content_type=content_type,
            metadata=metadata,
        )

    def _get_file(self, bucket: str, key: str, dest: Path, version_id: str | None) -> ObjectInfo:
        try:
            # fget_object writes to `<dest>.<etag>.part.minio` and renames when complete.
            stat = self.client.fget_object(bucket, key, str(dest), version_id=version_id)
        except (MinioException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise self._wrap(exc, f"object {bucket}/{key}") from exc
        return self._info(bucket, key, stat)

    def _stat(self, bucket: str, key: str, version_id: str | None) -> ObjectInfo:
        try:
            stat = self.client.stat_object(bucket, key, version_id=version_id)
        except (MinioException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise self._wrap(exc, f"object {bucket}/{key}") from exc
        return self._info(bucket, key, stat)

    def _list(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        try:
            for obj in self.client.list_objects(bucket, prefix=prefix or None, recursive=True):
                if obj.object_name is None or obj.is_dir:
                    continue
                yield self._info(bucket, obj.object_name, obj)
        except (MinioException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise self._wrap(exc, f"bucket {bucket}") from exc

    def _delete(self, bucket: str, key: str, version_id: str | None) -> None:
        try:
            self.client.remove_object(bucket, key, version_id=version_id)
        except (MinioException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise self._wrap(exc, f"object {bucket}/{key}") from exc

    def _ensure_bucket(self, bucket: str) -> None:
        try:
            if not self.client.bucket_exists(bucket):
                self.client.make_bucket(bucket)
        except S3Error as exc:
            if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise self._wrap(exc, f"bucket {bucket}") from exc
        except (MinioException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise self._wrap(exc, f"bucket {bucket}") from exc

    def _copy(
        self, source: ObjectInfo, dest_bucket: str, dest_key: str, metadata: dict[str, str]
    ) -> ObjectInfo:
        # CopyObject (UploadPartCopy above 5 GiB, which the SDK switches to): the server copies
        # the version `copy` found, if its ETag is still the same. With REPLACE the copy's headers
        # are the ones given: its content type is sent again.
        bucket, key = source.bucket, source.key
        pinned = CopySource(bucket, key, version_id=source.version_id, match_etag=source.etag)
        headers = {"Content-Type": source.content_type, **_encode_meta(metadata)}
        try:
            self.client.copy_object(
                dest_bucket, dest_key, pinned, metadata=headers, metadata_directive=REPLACE
            )
        except S3Error as exc:
            if exc.code == "PreconditionFailed":
                raise ObjectNotFound(
                    f"{bucket}/{key} was replaced (ETag is no longer {source.etag})"
                ) from exc
            raise self._wrap(exc, f"copy {bucket}/{key} to {dest_bucket}/{dest_key}") from exc
        except (MinioException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise self._wrap(exc, f"copy {bucket}/{key} to {dest_bucket}/{dest_key}") from exc
        return self._stat(dest_bucket, dest_key, None)

    def _set_tags(self, bucket: str, key: str, tags: dict[str, str], version_id: str | None) -> None:
        object_tags = Tags.new_object_tags()
        object_tags.update(tags)
        try:
            self.client.set_object_tags(bucket, key, object_tags, version_id=version_id)
        except (MinioException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise self._wrap(exc, f"tags of {bucket}/{key}") from exc

    def _get_tags(self, bucket: str, key: str) -> dict[str, str]:
        try:
            return dict(self.client.get_object_tags(bucket, key) or {})
        except (MinioException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise self._wrap(exc, f"tags of {bucket}/{key}") from exc
