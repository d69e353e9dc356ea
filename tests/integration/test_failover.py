"""Redis with two replicas and Sentinel, the master killed under load (`pipeline/measure/failover.py`):
about 100 notifications/s for 30 s to a real gateway (`PIPELINE_REDIS_URL=redis+sentinel://...`,
`PIPELINE_REDIS_MIN_REPLICAS=1`) and a real worker. Notifications during the failover get 503 and
are sent again, as MinIO and SNS do; every acknowledged notification is processed exactly once;
the gateway and the worker follow the promoted replica by themselves."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.measure.failover import run_failover

pytestmark = pytest.mark.integration


@pytest.mark.timeout(480)
def test_a_failover_under_load_loses_and_repeats_nothing(tmp_path: Path) -> None:
    outcome = run_failover(tmp_path, rate=100, seconds=30, kill_at=10)
    print(outcome)
    assert outcome.acknowledged == outcome.sent, outcome  # every notification was acknowledged in the end
    assert outcome.answers[503] > 0, outcome  # the failover was seen: some were refused and sent again
    assert outcome.lost == 0 and outcome.duplicated == 0, outcome
    assert outcome.processed == outcome.outputs == outcome.sent, outcome
