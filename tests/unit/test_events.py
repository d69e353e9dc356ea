from __future__ import annotations

import json
import re
from typing import Any

import pytest

from pipeline.errors import EventError
from pipeline.events import is_test_event, parse_envelope, parse_records
from tests.helpers import EVENTS


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return data


def test_every_example_payload_is_covered() -> None:
    covered = {
        "minio-put.json",
        "minio-multipart.json",
        "minio-delete.json",
        "s3-put.json",
        "s3-test-event.json",
        "sns-notification.json",
        "sns-subscription-confirmation.json",
    }
    assert {p.name for p in EVENTS.glob("*.json")} == covered


def test_minio_put_key_is_decoded_once() -> None:
    [event] = parse_records(load("minio-put.json"), "minio")
    assert event.bucket == "media"
    assert event.key == "uploads/cat photo.jpg"  # "uploads%2Fcat+photo.jpg" decoded
    assert event.event_name == "s3:ObjectCreated:Put"
    assert event.size == 482113
    assert event.etag == "9b2cf535f27731c974343645a3985328"
    assert event.content_type == "image/jpeg"
    assert event.version_tag == "9b2cf535f27731c974343645a3985328"


def test_minio_multipart_has_version_and_spaces() -> None:
    [event] = parse_records(load("minio-multipart.json"), "minio")
    assert event.key == "uploads/holiday/clip 01.mp4"
    assert event.event_name == "s3:ObjectCreated:CompleteMultipartUpload"
    assert event.version_id == "5e0b1a2c-7d3f-4e21-9a8b-1c2d3e4f5a6b"
    assert event.version_tag == event.version_id
    assert event.etag == "6a5d1f0c2b9e8d7c6b5a49382716a5f4-14"


def test_minio_delete_is_not_a_creation() -> None:
    [event] = parse_records(load("minio-delete.json"), "minio")
    assert event.event_name == "s3:ObjectRemoved:Delete"
    assert event.key == "uploads/cat photo.jpg"
    assert event.event_name.startswith("s3:ObjectRemoved:")
    assert event.size is None


def test_aws_event_name_gets_s3_prefix_and_percent_escapes_decode_once() -> None:
    [event] = parse_records(load("s3-put.json"), "s3")
    assert event.event_name == "s3:ObjectCreated:Put"
    assert event.key == "uploads/summer 2026/beach day (1).png"
    assert event.version_id == "096fKKXTRTtl3on89fVO.nfljtsv6qko"
    assert event.content_type is None  # AWS does not send one; routing guesses, workers sniff


def test_double_encoded_key_is_decoded_exactly_once() -> None:
    body = load("s3-put.json")
    body["Records"][0]["s3"]["object"]["key"] = "uploads/%252e%252e%2Fetc"
    [event] = parse_records(body, "s3")
    assert event.key == "uploads/%2e%2e/etc"


def test_test_event_is_recognised() -> None:
    assert is_test_event(load("s3-test-event.json"))
    assert not is_test_event(load("s3-put.json"))


def test_sns_notification_unwraps_to_s3_records() -> None:
    envelope = parse_envelope(load("sns-notification.json"))
    assert envelope.type == "Notification"
    assert envelope.topic_arn == "arn:aws:sns:eu-central-1:123456789012:media-events"
    [event] = parse_records(envelope.inner_json(), "sns")
    assert event.key == "uploads/summer 2026/beach day (1).png"


def test_sns_subscription_confirmation_is_parsed() -> None:
    envelope = parse_envelope(load("sns-subscription-confirmation.json"))
    assert envelope.type == "SubscriptionConfirmation"
    assert envelope.raw["SubscribeURL"].startswith("https://sns.eu-central-1.amazonaws.com/")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "no 'Records'"),
        ({"Records": [{}]}, "Records[0]: missing field"),
        ({"Records": ["x"]}, "Records[0]: expected an object"),
        (
            {
                "Records": [
                    {
                        "eventName": "s3:ObjectCreated:Put",
                        "s3": {"bucket": {"name": ""}, "object": {"key": "k"}},
                    }
                ]
            },
            "non-empty",
        ),
    ],
)
def test_malformed_records_name_the_problem(body: dict[str, Any], message: str) -> None:
    with pytest.raises(EventError, match=re.escape(message)):
        parse_records(body, "minio")


def test_non_sns_body_is_refused() -> None:
    with pytest.raises(EventError, match="not an SNS envelope"):
        parse_envelope({"Type": "Surprise"})
