"""The worker adapter without Celery: admission, rejected copies, assets, output templates, progress."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from pipeline.attempt import run_attempt
from pipeline.config import parse_config
from pipeline.execution import Executor
from pipeline.invocation import Invocation, Status
from pipeline.ledger import Ledger
from pipeline.registry import build_pipeline
from pipeline.runtime import Runtime, build_runtime
from pipeline.settings import Settings
from pipeline.storage import LocalStore, ObjectStore

pytestmark = pytest.mark.integration

CONFIG = """
version: 1
buckets: [media]
rules:
  - name: all
    bucket: media
    prefix: uploads/
    functions:
      - function: thumbnail
        params: {sizes: [32]}
      - function: filter
        params: {steps: [{op: watermark, image: "s3://media/brand/logo.png", position: top-left, margin: 0, opacity: 1, width: 0.5}], format: png}
      - function: copy
        output: {bucket: archive, template: "kept/{key}"}
screening:
  rejected_prefix: rejected/
"""


class Queued(list[Invocation]):
    """Stands in for the broker: what the intake enqueues (or stages with its records)."""

    def enqueue(self, inv: Invocation) -> None:
        self.append(inv)

    def stage(self, pipe: object, inv: Invocation) -> None:
        self.append(inv)

    def depth(self, queue: str) -> int:
        return sum(1 for inv in self if inv.queue == queue)


Setup = tuple[Executor, ObjectStore, Ledger, Queued, Runtime]


@pytest.fixture
def setup(redis_url: str, tmp_path: Path) -> Setup:
    pipeline = build_pipeline(parse_config(CONFIG, "t.yaml"), "t.yaml")
    queued = Queued()
    runtime = build_runtime(Settings(data_dir=tmp_path / "data"), pipeline, redis_url, queued)
    runtime.store.ensure_bucket("media")
    executor = Executor(pipeline, runtime.store, runtime.ledger, tmp_path / "work")
    return executor, runtime.store, runtime.ledger, queued, runtime


def run_all(setup: Setup) -> dict[str, Invocation]:
    """Each queued invocation through `run_attempt`, as a worker runs it."""
    executor, _, ledger, queued, runtime = setup
    for inv in list(queued):
        run_attempt(runtime, executor, inv, "test-worker")
    return {inv.function: got for inv in queued if (got := ledger.invocations.get(inv.id)) is not None}


def test_a_rejected_input_is_kept_under_the_rejected_prefix_with_its_reason(
    setup: Setup, tmp_path: Path
) -> None:
    _, store, _, queued, _ = setup
    fake = tmp_path / "evil.jpg"
    fake.write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    store.put_file("media", "uploads/evil.jpg", fake, content_type="image/jpeg")
    results = run_all(setup)
    assert {inv.status for inv in results.values()} == {Status.REJECTED}
    assert all(
        "media/uploads/evil.jpg: content is image/svg+xml" in (inv.error or "") for inv in results.values()
    )
    kept = store.stat("media", "rejected/uploads/evil.jpg")
    assert "image/svg+xml" in kept.metadata["pipeline-rejected"]
    assert len(queued) == 3  # the rejected copies triggered nothing


def test_assets_templates_and_media_info(setup: Setup, tmp_path: Path) -> None:
    _, store, _, _, _ = setup
    logo = tmp_path / "logo.png"
    Image.new("RGBA", (10, 10), (0, 0, 0, 255)).save(logo)
    store.put_file("media", "brand/logo.png", logo, content_type="image/png")
    photo = tmp_path / "p.png"
    Image.new("RGB", (200, 100), (255, 255, 255)).save(photo)
    store.put_file("media", "uploads/p.png", photo, content_type="image/png")
    results = run_all(setup)
    assert {f: inv.status for f, inv in results.items()} == {
        f: Status.SUCCEEDED for f in ("thumbnail", "filter", "copy")
    }
    assert results["thumbnail"].media == {
        "media_type": "image/png",
        "size": photo.stat().st_size,
        "width": 200,
        "height": 100,
        "frames": 1,
        "has_audio": False,
        "rotation": 0,
    }
    assert isinstance(store, LocalStore)  # the settings name no S3 endpoint
    filtered = store.path_of("media", "derived/uploads/p.png/filter/filtered.png")
    with Image.open(filtered) as img:
        assert img.convert("RGB").getpixel((2, 2)) == (0, 0, 0)  # the logo, fetched from the store
    assert store.stat("archive", "kept/uploads/p.png").size == photo.stat().st_size
    out = store.stat("media", "derived/uploads/p.png/thumbnail/32.jpg")
    assert (
        out.metadata["pipeline-source-key"] == "uploads/p.png"
        and out.metadata["pipeline-function"] == "thumbnail"
    )
