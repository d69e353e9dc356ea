"""A pydantic model stored as a Redis hash with one JSON value per field, so concurrent partial
updates of different fields (a status change while progress is written) never clobber each other."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


# One encoder for every value: json.dumps with separators builds a new encoder per call, and the
# intake encodes some twenty values per notification.
_COMPACT = json.JSONEncoder(separators=(",", ":")).encode


def encode(fields: Mapping[str, Any]) -> dict[Any, Any]:
    """Field values as the hash stores them: each one JSON-encoded, without spaces."""
    return {name: _COMPACT(value) for name, value in fields.items()}


class JsonHash(Generic[M]):
    def __init__(self, model: type[M]) -> None:
        self.model = model
        self.fields = frozenset(model.model_fields)

    def dump(
        self, record: M, always: tuple[str, ...] = (), implied: Mapping[str, Any] | None = None
    ) -> dict[Any, Any]:
        """The fields that differ from their defaults (a missing field loads as its default), and
        the `always` ones, which scripts read directly; `implied` fields (the key already names
        them) are left out. A record stays small enough for Redis to keep it as one compact
        listpack."""
        fields = record.model_dump(mode="json", exclude_defaults=True)
        for name in always:
            fields[name] = getattr(record, name)
        for name in implied or {}:
            fields.pop(name, None)
        return encode(fields)

    def decode(self, raw: Mapping[Any, Any]) -> dict[str, Any]:
        """The stored fields the model knows (others, from newer or older versions, are ignored)."""
        return {name: json.loads(value) for name, value in raw.items() if name in self.fields}

    def load(self, raw: Mapping[Any, Any], implied: Mapping[str, Any] | None = None) -> M | None:
        """The record, or None for an empty (missing) hash."""
        return self.model.model_validate({**(implied or {}), **self.decode(raw)}) if raw else None
