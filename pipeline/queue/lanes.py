"""Backfill lanes: work a backfill found (`pipeline reconcile` listing a bucket) waits in a lane
beside its function's queue, `<queue>.backfill`, and a worker takes from a lane only when every
queue it serves is empty. Fresh uploads never queue behind a backfill; at most they wait for a
backfill task already running to finish.

kombu's Redis transport asks for a message with one BRPOP over all the worker's queues, which
answers from the first non-empty one in the order given; its `queue_order_strategy` decides that
order. This strategy keeps kombu's round robin among the function queues (no function starves
another), and puts the lanes after them.
"""

from __future__ import annotations

from pipeline.config import is_backfill_lane

# For `broker_transport_options={"queue_order_strategy": STRATEGY}` (kombu imports it by name).
STRATEGY = f"{__name__}:FreshFirst"


class FreshFirst:
    """The interface of kombu's cycles (`update`, `consume`, `rotate`), written out so nothing
    imports the transport: round robin, lanes last."""

    def __init__(self, items: list[str] | None = None) -> None:
        self.items: list[str] = items if items is not None else []

    def update(self, items: list[str]) -> None:
        self.items[:] = items

    def consume(self, n: int) -> list[str]:
        queues = self.items[:n]
        return [q for q in queues if not is_backfill_lane(q)] + [q for q in queues if is_backfill_lane(q)]

    def rotate(self, last_used: str) -> str:
        """The queue just read from goes to the end: the next read tries the others first."""
        if last_used in self.items:
            self.items.append(self.items.pop(self.items.index(last_used)))
        return last_used
