"""Packed records: each dictionary is frozen (records written with it must stay readable), every
format a value was ever stored in still reads, and notifications really shrink."""

from __future__ import annotations

import base64
import hashlib
import json
import zlib

import pytest

from pipeline.ledger import packing
from tests.helpers import REPO

# A dictionary may never change once released: a new one takes a new tag.
FROZEN = {1: "8efbff48eb037dd3", 2: "b6773477975cace3", 3: "23e521b12f831a30"}
EVENTS = REPO / "tests" / "fixtures" / "events"


def test_each_dictionary_is_the_one_its_records_were_written_with() -> None:
    digests = {tag: hashlib.sha256(d).hexdigest()[:16] for tag, d in packing.DICTIONARIES.items()}
    assert digests == FROZEN


@pytest.mark.parametrize(
    "name", ["minio-put", "minio-multipart", "minio-delete", "s3-put", "sns-notification"]
)
def test_a_notification_packs_to_under_half_and_reads_back(name: str) -> None:
    text = (EVENTS / f"{name}.json").read_text()
    packed = packing.pack(text, packing.NOTIFICATION)
    assert packing.unpack(packed) == text
    assert len(packed) < 0.46 * len(text), f"{name}: {len(packed)} of {len(text)} bytes"


def test_values_stored_before_packing_still_read() -> None:
    text = '{"Records":[]}'
    old = packing.OLD_PACKED + base64.b64encode(zlib.compress(text.encode(), 6)).decode()
    assert packing.unpack(old) == text  # deflated and base64, as bodies were
    assert packing.unpack(text) == text and packing.unpack(text.encode()) == text  # plain JSON


def test_a_hash_keeps_its_plain_fields_and_newer_ones_win() -> None:
    fields = {"status": '"failed"', "attempts": "3", "error": '"boom"', "outputs": "[]", "key": '"a/b.jpg"'}
    packed = packing.pack_hash(fields, ("status", "attempts"))
    assert set(packed) == {"status", "attempts", packing.PACKED_FIELD}
    stored = {k.encode(): v if isinstance(v, bytes) else v.encode() for k, v in packed.items()}
    assert packing.unpack_hash(stored) == fields
    stored[b"error"] = b"null"  # a retry's reset, written after packing
    stored[b"status"] = b'"queued"'
    read = packing.unpack_hash(stored)
    assert json.loads(read["error"]) is None and json.loads(read["status"]) == "queued"
    assert read["key"] == '"a/b.jpg"'
