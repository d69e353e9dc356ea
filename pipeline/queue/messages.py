"""Task messages written by the intake itself, inside the Redis transaction that records the work.

`send_task` costs about 0.9 ms per message on this code path: kombu builds a Redis client object
for every publish, then makes a round trip of its own. The intake records a whole batch of
notifications in one transaction; it puts their messages in the same transaction, so the records
and the messages that run them appear together or not at all, in one round trip.

The message is the one `send_task` would write: Celery's own protocol-2 task message
(`app.amqp.create_task_message`), in the envelope kombu's Redis transport keeps in a queue's list
(`LPUSH <queue>`, body in base64, the anonymous exchange routing by queue name, which is also how
a message comes back after a lost worker). `tests/unit/test_task_messages.py` compares the two,
and every integration test runs real workers on these messages.
"""

from __future__ import annotations

import base64
import json
import math
import uuid
from typing import Any

from celery import Celery

from pipeline.invocation import Invocation
from pipeline.logs import InvocationFields
from pipeline.tracing import Carrier

TASK_NAME = "pipeline.run_invocation"
PERSISTENT = 2  # AMQP delivery mode, which the Redis transport stores but does not act on


def hard_limit_margin(soft_limit: int) -> int:
    return max(1, min(15, soft_limit // 10))


def payload_of(inv: Invocation, trace: Carrier | None) -> dict[str, Any]:
    payload = inv.model_dump(mode="json")
    if trace:  # the worker's span continues the trace from this message
        payload["trace"] = trace
    return payload


def task_options(inv: Invocation) -> dict[str, Any]:
    """The options every invocation's message carries, for `send_task` and for `envelope` alike."""
    soft = math.ceil(inv.time_limit)
    return {
        # The soft limit raises inside the function so it can be recorded; the hard limit kills
        # the process if the function ignores that.
        "soft_time_limit": soft,
        "time_limit": soft + hard_limit_margin(soft),
        # What monitors (Flower, `celery inspect`) show for the task. Given here, Celery skips
        # rendering the whole payload with saferepr, a third of the cost of an enqueue.
        "argsrepr": InvocationFields(inv.id, inv.function, inv.bucket, inv.key).argsrepr(),
        "kwargsrepr": "",
    }


def envelope(app: Celery, inv: Invocation, trace: Carrier | None) -> str:
    """The queue entry for `inv` (no countdown: the intake sends work to run now)."""
    task_id = str(uuid.uuid4())
    message = app.amqp.create_task_message(
        task_id,
        TASK_NAME,
        [payload_of(inv, trace)],
        {},
        reply_to=app.thread_oid,
        ignore_result=None,  # as `send_task` leaves it: the app's task_ignore_result decides
        **task_options(inv),
    )
    body = json.dumps(message.body).encode()
    properties = {
        **message.properties,
        "delivery_mode": PERSISTENT,
        "delivery_info": {"exchange": "", "routing_key": inv.queue},
        "priority": 0,
        "body_encoding": "base64",
        "delivery_tag": str(uuid.uuid4()),
    }
    return json.dumps(
        {
            "body": base64.b64encode(body).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": message.headers,
            "properties": properties,
        }
    )
