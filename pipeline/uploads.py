"""Uploading files into the configured store and following their invocations to the end."""

from __future__ import annotations

import mimetypes
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from functions._media import sniff
from pipeline.flows.model import RunStatus
from pipeline.invocation import Invocation, Status
from pipeline.runtime import Runtime
from pipeline.storage.base import ObjectInfo


@dataclass
class Upload:
    path: Path
    info: ObjectInfo
    started: float
    invocation_ids: list[str] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)


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
        if inv.version == info.version_tag and inv.run_id is None
    ]
    runs = [run.id for run in runtime.ledger.runs.for_object(bucket, key) if run.version == info.version_tag]
    return Upload(path=path, info=info, started=started, invocation_ids=ids, run_ids=runs)


def succeeded(inv: Invocation) -> bool:
    """Whether an invocation ended as its upload wanted: a flow step skipped (its `if` was false,
    or a newer version's run took over) is an outcome, not a failure."""
    return inv.status == Status.SUCCEEDED or (inv.run_id is not None and inv.status == Status.SKIPPED)


def wait_for(
    runtime: Runtime,
    uploads: list[Upload],
    timeout: float,
    on_change: Callable[[Invocation], None] | None = None,
    poll: float = 0.05,
) -> list[Invocation]:
    """Poll the ledger until every invocation and flow run of `uploads` has finished or `timeout`
    passes. Returns the invocations, the runs' steps included."""
    deadline = time.monotonic() + timeout
    seen: dict[str, tuple[str, int]] = {}
    single = [i for upload in uploads for i in upload.invocation_ids]
    run_ids = [r for upload in uploads for r in upload.run_ids]
    while True:
        runs = runtime.ledger.runs.get_many(run_ids)
        steps = [i for run in runs for state in run.steps.values() for i in state.invocations]
        current = runtime.ledger.invocations.get_many(single + steps)
        for inv in current:
            # A change of status, or ffmpeg progress moving on by another tenth.
            state = (inv.status.value, int((inv.progress or {}).get("percent") or 0) // 10)
            if on_change and seen.get(inv.id) != state:
                on_change(inv)
            seen[inv.id] = state
        runs_done = all(run.status != RunStatus.RUNNING for run in runs)
        if (runs_done and all(inv.status.finished for inv in current)) or time.monotonic() > deadline:
            return current
        time.sleep(poll)
