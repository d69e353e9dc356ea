"""SNS signature verification with a real RSA key and certificate made for the test."""

from __future__ import annotations

import base64
import datetime
import json
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from pipeline.errors import UnauthorizedEvent
from pipeline.events.sns import SignatureVerifier, canonical_string, parse_envelope
from tests.helpers import EVENTS

CERT_URL = "https://sns.eu-central-1.amazonaws.com/SimpleNotificationService-test.pem"


@pytest.fixture(scope="module")
def key_and_cert() -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM)


def signed(key: rsa.RSAPrivateKey, version: str = "2") -> dict[str, Any]:
    body: dict[str, Any] = json.loads((EVENTS / "sns-notification.json").read_text())
    body["SignatureVersion"] = version
    body["SigningCertURL"] = CERT_URL
    algorithm = hashes.SHA256() if version == "2" else hashes.SHA1()
    body["Signature"] = base64.b64encode(
        key.sign(canonical_string(body), padding.PKCS1v15(), algorithm)
    ).decode()
    return body


def verifier(cert: bytes) -> SignatureVerifier:
    return SignatureVerifier(fetch=lambda url: cert if url == CERT_URL else b"")


@pytest.mark.parametrize("version", ["1", "2"])
def test_valid_signature_verifies(key_and_cert: tuple[rsa.RSAPrivateKey, bytes], version: str) -> None:
    key, cert = key_and_cert
    verifier(cert).verify(parse_envelope(signed(key, version)))


def test_tampered_message_is_refused(key_and_cert: tuple[rsa.RSAPrivateKey, bytes]) -> None:
    key, cert = key_and_cert
    body = signed(key)
    body["Message"] = body["Message"].replace("beach", "evil")
    with pytest.raises(UnauthorizedEvent, match="does not verify"):
        verifier(cert).verify(parse_envelope(body))


def test_certificate_from_elsewhere_is_never_fetched(key_and_cert: tuple[rsa.RSAPrivateKey, bytes]) -> None:
    key, cert = key_and_cert
    body = signed(key)
    body["SigningCertURL"] = "https://attacker.example/cert.pem"
    fetched: list[str] = []

    def fetch(url: str) -> bytes:
        fetched.append(url)
        return cert

    with pytest.raises(UnauthorizedEvent, match="untrusted SigningCertURL"):
        SignatureVerifier(fetch=fetch).verify(parse_envelope(body))
    assert fetched == []


def test_the_example_payload_signature_is_fake() -> None:
    body = json.loads((EVENTS / "sns-notification.json").read_text())
    with pytest.raises(UnauthorizedEvent):
        SignatureVerifier(fetch=lambda url: b"not a certificate").verify(parse_envelope(body))
