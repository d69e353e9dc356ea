"""Records kept deflated, as bytes: a ledger of a million invocations is mostly repetition.

Notification bodies, notification records and finished invocation records are JSON whose field
names and many values recur in every one. Each kind is deflated with a preset dictionary (zlib's
`zdict`) of what recurs, so even a short record compresses to about a third; the stored value
starts with a byte naming the dictionary. A dictionary can never change once records use it:
a new one takes a new tag, and the old stays to read old records (`tests/unit/test_packing.py`
holds each one's digest).

The ledger's client decodes replies as text, so packed values are read with `NEVER_DECODE`
(`read_*` below). Values written before packing (JSON text, or "zlib:" and base64) still read.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Mapping
from typing import Any

import redis
from redis.client import NEVER_DECODE

# The values and field names of MinIO's, S3's and SNS's notifications, most common last (a
# match nearer the end of a dictionary costs fewer bits).
NOTIFICATIONS = (
    b'{"Type":"Notification","MessageId":"","TopicArn":"arn:aws:sns:us-east-1:","Subject":"Amazon S3 '
    b'Notification","Message":"{\\"Records\\":[{\\"eventVersion\\":\\"2.1\\",\\"eventSource\\":\\"aws:s3'
    b'\\",\\"awsRegion\\":\\"us-east-1\\",\\"eventTime\\":\\"2026-\\",\\"eventName\\":\\"ObjectCreated:Put'
    b'\\",\\"userIdentity\\":{\\"principalId\\":\\"AWS:\\"},\\"requestParameters\\":{\\"sourceIPAddress\\":'
    b'\\"\\"},\\"responseElements\\":{\\"x-amz-request-id\\":\\"\\",\\"x-amz-id-2\\":\\"\\"},\\"s3\\":{\\"s3Sc'
    b'hemaVersion\\":\\"1.0\\",\\"configurationId\\":\\"\\",\\"bucket\\":{\\"name\\":\\"\\",\\"ownerIdentity'
    b'\\":{\\"principalId\\":\\"\\"},\\"arn\\":\\"arn:aws:s3:::\\"},\\"object\\":{\\"key\\":\\"\\",\\"size\\":'
    b',\\"eTag\\":\\"\\",\\"versionId\\":\\"\\",\\"sequencer\\":\\"\\"}}}]}","Timestamp":"2026-","SignatureV'
    b'ersion":"1","Signature":"","SigningCertURL":"https://sns.us-east-1.amazonaws.com/SimpleNotificati'
    b'onService-.pem","UnsubscribeURL":"https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&Subscri'
    b'ptionArn=arn:aws:sns:us-east-1:"}'
    b'{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1","eventTime":"2026-'
    b'","eventName":"ObjectCreated:Put","userIdentity":{"principalId":"AWS:"},"requestParameters":{"sour'
    b'ceIPAddress":""},"responseElements":{"x-amz-request-id":"","x-amz-id-2":""},"s3":{"s3SchemaVersion'
    b'":"1.0","configurationId":"","bucket":{"name":"","ownerIdentity":{"principalId":""},"arn":"arn:aw'
    b's:s3:::"},"object":{"key":"","size":,"eTag":"","versionId":"","sequencer":""}}}]}'
    b'{"EventName":"s3:ObjectRemoved:Delete","EventName":"s3:ObjectCreated:CompleteMultipartUpload",'
    b'"EventName":"s3:ObjectCreated:Put","Key":"","Records":[{"eventVersion":"2.0","eventSource":"minio:'
    b's3","awsRegion":"","eventTime":"2026-","eventName":"s3:ObjectCreated:Put","userIdentity":{"princip'
    b'alId":""},"requestParameters":{"principalId":"","region":"","sourceIPAddress":""},"responseElement'
    b's":{"x-amz-id-2":"","x-amz-request-id":"","x-minio-deployment-id":"","x-minio-origin-endpoint":"ht'
    b'tp://:9000"},"s3":{"s3SchemaVersion":"1.0","configurationId":"Config","bucket":{"name":"","ownerId'
    b'entity":{"principalId":""},"arn":"arn:aws:s3:::"},"object":{"key":"","size":,"eTag":"","contentTy'
    b'pe":"video/mp4","contentType":"image/png","contentType":"image/jpeg","userMetadata":{"content-type'
    b'":"image/jpeg"},"sequencer":""}},"source":{"host":"","port":"","userAgent":"MinIO (linux; amd64) m'
    b'inio-go/v7.0."}}]}'
)

# A notification's record (`EventRecord`, defaults left out).
EVENTS = (
    b'{"id":"","received_at":,"source":"sns","source":"api","source":"reconcile","source":"minio","even'
    b't_name":"s3:ObjectRemoved:Delete","event_name":"ObjectCreated:Put","event_name":"s3:ObjectCreate'
    b'd:Put","bucket":"","key":"","version":"","version_id":"","size":,"content_type":"video/mp4","conte'
    b'nt_type":"image/png","content_type":"image/jpeg","status":"duplicate","status":"unrouted","status'
    b'":"accepted","reason":"","invocations":["","raw_digest":"'
)

# An invocation's record (`Invocation`, defaults and its id left out), in the model's field order.
INVOCATIONS = (
    b'{"function":"transcode","function":"filter","function":"thumbnail","params":{"steps":[{"op":"gra'
    b'yscale"}]},"params":{"sizes":[256,1024],"format":"jpeg","quality":82},"params_hash":"","rule":"",'
    b'"queue":"fn.","bucket":"","key":"","version":"","etag":"","version_id":"","event_id":"","run_id":'
    b'"","step":"","status":"rejected","status":"failed","status":"succeeded","attempts":1,"created_at'
    b'":17,"enqueued_at":17,"started_at":17,"finished_at":17,"duration_ms":,"cpu_ms":,"queue_wait_ms":'
    b',"peak_memory_mb":,"memory_mb":512,"gb_seconds":0.,"bytes_read":,"bytes_written":,"cold_start":tr'
    b'ue,"outputs":[{"bucket":"","key":"derived/","content_type":"video/mp4","content_type":"image/jpeg'
    b'","size":,"meta":{"width":,"height":}}],"error":"","worker":"images.@","trace":{"traceparent":"00'
    b'-"},"media":{"media_type":"image/jpeg","size":,"width":,"height":}}'
)

DICTIONARIES = {1: NOTIFICATIONS, 2: EVENTS, 3: INVOCATIONS}
NOTIFICATION, EVENT, INVOCATION = 1, 2, 3
OLD_PACKED = "zlib:"  # bodies before dictionaries: deflated, base64 text
PACKED_FIELD = "z"  # the hash field holding a packed record's other fields


def pack(text: str, kind: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15, zdict=DICTIONARIES[kind])
    return bytes([kind]) + compressor.compress(text.encode()) + compressor.flush()


def unpack(stored: bytes | str) -> str:
    """The text of a stored value, packed or not, in any format it was ever stored in."""
    if isinstance(stored, bytes):
        if stored and stored[0] in DICTIONARIES:
            decompressor = zlib.decompressobj(-15, zdict=DICTIONARIES[stored[0]])
            return (decompressor.decompress(stored[1:]) + decompressor.flush()).decode()
        stored = stored.decode()
    if stored.startswith(OLD_PACKED):
        return zlib.decompress(base64.b64decode(stored[len(OLD_PACKED) :])).decode()
    return stored


def pack_hash(fields: Mapping[str, str], kept: tuple[str, ...]) -> dict[str, str | bytes]:
    """An invocation record's hash fields (JSON values) as the `kept` ones, which scripts and
    HINCRBY change in place, and one packed field with all the others."""
    rest = {name: json.loads(value) for name, value in fields.items() if name not in kept}
    packed: dict[str, str | bytes] = {name: fields[name] for name in kept if name in fields}
    packed[PACKED_FIELD] = pack(json.dumps(rest, separators=(",", ":")), INVOCATION)
    return packed


def unpack_hash(raw: Mapping[bytes, bytes]) -> dict[str, str]:
    """A hash record's fields as JSON values. Fields written after it was packed (a retry's
    reset) are newer than the packed ones, so they win."""
    fields: dict[str, str] = {}
    packed = raw.get(PACKED_FIELD.encode())
    if packed is not None:
        for name, value in json.loads(unpack(packed)).items():
            fields[name] = json.dumps(value, separators=(",", ":"))
    for name, value in raw.items():
        if name != PACKED_FIELD.encode():
            fields[name.decode()] = value.decode()
    return fields


def read_hash(client: Any, name: str) -> Any:
    """HGETALL of a record that may be packed (on a client or a pipeline): {bytes: bytes}."""
    return client.execute_command("HGETALL", name, **{NEVER_DECODE: []})


def read_values(client: redis.Redis, names: list[str]) -> list[bytes | None]:
    """MGET of values that may be packed."""
    if not names:
        return []
    found: list[bytes | None] = client.execute_command("MGET", *names, **{NEVER_DECODE: []})  # type: ignore[no-untyped-call]
    return found


def read_value(pipe: Any, name: str) -> Any:
    """GET of a value that may be packed, on a pipeline."""
    return pipe.execute_command("GET", name, **{NEVER_DECODE: []})
