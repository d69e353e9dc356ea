"""Flows with real worker processes on Redis and the local store: joins, failures and redrive
through the gateway's API, duplicate and reordered notifications, newer versions mid-run, and a
worker killed in the middle of a step."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from pipeline.events.model import ObjectEvent
from pipeline.flows.model import Run, RunStatus, StepStatus
from pipeline.gateway.app import create_app
from pipeline.invocation import Status
from pipeline.measure.samples import generate
from pipeline.runtime import Runtime
from tests.helpers import Proc, ServedApp, pipeline_runtime, wait_until

pytestmark = pytest.mark.integration

CONFIG = """
version: 1
buckets: [media]
functions:
  step: {{module: tests.fixtures.steps, max_attempts: 2, concurrency: 2}}
limits: {{visibility_timeout: 3, lease_seconds: 2}}
flows:
  join:
    steps:
      left: {{function: step, params: {{name: left, journal: "{journal}"}}}}
      right: {{function: step, params: {{name: right, fail_if: "{flag}", journal: "{journal}"}}}}
      both: {{function: step, needs: [left, right], params: {{name: both, journal: "{journal}"}}}}
      after: {{function: step, needs: [both], params: {{name: after, journal: "{journal}"}}}}
  chain:
    steps:
      first: {{function: step, params: {{name: first, seconds: {seconds}}}}}
      second: {{function: step, needs: [first], params: {{name: second, seconds: {seconds}}}}}
      third: {{function: step, needs: [second], params: {{name: third}}}}
rules:
  - {{name: joins, bucket: media, prefix: join/, flow: join}}
  - {{name: chains, bucket: media, prefix: chain/, flow: chain}}
"""


def setup(redis_url: str, tmp_path: Path, seconds: float = 0) -> tuple[Runtime, dict[str, str], Path, Path]:
    flag, journal = tmp_path / "fail-right", tmp_path / "journal.txt"
    config = CONFIG.format(flag=flag, journal=journal, seconds=seconds)
    runtime, env = pipeline_runtime(config, redis_url, tmp_path)
    runtime.store.ensure_bucket("media")
    return runtime, env, flag, journal


def start_worker(runtime: Runtime, env: dict[str, str], log: Path, concurrency: int = 2) -> Proc:
    before = {w.hostname for w in runtime.ledger.workers.live()}
    worker = Proc(["worker", "--functions", "step", "--concurrency", str(concurrency)], env, log)
    wait_until(
        lambda: {w.hostname for w in runtime.ledger.workers.live()} - before or not worker.alive(),
        30,
        "a worker",
    )
    assert worker.alive(), worker.output()
    return worker


def the_run(runtime: Runtime, key: str) -> Run:
    [run] = [r for r in runtime.ledger.runs.for_object("media", key)]
    return run


def ended(runtime: Runtime, key: str) -> bool:
    return all(r.status != RunStatus.RUNNING for r in runtime.ledger.runs.for_object("media", key))


def test_a_join_a_permanent_failure_and_a_redrive_that_reruns_only_what_failed(
    redis_url: str, tmp_path: Path
) -> None:
    runtime, env, flag, journal = setup(redis_url, tmp_path)
    image = generate(tmp_path / "samples")[0]
    flag.touch()
    worker = start_worker(runtime, env, tmp_path / "worker.log")
    try:
        runtime.store.put_file("media", "join/a.jpg", image, content_type="image/jpeg")
        wait_until(lambda: ended(runtime, "join/a.jpg"), 30, "the run to end", interval=0.1)
        run = the_run(runtime, "join/a.jpg")
        steps = run.steps
        assert run.status == RunStatus.FAILED and run.reason == "failed: right"
        assert steps["left"].status == StepStatus.SUCCEEDED
        assert steps["right"].status == StepStatus.FAILED and "told to fail" in (steps["right"].reason or "")
        assert steps["both"].status == StepStatus.SKIPPED and steps["both"].reason == "right failed"
        assert steps["after"].status == StepStatus.SKIPPED and steps["both"].invocations == []

        flag.unlink()  # the cause is fixed
        with ServedApp(create_app(runtime.settings)) as api:
            response = api.post(f"/api/runs/{run.id}/redrive")
            assert response.status_code == 202, response.text
            assert response.json()["steps"]["right"]["status"] == "running"
            wait_until(lambda: ended(runtime, "join/a.jpg"), 30, "the redriven run to end", interval=0.1)
            shown = api.get(f"/api/runs/{run.id}").json()
            listed = api.get("/api/runs", params={"bucket": "media", "key": "join/a.jpg"}).json()["items"]
            assert api.post(f"/api/runs/{run.id}/redrive").status_code == 409  # nothing failed now
        assert [r["id"] for r in listed] == [run.id]
        assert shown["status"] == "succeeded" and set(shown) >= {"flow", "rule", "version", "started_at"}
        after = {
            name: runtime.ledger.invocations.get_many(s["invocations"]) for name, s in shown["steps"].items()
        }
        # left succeeded the first time: its one invocation, one attempt, was not run again.
        assert [(i.status, i.attempts) for i in after["left"]] == [(Status.SUCCEEDED, 1)]
        assert [i.status for i in after["right"]] == [Status.FAILED, Status.SUCCEEDED]
        # The join ran on the outputs of both parents, once each; `after` on each of its outputs.
        assert sorted(i.key.rsplit("/", 1)[-1] for i in after["both"]) == ["left-0.jpg", "right-0.jpg"]
        assert len(after["after"]) == 2 and all(i.status == Status.SUCCEEDED for i in after["after"])
        right_done = max(i.finished_at or 0 for i in after["right"])
        assert all((i.started_at or 0) >= right_done for i in after["both"])  # it waited for both
        assert journal.read_text().split().count("left") == 1
        outputs = [o.key for o in run_outputs(runtime, run.id)]
        assert len(outputs) == len(set(outputs)) == 6
        assert "derived/join/a.jpg/step/left-0.jpg/step/both-0.jpg/step/after-0.jpg" in outputs
    finally:
        assert worker.stop() == 0, worker.output()[-3000:]


def run_outputs(runtime: Runtime, run_id: str) -> list:  # type: ignore[type-arg]
    run = runtime.ledger.runs.get(run_id)
    assert run is not None
    return [o for state in run.steps.values() for o in state.outputs]


def test_duplicates_and_reordered_notifications_make_one_run_and_a_newer_version_supersedes(
    redis_url: str, tmp_path: Path
) -> None:
    runtime, env, _flag, _journal = setup(redis_url, tmp_path, seconds=1.5)
    image, other = generate(tmp_path / "samples")[:2]
    worker = start_worker(runtime, env, tmp_path / "worker.log")
    try:
        v1 = runtime.store.put_file("media", "chain/a.jpg", image, content_type="image/jpeg")
        first = the_run(runtime, "chain/a.jpg")
        for _ in range(3):  # the store sends its notification again: still one run
            record = runtime.intake.accept(v1.event("minio"))
            assert record.status == "duplicate" and record.runs == [first.id]
        wait_until(
            lambda: (
                the_run(runtime, "chain/a.jpg").steps["first"].status != StepStatus.RUNNING
                or any(
                    i.status == Status.RUNNING
                    for i in runtime.ledger.invocations.for_object("media", "chain/a.jpg")
                )
            ),
            20,
            "the first step to start",
            interval=0.05,
        )
        v2 = runtime.store.put_file("media", "chain/a.jpg", other, content_type="image/jpeg")
        late = runtime.intake.accept(v1.event("minio"))  # v1's notification once more, after v2's
        assert late.status == "duplicate"
        wait_until(lambda: ended(runtime, "chain/a.jpg"), 40, "both runs to end", interval=0.1)
        runs = {r.version: r for r in runtime.ledger.runs.for_object("media", "chain/a.jpg")}
        assert set(runs) == {v1.version_tag, v2.version_tag}
        old, new = runs[v1.version_tag], runs[v2.version_tag]
        assert (
            old.status == RunStatus.SKIPPED and old.reason == f"superseded by run {new.id} (a newer version)"
        )
        assert {s.skip_cause for s in old.steps.values() if s.status == StepStatus.SKIPPED} == {"stale"}
        assert new.status == RunStatus.SUCCEEDED
        assert all(s.status == StepStatus.SUCCEEDED for s in new.steps.values())

        # An older version's notification arriving after the newer one's run: it ends at once.
        older = ObjectEvent(
            **{
                **v1.event("minio").model_dump(),
                "etag": "0ld",
                "version_id": "00000000000000000001-aaaaaaaa",
                "sequencer": "00000000000000000001-aaaaaaaa",
            }
        )
        record = runtime.intake.accept(older)
        [stale] = [
            r for r in runtime.ledger.runs.for_object("media", "chain/a.jpg") if r.id == record.runs[0]
        ]
        assert (
            stale.status == RunStatus.SKIPPED
            and stale.reason == f"stale: run {new.id} is for a newer version"
        )
        assert the_run_for(runtime, v2.version_tag).status == RunStatus.SUCCEEDED
    finally:
        assert worker.stop() == 0, worker.output()[-3000:]


def the_run_for(runtime: Runtime, version: str) -> Run:
    [run] = [r for r in runtime.ledger.runs.for_object("media", "chain/a.jpg") if r.version == version]
    return run


def test_a_worker_killed_during_a_step_and_the_run_still_completes_once(
    redis_url: str, tmp_path: Path
) -> None:
    runtime, env, _flag, _journal = setup(redis_url, tmp_path, seconds=3)
    image = generate(tmp_path / "samples")[0]
    doomed = start_worker(runtime, env, tmp_path / "doomed.log", concurrency=1)
    runtime.store.put_file("media", "chain/k.jpg", image, content_type="image/jpeg")
    wait_until(
        lambda: the_run(runtime, "chain/k.jpg").steps["first"].status == StepStatus.SUCCEEDED,
        30,
        "the first step",
        interval=0.05,
    )
    wait_until(
        lambda: any(
            i.status == Status.RUNNING and i.step == "second"
            for i in runtime.ledger.invocations.query(bucket="media", limit=20)
        ),
        20,
        "the second step to run",
        interval=0.05,
    )
    os.killpg(doomed.popen.pid, signal.SIGKILL)  # the main process and its pool, mid-step
    doomed.stop()
    rescuer = start_worker(runtime, env, tmp_path / "rescuer.log", concurrency=1)
    try:
        wait_until(lambda: ended(runtime, "chain/k.jpg"), 60, "the run to end", interval=0.2)
        run = the_run(runtime, "chain/k.jpg")
        assert run.status == RunStatus.SUCCEEDED
        second = runtime.ledger.invocations.get_many(run.steps["second"].invocations)
        assert [(i.status, i.attempts) for i in second] == [(Status.SUCCEEDED, 2)]  # redelivered once
        for name, state in run.steps.items():
            assert len(state.invocations) == 1, name
            assert len(state.outputs) == 1, name  # each step's output recorded exactly once
        listed = [o.key for o in runtime.store.list("media", "derived/")]
        assert len(listed) == 3
    finally:
        assert rescuer.stop() == 0, rescuer.output()[-3000:]


DELETE_CONFIG = """
version: 1
buckets: [media]
functions:
  step: {{module: tests.fixtures.steps, max_attempts: 1}}
flows:
  slow:
    steps:
      first: {{function: step, params: {{name: first}}}}
      second: {{function: step, needs: [first], params: {{name: second, seconds: {seconds}}}}}
rules:
  - {{name: kept, bucket: media, prefix: keep/, flow: slow}}
  - {{name: removed, bucket: media, prefix: drop/, flow: slow, on_delete: remove-outputs}}
"""


def test_deleting_the_source_cancels_queued_steps_and_may_remove_outputs(
    redis_url: str, tmp_path: Path
) -> None:
    runtime, _env = pipeline_runtime(DELETE_CONFIG.format(seconds=0), redis_url, tmp_path)
    runtime.store.ensure_bucket("media")
    image = generate(tmp_path / "samples")[0]
    # No worker yet: the first steps wait in the queue when the source is deleted.
    runtime.store.put_file("media", "keep/a.jpg", image, content_type="image/jpeg")
    run = the_run(runtime, "keep/a.jpg")
    [first] = runtime.ledger.invocations.get_many(run.steps["first"].invocations)
    assert first.status == Status.QUEUED
    runtime.store.delete("media", "keep/a.jpg")  # the store notifies the deletion, as a bucket would
    [removal] = [
        e for e in runtime.ledger.events.for_object("media", "keep/a.jpg") if "Removed" in e.event_name
    ]
    assert removal.status == "accepted" and removal.reason.startswith("source deleted: 1 run(s) cancelled")
    run = the_run(runtime, "keep/a.jpg")
    assert run.status == RunStatus.SKIPPED and run.reason == "the source media/keep/a.jpg was deleted"
    assert {s.skip_cause for s in run.steps.values()} == {"deleted"}
    cancelled = runtime.ledger.invocations.get(first.id)
    assert cancelled is not None and cancelled.status == Status.SKIPPED  # a worker will not take it

    # With a worker: a finished run's outputs stay (keep), or go (remove-outputs).
    runtime_env = pipeline_runtime(DELETE_CONFIG.format(seconds=0), redis_url, tmp_path)[1]
    worker = start_worker(runtime, runtime_env, tmp_path / "worker.log")
    try:
        for prefix in ("keep", "drop"):
            runtime.store.put_file("media", f"{prefix}/b.jpg", image, content_type="image/jpeg")
        wait_until(lambda: ended(runtime, "keep/b.jpg") and ended(runtime, "drop/b.jpg"), 30, "both runs")
    finally:
        assert worker.stop() == 0, worker.output()[-3000:]
    outputs = {
        p: [o.key for o in run_outputs(runtime, the_run(runtime, f"{p}/b.jpg").id)] for p in ("keep", "drop")
    }
    assert len(outputs["keep"]) == len(outputs["drop"]) == 2
    for prefix in ("keep", "drop"):
        runtime.store.delete("media", f"{prefix}/b.jpg")
    left = {o.key for o in runtime.store.list("media", "derived/")}
    assert set(outputs["keep"]) <= left
    assert not set(outputs["drop"]) & left


def test_the_reconciler_applies_a_finished_step_its_run_never_saw(redis_url: str, tmp_path: Path) -> None:
    from pipeline.reconcile import reconcile

    runtime, _env = pipeline_runtime(DELETE_CONFIG.format(seconds=0), redis_url, tmp_path)
    runtime.store.ensure_bucket("media")
    image = generate(tmp_path / "samples")[0]
    runtime.store.put_file("media", "keep/c.jpg", image, content_type="image/jpeg")
    run = the_run(runtime, "keep/c.jpg")
    [first] = run.steps["first"].invocations
    # The worker recorded its verdict and died before it changed the run.
    runtime.ledger.invocations.start_attempt(first, "gone@host")
    runtime.ledger.invocations.finish(first, Status.SUCCEEDED, outputs=[])
    assert the_run(runtime, "keep/c.jpg").steps["first"].status == StepStatus.RUNNING
    summary = reconcile(runtime, rate=0)
    assert summary.steps_applied == 1
    after = the_run(runtime, "keep/c.jpg")
    assert after.steps["first"].status == StepStatus.SUCCEEDED
    # It made no files, so the second step had nothing to run on; applying again changes nothing.
    assert (
        after.steps["second"].status == StepStatus.SKIPPED and after.steps["second"].skip_cause == "no-input"
    )
    assert reconcile(runtime, rate=0).steps_applied == 0


def test_steps_of_a_disabled_function_are_held_until_a_redrive(redis_url: str, tmp_path: Path) -> None:
    runtime, env, _flag, journal = setup(redis_url, tmp_path)
    image = generate(tmp_path / "samples")[0]
    runtime.ledger.flags.switch("disabled", "step", True)  # the dashboard's Disable
    runtime.store.put_file("media", "join/held.jpg", image, content_type="image/jpeg")
    run = the_run(runtime, "join/held.jpg")
    assert run.status == RunStatus.FAILED and run.reason == "held, their function is disabled: left, right"
    assert run.steps["left"].reason == "held: function step is disabled"
    assert {s.skip_cause for s in run.steps.values()} == {"disabled"}
    assert runtime.dispatcher.depth("fn.step") == 0  # nothing was queued for it
    runtime.ledger.flags.switch("disabled", "step", False)
    worker = start_worker(runtime, env, tmp_path / "worker.log")
    try:
        runtime.flows.redrive(run.id)
        wait_until(lambda: ended(runtime, "join/held.jpg"), 30, "the redriven run", interval=0.1)
    finally:
        assert worker.stop() == 0, worker.output()[-3000:]
    done = the_run(runtime, "join/held.jpg")
    assert done.status == RunStatus.SUCCEEDED and len(run_outputs(runtime, done.id)) == 6
    assert journal.read_text().split().count("left") == 1  # it ran once: after the redrive
