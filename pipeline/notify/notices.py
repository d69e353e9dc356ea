"""Notices: what the operator is told (an endpoint disabled, and why), in the log and in a short
list the API and the dashboard show."""

from __future__ import annotations

import json
import logging
import time

import redis

from pipeline.ledger import keys

log = logging.getLogger(__name__)
NOTICES_KEPT = 200


class Notices:
    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    def add(self, text: str) -> None:
        log.warning("%s", text)
        pipe = self.r.pipeline(transaction=True)
        pipe.lpush(keys.WEBHOOK_NOTICES, json.dumps({"at": time.time(), "text": text}))
        pipe.ltrim(keys.WEBHOOK_NOTICES, 0, NOTICES_KEPT - 1)
        pipe.execute()

    def recent(self, limit: int = 50) -> list[dict[str, object]]:
        return [json.loads(raw) for raw in self.r.lrange(keys.WEBHOOK_NOTICES, 0, limit - 1)]

    def count(self) -> int:
        return int(self.r.llen(keys.WEBHOOK_NOTICES))
