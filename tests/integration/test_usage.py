"""Usage through real workers: per-invocation figures in the ledger, `/metrics` counting exactly
what ran, `pipeline usage` with prices, and the Grafana dashboard's queries against a real scrape."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.gateway.app import create_app
from pipeline.invocation import Invocation, Status
from pipeline.measure.samples import generate, make_video
from pipeline.runtime import Runtime
from pipeline.usage import OUTCOMES
from tests.helpers import Proc, ServedApp, need, pipeline_runtime, wait_until

pytestmark = pytest.mark.integration

N = 3
CONFIG = """
version: 1
buckets: [{bucket}]
functions:
  thumbnail: {{memory_mb: 256}}
  transcode: {{memory_mb: 1024}}
rules:
  - name: images
    bucket: {bucket}
    prefix: in/
    content_types: ["image/*"]
    functions:
      - {{function: thumbnail, params: {{sizes: [64]}}}}
      - {{function: filter, params: {{steps: [{{op: grayscale}}], format: png}}}}
      - function: copy
  - name: videos
    bucket: {bucket}
    prefix: in/
    content_types: ["video/*"]
    functions:
      - {{function: transcode, preset: poster}}
"""
FUNCTIONS = ("thumbnail", "filter", "copy", "transcode")
Scrape = dict[str, dict[tuple[tuple[str, str], ...], float]]


def scrape(client: httpx.Client) -> Scrape:
    """Every sample of /metrics: name -> sorted labels -> value."""
    found: Scrape = defaultdict(dict)
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            found[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return found


def per_function(scraped: Scrape, name: str, **labels: str) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for key, value in scraped.get(name, {}).items():
        as_dict = dict(key)
        if all(as_dict.get(k) == v for k, v in labels.items()) and "function" in as_dict:
            out[as_dict["function"]] += value
    return out


def upload(runtime: Runtime, bucket: str, key: str, path: Path, content_type: str) -> None:
    info = runtime.store.put_file(bucket, key, path, content_type=content_type)
    assert info.size > 0


def finished(runtime: Runtime, bucket: str) -> list[Invocation]:
    found = runtime.ledger.invocations.query(bucket=bucket, limit=500)
    return found if len(found) == 4 * N and all(i.status.finished for i in found) else []


def test_every_attempt_is_counted_once_in_the_ledger_metrics_and_usage(
    redis_url: str, tmp_path: Path
) -> None:
    need(shutil.which("ffmpeg") is not None, "ffmpeg is not installed")
    bucket = f"usage-{uuid.uuid4().hex[:8]}"
    runtime, env = pipeline_runtime(CONFIG.format(bucket=bucket), redis_url, tmp_path)
    runtime.store.ensure_bucket(bucket)
    image = generate(tmp_path / "samples")[0]
    video = make_video(tmp_path / "clip.mp4", width=320, height=240, seconds=1)
    with ServedApp(create_app(runtime.settings, runtime)) as client:
        before = scrape(client)
        worker = Proc(["worker", "--concurrency", "2"], env, tmp_path / "worker.log")
        try:
            wait_until(lambda: runtime.ledger.workers.live() or not worker.alive(), 30, "the worker")
            for i in range(N):
                upload(runtime, bucket, f"in/photo-{i}.jpg", image, "image/jpeg")
                upload(runtime, bucket, f"in/clip-{i}.mp4", video, "video/mp4")
            wait_until(lambda: finished(runtime, bucket), 120, "every invocation to finish")
            after = scrape(client)
            api = client.get("/api/usage", params={"since": "1h", "by": "bucket"}).json()
            assert client.get("/api/usage", params={"since": "last week"}).status_code == 400
            huge = client.get("/api/usage", params={"since": "9" * 400 + "h"})
            assert huge.status_code == 400 and "100 years at most" in huge.text, huge.text
        finally:
            assert worker.stop() == 0, worker.output()[-3000:]

    invocations = finished(runtime, bucket)
    assert {i.status for i in invocations} == {Status.SUCCEEDED}, [i.error for i in invocations]
    # The ledger: each invocation carries what its attempt used.
    for inv in invocations:
        assert inv.duration_ms is not None and inv.duration_ms > 0
        assert inv.queue_wait_ms is not None and inv.queue_wait_ms >= 0
        assert inv.cpu_ms is not None and inv.cpu_ms > 0
        assert inv.peak_memory_mb is not None and inv.peak_memory_mb > 20
        source = image if inv.key.endswith(".jpg") else video
        assert inv.bytes_read == source.stat().st_size
        assert inv.bytes_written == sum(o.size for o in inv.outputs) > 0
        assert inv.memory_mb == {"thumbnail": 256, "transcode": 1024}.get(inv.function, 128)
        # duration_ms is whole milliseconds: a 3 ms run's GB-seconds differ by up to one of them.
        one_ms = inv.memory_mb / 1024 / 1000
        assert inv.gb_seconds == pytest.approx(
            inv.memory_mb / 1024 * inv.duration_ms / 1000, rel=0.01, abs=one_ms
        )
        assert inv.cold_start is not None
    # Two worker processes: each one's first invocation was its cold start, and only that one.
    assert sum(1 for inv in invocations if inv.cold_start) == 2
    posters = [i for i in invocations if i.function == "transcode"]
    assert all(i.peak_memory_mb and i.peak_memory_mb > 30 for i in posters)  # ffmpeg's own peak counts

    def delta(name: str, **labels: str) -> dict[str, float]:
        now, then = per_function(after, name, **labels), per_function(before, name, **labels)
        return {fn: round(now[fn] - then.get(fn, 0.0), 6) for fn in FUNCTIONS}

    # /metrics, read from the counters every worker process added to: exactly N per function.
    assert delta("pipeline_function_invocations_total") == dict.fromkeys(FUNCTIONS, N)
    assert delta("pipeline_function_invocations_total", outcome="succeeded") == dict.fromkeys(FUNCTIONS, N)
    assert delta("pipeline_function_duration_seconds_count") == dict.fromkeys(FUNCTIONS, N)
    assert delta("pipeline_function_queue_wait_seconds_count") == dict.fromkeys(FUNCTIONS, N)
    assert delta("pipeline_function_duration_seconds_bucket", le="+Inf") == dict.fromkeys(FUNCTIONS, N)
    by_function: dict[str, list[Invocation]] = defaultdict(list)
    for inv in invocations:
        by_function[inv.function].append(inv)
    gbs, written = (
        delta("pipeline_function_gb_seconds_total"),
        delta("pipeline_function_bytes_total", direction="written"),
    )
    cpu = delta("pipeline_function_cpu_seconds_total")
    for fn, invs in by_function.items():
        assert gbs[fn] == pytest.approx(sum(i.gb_seconds or 0 for i in invs), rel=1e-3)
        assert written[fn] == sum(i.bytes_written or 0 for i in invs)
        assert cpu[fn] == pytest.approx(sum(i.cpu_ms or 0 for i in invs) / 1000, rel=1e-3)
    assert sum(delta("pipeline_function_coldstarts_total").values()) == 2
    assert per_function(after, "pipeline_workers")["thumbnail"] >= 1

    # `pipeline usage`: the same counts per bucket, priced.
    prices = tmp_path / "prices.yaml"
    prices.write_text("per_million_requests: 0.20\nper_gb_second: 0.0000166667\nper_gb_written: 0.023\n")
    out = subprocess.run(
        [sys.executable, "-m", "pipeline", "usage", "--by", "bucket", "--json", "--prices", str(prices)],
        env=env, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    report = json.loads(out.stdout)
    [row] = [r for r in report["rows"] if r["name"] == bucket]
    assert row["requests"] == 4 * N
    total_gbs = sum(i.gb_seconds or 0 for i in invocations)
    total_written = sum(i.bytes_written or 0 for i in invocations)
    assert row["gb_seconds"] == pytest.approx(total_gbs, rel=1e-3)
    assert row["bytes_written"] == total_written
    expected = 4 * N / 1e6 * 0.20 + total_gbs * 0.0000166667 + total_written / 1024**3 * 0.023
    assert row["cost"] == pytest.approx(expected, rel=1e-3)
    [api_row] = [r for r in api["rows"] if r["name"] == bucket]
    assert api_row["requests"] == 4 * N and api_row["cost"] is None
    table = subprocess.run(
        [sys.executable, "-m", "pipeline", "usage", "--by", "function", "--since", "1h"],
        env=env, capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    assert "Usage by function" in table and "thumbnail" in table and "total" in table

    # Every metric the Grafana dashboard queries is in the scrape.
    dashboard = json.loads(
        (Path(__file__).parents[2] / "deploy/monitoring/pipeline-dashboard.json").read_text()
    )
    queried = dashboard_metrics(dashboard)
    assert queried, "the dashboard queries no metrics"
    assert queried <= set(after), f"the dashboard queries metrics /metrics lacks: {queried - set(after)}"


def dashboard_metrics(dashboard: dict[str, Any]) -> set[str]:
    """The metric names in the dashboard's PromQL (its panels' and its variables' queries)."""
    queries = [t.get("expr", "") for p in dashboard.get("panels", []) for t in p.get("targets", [])]
    queries += [str(v.get("definition", "")) for v in dashboard.get("templating", {}).get("list", [])]
    return {name for query in queries for name in re.findall(r"\bpipeline_[a-z_]+\b", query)}


def test_a_retried_attempt_is_counted_as_retried_and_its_worker_logs_json(
    redis_url: str, tmp_path: Path
) -> None:
    flag = tmp_path / "fail-once"
    flag.touch()
    bucket = f"retries-{uuid.uuid4().hex[:8]}"
    config = f"""
version: 1
buckets: [{bucket}]
functions:
  step: {{module: tests.fixtures.steps, max_attempts: 3}}
rules:
  - name: steps
    bucket: {bucket}
    functions: [{{function: step, params: {{transient_once: "{flag}"}}}}]
"""
    runtime, env = pipeline_runtime(config, redis_url, tmp_path)
    runtime.store.ensure_bucket(bucket)
    image = generate(tmp_path / "samples")[0]
    with ServedApp(create_app(runtime.settings, runtime)) as client:
        before = scrape(client)
        json_env = {**env, "PIPELINE_LOG_FORMAT": "json"}
        worker = Proc(
            ["worker", "--functions", "step", "--concurrency", "1"], json_env, tmp_path / "worker.log"
        )
        try:
            upload(runtime, bucket, "one.jpg", image, "image/jpeg")
            [inv] = runtime.ledger.invocations.query(bucket=bucket)
            wait_until(
                lambda: (runtime.ledger.invocations.get(inv.id) or inv).status.finished, 60, "the retry"
            )
            after = scrape(client)
        finally:
            assert worker.stop() == 0, worker.output()[-3000:]
    check_json_log(worker.output(), inv)
    done = runtime.ledger.invocations.get(inv.id)
    assert done is not None and done.status == Status.SUCCEEDED and done.attempts == 2
    assert not flag.exists()
    counted = {
        outcome: per_function(after, "pipeline_function_invocations_total", outcome=outcome)["step"]
        - per_function(before, "pipeline_function_invocations_total", outcome=outcome).get("step", 0)
        for outcome in OUTCOMES
    }
    assert counted == {**dict.fromkeys(OUTCOMES, 0), "retried": 1, "succeeded": 1}
    # The second attempt's queue wait runs from when the backoff ended, not from the first send.
    assert done.queue_wait_ms is not None and done.queue_wait_ms < 1000
    [row] = [
        r
        for r in runtime.ledger.usage.rows(done.created_at, done.finished_at or 0, "bucket")
        if r.name == bucket
    ]
    assert row.requests == 2


def check_json_log(output: str, inv: Invocation) -> None:
    """PIPELINE_LOG_FORMAT=json: every log line is one JSON object, and each line about the invocation
    (the retry warning from the pipeline, Celery's received/succeeded lines) names it whole."""
    raw = [line for line in output.splitlines() if line.strip()]
    # Celery's signal handler says "worker: Warm shutdown" with a bare write, past logging.
    plain = [line for line in raw if not line.startswith("{")]
    assert all(line.startswith("worker: ") and "shutdown" in line for line in plain), plain
    lines = [json.loads(line) for line in raw if line.startswith("{")]
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    about = [line for line in lines if line.get("invocation_id") == inv.id]
    for line in about:
        assert (line["function"], line["bucket"], line["key"]) == ("step", inv.bucket, inv.key)
    messages = " | ".join(line["message"] for line in about)
    assert "attempt 1 failed" in messages, messages
    assert "received" in messages and "succeeded in" in messages, messages
    assert not [line for line in lines if inv.id in line["message"] and line.get("invocation_id") != inv.id]
