"""Flows without any process: the file's checks at load, and the engine's transitions."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import parse_config
from pipeline.errors import ConfigError, Conflict
from pipeline.flows import engine
from pipeline.flows.graph import draw
from pipeline.flows.launch import Launch
from pipeline.flows.model import Decision, Run, RunStatus, StepStatus
from pipeline.invocation import Invocation, OutputRef, Status
from pipeline.registry import Pipeline, build_pipeline

VIDEO_FLOW = """
flows:
  video:
    steps:
      probe:  {function: transcode, preset: probe}
      mp4:    {function: transcode, preset: mp4}
      hls:    {function: transcode, preset: hls, if: "source.height >= 480 && source.duration <= 7200"}
      poster: {function: transcode, preset: poster}
      poster-thumbs:
        function: thumbnail
        needs: [poster]
        params: {sizes: [320, 640]}
rules:
  - name: video-renditions
    bucket: media
    prefix: uploads/
    content_types: ["video/*"]
    flow: video
"""

JOIN_FLOW = """
flows:
  sheet:
    steps:
      a: {function: thumbnail, params: {sizes: [64]}}
      b: {function: filter, params: {steps: [{op: grayscale}]}}
      c:
        function: copy
        needs: [a, b]
        if: 'steps.a.status == "succeeded"'
      d: {function: copy, needs: [c]}
rules:
  - {name: sheets, bucket: media, flow: sheet}
"""


def load(text: str, source: str = "flows.yaml") -> Pipeline:
    return build_pipeline(parse_config(text, source), source)


def load_error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(text)
    assert "flows.yaml" in str(info.value)
    return str(info.value)


def test_the_issue_example_loads_and_draws() -> None:
    pipeline = load(VIDEO_FLOW)
    lines = draw(pipeline.flow("video"))
    assert lines[0].startswith("probe: transcode (probe)")
    assert any("hls: transcode (hls)  [if source.height >= 480" in line for line in lines)
    assert "    └─ poster-thumbs: thumbnail" in lines


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "flows: {f: {steps: {a: {function: copy, needs: [b]}, b: {function: copy, needs: [a]}}}}",
            "flows.f.steps: the needs form a cycle: ",
        ),
        (
            "flows: {f: {steps: {a: {function: copy, needs: [zz]}}}}",
            "flows.f.steps.a.needs: unknown step 'zz'",
        ),
        ("flows: {f: {steps: {a: {function: copy, if: 'source.size >'}}}}", "flows.f.steps.a.if: "),
        (
            "flows: {f: {steps: {a: {function: copy, if: 'nope == 1'}}}}",
            "names 'nope'; only source and steps",
        ),
        ("flows: {f: {steps: {a: {function: copy, if: 'source.size + 1'}}}}", "not true or false"),
        (
            "flows: {f: {steps: {a: {function: copy, if: 'source.heigth > 1'}}}}",
            "source has no field 'heigth'",
        ),
        (
            "flows: {f: {steps: {a: {function: copy}, b: {function: copy, if: 'steps.a.status == \"x\"'}}}}",
            "reads steps ['a'], which are not among this step's needs",
        ),
        (
            "flows: {f: {steps: {s: {function: screen}, b: {function: copy, needs: [s], input: source, "
            "if: 'steps.s.verdcit == \"pass\"'}}}}",
            "step 's' reports no field 'verdcit' (fields: status, outputs, reason, verdict,",
        ),
        (
            "flows: {f: {steps: {s: {function: screen}, b: {function: copy, needs: [s], input: source, "
            "if: 'steps.s.nsfw < \"0.5\"'}}}}",
            "< cannot take double and string",
        ),
        (
            "flows: {f: {steps: {s: {function: screen}, b: {function: copy, needs: [s], input: source, "
            "if: 'steps.s.nsfw'}}}}",
            "not true or false",
        ),
        (
            "flows: {f: {steps: {p: {function: transcode, preset: probe}, b: {function: copy, needs: [p], "
            'input: source, if: \'steps["p"].duration > "60"\'}}}}',
            "> cannot take double and string",
        ),
        (
            "flows: {f: {steps: {a: {function: nosuch}}}}",
            "flows.f.steps.a.function: unknown function 'nosuch'",
        ),
        (
            "flows: {f: {steps: {a: {function: transcode, preset: nope}}}}",
            "flows.f.steps.a.preset: unknown preset",
        ),
        ("flows: {f: {steps: {a: {function: thumbnail, params: {sizes: [0]}}}}}", "flows.f.steps.a.params."),
        ("rules: [{name: r, bucket: b, flow: missing}]", "rules[0] (r).flow: unknown flow 'missing'"),
    ],
)
def test_a_bad_flow_fails_at_load_naming_where(text: str, expected: str) -> None:
    assert expected in load_error(text)


def test_a_rule_has_functions_or_a_flow() -> None:
    message = load_error(
        "rules: [{name: r, bucket: b, flow: f, functions: [{function: copy}]}]\nflows: {f: {steps: {a: {function: copy}}}}"
    )
    assert "either `functions`" in message


def _run(pipeline: Pipeline, flow: str, **source: object) -> Run:
    return engine.new_run(
        pipeline,
        run_id="r1",
        flow=flow,
        rule="r",
        bucket="media",
        key="uploads/a.mp4",
        version="v1",
        source={"bucket": "media", "key": "uploads/a.mp4", **source},
    )


def _finish(
    pipeline: Pipeline,
    run: Run,
    inv_id: str,
    status: Status,
    outputs: list[OutputRef] | None = None,
    media: dict[str, object] | None = None,
    error: str | None = None,
) -> list[Launch]:
    step = next(name for name, s in run.steps.items() if inv_id in s.invocations)
    inv = Invocation(
        id=inv_id,
        function=pipeline.flow(run.flow).steps[step].function,
        params={},
        params_hash="",
        rule="r",
        queue="q",
        bucket="media",
        key="uploads/a.mp4",
        version="v1",
        status=status,
        outputs=outputs or [],
        run_id=run.id,
        step=step,
        media=media,
        error=error,
    )
    return engine.invocation_finished(pipeline, run, inv)


def status_of(run: Run) -> RunStatus:
    """Read afresh (the engine changes the run in place; a comparison before would narrow it)."""
    return run.status


def step_status(run: Run, step: str) -> StepStatus:
    return run.steps[step].status


def out(key: str, content_type: str = "image/jpeg") -> OutputRef:
    return OutputRef(bucket="media", key=key, content_type=content_type, size=1)


def test_a_root_condition_on_media_facts_is_left_to_the_worker_and_dependents_follow_parents() -> None:
    pipeline = load(VIDEO_FLOW)
    run = _run(pipeline, "video", content_type="video/mp4")
    launches = {launch.step: launch for launch in engine.start(pipeline, run)}
    assert sorted(launches) == ["hls", "mp4", "poster", "probe"]
    assert launches["hls"].condition == "source.height >= 480 && source.duration <= 7200"
    assert launches["mp4"].condition is None
    assert step_status(run, "poster-thumbs") == StepStatus.WAITING
    poster = [out("derived/uploads/a.mp4/transcode/poster.jpg")]
    media = {"media_type": "video/mp4", "size": 9, "width": 640, "height": 360, "duration": 2.0}
    next_steps = _finish(pipeline, run, launches["poster"].inv_id, Status.SUCCEEDED, poster, media)
    assert [(n.step, n.key, n.key_in_outputs) for n in next_steps] == [
        ("poster-thumbs", "derived/uploads/a.mp4/transcode/poster.jpg", "uploads/a.mp4/transcode/poster.jpg")
    ]
    assert run.source["height"] == 360  # the first screening gave the facts
    assert _finish(pipeline, run, launches["poster"].inv_id, Status.SUCCEEDED, poster) == []  # twice: nothing
    for step in ("probe", "mp4"):
        _finish(pipeline, run, launches[step].inv_id, Status.SUCCEEDED)
    _finish(
        pipeline,
        run,
        launches["hls"].inv_id,
        Status.SKIPPED,
        error=f"{engine.CONDITION_FALSE}source.height >= 480",
    )
    assert run.steps["hls"].skip_cause == "condition"
    assert status_of(run) == RunStatus.RUNNING
    _finish(pipeline, run, next_steps[0].inv_id, Status.SUCCEEDED, [out("derived/x/320.jpg")])
    assert status_of(run) == RunStatus.SUCCEEDED and run.finished_at is not None


def test_a_join_waits_for_both_parents_and_a_failure_skips_dependents_until_a_redrive() -> None:
    pipeline = load(JOIN_FLOW)
    run = _run(pipeline, "sheet")
    launches = {launch.step: launch for launch in engine.start(pipeline, run)}
    assert _finish(pipeline, run, launches["a"].inv_id, Status.SUCCEEDED, [out("derived/a/64.jpg")]) == []
    assert step_status(run, "c") == StepStatus.WAITING  # still waits for b
    _finish(pipeline, run, launches["b"].inv_id, Status.FAILED, error="MediaError: truncated")
    assert step_status(run, "c") == StepStatus.SKIPPED and run.steps["c"].skip_cause == "failure"
    assert step_status(run, "d") == StepStatus.SKIPPED
    assert status_of(run) == RunStatus.FAILED and run.reason == "failed: b"
    first_a = run.steps["a"].invocations
    again = engine.redrive(pipeline, run)
    assert [launch.step for launch in again] == ["b"]  # a succeeded: not run again
    assert run.steps["a"].invocations == first_a and status_of(run) == RunStatus.RUNNING
    nxt = _finish(pipeline, run, again[0].inv_id, Status.SUCCEEDED, [out("derived/b/f.webp", "image/webp")])
    assert [(n.step, n.key) for n in nxt] == [
        ("c", "derived/a/64.jpg"),
        ("c", "derived/b/f.webp"),
    ]  # on all outputs
    for launch in nxt:
        more = _finish(pipeline, run, launch.inv_id, Status.SUCCEEDED, [out(f"derived/c/{launch.inv_id}")])
    assert len(more) == 2 and {m.step for m in more} == {"d"}
    for launch in more:
        _finish(pipeline, run, launch.inv_id, Status.SUCCEEDED)
    assert status_of(run) == RunStatus.SUCCEEDED
    with pytest.raises(Conflict):
        engine.redrive(pipeline, run)


def test_rerun_of_one_step_with_and_without_downstream() -> None:
    pipeline = load(JOIN_FLOW)
    run = _run(pipeline, "sheet")
    launches = {launch.step: launch for launch in engine.start(pipeline, run)}
    _finish(pipeline, run, launches["a"].inv_id, Status.SUCCEEDED, [out("derived/a/64.jpg")])
    with pytest.raises(Conflict):
        engine.rerun(pipeline, run, "b", downstream=False)  # still running
    [c] = _finish(pipeline, run, launches["b"].inv_id, Status.SUCCEEDED)
    [d] = _finish(pipeline, run, c.inv_id, Status.SUCCEEDED, [out("derived/c/x")])
    _finish(pipeline, run, d.inv_id, Status.SUCCEEDED)
    assert status_of(run) == RunStatus.SUCCEEDED
    again = engine.rerun(pipeline, run, "a", downstream=False)
    assert [launch.step for launch in again] == ["a"]
    _finish(pipeline, run, again[0].inv_id, Status.SUCCEEDED, [out("derived/a/64.jpg")])
    assert status_of(run) == RunStatus.SUCCEEDED and run.steps["c"].rounds == 1
    again = engine.rerun(pipeline, run, "c", downstream=True)
    assert [launch.step for launch in again] == ["c"] and step_status(run, "d") == StepStatus.WAITING


def test_cancel_skips_what_is_unfinished_and_returns_its_invocations() -> None:
    pipeline = load(JOIN_FLOW)
    run = _run(pipeline, "sheet")
    launches = engine.start(pipeline, run)
    pending = engine.cancel(run, "stale", "superseded by run r2")
    assert sorted(pending) == sorted(launch.inv_id for launch in launches)
    assert status_of(run) == RunStatus.SKIPPED
    assert {s.skip_cause for s in run.steps.values()} == {"stale"}


def test_a_false_condition_at_start_skips_the_step_and_its_dependents(tmp_path: Path) -> None:
    pipeline = load(
        "flows: {f: {steps: {a: {function: copy, if: 'source.key.endsWith(\".mov\")'}, b: {function: copy, needs: [a]}}}}"
    )
    run = _run(pipeline, "f")
    assert engine.start(pipeline, run) == []
    assert run.steps["a"].reason == engine.CONDITION_FALSE + 'source.key.endsWith(".mov")'
    assert step_status(run, "b") == StepStatus.SKIPPED
    assert status_of(run) == RunStatus.SKIPPED


def test_pipeline_flows_draws_the_file_and_refuses_a_bad_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from pipeline.cli import cli

    path = tmp_path / "pipeline.yaml"
    path.write_text(VIDEO_FLOW)
    monkeypatch.setenv("PIPELINE_CONFIG", str(path))
    monkeypatch.setenv("PIPELINE_DATA_DIR", str(tmp_path / "data"))
    drawn = CliRunner().invoke(cli, ["flows"])
    assert drawn.exit_code == 0, drawn.output
    assert "video  (started by video-renditions)" in drawn.output
    assert "└─ poster-thumbs: thumbnail" in drawn.output
    assert "  retry transcode: 3 attempts, 2 s x2 up to 300 s, full jitter\n" in drawn.output
    path.write_text(VIDEO_FLOW.replace("needs: [poster]", "needs: [postr]"))
    refused = CliRunner().invoke(cli, ["flows"])
    assert refused.exit_code != 0
    assert f"{path}: flows.video.steps.poster-thumbs.needs: unknown step 'postr'" in refused.output


def test_on_failure_continue_and_use_narrow_what_a_dependent_runs_on() -> None:
    pipeline = load(
        """
flows:
  f:
    steps:
      video: {function: copy}
      optional: {function: copy, on_failure: continue}
      stills: {function: thumbnail, needs: [video, optional], use: {content_types: ["image/*"]}}
"""
    )
    run = _run(pipeline, "f")
    launches = {launch.step: launch for launch in engine.start(pipeline, run)}
    _finish(
        pipeline, run, launches["optional"].inv_id, Status.DEAD, error="StorageError: gone (after 3 attempts)"
    )
    outputs = [out("derived/v/a.mp4", "video/mp4"), out("derived/v/poster.jpg")]
    nxt = _finish(pipeline, run, launches["video"].inv_id, Status.SUCCEEDED, outputs)
    assert [(n.step, n.key) for n in nxt] == [("stills", "derived/v/poster.jpg")]  # only the image
    _finish(pipeline, run, nxt[0].inv_id, Status.SUCCEEDED)
    assert step_status(run, "optional") == StepStatus.DEAD
    assert status_of(run) == RunStatus.SUCCEEDED  # the failure was allowed to pass


GATED_FLOW = """
version: 1
buckets: [media]
flows:
  gated:
    steps:
      check: {function: screen}
      thumbs: {function: thumbnail, needs: [check], input: source, if: 'steps.check.verdict == "pass"'}
      poster: {function: thumbnail, needs: [check], input: source, if: 'steps.check.verdict != "pass"'}
rules:
  - {name: r, bucket: media, flow: gated}
"""


def test_input_source_runs_a_dependent_on_the_upload_gated_by_what_its_parent_reported() -> None:
    pipeline = load(GATED_FLOW)
    run = _run(pipeline, "gated", content_type="image/jpeg")
    [check] = engine.start(pipeline, run)
    report = OutputRef(bucket="media", key="derived/check.json", content_type="application/json", size=2)
    report.meta = {"verdict": "pass"}
    [thumbs] = _finish(pipeline, run, check.inv_id, Status.SUCCEEDED, [report])
    # On the uploaded object itself, named after it: not on the report the parent wrote.
    assert (thumbs.step, thumbs.bucket, thumbs.key, thumbs.key_in_outputs) == (
        "thumbs",
        "media",
        "uploads/a.mp4",
        None,
    )
    assert step_status(run, "poster") == StepStatus.SKIPPED and run.steps["poster"].skip_cause == "condition"


SCREENED_FLOW = """
version: 1
buckets: [media]
screening: {on_block: copy, quarantine_prefix: held-back/}
flows:
  images:
    steps:
      screen: {function: screen}
      probe: {function: copy}
      thumbs: {function: thumbnail, needs: [screen], input: source, if: 'steps.screen.verdict == "pass"'}
      small: {function: thumbnail, needs: [thumbs], params: {sizes: [64]}}
rules:
  - {name: r, bucket: media, flow: images}
"""


def _screened(verdict: str, reasons: list[str]) -> list[OutputRef]:
    report = OutputRef(bucket="media", key="derived/screen.json", content_type="application/json", size=2)
    report.meta = {"verdict": verdict, "reasons": reasons, "hash_distance": 12, "pdq": "ab"}
    return [report]


def test_a_block_verdict_ends_the_run_skips_everything_unfinished_and_names_the_quarantine() -> None:
    pipeline = load(SCREENED_FLOW)
    run = _run(pipeline, "images")
    screen, probe = engine.start(pipeline, run)
    assert _finish(pipeline, run, screen.inv_id, Status.SUCCEEDED, _screened("block", ["matches x"])) == []
    assert status_of(run) == RunStatus.BLOCKED and run.reason == "blocked by screen: matches x"
    assert {n: (s.status, s.skip_cause) for n, s in run.steps.items() if n != "screen"} == {
        "probe": (StepStatus.SKIPPED, "blocked"),
        "thumbs": (StepStatus.SKIPPED, "blocked"),
        "small": (StepStatus.SKIPPED, "blocked"),
    }
    # The running sibling's invocation is left for the runner to cancel if it is still queued.
    assert engine.blocked_pending(run) == [probe.inv_id]
    assert run.screening is not None and run.screening.scores == {"hash_distance": 12}
    assert run.screening.quarantine is not None
    assert (run.screening.quarantine.key, run.screening.quarantine.mode) == (
        "held-back/uploads/a.mp4",
        "copy",
    )
    with pytest.raises(Conflict, match="blocked by screening; a blocked upload is never processed again"):
        engine.redrive(pipeline, run)
    with pytest.raises(Conflict, match="blocked by screening"):
        engine.rerun(pipeline, run, "thumbs", downstream=False)


def test_review_holds_the_dependents_until_approve_runs_them_with_the_new_verdict() -> None:
    pipeline = load(SCREENED_FLOW)
    run = _run(pipeline, "images")
    screen, probe = engine.start(pipeline, run)
    assert _finish(pipeline, run, screen.inv_id, Status.SUCCEEDED, _screened("review", ["nsfw 0.7"])) == []
    assert step_status(run, "thumbs") == StepStatus.HELD and step_status(run, "small") == StepStatus.HELD
    assert status_of(run) == RunStatus.RUNNING  # probe still runs
    _finish(pipeline, run, probe.inv_id, Status.SUCCEEDED)
    assert status_of(run) == RunStatus.HELD and run.reason == "held for review: thumbs, small"
    assert run.screening is not None and run.screening.held == ["small", "thumbs"]
    with pytest.raises(Conflict, match="held for review"):
        engine.redrive(pipeline, run)

    [thumbs] = engine.approve(pipeline, run, Decision(action="approve", by="ana", at=5.0, via="dashboard"))
    assert thumbs.step == "thumbs" and status_of(run) == RunStatus.RUNNING
    assert run.screening.verdict == "pass" and run.screening.screened == "review"
    assert run.steps["screen"].view()["verdict"] == "pass"
    assert [d.by for d in run.decisions] == ["ana"]
    with pytest.raises(Conflict, match="holds no step"):
        engine.approve(pipeline, run, Decision(action="approve", by="ana", at=6.0))


def test_reject_blocks_a_held_run() -> None:
    pipeline = load(SCREENED_FLOW)
    run = _run(pipeline, "images")
    screen, probe = engine.start(pipeline, run)
    _finish(pipeline, run, probe.inv_id, Status.SUCCEEDED)
    _finish(pipeline, run, screen.inv_id, Status.SUCCEEDED, _screened("review", ["nsfw 0.7"]))
    assert status_of(run) == RunStatus.HELD
    engine.reject(pipeline, run, Decision(action="reject", by="bo", at=7.0, note="explicit"))
    assert status_of(run) == RunStatus.BLOCKED and run.reason == "rejected by bo: explicit"
    assert step_status(run, "thumbs") == StepStatus.SKIPPED and run.steps["thumbs"].skip_cause == "blocked"
    assert run.screening is not None and run.screening.verdict == "block" and run.screening.quarantine


def test_a_pass_verdict_is_recorded_and_lets_the_flow_go_on() -> None:
    pipeline = load(SCREENED_FLOW)
    run = _run(pipeline, "images")
    screen, _ = engine.start(pipeline, run)
    [thumbs] = _finish(pipeline, run, screen.inv_id, Status.SUCCEEDED, _screened("pass", []))
    assert thumbs.step == "thumbs"
    assert run.screening is not None and run.screening.verdict == "pass" and run.screening.quarantine is None
