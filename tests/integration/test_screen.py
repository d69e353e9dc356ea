"""The `screen` function through a real worker: a hash list made with `pipeline hashes add`, an
edited copy of a listed image blocked (its thumbnail step skipped), an unrelated image passed and
thumbnailed from the upload itself, and a missing list named in the failure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.flows.model import Run, RunStatus, StepStatus
from pipeline.measure.hash_bench import edits, scene
from pipeline.runtime import Runtime
from tests.helpers import Proc, pipeline_runtime, wait_until

pytestmark = pytest.mark.integration

CONFIG = """
version: 1
buckets: [media]
functions:
  screen: {max_attempts: 1}
flows:
  screened:
    steps:
      screen: {function: screen, params: {hash_lists: ["s3://media/.pipeline/hashes/known-bad.txt"]}}
      thumbs:
        function: thumbnail
        needs: [screen]
        input: source
        if: 'steps.screen.verdict == "pass"'
        params: {sizes: [64]}
  unlisted:
    steps:
      screen: {function: screen, params: {hash_lists: ["s3://media/lists/missing.txt"]}}
rules:
  - {name: images, bucket: media, prefix: uploads/, content_types: ["image/*"], flow: screened}
  - {name: other, bucket: media, prefix: other/, content_types: ["image/*"], flow: unlisted}
"""


def ended_run(runtime: Runtime, key: str) -> Run | None:
    runs = runtime.ledger.runs.for_object("media", key)
    return runs[0] if runs and runs[0].status != RunStatus.RUNNING else None


def test_screen_blocks_an_edited_listed_image_and_passes_an_unrelated_one(
    redis_url: str, tmp_path: Path
) -> None:
    runtime, env = pipeline_runtime(CONFIG, redis_url, tmp_path)
    runtime.store.ensure_bucket("media")
    listed = tmp_path / "listed.jpg"
    original = scene(1234)
    original.save(listed, "JPEG", quality=92)
    added = subprocess.run(
        [sys.executable, "-m", "pipeline", "hashes", "add", str(listed), "--list", "known-bad"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "1 added, 0 already listed: s3://media/.pipeline/hashes/known-bad.txt" in added.stdout
    again = subprocess.run(
        [sys.executable, "-m", "pipeline", "hashes", "add", str(listed)],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert "0 added, 1 already listed" in again.stdout
    # The list is the pipeline's own data: storing it started nothing.
    assert runtime.ledger.invocations.for_object("media", ".pipeline/hashes/known-bad.txt") == []

    variant = tmp_path / "variant.jpg"
    edits(original)["all four"].save(variant, "JPEG", quality=80)
    unrelated = tmp_path / "unrelated.jpg"
    scene(4321).save(unrelated, "JPEG", quality=90)
    worker = Proc(
        ["worker", "--functions", "screen,thumbnail", "--concurrency", "2"], env, tmp_path / "worker.log"
    )
    try:
        wait_until(lambda: runtime.ledger.workers.live() or not worker.alive(), 30, "the worker")
        runtime.store.put_file("media", "uploads/variant.jpg", variant, content_type="image/jpeg")
        runtime.store.put_file("media", "uploads/unrelated.jpg", unrelated, content_type="image/jpeg")
        runtime.store.put_file("media", "other/any.jpg", unrelated, content_type="image/jpeg")
        for key in ("uploads/variant.jpg", "uploads/unrelated.jpg", "other/any.jpg"):

            def ended(key: str = key) -> Run | None:
                return ended_run(runtime, key)

            wait_until(ended, 60, f"the run of {key}")
    finally:
        assert worker.stop() == 0, worker.output()[-3000:]

    blocked = ended_run(runtime, "uploads/variant.jpg")
    assert blocked is not None
    assert blocked.steps["screen"].status == StepStatus.SUCCEEDED
    assert blocked.steps["screen"].fields["verdict"] == "block"
    assert (
        "matches 'listed.jpg' in s3://media/.pipeline/hashes/known-bad.txt"
        in blocked.steps["screen"].fields["reasons"][0]
    )
    assert blocked.status == RunStatus.BLOCKED
    assert (
        blocked.steps["thumbs"].status == StepStatus.SKIPPED
        and blocked.steps["thumbs"].skip_cause == "blocked"
    )
    # Moved to quarantine (on_block: move), where it starts nothing.
    quarantined = runtime.store.stat("media", "quarantine/uploads/variant.jpg")
    assert "matches 'listed.jpg'" in quarantined.metadata["pipeline-blocked"]

    passed = ended_run(runtime, "uploads/unrelated.jpg")
    assert passed is not None and passed.status == RunStatus.SUCCEEDED
    assert (
        passed.steps["screen"].fields["verdict"] == "pass"
        and passed.steps["screen"].fields["hash_match"] is None
    )
    [thumb] = passed.steps["thumbs"].outputs
    assert thumb.key == "derived/uploads/unrelated.jpg/thumbnail/64.jpg"  # from the upload, not the report
    [report] = passed.steps["screen"].outputs
    assert report.content_type == "application/json"
    runtime.store.get_file("media", report.key, tmp_path / "report.json")
    assert json.loads((tmp_path / "report.json").read_text())["verdict"] == "pass"

    # A list that does not exist outside the pipeline's own area: held for a person, not passed.
    missing = ended_run(runtime, "other/any.jpg")
    assert missing is not None and missing.status == RunStatus.SUCCEEDED  # no step waits on it
    fields = missing.steps["screen"].fields
    assert fields["verdict"] == "review" and fields["lists_checked"] == 0
    assert fields["reasons"] == [
        "hash list s3://media/lists/missing.txt does not exist: nothing could be matched against it"
    ]
