"""Parse what object stores send into `ObjectEvent`s."""

from pipeline.events.model import EventSource, ObjectEvent
from pipeline.events.records import is_test_event, parse_records
from pipeline.events.sns import SignatureVerifier, SnsEnvelope, parse_envelope

__all__ = [
    "EventSource",
    "ObjectEvent",
    "SignatureVerifier",
    "SnsEnvelope",
    "is_test_event",
    "parse_envelope",
    "parse_records",
]
