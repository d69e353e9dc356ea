"""Redis with two replicas and Sentinel, the master killed under load (`pipeline/measure/failover.py`):
about 100 notifications/s for 8 s to a real gateway (`PIPELINE_REDIS_URL=redis+sentinel://...`,
`PIPELINE_REDIS_MIN_REPLICAS=1`) and a real worker. Notifications during the failover get 503 and
are sent again, as MinIO and SNS do; every acknowledged notification is processed exactly once;
the gateway and the worker follow the promoted replica by themselves."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.measure.failover import RedisGroup, run_failover
from pipeline.measure.pipelines import PIPELINES, PipelineName
from tests.helpers import Proc, free_port, pipeline_env, wait_until

pytestmark = pytest.mark.integration

# The benchmark's rates, for a shorter time: the master still dies mid-load, with notifications
# in flight before, during and after, and the test run stays short. `pipeline bench system --only
# failover` runs the full size (3,000 and 600 notifications, `failover.LOADS`).
LOADS: dict[PipelineName, tuple[int, int, float]] = {"built-in": (30, 8, 3.5), "one-rule": (100, 8, 3.5)}


@pytest.mark.timeout(480)
@pytest.mark.parametrize("pipeline_file", PIPELINES)
def test_a_failover_under_load_loses_and_repeats_nothing(tmp_path: Path, pipeline_file: PipelineName) -> None:
    rate, seconds, kill_at = LOADS[pipeline_file]
    outcome = run_failover(tmp_path, rate=rate, seconds=seconds, kill_at=kill_at, pipeline_file=pipeline_file)
    print(outcome)
    assert outcome.acknowledged == outcome.sent, outcome  # every notification was acknowledged in the end
    assert outcome.answers[503] > 0, outcome  # the failover was seen: some were refused and sent again
    assert outcome.lost == 0 and outcome.duplicated == 0, outcome
    assert outcome.processed == outcome.outputs == outcome.sent, outcome


def test_settings_doctor_and_up_work_with_a_multi_sentinel_url(tmp_path: Path) -> None:
    """The documented URL names several sentinels; one of them here is down, as one may be."""
    group = RedisGroup(tmp_path / "redis")
    try:
        one = group.start()
        down = free_port()
        url = one.replace("redis+sentinel://", f"redis+sentinel://127.0.0.1:{down},")
        env = pipeline_env(
            PIPELINE_REDIS_URL=url, PIPELINE_DATA_DIR=str(tmp_path / "data"), PIPELINE_RECONCILE_INTERVAL="0"
        )
        for command in (["settings"], ["doctor"]):
            result = subprocess.run(
                [sys.executable, "-m", "pipeline", *command],
                env=env, capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
            assert result.returncode == 0, f"pipeline {command[0]}:\n{result.stdout}\n{result.stderr}"
            assert f"127.0.0.1:{down}," in result.stdout and "Traceback" not in result.stderr
        up = Proc(["up", "--port", str(free_port())], env, tmp_path / "up.log")
        try:
            wait_until(lambda: "press Ctrl-C" in up.output() or not up.alive(), 120, "pipeline up")
            assert up.alive(), up.output()[-3000:]
            assert f"redis: {url}" in up.output()
        finally:
            assert up.interrupt(signal.SIGINT, 60) == 0, up.output()[-3000:]
        assert "Traceback" not in up.output(), up.output()[-3000:]
    finally:
        group.stop()
