"""Repeated deliveries of the built-in pipeline's notifications, through real gateway processes.

S3, SNS and MinIO deliver at least once, and MinIO with a queue directory sends a notification
again until it gets a 2xx: a repeat must be acknowledged, start nothing new and count nothing twice.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from pipeline.measure.ingest import minio_body
from tests.helpers import BUILT_IN, pipeline_runtime, start_gateway

pytestmark = pytest.mark.integration

HEADERS = {"Authorization": "Bearer t0ken", "Content-Type": "application/json"}

# The built-in file with a single-step rule beside its `images` flow: an upload that starts a run
# and an invocation of its own at once (the built-in file has no such rule).
FLOW_AND_STEP = BUILT_IN.replace(
    "rules:\n",
    "rules:\n  - name: archive\n    bucket: media\n    prefix: uploads/\n"
    "    functions:\n      - {function: copy, output: {bucket: media, template: 'archive/{key}'}}\n\n",
    1,
)


@pytest.fixture(params=["built-in", "flow-and-step"])
def gateway(request: pytest.FixtureRequest, redis_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A gateway process (one, so its counters are the whole count); yields (base URL, which
    pipeline)."""
    config = BUILT_IN if request.param == "built-in" else FLOW_AND_STEP
    _, env = pipeline_runtime(config, redis_url, tmp_path)
    env["PIPELINE_EVENTS_TOKEN"] = "t0ken"
    proc, base = start_gateway(env, tmp_path / "gateway.log")
    try:
        yield base, request.param
    finally:
        proc.stop()
    assert "Traceback" not in proc.output(), proc.output()[-3000:]


def _post(base: str, body: bytes) -> httpx.Response:
    return httpx.post(
        f"{base}/events/minio", content=body, headers={**HEADERS, "Connection": "close"}, timeout=30
    )


def _twice_in_one_body(key: str, size: int) -> bytes:
    body = json.loads(minio_body(key, size))
    body["Records"] = body["Records"] * 2
    return json.dumps(body).encode()


def test_repeated_deliveries_of_a_flow_upload_are_acknowledged_once(gateway: tuple[str, str]) -> None:
    base, which = gateway
    steps_per_upload = 1 if which == "flow-and-step" else 0
    first = _post(base, minio_body("uploads/a.jpg", 1000))
    assert first.status_code == 200, first.text
    [run] = first.json()["runs"]
    assert len(first.json()["invocations"]) == steps_per_upload and first.json()["duplicates"] == 0

    again = _post(base, minio_body("uploads/a.jpg", 1000))
    assert again.status_code == 200, again.text
    assert again.json()["runs"] == [run] and again.json()["invocations"] == first.json()["invocations"]
    assert again.json()["duplicates"] == 1 + steps_per_upload

    # Twice in one notification: both records go in the same group-commit batch.
    same_batch = _post(base, _twice_in_one_body("uploads/b.jpg", 2000))
    assert same_batch.status_code == 200, same_batch.text
    b_runs = same_batch.json()["runs"]
    assert len(b_runs) == 2 and b_runs[0] == b_runs[1], b_runs
    assert same_batch.json()["duplicates"] == 1 + steps_per_upload

    # Twelve deliveries at once: the first goes alone, the others wait and share the next batches.
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: _post(base, minio_body("uploads/c.jpg", 3000)), range(12)))
    assert [a.status_code for a in answers] == [200] * 12, [a.text for a in answers if a.status_code != 200]
    assert len({tuple(a.json()["runs"]) for a in answers}) == 1
    assert sum(a.json()["duplicates"] for a in answers) == 11 * (1 + steps_per_upload)

    started, found, steps = _counters(base)
    assert (started, found, steps) == (3, 1 + 1 + 11, 3 * steps_per_upload)


def _counters(base: str) -> tuple[int, int, int]:
    """Runs started, runs found already started, single steps enqueued, as the gateway counts."""
    text = httpx.get(f"{base}/metrics", headers=HEADERS, timeout=5).text
    return (
        _metric(text, r'pipeline_gateway_runs_total\{status="started"\}'),
        _metric(text, r'pipeline_gateway_runs_total\{status="duplicate"\}'),
        _metric(text, r"pipeline_gateway_invocations_total"),
    )


def _metric(text: str, name: str) -> int:
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    assert found, f"{name} not in /metrics"
    return int(float(found.group(1)))


def test_a_record_that_cannot_be_stored_refuses_its_own_notification_only(
    gateway: tuple[str, str], redis_url: str
) -> None:
    """A key with a lone surrogate (valid JSON, no valid UTF-8): 400 for its notification; the
    notifications that share its batch are committed, their work recorded and claimed once."""
    base, _ = gateway
    bad = minio_body("uploads/placeholder.jpg", 1).replace(
        b"uploads%2Fplaceholder.jpg", b"uploads/\\ud800.jpg"
    )
    bodies = [minio_body(f"uploads/ok-{n}.jpg", 100 + n) for n in range(8)]
    bodies.insert(4, bad)
    with ThreadPoolExecutor(9) as pool:
        answers = list(pool.map(lambda body: _post(base, body), bodies))
    refused = answers.pop(4)
    assert refused.status_code == 400 and "is not valid UTF-8" in refused.text, refused.text
    assert [a.status_code for a in answers] == [200] * 8, [a.text for a in answers]
    from pipeline.ledger import Ledger, connect

    ledger = Ledger(connect(redis_url))
    for n, answer in enumerate(answers):
        [run] = answer.json()["runs"]
        recorded = ledger.runs.get(run)
        assert recorded is not None and recorded.key == f"uploads/ok-{n}.jpg"
    again = [_post(base, body) for body in bodies[:4] + bodies[5:]]
    assert all(a.status_code == 200 and a.json()["duplicates"] >= 1 for a in again), [a.text for a in again]
