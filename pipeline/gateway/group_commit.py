"""Group commit: the notifications that arrive while the intake is busy are taken in together.

Each request still gets its answer only once its event is claimed, recorded and enqueued (or
refused). A request never waits for a timer: when the intake is idle, a lone notification goes at
once, in a batch of one; under load, the ones that arrived during a commit form the next batch, so
a batch costs the same two round trips to Redis as a single notification would
(`Intake.accept_many`). The commit runs in a thread, so the event loop keeps reading requests
meanwhile.
"""

from __future__ import annotations

import asyncio
import collections
import logging

import anyio.to_thread

from pipeline.intake import Intake, Notification
from pipeline.ledger import EventRecord

log = logging.getLogger(__name__)

# Enough to amortize the round trips; few enough that one batch's script call stays short
# (a few hundred commands) and a failing batch refuses few senders.
DEFAULT_MAX_BATCH = 64

_Pending = tuple[Notification, "asyncio.Future[EventRecord | Exception]"]


class GroupCommit:
    def __init__(self, intake: Intake, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        self.intake = intake
        self.max_batch = max(1, max_batch)
        # Per request still waiting, its events not yet in a batch, in the order it sent them.
        self._waiting: list[collections.deque[_Pending]] = []
        self._committing = False
        self._task: asyncio.Task[None] | None = None  # kept: the loop holds tasks weakly

    async def accept(self, notes: list[Notification]) -> list[EventRecord | Exception]:
        """Each event's record once it is committed, or what refused it. The events of one
        notification go in the same batch."""
        loop = asyncio.get_running_loop()
        waiting: list[_Pending] = [(note, loop.create_future()) for note in notes]
        self._waiting.append(collections.deque(waiting))
        if not self._committing:
            self._committing = True
            self._task = loop.create_task(self._commit_while_waiting())
        return [await done for _, done in waiting]

    async def _commit_while_waiting(self) -> None:
        try:
            while self._waiting:
                await self._commit(self._next_batch())
        finally:
            self._committing = False

    def _next_batch(self) -> list[_Pending]:
        """Up to `max_batch` events, one from each waiting request in turn: a notification with
        many records shares the batches with the ones that came after it, never holds them up."""
        batch: list[_Pending] = []
        while self._waiting and len(batch) < self.max_batch:
            for events in list(self._waiting):
                batch.append(events.popleft())
                if not events:
                    self._waiting.remove(events)
                if len(batch) == self.max_batch:
                    break
        return batch

    async def _commit(self, batch: list[_Pending]) -> None:
        notes = [note for note, _ in batch]
        try:
            outcomes: list[EventRecord | Exception] = list(
                await anyio.to_thread.run_sync(self.intake.accept_many, notes)
            )
        except Exception as exc:  # a bug, not a refusal: every sender of the batch gets a 500
            log.exception("intake batch of %d notifications failed", len(batch))
            outcomes = [exc for _ in batch]
        for (_, done), outcome in zip(batch, outcomes, strict=True):
            if not done.done():  # else the sender went away; its event is committed all the same
                done.set_result(outcome)
