"""`pipeline soak`: many uploads through real worker processes while faults are injected.

It runs the built-in pipeline file (each image: screen, then thumbnail and filter) or the
one-rule file (one thumbnail invocation). Faults: notifications dropped (the reconciler must find
those objects) and duplicated (each must still run once), worker processes and whole workers
SIGKILLed at random, and one restart of Redis (its own, with an append-only file) half-way. The
figures: injected, processed, lost, processed twice, partial outputs, worker memory.
"""

from __future__ import annotations

import os
import random
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from pipeline.config import parse_config
from pipeline.embedded import EmbeddedRedis
from pipeline.errors import BrokerUnavailable
from pipeline.events.model import ObjectEvent
from pipeline.invocation import Status
from pipeline.measure.docs import DocSection
from pipeline.measure.pipelines import (
    PipelineName,
    PipelineUnderTest,
    pipeline_under_test,
    tally,
    undecodable,
)
from pipeline.measure.testbed import rss_mb
from pipeline.queue.app import queued_runtime
from pipeline.reconcile import reconcile
from pipeline.registry import build_pipeline
from pipeline.runtime import Runtime
from pipeline.settings import Settings
from pipeline.storage import LocalStore
from pipeline.supervisor import Child, Supervisor

SECTIONS: dict[PipelineName, DocSection] = {
    "built-in": DocSection("soak", "Soak"),
    "one-rule": DocSection("soak-one-rule", "Soak, one-rule file"),
}


@dataclass
class SoakOutcome:
    uploads: int
    pipeline_file: PipelineName = "built-in"
    dropped: int = 0
    duplicated: int = 0
    child_kills: int = 0
    worker_kills: int = 0
    redis_restarts: int = 0
    processed: int = 0
    lost: int = 0
    duplicate_outputs: int = 0
    partial_outputs: int = 0
    reconciled: int = 0
    resent: int = 0
    seconds: float = 0.0
    peak_worker_rss_mb: float = 0.0
    notes: list[str] = field(default_factory=list)


def _descendants(roots: list[int]) -> list[int]:
    """`roots` and every process below them: the soak touches only the workers it started."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found = set(roots)
    changed = True
    while changed:
        changed = False
        for pid, ppid in parents.items():
            if ppid in found and pid not in found:
                found.add(pid)
                changed = True
    return sorted(pid for pid in found if pid in parents)


def send_until_accepted(runtime: Runtime, event: ObjectEvent, deadline: float) -> None:
    """Send a notification until it is accepted, as MinIO and SNS do after a 503."""
    while True:
        try:
            runtime.intake.accept(event)
            return
        except BrokerUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def run_soak(  # noqa: PLR0915 - one scenario, read top to bottom
    uploads: int = 100,
    kills: int = 4,
    drop: float = 0.03,
    dup: float = 0.03,
    seed: int = 7,
    pipeline_file: PipelineName = "built-in",
) -> SoakOutcome:
    rng = random.Random(seed)  # noqa: S311 - chooses fault timings, not secrets
    # Which notifications are dropped or sent three times: an RNG of its own, so the injector
    # thread's draws cannot change them (the same seed drops the same notifications every run).
    notices = random.Random(seed + 1)  # noqa: S311
    under_test = pipeline_under_test(pipeline_file, {"visibility_timeout": 10, "lease_seconds": 3})
    outcome = SoakOutcome(uploads=uploads, pipeline_file=pipeline_file)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pipeline-soak-") as tmp_name:
        tmp = Path(tmp_name)
        config_path = tmp / "pipeline.yaml"
        config_path.write_text(under_test.text)
        redis_server = EmbeddedRedis(tmp / "data")
        url = redis_server.start()
        pipeline = build_pipeline(parse_config(under_test.text, str(config_path)), str(config_path))
        settings = Settings(redis_url=url, data_dir=tmp / "data", config=config_path)
        runtime = queued_runtime(settings, pipeline, url)
        silent = LocalStore(tmp / "data" / "store")  # writes without notifications; we send them
        silent.ensure_bucket("media")
        old_env = {k: os.environ.get(k) for k in ("PIPELINE_CONFIG", "PIPELINE_DATA_DIR")}
        os.environ.update(PIPELINE_CONFIG=str(config_path), PIPELINE_DATA_DIR=str(tmp / "data"))
        supervisor = Supervisor(url, quiet_workers=True)
        supervisor.add_worker(list(under_test.functions), 2)
        supervisor.add_worker(list(under_test.functions), 2)
        stop = [False]
        threads = [threading.Thread(target=supervisor.watch, args=(stop,), daemon=True)]
        try:
            supervisor.start()
            supervisor.wait_workers(runtime.ledger)
            threads[0].start()

            # Each kill falls at an upload of its own, spread over the run: every kill happens
            # while work is in flight, however fast the pipeline file's work goes.
            targets = sorted(int((k + rng.uniform(0.2, 0.8)) * uploads / max(1, kills)) for k in range(kills))
            sent = [0]

            def inject() -> None:
                for target in targets:
                    while sent[0] < target and not stop[0]:
                        time.sleep(0.02)
                    # Every worker may be down for a moment (just killed, or restarting after Redis
                    # went away): wait for the supervisor to bring one back, so each kill happens.
                    deadline = time.monotonic() + 30
                    victims: list[Child] = []
                    while not victims and time.monotonic() < deadline and not stop[0]:
                        victims = [c for c in supervisor.children if c.process and c.process.poll() is None]
                        if not victims:
                            time.sleep(0.2)
                    if not victims:
                        continue
                    victim = rng.choice(victims)
                    assert victim.process is not None
                    if rng.random() < 0.5:
                        children = [p for p in _descendants([victim.process.pid]) if p != victim.process.pid]
                        if children:
                            os.kill(rng.choice(children), signal.SIGKILL)
                            outcome.child_kills += 1
                            continue
                    os.killpg(victim.process.pid, signal.SIGKILL)
                    outcome.worker_kills += 1

            def sample_memory() -> None:
                while not stop[0]:
                    roots = [c.process.pid for c in supervisor.children if c.process]
                    outcome.peak_worker_rss_mb = max(outcome.peak_worker_rss_mb, rss_mb(_descendants(roots)))
                    time.sleep(0.5)

            threads += [
                threading.Thread(target=inject, daemon=True),
                threading.Thread(target=sample_memory, daemon=True),
            ]
            for t in threads[1:]:
                t.start()
            image = tmp / "src.png"
            for i in range(uploads):
                Image.new("RGB", (320, 240), (i % 256, (i * 7) % 256, 90)).save(image)
                key = f"uploads/{i:05d}.png"
                sent[0] = i
                info = silent.put_file("media", key, image, content_type="image/png")
                event = ObjectEvent(
                    source="local",
                    event_name="s3:ObjectCreated:Put",
                    bucket="media",
                    key=key,
                    etag=info.etag,
                    version_id=info.version_id,
                    size=info.size,
                    content_type="image/png",
                )
                deadline = time.monotonic() + 60
                if notices.random() < drop:
                    outcome.dropped += 1
                else:
                    copies = 3 if notices.random() < dup else 1
                    outcome.duplicated += copies > 1
                    for _ in range(copies):
                        send_until_accepted(runtime, event, deadline)
                if i == uploads // 2:
                    redis_server.stop()
                    time.sleep(1)
                    redis_server.start(port=int(url.rsplit(":", 1)[1].split("/")[0]))
                    outcome.redis_restarts += 1
            sent[0] = uploads
            threads[1].join(timeout=60)  # the last kills land before the drain is counted

            deadline = time.monotonic() + max(120, uploads * 0.5)
            while time.monotonic() < deadline:
                try:
                    result = reconcile(runtime, rate=0, resume=False)
                    outcome.reconciled += result.enqueued
                    outcome.resent += result.resent
                    done = runtime.ledger.invocations.counts()[Status.SUCCEEDED.value]
                    if done >= uploads * len(under_test.functions):
                        break
                except BrokerUnavailable:
                    pass
                time.sleep(1)
            _verify(runtime, silent, under_test, outcome)
        finally:
            stop[0] = True
            for thread in threads:
                thread.join(timeout=5)
            supervisor.stop()
            redis_server.stop()
            for k, v in old_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    outcome.seconds = round(time.monotonic() - started, 1)
    return outcome


def _verify(runtime: Runtime, store: LocalStore, under_test: PipelineUnderTest, outcome: SoakOutcome) -> None:
    keys = [f"uploads/{i:05d}.png" for i in range(outcome.uploads)]
    found = tally(runtime.ledger, under_test, keys)
    outcome.processed, outcome.lost, outcome.duplicate_outputs = found.processed, found.lost, found.twice
    present = {o.key for o in store.list("media", "derived/")}
    missing = {key for key in keys if not under_test.outputs_of(key) <= present}
    outcome.lost = max(outcome.lost, len(missing))
    for key in sorted(missing)[:5]:  # what became of a lost upload, so a failure can be read
        invs = runtime.ledger.invocations.for_object("media", key)
        states = [f"{i.function} {i.status.value} x{i.attempts} {(i.error or '')[:120]}" for i in invs]
        events = [e.status for e in runtime.ledger.events.for_object("media", key)]
        outcome.notes.append(f"lost {key}: invocations {states or 'none'}; notifications {events or 'none'}")
    outcome.partial_outputs = sum(undecodable(key, store.path_of("media", key)) for key in present)


def render(outcome: SoakOutcome, command: str) -> str:
    rows = [
        ("pipeline file", outcome.pipeline_file),
        ("uploads", outcome.uploads),
        ("notifications dropped (left to the reconciler)", outcome.dropped),
        ("notifications sent 3 times", outcome.duplicated),
        ("worker pool processes SIGKILLed", outcome.child_kills),
        ("whole workers SIGKILLed (restarted by the supervisor)", outcome.worker_kills),
        ("Redis restarts (append-only file)", outcome.redis_restarts),
        ("processed", f"{outcome.processed} of {outcome.uploads}"),
        ("lost", outcome.lost),
        ("uploads processed twice (a function or a run)", outcome.duplicate_outputs),
        ("partial or undecodable outputs", outcome.partial_outputs),
        ("found by the reconciler", outcome.reconciled),
        ("messages re-sent after loss in the broker", outcome.resent),
        ("peak RSS of all worker processes", f"{outcome.peak_worker_rss_mb:.0f} MB"),
        ("time", f"{outcome.seconds:.0f} s"),
    ]
    return SECTIONS[outcome.pipeline_file].render(f"Command: `{command}`", ["", ""], rows)
