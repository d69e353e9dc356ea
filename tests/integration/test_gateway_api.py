"""The gateway's HTTP contract, against real Redis and the real Celery producer (no worker here:
what matters is what gets enqueued)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from pydantic import SecretStr

from pipeline.gateway.app import create_app
from pipeline.queue.app import queue_depth
from pipeline.settings import Settings
from tests.helpers import EVENTS, THUMBNAILS_ONLY, ServedApp, free_port, pipeline_runtime

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token"


def body(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return data


@pytest.fixture
def gateway_settings(redis_url: str, tmp_path: Path) -> Settings:
    config = tmp_path / "pipeline.yaml"
    config.write_text(THUMBNAILS_ONLY)
    return Settings(
        config=config,
        redis_url=redis_url,
        data_dir=tmp_path,
        events_token=SecretStr(TOKEN),
        sns_verify_signature=False,
        max_event_bytes=64 * 1024,
    )


@pytest.fixture
def client(gateway_settings: Settings) -> Iterator[httpx.Client]:
    with ServedApp(create_app(gateway_settings)) as c:
        yield c


def queued(redis_url: str) -> int:
    return queue_depth(redis.Redis.from_url(redis_url), "fn.thumbnail")


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_minio_event_is_enqueued_once(client: httpx.Client, redis_url: str) -> None:
    response = client.post("/events/minio", json=body("minio-put.json"), headers=AUTH)
    assert response.status_code == 200, response.text
    assert len(response.json()["invocations"]) == 1
    assert queued(redis_url) == 1
    again = client.post("/events/minio", json=body("minio-put.json"), headers=AUTH)
    assert again.json()["duplicates"] == 1
    assert queued(redis_url) == 1


def test_bare_token_accepted_as_older_minio_sends_it(client: httpx.Client, redis_url: str) -> None:
    response = client.post("/events/minio", json=body("minio-put.json"), headers={"Authorization": TOKEN})
    assert response.status_code == 200


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}])
def test_missing_or_wrong_token_is_401_and_nothing_enqueued(
    client: httpx.Client, redis_url: str, headers: dict[str, str]
) -> None:
    response = client.post("/events/minio", json=body("minio-put.json"), headers=headers)
    assert response.status_code == 401
    assert queued(redis_url) == 0
    assert client.get("/api/invocations").json()["items"] == []


def test_empty_ping_is_200(client: httpx.Client) -> None:
    assert client.post("/events/minio", content=b"", headers=AUTH).status_code == 200


def test_malformed_and_oversize_bodies(client: httpx.Client, redis_url: str) -> None:
    as_json = {**AUTH, "Content-Type": "application/json"}
    assert client.post("/events/minio", content=b"{not json", headers=as_json).status_code == 400
    assert client.post("/events/minio", json=[1, 2], headers=AUTH).status_code == 400
    assert client.post("/events/minio", json={"Records": [{"s3": {}}]}, headers=AUTH).status_code == 400
    big = {"Records": [], "pad": "x" * 100_000}
    assert client.post("/events/minio", json=big, headers=AUTH).status_code == 413
    assert queued(redis_url) == 0


def test_s3_test_event_ignored(client: httpx.Client, redis_url: str) -> None:
    response = client.post("/events/minio", json=body("s3-test-event.json"), headers=AUTH)
    assert response.json()["status"] == "ignored"
    assert queued(redis_url) == 0


def sns_notification(topic: str | None = None, sent: float | None = None) -> str:
    """The example notification, sent now (or at `sent`), from its topic (or `topic`)."""
    data = body("sns-notification.json")
    stamp = datetime.fromtimestamp(time.time() if sent is None else sent, UTC)
    data["Timestamp"] = stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    data["TopicArn"] = topic or data["TopicArn"]
    return json.dumps(data)


def test_sns_notification_with_token_in_url(client: httpx.Client, redis_url: str) -> None:
    envelope = sns_notification()
    headers = {"Content-Type": "text/plain; charset=UTF-8", "x-amz-sns-message-type": "Notification"}
    assert client.post("/events/sns", content=envelope, headers=headers).status_code == 401
    response = client.post(f"/events/sns?token={TOKEN}", content=envelope, headers=headers)
    assert response.status_code == 200, response.text
    assert queued(redis_url) == 1
    [inv] = client.get("/api/invocations").json()["items"]
    assert inv["key"] == "uploads/summer 2026/beach day (1).png"


def test_sns_signature_checked_by_default(gateway_settings: Settings, redis_url: str) -> None:
    settings = gateway_settings.model_copy(update={"sns_verify_signature": True})
    with ServedApp(create_app(settings)) as c:
        response = c.post(f"/events/sns?token={TOKEN}", content=json.dumps(body("sns-notification.json")))
    assert response.status_code == 403  # the example's signature is fake (and its cert URL unreachable)
    assert queued(redis_url) == 0


def test_subscription_confirmation_refused_for_unlisted_topic(client: httpx.Client) -> None:
    response = client.post(
        f"/events/sns?token={TOKEN}", content=json.dumps(body("sns-subscription-confirmation.json"))
    )
    assert response.status_code == 403
    assert "not allowed" in response.json()["detail"]


def test_broker_down_is_503_never_2xx(tmp_path: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    settings = Settings(redis_url=dead, data_dir=tmp_path, events_token=SecretStr(TOKEN))
    with ServedApp(create_app(settings)) as c:
        response = c.post("/events/minio", json=body("minio-put.json"), headers=AUTH)
        assert response.status_code == 503
        assert c.get("/healthz").status_code == 503


def test_api_lists_and_filters(client: httpx.Client) -> None:
    client.post("/events/minio", json=body("minio-put.json"), headers=AUTH)
    client.post(f"/events/sns?token={TOKEN}", content=sns_notification())
    items = client.get("/api/invocations").json()["items"]
    assert len(items) == 2
    required = {
        "id",
        "function",
        "status",
        "bucket",
        "key",
        "attempts",
        "created_at",
        "started_at",
        "finished_at",
        "duration_ms",
        "outputs",
        "error",
    }
    assert required <= set(items[0])
    one = client.get("/api/invocations", params={"key": "uploads/cat photo.jpg", "bucket": "media"}).json()
    assert [i["key"] for i in one["items"]] == ["uploads/cat photo.jpg"]
    assert client.get("/api/invocations", params={"status": "queued"}).json()["items"]
    assert client.get("/api/invocations", params={"status": "succeeded"}).json()["items"] == []
    assert client.get("/api/invocations", params={"status": "bogus"}).status_code == 422
    detail = client.get(f"/api/invocations/{items[0]['id']}")
    assert detail.status_code == 200 and detail.json()["id"] == items[0]["id"]
    assert client.get("/api/invocations/nope").status_code == 404
    events = client.get("/api/events").json()["items"]
    assert {e["source"] for e in events} == {"minio", "sns"}
    functions = {f["name"]: f for f in client.get("/api/functions").json()["items"]}
    assert set(functions) == {"copy", "filter", "screen", "thumbnail", "transcode"}
    fn = functions["thumbnail"]
    assert fn["queue"] == "fn.thumbnail" and "properties" in fn["params_schema"]
    assert functions["transcode"]["queue"] == "fn.transcode"
    retry = client.post(f"/api/invocations/{items[0]['id']}/retry")
    assert retry.status_code == 409  # still queued: nothing to retry


def test_api_token_required_when_set(gateway_settings: Settings) -> None:
    settings = gateway_settings.model_copy(update={"api_token": SecretStr("api")})
    with ServedApp(create_app(settings)) as c:
        assert c.get("/api/invocations").status_code == 401
        assert c.get("/api/invocations", headers={"Authorization": "Bearer api"}).status_code == 200
        assert c.get("/healthz").status_code == 200


def test_healthz_and_metrics(client: httpx.Client) -> None:
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["redis"] is True
    client.post("/events/minio", json=body("minio-put.json"), headers=AUTH)
    text = client.get("/metrics").text
    assert 'pipeline_gateway_events_total{source="minio",status="accepted"} 1.0' in text
    assert 'pipeline_queue_depth{queue="fn.thumbnail"} 1.0' in text
    assert 'pipeline_invocations{status="queued"} 1.0' in text
    client.post("/events/minio", json=body("minio-put.json"), headers=AUTH)  # a duplicate
    assert 'pipeline_guard{kind="duplicates"} 1.0' in client.get("/metrics").text


def test_allowed_topic_confirms_only_from_an_aws_url(gateway_settings: Settings) -> None:
    confirmation = body("sns-subscription-confirmation.json")
    settings = gateway_settings.model_copy(update={"sns_topics": [confirmation["TopicArn"]]})
    confirmation["SubscribeURL"] = "http://127.0.0.1:9/?Action=ConfirmSubscription"  # SSRF bait
    with ServedApp(create_app(settings)) as c:
        response = c.post(f"/events/sns?token={TOKEN}", content=json.dumps(confirmation))
    assert response.status_code == 400
    assert "sns.*.amazonaws.com" in response.json()["detail"]


def test_retry_one_and_all_dead_through_the_api(client: httpx.Client, redis_url: str) -> None:
    from pipeline.invocation import Status
    from pipeline.ledger import Ledger, connect

    client.post("/events/minio", json=body("minio-put.json"), headers=AUTH)
    client.post(f"/events/sns?token={TOKEN}", content=sns_notification())
    ledger = Ledger(connect(redis_url))
    ids = [i["id"] for i in client.get("/api/invocations").json()["items"]]
    for inv_id in ids:
        ledger.invocations.start_attempt(inv_id, "w")
        ledger.invocations.finish(inv_id, Status.DEAD, error="boom")
    before = queued(redis_url)
    one = client.post(f"/api/invocations/{ids[0]}/retry")
    assert one.status_code == 202 and one.json()["status"] == "queued" and one.json()["attempts"] == 0
    rest = client.post("/api/invocations/retry-dead")
    assert rest.status_code == 202 and rest.json()["requeued"] == [ids[1]]
    assert queued(redis_url) == before + 2
    assert client.post("/api/invocations/retry-dead").json()["requeued"] == []


def test_sns_notifications_only_from_listed_topics_and_never_replayed(
    gateway_settings: Settings, redis_url: str
) -> None:
    listed = "arn:aws:sns:eu-central-1:123456789012:media-events"
    settings = gateway_settings.model_copy(update={"sns_topics": [listed]})
    url = f"/events/sns?token={TOKEN}"
    with ServedApp(create_app(settings)) as c:
        other = c.post(url, content=sns_notification(topic="arn:aws:sns:eu-central-1:999999999999:other"))
        assert other.status_code == 403 and "PIPELINE_SNS_TOPICS" in other.json()["detail"]
        replayed = c.post(url, content=sns_notification(sent=time.time() - 2 * 3600))
        assert replayed.status_code == 403 and "replay" in replayed.json()["detail"]
        future = c.post(url, content=sns_notification(sent=time.time() + 3600))
        assert future.status_code == 403
        assert queued(redis_url) == 0
        assert c.post(url, content=sns_notification()).status_code == 200
        assert queued(redis_url) == 1


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://[2002:7f00:1::]/hook", "loopback (inside 2002:7f00:1::)"),  # 6to4 of 127.0.0.1
        ("http://[2002:a9fe:a9fe::]/hook", "link-local"),  # 6to4 of 169.254.169.254
        ("http://[64:ff9b::a00:1]/hook", "private"),  # NAT64 of 10.0.0.1
        ("http://[fec0::1]/hook", "site-local"),
        ("http://93.184.216.34:22/hook", "port 22"),
    ],
)
def test_webhook_destinations_hidden_in_special_ranges_or_ports_are_refused(
    client: httpx.Client, url: str, why: str
) -> None:
    refused = client.post("/api/webhooks", json={"url": url})
    assert refused.status_code == 422 and why in refused.json()["detail"], refused.text
    assert client.post("/api/webhooks", json={"url": "https://93.184.216.34/hook"}).status_code == 201


def test_a_filter_the_indexes_cannot_answer_reads_a_bounded_window(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`?bucket=nomatch` beside a status (invocations) or alone (runs) reads no index of its own:
    it looks at the newest offset + limit + UNINDEXED_WINDOW records, never the whole ledger.
    The window is made small here so a ledger of a few thousand records is far past it."""
    from pipeline.ledger import paging
    from pipeline.measure.synthetic_ledger import load

    monkeypatch.setattr(paging, "UNINDEXED_WINDOW", 40)
    runtime, _ = pipeline_runtime(THUMBNAILS_ONLY, redis_url, tmp_path)
    loaded = load(runtime.ledger, runtime.redis, 4000, time.time())
    assert loaded.runs >= 90

    def commands() -> int:
        return int(runtime.redis.info("stats")["total_commands_processed"])

    with ServedApp(create_app(runtime.settings, runtime)) as api:
        for path in (
            "/api/invocations?status=succeeded&bucket=nomatch",
            "/api/invocations?function=thumbnail&bucket=nomatch",
            "/api/runs?bucket=nomatch",
            "/api/runs?status=succeeded&bucket=nomatch",
        ):
            before = commands()
            answer = api.get(path)
            used = commands() - before
            assert answer.status_code == 200 and answer.json()["items"] == [], (path, answer.text)
            # One command per record loaded, and a few per page of ids: about 50 + 40, not thousands.
            assert used < 400, (path, used)
        found = api.get("/api/runs?bucket=media&limit=5").json()["items"]
        assert len(found) == 5  # a filter that matches still finds within the window
