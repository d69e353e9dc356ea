"""Running one invocation: download, screen by magic bytes, run the function, upload, record.

This is the worker adapter around the pure functions. It knows nothing about Celery and records
no attempt's outcome: `pipeline/attempt.py` calls `Executor.run`, records what came of it and
decides about a retry by the function's retry policy (`pipeline/retry_policy.py`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from functions import FunctionError, FunctionSpec, Output, ParamsError, UnsupportedMedia, assets, progress
from functions.admission import MediaInfo, admit
from functions.errors import Rejected
from pipeline.errors import ObjectNotFound, Skip
from pipeline.flows.conditions import ConditionError, Undecided, compile_condition, source_facts
from pipeline.flows.engine import CONDITION_FALSE
from pipeline.flows.quarantine import source_metadata
from pipeline.invocation import Invocation, OutputRef
from pipeline.ledger import Ledger
from pipeline.ledger.claims import ConcurrencySlot, ExecutionLease
from pipeline.metering import Meter
from pipeline.output_target import prefixed_key
from pipeline.registry import Pipeline
from pipeline.routing import API_RULE, loop_guarded, output_key
from pipeline.storage.base import ObjectInfo, ObjectStore
from pipeline.tracing import span
from pipeline.usage import Measured

log = logging.getLogger(__name__)

# How long a worker process waits for a reserved-concurrency slot before putting the work back.
SLOT_WAIT_S = 2.0
# The largest data file (e.g. a hash list: 80 bytes an entry) a function may read.
MAX_DATA_BYTES = 64 * 1024 * 1024

_SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


# Records a successful attempt's outputs and what it used (`pipeline/attempt.py`).
OnSuccess = Callable[[list[OutputRef], Measured | None], None]


class WorkerLost(Exception):
    """A redelivery found more attempts started than allowed: the processes running them died
    without recording anything. The invocation is dead; `measured` is this delivery's cost."""

    def __init__(self, message: str, measured: Measured | None) -> None:
        super().__init__(message)
        self.measured = measured


_WORK_DIR = re.compile(r"-(\d+)-[a-z0-9_]{8}$")


def clean_abandoned_work_dirs(work_dir: Path) -> int:
    """Remove the temporary directories of worker processes that no longer run (killed mid-run,
    their downloads and outputs left behind); returns how many. Run at worker start."""
    removed = 0
    for entry in work_dir.iterdir() if work_dir.is_dir() else []:
        found = _WORK_DIR.search(entry.name)
        if not entry.is_dir() or found is None or _alive(int(found.group(1))):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


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
        # Absolute: functions may run tools (ffmpeg) in another working directory.
        self.work_dir = work_dir.resolve()
        self._ensured: set[str] = set()
        # What the attempt in progress used; whoever records its verdict takes the figures.
        self.meter = Meter()

    def run(self, inv: Invocation, worker: str, on_success: OnSuccess) -> Invocation | None:
        """Run one attempt. Returns the running invocation, or None if it had already finished.
        `on_success` records the outputs while the attempt still holds the execution lease.
        Raises on failure (WorkerLost for a redelivery past the attempts); the caller
        (`pipeline/attempt.py`) records the failure and decides about a retry."""
        existing = self.ledger.invocations.get(inv.id)
        if existing is None or existing.status.finished:
            log.info("invocation %s already finished; nothing to do", inv.id)
            return None
        lease_s = self.pipeline.config.limits.lease_seconds
        reserved = self.pipeline.config.function_settings(inv.function).reserved_concurrency
        with contextlib.ExitStack() as claims:
            if reserved:
                claims.enter_context(
                    ConcurrencySlot(self.ledger.claims, inv.function, reserved, lease_s, SLOT_WAIT_S)
                )
            claims.enter_context(ExecutionLease(self.ledger.claims, inv.id, lease_s))
            return self._run_leased(inv, worker, on_success)

    def _run_leased(self, inv: Invocation, worker: str, on_success: OnSuccess) -> Invocation | None:
        # Metering starts before the attempt's start is stamped, so its cost counts as overhead.
        self.meter.begin(self.pipeline.config.function_settings(inv.function).memory_mb)
        current = self.ledger.invocations.start_attempt(inv.id, worker)
        if current is None:
            self.meter.end()
            log.info("invocation %s already finished; nothing to do", inv.id)
            return None
        if current.attempts > current.max_attempts:
            # Only a redelivery gets here: the process running an earlier attempt died without
            # recording anything (e.g. killed by the OOM killer). Stop, or a poison input loops.
            raise WorkerLost(
                f"gave up after {current.max_attempts} attempts: the worker process was lost "
                f"while running {inv.bucket}/{inv.key}",
                self.meter.end(),
            )
        spec = self.pipeline.function(inv.function)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        # The process id in the name lets a worker starting later clean up after a killed one.
        with tempfile.TemporaryDirectory(dir=self.work_dir, prefix=f"{inv.function}-{os.getpid()}-") as tmp:
            # The input gets a fixed local name: never a path built from the object key.
            src = Path(tmp) / "input"
            out_dir = Path(tmp) / "out"
            out_dir.mkdir()
            try:
                with span("download") as downloading:
                    # HEAD first: a stale version or an object over the size limit is turned
                    # away before a byte is downloaded (an overwrite can be gigabytes).
                    head = self.store.stat(inv.bucket, inv.key)
                    self._check_current(inv, head)
                    self._check_size(inv, head)
                    # The version the event named, where the store keeps versions.
                    info = self.store.get_file(inv.bucket, inv.key, src, version_id=inv.version_id)
                    self.meter.bytes_read += info.size
                    downloading.set("pipeline.bytes", info.size)
            except ObjectNotFound as exc:
                raise Skip(f"{inv.bucket}/{inv.key} no longer exists; nothing to process") from exc
            self._check_current(inv, info)
            self._note_callback(inv, info)
            generation = int(info.metadata.get("pipeline-generation", "0") or 0) + 1
            self._check_generation(inv, generation)
            with span("admit"):
                media = self._admit(inv, src, spec)
            self.ledger.invocations.set_media(inv.id, media.as_json())
            if inv.condition:
                self._decide(inv, info, media.as_json())
            try:
                params = spec.parse_params(inv.params)
            except ValidationError as exc:  # checked when it was asked for; a stale message
                raise ParamsError(f"{inv.function} params: {exc.errors()[0]['msg']}") from exc
            local_assets = self._download_extras(spec, params, Path(tmp))
            with (
                span(f"run {inv.function}"),
                progress.progress_to(self._progress_sink(inv.id)),
                assets.provided(local_assets),
            ):
                results = spec(src, out_dir, params)
            # The object may have been overwritten while the function ran: then these outputs are
            # stale and the newer version's own invocation will publish the right ones.
            self._check_current(inv, self.store.stat(inv.bucket, inv.key))
            outputs = self._publish(inv, results, generation)
        on_success(outputs, self.meter.end())
        return current

    def _publish(self, inv: Invocation, results: list[Output], generation: int) -> list[OutputRef]:
        """Upload the function's outputs under their keys, with the lineage that stops loops."""
        out_bucket = inv.output_bucket or self.pipeline.config.outputs.bucket or inv.bucket
        if out_bucket != inv.bucket and out_bucket not in self._ensured:
            self.store.ensure_bucket(out_bucket)
            self._ensured.add(out_bucket)
        outputs: list[OutputRef] = []
        for result in results:
            name = check_output_name(result.name)
            key = output_key(inv.output_template, inv.key_in_outputs or inv.key, inv.function, name)
            if (out_bucket, key) == (inv.bucket, inv.key):
                raise FunctionError(f"output {name} would overwrite its own input {inv.bucket}/{inv.key}")
            if any(o.key == key and o.bucket == out_bucket for o in outputs):
                # A template without {name} (e.g. "archive/{key}") fits single-output functions only.
                raise FunctionError(
                    f"output template {inv.output_template!r} gives several outputs key {key}"
                )
            with span(f"upload {name}", attributes={"pipeline.bucket": out_bucket, "pipeline.key": key}):
                stored = self.store.put_file(
                    out_bucket,
                    key,
                    result.path,
                    content_type=result.content_type,
                    metadata=lineage(inv, generation),
                )
            self.meter.bytes_written += stored.size
            outputs.append(
                OutputRef(
                    bucket=out_bucket,
                    key=key,
                    content_type=result.content_type,
                    size=stored.size,
                    meta=result.meta,
                )
            )
        return outputs

    @staticmethod
    def _check_current(inv: Invocation, info: ObjectInfo) -> None:
        """Skip work for a version that is no longer the object's current one (out-of-order events)."""
        if inv.version_id and info.version_id and inv.version_id != info.version_id:
            stale = f"version {inv.version_id} was replaced by {info.version_id}"
        elif not inv.version_id and inv.etag and info.etag and inv.etag.strip('"') != info.etag.strip('"'):
            stale = f"ETag {inv.etag} was replaced by {info.etag}"
        else:
            return
        raise Skip(f"{inv.bucket}/{inv.key}: stale event, {stale}")

    def _check_size(self, inv: Invocation, head: ObjectInfo) -> None:
        limit = self.pipeline.config.screening.max_bytes
        if head.size > limit:
            raise Rejected(
                f"{inv.bucket}/{inv.key}: {head.size} bytes is over the limit of {limit} bytes "
                "(screening.max_bytes); refused before download"
            )

    def _note_callback(self, inv: Invocation, info: ObjectInfo) -> None:
        """Rules with `callback: true` take a webhook URL from the object's own metadata (checked
        again by the SSRF guard when a message is sent)."""
        config = self.pipeline.config
        rule = next((r for r in config.rules if r.name == inv.rule), None)
        url = info.metadata.get(config.callbacks.metadata_key.lower(), "").strip()
        if rule is not None and rule.callback and url.startswith(("http://", "https://")):
            self.ledger.invocations.set_callback(inv.id, url[:2048])

    def _check_generation(self, inv: Invocation, generation: int) -> None:
        """The loop guard for events that carried no metadata (AWS S3 sends none): the object's own
        lineage says whether the pipeline wrote it."""
        source_generation = generation - 1
        if inv.rule == API_RULE or inv.run_id:
            return  # asked for by name, or a step of a flow's finite graph: not triggered, cannot loop
        config = self.pipeline.config
        rule = next((r for r in config.rules if r.name == inv.rule), None)
        if source_generation and (rule is None or loop_guarded(config, rule, source_generation)):
            self.ledger.stats.incr("loops_stopped")
            raise Skip(
                f"loop guard: {inv.bucket}/{inv.key} was written by the pipeline (generation "
                f"{source_generation}); rule {inv.rule} needs allow_derived, "
                f"limit {config.limits.max_generation}"
            )

    def _decide(self, inv: Invocation, info: ObjectInfo, media: dict[str, Any]) -> None:
        """A first flow step's `if` that needed the upload screened: decided now."""
        facts = source_facts(inv.bucket, inv.key, info.size, info.content_type, media, info.metadata)
        try:
            holds = compile_condition(inv.condition or "true").evaluate({"source": facts, "steps": {}})
        except (ConditionError, Undecided) as exc:
            raise FunctionError(f"{inv.bucket}/{inv.key}: step {inv.step}: {exc}") from exc
        if not holds:
            raise Skip(f"{CONDITION_FALSE}{inv.condition}")

    def _download_extras(self, spec: FunctionSpec[Any], params: Any, tmp: Path) -> dict[str, Path]:
        """The files a function reads besides its input: assets (media, screened like any input)
        and data files (not media: size-capped instead)."""
        wanted = [(ref, True) for ref in spec.asset_refs(params)]
        wanted += [(ref, False) for ref in spec.data_refs(params)]
        paths: dict[str, Path] = {}
        for i, (ref, media) in enumerate(wanted):
            bucket, key = assets.split_ref(ref)
            path = tmp / f"extra-{i}"
            if not media:
                try:
                    size = self.store.stat(bucket, key).size
                except ObjectNotFound:
                    continue  # not provided: the function says what a missing data file means
                if size > MAX_DATA_BYTES:
                    raise FunctionError(
                        f"{ref} is {size} bytes, over the {MAX_DATA_BYTES} a data file may be"
                    )
            self.meter.bytes_read += self.store.get_file(bucket, key, path).size
            if media:
                admit(path, self.pipeline.config.screening)  # assets are untrusted input too
            paths[ref] = path
        return paths

    def _admit(self, inv: Invocation, src: Path, spec: FunctionSpec[Any]) -> MediaInfo:
        """Screening runs before any function; a refusal names the object and the reason."""
        policy = self.pipeline.config.screening
        try:
            media = admit(src, policy)
            if not spec.accepts_type(media.media_type):
                raise UnsupportedMedia(
                    f"content is {media.media_type}; {inv.function} accepts {', '.join(spec.accepts)}"
                )
        except Rejected as exc:
            if policy.rejected_prefix:
                self._keep_rejected_copy(inv, src, policy.rejected_prefix, str(exc))
            raise type(exc)(f"{inv.bucket}/{inv.key}: {exc}") from exc
        return media

    def _keep_rejected_copy(self, inv: Invocation, src: Path, prefix: str, reason: str) -> None:
        key = prefixed_key(prefix, inv.key)
        metadata = {"pipeline-rejected": reason[:500], **source_metadata(inv.key)}
        self.store.put_file(inv.bucket, key, src, metadata=metadata)
        log.warning("kept rejected %s/%s as %s: %s", inv.bucket, inv.key, key, reason)

    def _progress_sink(self, inv_id: str) -> progress.ProgressSink:
        def sink(percent: float, speed: float | None) -> None:
            try:
                self.ledger.invocations.set_progress(inv_id, percent, speed)
            except Exception as exc:  # progress is best effort, the work is not
                log.debug("progress not recorded: %s", exc)

        return sink
