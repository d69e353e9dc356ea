"""docs/reliability.md row 20, CI size: 100 uploads with worker kills, a Redis restart, dropped and
duplicated notifications, through the built-in pipeline file and the one-rule file. The full run
is `pipeline soak` (make soak)."""

from __future__ import annotations

import pytest

from pipeline.measure.pipelines import PIPELINES, PipelineName
from pipeline.measure.soak import run_soak

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("pipeline_file", PIPELINES)
def test_soak_100_uploads_nothing_lost_nothing_twice(pipeline_file: PipelineName) -> None:
    report = run_soak(uploads=100, kills=4, drop=0.05, dup=0.05, pipeline_file=pipeline_file)
    assert report.redis_restarts == 1 and report.child_kills + report.worker_kills == 4
    assert report.dropped > 0 and report.duplicated > 0
    assert (report.processed, report.lost, report.duplicate_outputs, report.partial_outputs) == (
        100,
        0,
        0,
        0,
    ), report
    assert report.peak_worker_rss_mb < 1500
