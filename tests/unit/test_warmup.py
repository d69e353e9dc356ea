"""Warming a new pool process runs built-in functions only: user code runs for real work alone."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import parse_config
from pipeline.queue.warmup import preload, warm_functions
from pipeline.registry import build_pipeline


def test_warm_up_runs_builtins_and_never_user_functions(tmp_path: Path) -> None:
    journal = tmp_path / "journal.txt"
    config = f"""
functions:
  misbehaving: {{module: tests.fixtures.misbehaving}}
rules:
  - name: r
    bucket: media
    functions:
      - {{function: misbehaving, params: {{seconds: 0, journal: '{journal}'}}}}
      - {{function: thumbnail, params: {{sizes: [64]}}}}
      - {{function: filter, params: {{steps: [{{op: watermark, image: "s3://media/logo.png"}}]}}}}
"""
    pipeline = build_pipeline(parse_config(config, "p.yaml"), "p.yaml")
    preload(["thumbnail", "filter", "misbehaving"])
    warm_functions(pipeline, ["thumbnail", "filter", "misbehaving"], tmp_path / "work")
    assert not journal.exists(), "a user function ran at warm-up"
    assert list((tmp_path / "work").iterdir()) == [], "warm-up leaves nothing behind"
