"""S3 event `Records` as sent by MinIO's webhook target and by AWS S3 (directly, via SQS or SNS)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import unquote_plus

from pipeline.errors import EventError
from pipeline.events.model import EventSource, ObjectEvent


def is_test_event(body: dict[str, Any]) -> bool:
    """S3 sends `s3:TestEvent` when a notification configuration is saved; it names no object."""
    return body.get("Event") == "s3:TestEvent"


def parse_records(body: dict[str, Any], source: EventSource) -> list[ObjectEvent]:
    """Parse a `{"Records": [...]}` body. Keys are URL-encoded (`quote_plus`) and decoded here, once."""
    records = body.get("Records")
    if not isinstance(records, list):
        raise EventError("notification has no 'Records' list")
    return [_parse_record(record, i, source) for i, record in enumerate(records)]


def _parse_record(record: Any, index: int, source: EventSource) -> ObjectEvent:
    where = f"Records[{index}]"
    if not isinstance(record, dict):
        raise EventError(f"{where}: expected an object")
    try:
        s3 = record["s3"]
        bucket = s3["bucket"]["name"]
        obj = s3["object"]
        raw_key = obj["key"]
        name = record["eventName"]
    except (KeyError, TypeError) as exc:
        raise EventError(f"{where}: missing field {exc}") from exc
    if not all(isinstance(v, str) and v for v in (bucket, raw_key, name)):
        raise EventError(f"{where}: bucket, key and eventName must be non-empty strings")
    # AWS omits the "s3:" prefix that MinIO and the notification configuration use.
    event_name = name if name.startswith("s3:") else f"s3:{name}"
    user_meta = obj.get("userMetadata") or {}
    if not isinstance(user_meta, dict):
        raise EventError(f"{where}: s3.object.userMetadata must be an object")
    content_type = _text(obj, "contentType", where) or _text(user_meta, "content-type", where)
    size = obj.get("size")
    etag = _text(obj, "eTag", where) or _text(obj, "etag", where)
    return ObjectEvent(
        source=source,
        event_name=event_name,
        bucket=bucket,
        key=unquote_plus(raw_key),
        size=size if isinstance(size, int) else None,
        etag=(etag.strip('"') or None) if etag else None,
        version_id=_text(obj, "versionId", where),
        content_type=content_type,
        sequencer=_text(obj, "sequencer", where),
        event_time=_parse_time(record.get("eventTime")),
        metadata={_meta_name(k): str(v) for k, v in user_meta.items() if isinstance(k, str)},
    )


def _text(fields: dict[str, Any], name: str, where: str) -> str | None:
    """An optional string field: absent or empty is None; any other type is the sender's error
    (400, so MinIO does not retry a malformed notification forever as it would a 500)."""
    value = fields.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise EventError(f"{where}: {name} must be a string, not {type(value).__name__}")
    return value


def _meta_name(name: str) -> str:
    """MinIO reports user metadata as `X-Amz-Meta-Pipeline-Generation`; we store `pipeline-generation`."""
    name = name.lower()
    return name[len("x-amz-meta-") :] if name.startswith("x-amz-meta-") else name


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
