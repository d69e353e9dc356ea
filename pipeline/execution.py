"""Running one invocation: download, screen by magic bytes, run the function, upload, record.

This is the worker adapter around the pure functions. It knows nothing about Celery; the queue
package calls `Executor.run` and decides about retries from the exception class (`is_permanent`).
"""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path

from pydantic import ValidationError

from functions import FunctionError, UnsupportedMedia
from functions._media import sniff
from pipeline.errors import InvalidKey, ObjectNotFound
from pipeline.invocation import Invocation, OutputRef, Status
from pipeline.ledger import Ledger
from pipeline.registry import Pipeline
from pipeline.routing import output_key
from pipeline.storage.base import ObjectStore

log = logging.getLogger(__name__)

_SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def is_permanent(exc: BaseException) -> bool:
    """Errors that retrying the same input cannot fix. Everything else (storage, broker, time-outs,
    crashes) is transient and retried with backoff."""
    return isinstance(exc, FunctionError | ValidationError | ObjectNotFound | InvalidKey)


def check_output_name(name: str) -> str:
    """Function output names become key suffixes: allow plain relative names only."""
    segments = name.split("/")
    if not all(_SAFE_SEGMENT.match(s) for s in segments):
        raise FunctionError(f"function produced an unsafe output name {name!r}")
    return name


def lineage(inv: Invocation, generation: int) -> dict[str, str]:
    return {
        "pipeline-source-bucket": inv.bucket,
        "pipeline-source-key": inv.key,
        "pipeline-source-version": inv.version,
        "pipeline-function": inv.function,
        "pipeline-params-hash": inv.params_hash,
        "pipeline-invocation": inv.id,
        "pipeline-generation": str(generation),
    }


class Executor:
    def __init__(self, pipeline: Pipeline, store: ObjectStore, ledger: Ledger, work_dir: Path) -> None:
        self.pipeline = pipeline
        self.store = store
        self.ledger = ledger
        self.work_dir = work_dir

    def run(self, inv: Invocation, worker: str) -> Invocation | None:
        """Run one attempt. Returns the running invocation, or None if it had already finished.
        Raises on failure; the caller records the failure and decides about a retry."""
        current = self.ledger.start_attempt(inv.id, worker)
        if current is None:
            log.info("invocation %s already finished; nothing to do", inv.id)
            return None
        if current.attempts > current.max_attempts:
            # Only a redelivery gets here: the process running an earlier attempt died without
            # recording anything (e.g. killed by the OOM killer). Stop, or a poison input loops.
            self.ledger.finish(
                inv.id,
                Status.DEAD,
                error=f"gave up after {current.max_attempts} attempts: the worker process was lost "
                f"while running {inv.bucket}/{inv.key}",
            )
            return None
        spec = self.pipeline.function(inv.function)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.work_dir, prefix=f"{inv.function}-") as tmp:
            # The input gets a fixed local name: never a path built from the object key.
            src = Path(tmp) / "input"
            out_dir = Path(tmp) / "out"
            out_dir.mkdir()
            info = self.store.get_file(inv.bucket, inv.key, src)
            real_type = sniff(src)
            if not spec.accepts_type(real_type):
                raise UnsupportedMedia(
                    f"{inv.bucket}/{inv.key} is {real_type} by its content; "
                    f"{inv.function} accepts {', '.join(spec.accepts)}"
                )
            params = spec.parse_params(inv.params)
            results = spec(src, out_dir, params)
            generation = int(info.metadata.get("pipeline-generation", "0") or 0) + 1
            out_bucket = self.pipeline.config.outputs.bucket or inv.bucket
            outputs: list[OutputRef] = []
            for result in results:
                name = check_output_name(result.name)
                key = output_key(self.pipeline.config.outputs.prefix, inv.key, inv.function, name)
                stored = self.store.put_file(
                    out_bucket,
                    key,
                    result.path,
                    content_type=result.content_type,
                    metadata=lineage(inv, generation),
                )
                outputs.append(
                    OutputRef(
                        bucket=out_bucket,
                        key=key,
                        content_type=result.content_type,
                        size=stored.size,
                        meta=result.meta,
                    )
                )
        self.ledger.finish(inv.id, Status.SUCCEEDED, outputs=outputs)
        return current
