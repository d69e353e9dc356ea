"""Quarantining a blocked upload: a copy under the quarantine prefix (never routed), then the
original deleted (`on_block: move`) or tagged `pipeline-screen=blocked` (`on_block: copy`).

Every step is safe to repeat, so a worker that dies half-way is finished by the reconciler's sweep.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from pipeline.errors import ObjectNotFound, StorageError
from pipeline.flows.model import Quarantine, Run
from pipeline.storage.base import ObjectStore

log = logging.getLogger(__name__)

BLOCKED_TAG = "pipeline-screen"


def quarantine(store: ObjectStore, run: Run, target: Quarantine) -> float | str | None:
    """Quarantine the run's upload. Returns when it was done, why it cannot be (a string, recorded
    on the run for the operator), or None when the store failed and it is to be tried again."""
    source = f"{run.bucket}/{run.key}"
    try:
        with tempfile.TemporaryDirectory(prefix="quarantine-") as tmp:
            path = Path(tmp) / "object"
            try:
                info = store.get_file(run.bucket, run.key, path)
            except ObjectNotFound:
                try:
                    store.stat(target.bucket, target.key)  # moved already: this is a repeat
                except ObjectNotFound:
                    return f"{source} was deleted before it could be quarantined"
                return time.time()
            if run.etag and info.etag != run.etag:
                # The blocked version is gone; the new one has its own run and its own screening.
                return f"{source} was replaced by a newer version before it was quarantined; left alone"
            metadata = {
                "pipeline-blocked": (run.reason or "blocked")[:500],
                "pipeline-source-key": run.key,
                "pipeline-run": run.id,
            }
            store.put_file(target.bucket, target.key, path, content_type=info.content_type, metadata=metadata)
        if target.mode == "move":
            store.delete(run.bucket, run.key)
        else:
            store.set_tags(run.bucket, run.key, {BLOCKED_TAG: "blocked", "pipeline-run": run.id})
    except StorageError as exc:
        log.warning("quarantine of %s not done yet (tried again by the reconciler): %s", source, exc)
        return None
    log.warning(
        "quarantined %s as %s/%s (%s): %s", source, target.bucket, target.key, target.mode, run.reason
    )
    return time.time()
