"""Quarantining a blocked upload: a copy under the quarantine prefix (never routed), then the
original deleted (`on_block: move`) or tagged `pipeline-screen=blocked` (`on_block: copy`).

The copy is made inside the store (S3 CopyObject), of the version that was screened: pinned by its
version id on a versioned bucket, by its ETag otherwise. On a versioned bucket `move` deletes that
version for good, so it cannot be read by its version id afterwards. Every step is safe to repeat,
so a worker that dies half-way is finished by the reconciler's sweep, and a sweep never downloads
the upload.
"""

from __future__ import annotations

import hashlib
import logging
import time
from urllib.parse import quote

from pipeline.errors import InvalidKey, ObjectNotFound, StorageError
from pipeline.flows.model import Quarantine, Run
from pipeline.storage.base import ObjectStore

log = logging.getLogger(__name__)

BLOCKED_TAG = "pipeline-screen"
# S3 keeps at most 2 KB of user metadata; a key up to 1,024 bytes, percent-encoded, may not fit.
_MAX_KEY_IN_METADATA = 1024


def source_metadata(key: str) -> dict[str, str]:
    """The source key as metadata of its quarantined copy, or its SHA-256 where it is too long."""
    if len(quote(key)) <= _MAX_KEY_IN_METADATA:
        return {"pipeline-source-key": key}
    return {"pipeline-source-key-sha256": hashlib.sha256(key.encode()).hexdigest()}


def quarantine(store: ObjectStore, run: Run, target: Quarantine) -> float | str | None:
    """Quarantine the run's upload. Returns when it was done, why it cannot be (a string, recorded
    on the run for the operator), or None when the store failed and it is to be tried again."""
    source = f"{run.bucket}/{run.key}"
    metadata = {
        "pipeline-blocked": (run.reason or "blocked")[:500],
        "pipeline-run": run.id,
        **source_metadata(run.key),
    }
    try:
        try:
            version_id = run.version_id or _screened_version(store, run)
            store.copy(
                run.bucket,
                run.key,
                target.bucket,
                target.key,
                version_id=version_id,
                etag=None if version_id else run.etag,
                metadata=metadata,
            )
        except ObjectNotFound:
            return _gone(store, run, target)
        if target.mode == "move":
            store.delete(run.bucket, run.key, version_id=version_id)
        else:
            tags = {BLOCKED_TAG: "blocked", "pipeline-run": run.id}
            store.set_tags(run.bucket, run.key, tags, version_id=version_id)
    except InvalidKey as exc:  # the store refuses the key: trying again changes nothing
        return f"{source} cannot be quarantined: {exc}"
    except StorageError as exc:
        log.warning("quarantine of %s not done yet (tried again by the reconciler): %s", source, exc)
        return None
    log.warning(
        "quarantined %s as %s/%s (%s): %s", source, target.bucket, target.key, target.mode, run.reason
    )
    return time.time()


def _screened_version(store: ObjectStore, run: Run) -> str | None:
    """The version id of the screened upload where its notification had none (some S3-compatible
    stores leave `versionId` out): the current version, if its ETag is the screened one. None on
    an unversioned bucket. ObjectNotFound when it is gone or was replaced."""
    current = store.stat(run.bucket, run.key)
    if run.etag and current.etag != run.etag:
        raise ObjectNotFound(f"{run.bucket}/{run.key} was replaced")
    return current.version_id


def _gone(store: ObjectStore, run: Run, target: Quarantine) -> float | str:
    """The screened version is not there to copy: quarantined already (a repeat), replaced by a
    newer version (which has its own run and its own screening), or deleted."""
    source = f"{run.bucket}/{run.key}"
    try:
        kept = store.stat(target.bucket, target.key)
    except ObjectNotFound:
        kept = None
    if kept is not None and kept.metadata.get("pipeline-run") == run.id:
        return time.time()
    try:
        store.stat(run.bucket, run.key)
    except ObjectNotFound:
        return f"{source} was deleted before it could be quarantined"
    return f"{source} was replaced by a newer version before it was quarantined; left alone"
