"""The SSRF guard and the signing of outgoing webhooks."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from pipeline.errors import DestinationRefused
from pipeline.notify.guard import Guard
from pipeline.notify.policy import DeliveryPolicy
from pipeline.notify.sender import parse_retry_after, signature_headers
from pipeline.notify.subscriptions import new_secret

STRICT = Guard()
LOOPBACK_V4_ALLOWED = Guard.from_settings(False, ["127.0.0.1/32"])


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:8080/hook", "loopback"),
        ("http://[::1]/hook", "loopback"),
        ("http://10.0.0.1/hook", "private"),
        ("http://192.168.1.20/hook", "private"),
        ("http://172.16.5.4/hook", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://100.64.0.7/hook", "carrier-grade NAT"),
        ("http://[fd12:3456::1]/hook", "unique local"),
        ("http://[::ffff:127.0.0.1]/hook", "loopback"),
        ("http://0.0.0.0/hook", "unspecified"),
        ("http://224.0.0.1/hook", "not globally routable"),
        ("http://localhost:9000/hook", "loopback"),
    ],
)
def test_non_public_destinations_are_refused(url: str, why: str) -> None:
    with pytest.raises(DestinationRefused, match=why):
        STRICT.resolve(url)


def test_an_allowed_network_opens_only_itself() -> None:
    dest = LOOPBACK_V4_ALLOWED.resolve("http://127.0.0.1:8080/hook?x=1")
    assert dest.address == ipaddress.ip_address("127.0.0.1")
    assert dest.connect_url == "http://127.0.0.1:8080/hook?x=1"
    for url in ("http://[::1]/", "http://10.0.0.1/", "http://169.254.169.254/"):
        with pytest.raises(DestinationRefused):
            LOOPBACK_V4_ALLOWED.resolve(url)
    # localhost also resolves to ::1 here, which is not allowed: every address must pass.
    with pytest.raises(DestinationRefused, match="resolves to"):
        Guard.from_settings(False, []).resolve("http://localhost/")


def test_public_addresses_pass_and_keep_their_name_for_host_and_tls() -> None:
    dest = STRICT.resolve("https://93.184.216.34/hooks")
    assert dest.connect_url == "https://93.184.216.34:443/hooks"
    assert dest.host_header == "93.184.216.34"


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/",
        "file:///etc/passwd",
        "http://user:pw@example.com/",
        "http:///nohost",
        "gopher://x",
    ],
)
def test_malformed_or_unsupported_urls_are_refused(url: str) -> None:
    with pytest.raises(DestinationRefused):
        STRICT.resolve(url)


def test_signatures_verify_with_the_standard_library_and_with_either_secret_during_rotation() -> None:
    old, new = new_secret(), new_secret()
    body = '{"type":"object.processed","timestamp":"2026-01-01T00:00:00Z","data":{}}'
    headers = signature_headers("msg_1", body, [new, old], datetime.now(tz=UTC))
    assert headers["webhook-signature"].count("v1,") == 2
    for secret in (old, new):
        assert Webhook(secret).verify(body, headers) == {
            "type": "object.processed",
            "timestamp": "2026-01-01T00:00:00Z",
            "data": {},
        }
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(body.replace("processed", "rejected"), headers)


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert parse_retry_after("30", now=0) == 30
    assert parse_retry_after("Thu, 01 Jan 1970 00:01:00 GMT", now=0) == 60
    assert parse_retry_after("soon", now=0) is None
    assert parse_retry_after(None, now=0) is None


def test_backoff_grows_and_is_bounded() -> None:
    policy = DeliveryPolicy(retry_base=5, retry_max=60)
    for attempt in range(1, 12):
        delays = [policy.backoff(attempt) for _ in range(50)]
        assert all(5 <= d <= min(60, 5 * 2 ** (attempt - 1)) for d in delays)
    assert max(policy.backoff(6) for _ in range(200)) > 20, "later attempts wait longer"
