"""End to end: uploads to the S3 peer -> SNS -> gateway -> function workers -> webhook worker ->
signed webhooks at a receiver, with the documented payloads."""

from __future__ import annotations

import io
import shutil
from collections import Counter
from pathlib import Path

import httpx
import pytest
from PIL import Image

from pipeline.ledger import Ledger, connect
from pipeline.measure.samples import make_video
from pipeline.notify.notifier import Notifier
from pipeline.notify.payloads import InvocationPayload, ProcessedPayload, RejectedPayload
from pipeline.registry import load_pipeline
from pipeline.settings import Settings
from tests.helpers import Proc, need, wait_until
from tests.integration.conftest import Stack
from tests.integration.test_e2e_s3 import subscribe_gateway
from tests.receiver import Receiver

pytestmark = pytest.mark.integration


def test_uploads_announce_documented_signed_events(
    stack: Stack, sample_images: dict[str, Path], tmp_path: Path
) -> None:
    need(bool(shutil.which("ffmpeg")), "ffmpeg is not installed")
    webhooks = Proc(["worker", "--webhooks"], stack.env, tmp_path / "webhooks.log")
    try:
        with Receiver() as receiver:
            _run(stack, receiver, sample_images, tmp_path)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- webhook worker:\n{webhooks.output()[-3000:]}") from None
    finally:
        assert webhooks.stop() == 0, webhooks.output()[-3000:]


def _run(stack: Stack, receiver: Receiver, sample_images: dict[str, Path], tmp_path: Path) -> None:
    created = httpx.post(f"{stack.gateway_url}/api/webhooks", json={"url": f"{receiver.url}/app"})
    assert created.status_code == 201, created.text
    receiver.secrets["/app"].append(created.json()["secret"])
    settings = Settings(redis_url=stack.redis_url, config=Path(stack.env["PIPELINE_CONFIG"]))
    client = connect(stack.redis_url)
    notifier = Notifier.from_settings(settings, load_pipeline(settings).config, Ledger(client), client, None)
    # The callback destination's own secret, derived from the key generated once for all workers.
    receiver.secrets["/cb"].append(notifier.callback_secret(f"{receiver.url}/cb"))
    subscribe_gateway(stack)
    logo = tmp_path / "logo.png"
    Image.new("RGBA", (40, 40), (0, 0, 0, 255)).save(logo)
    stack.minio.fput_object(stack.bucket, "brand/logo.png", str(logo), content_type="image/png")

    video = make_video(tmp_path / "clip.mp4", width=320, height=180, seconds=1)
    stack.minio.fput_object(stack.bucket, "uploads/clip.mp4", str(video), content_type="video/mp4")
    stack.minio.fput_object(
        stack.bucket,
        "uploads/pic.jpg",
        str(sample_images["landscape.jpg"]),
        content_type="image/jpeg",
        metadata={"callback-url": f"{receiver.url}/cb"},
    )
    text = b"not a picture at all\n" * 10
    stack.minio.put_object(
        stack.bucket, "uploads/notes.jpg", io.BytesIO(text), len(text), content_type="image/jpeg"
    )

    def processed() -> list[ProcessedPayload]:
        return [ProcessedPayload.model_validate_json(r.body) for r in receiver.at("/app", "object.processed")]

    wait_until(lambda: len(processed()) >= 3, 120, "object.processed for the three uploads", interval=0.25)
    wait_until(lambda: receiver.at("/cb"), 30, "the per-upload callback")
    got = receiver.at("/app")
    assert all(r.verified for r in got), [r.verify_error for r in got if not r.verified]

    by_key = {p.data.key: p.data for p in processed()}
    assert Counter(p.data.key for p in processed()) == {
        "uploads/pic.jpg": 1,
        "uploads/clip.mp4": 1,
        "uploads/notes.jpg": 1,
    }
    pic, clip, notes = by_key["uploads/pic.jpg"], by_key["uploads/clip.mp4"], by_key["uploads/notes.jpg"]
    assert pic.succeeded and sorted(i.function for i in pic.invocations) == ["copy", "filter", "thumbnail"]
    assert clip.succeeded and sorted(i.function for i in clip.invocations) == ["copy"] + ["transcode"] * 4
    assert any(o.key.endswith("/poster.jpg") for o in clip.outputs)
    thumb = next(o for o in pic.outputs if o.key.endswith(".jpg") and "/thumbnail/" in o.key)
    assert thumb.url and "X-Amz-Signature" in thumb.url
    fetched = httpx.get(thumb.url)
    assert fetched.status_code == 200 and len(fetched.content) == thumb.size

    # The text file named .jpg: screening (magic bytes, allow-list) refuses it before any function.
    assert not notes.succeeded and notes.outputs == []
    assert sorted(f.function for f in notes.failures) == ["copy", "filter", "thumbnail"]
    rejected = [RejectedPayload.model_validate_json(r.body) for r in receiver.at("/app", "object.rejected")]
    assert sorted(r.data.function for r in rejected) == ["copy", "filter", "thumbnail"]
    assert all(r.data.key == "uploads/notes.jpg" and r.data.reason for r in rejected)

    def announced() -> list[str]:
        got = receiver.at("/app", "invocation.succeeded")
        return sorted(InvocationPayload.model_validate_json(r.body).data.id for r in got)

    finished = stack.ledger.invocations.query(bucket=stack.bucket, limit=100)
    succeeded = sorted(i.id for i in finished if i.status == "succeeded")
    # Each message is delivered on its own: an upload's object.processed may come before the
    # invocation.succeeded of its last invocation.
    wait_until(lambda: len(announced()) >= len(succeeded), 30, "invocation.succeeded for each success")
    assert announced() == succeeded
    assert len({r.webhook_id for r in got}) == len(got), "one message per event"

    # The callback from the object's metadata: signed with the callback secret, about its upload only.
    callbacks = receiver.at("/cb")
    assert all(r.verified for r in callbacks), [r.verify_error for r in callbacks]
    assert [r.json["type"] for r in callbacks] == ["object.processed"]
    assert callbacks[0].json["data"]["key"] == "uploads/pic.jpg"
