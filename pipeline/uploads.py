"""Uploading files into the configured store and following their invocations to the end."""

from __future__ import annotations

import mimetypes
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from functions._media import sniff
from pipeline.invocation import Invocation
from pipeline.runtime import Runtime
from pipeline.storage.base import ObjectInfo


@dataclass
class Upload:
    path: Path
    info: ObjectInfo
    started: float
    invocation_ids: list[str] = field(default_factory=list)


def upload_file(runtime: Runtime, path: Path, bucket: str, key: str) -> Upload:
    """Store `path` at bucket/key. The local store notifies the intake itself; for S3 we submit the
    event too, so processing never depends on the bucket's notification setup (if the bucket also
    notifies the gateway, deduplication makes the two one)."""
    started = time.time()
    runtime.store.ensure_bucket(bucket)
    # Declared from the name, as S3 clients do. It only steers routing: workers check the real
    # type by magic bytes, so a lying file is rejected with its reason instead of silently ignored.
    declared, _ = mimetypes.guess_type(key, strict=False)
    info = runtime.store.put_file(bucket, key, path, content_type=declared or sniff(path))
    if not runtime.store.notifies_writes:
        runtime.intake.accept(info.event("api"))
    ids = [
        inv.id
        for inv in runtime.ledger.invocations.for_object(bucket, key)
        if inv.version == info.version_tag
    ]
    return Upload(path=path, info=info, started=started, invocation_ids=ids)


def wait_for(
    runtime: Runtime,
    uploads: list[Upload],
    timeout: float,
    on_change: Callable[[Invocation], None] | None = None,
    poll: float = 0.05,
) -> list[Invocation]:
    """Poll the ledger until every invocation of `uploads` has finished or `timeout` passes."""
    deadline = time.monotonic() + timeout
    seen: dict[str, tuple[str, int]] = {}
    ids = [i for upload in uploads for i in upload.invocation_ids]
    while True:
        current = runtime.ledger.invocations.get_many(ids)
        for inv in current:
            # A change of status, or ffmpeg progress moving on by another tenth.
            state = (inv.status.value, int((inv.progress or {}).get("percent") or 0) // 10)
            if on_change and seen.get(inv.id) != state:
                on_change(inv)
            seen[inv.id] = state
        if all(inv.status.finished for inv in current) or time.monotonic() > deadline:
            return current
        time.sleep(poll)
