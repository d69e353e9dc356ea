"""SNS HTTP(S) push envelopes: Notification (carrying S3 events) and SubscriptionConfirmation.

Signatures are verified as AWS documents it: the signing certificate is fetched only from an
`sns.<region>.amazonaws.com` HTTPS URL, and the canonical string is signed with SHA1 (version 1)
or SHA256 (version 2).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from pipeline.errors import EventError, UnauthorizedEvent

_SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
# The fields SNS signs, in the order it signs them (AWS "Verifying the signatures of Amazon SNS messages").
_CONFIRMATION_FIELDS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
_SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": _CONFIRMATION_FIELDS,
    "UnsubscribeConfirmation": _CONFIRMATION_FIELDS,
}

EnvelopeType = Literal["Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"]


@dataclass(frozen=True)
class SnsEnvelope:
    type: EnvelopeType
    message_id: str
    topic_arn: str
    message: str
    raw: dict[str, Any]

    def sent_at(self) -> float:
        """When SNS sent the message (its signed `Timestamp`), as Unix time."""
        stamp = self.raw.get("Timestamp")
        try:
            return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
        except ValueError as exc:
            raise EventError(f"SNS message {self.message_id}: Timestamp {stamp!r} is not a time") from exc

    def inner_json(self) -> dict[str, Any]:
        try:
            inner = json.loads(self.message)
        except json.JSONDecodeError as exc:
            raise EventError(f"SNS message {self.message_id}: Message is not JSON") from exc
        if not isinstance(inner, dict):
            raise EventError(f"SNS message {self.message_id}: Message is not a JSON object")
        return inner


def parse_envelope(body: dict[str, Any]) -> SnsEnvelope:
    kind = body.get("Type")
    if kind not in _SIGNED_FIELDS:
        raise EventError(f"not an SNS envelope (Type={kind!r})")
    for name in ("MessageId", "TopicArn", "Message"):
        if not isinstance(body.get(name), str):
            raise EventError(f"SNS envelope is missing {name}")
    return SnsEnvelope(kind, body["MessageId"], body["TopicArn"], body["Message"], body)


def is_aws_sns_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "https" and bool(_SNS_HOST.match(parts.hostname or ""))


def _fetch_certificate(url: str) -> bytes:
    response = httpx.get(url, timeout=5.0, follow_redirects=False)
    response.raise_for_status()
    return response.content


@dataclass
class SignatureVerifier:
    """Verifies SNS signatures; certificates are cached by URL. `fetch` is replaceable for tests."""

    fetch: Callable[[str], bytes] = _fetch_certificate
    require_aws_url: bool = True
    _cache: dict[str, rsa.RSAPublicKey] = field(default_factory=dict)

    def verify(self, envelope: SnsEnvelope) -> None:
        body = envelope.raw
        version = body.get("SignatureVersion")
        algorithm: hashes.HashAlgorithm
        if version == "1":
            algorithm = hashes.SHA1()  # noqa: S303 - SNS SignatureVersion 1 is defined with SHA1
        elif version == "2":
            algorithm = hashes.SHA256()
        else:
            raise UnauthorizedEvent(
                f"SNS message {envelope.message_id}: unknown SignatureVersion {version!r}"
            )
        cert_url = str(body.get("SigningCertURL") or "")
        if self.require_aws_url and not is_aws_sns_url(cert_url):
            raise UnauthorizedEvent(
                f"SNS message {envelope.message_id}: untrusted SigningCertURL {cert_url!r}"
            )
        try:
            signature = base64.b64decode(str(body.get("Signature") or ""), validate=True)
        except ValueError as exc:
            raise UnauthorizedEvent(f"SNS message {envelope.message_id}: Signature is not base64") from exc
        key = self._public_key(cert_url)
        try:
            key.verify(signature, canonical_string(body), padding.PKCS1v15(), algorithm)
        except InvalidSignature as exc:
            raise UnauthorizedEvent(f"SNS message {envelope.message_id}: signature does not verify") from exc

    def _public_key(self, url: str) -> rsa.RSAPublicKey:
        if url not in self._cache:
            try:
                cert = x509.load_pem_x509_certificate(self.fetch(url))
            except (httpx.HTTPError, ValueError) as exc:
                raise UnauthorizedEvent(f"cannot load SNS signing certificate {url}: {exc}") from exc
            key = cert.public_key()
            if not isinstance(key, rsa.RSAPublicKey):
                raise UnauthorizedEvent(f"SNS signing certificate {url} has no RSA key")
            self._cache[url] = key
        return self._cache[url]


def canonical_string(body: dict[str, Any]) -> bytes:
    """The bytes SNS signs: selected fields as `Name\\nvalue\\n`, in a fixed order, absent ones skipped."""
    fields = _SIGNED_FIELDS[str(body.get("Type"))]
    return "".join(f"{name}\n{body[name]}\n" for name in fields if body.get(name) is not None).encode()
