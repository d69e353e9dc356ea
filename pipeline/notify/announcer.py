"""Announcing: the ledger's outbox (finished invocations, written with their verdict) turned into
messages for the subscriptions that want them; when the last invocation of an upload finishes,
`object.processed` too, exactly once per upload."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import time
import uuid
from collections.abc import Callable

import redis

from pipeline.config import PipelineConfig
from pipeline.event_types import EventType
from pipeline.invocation import Invocation, Status
from pipeline.ledger import Ledger, keys
from pipeline.notify.messages import Message, MessageStore, message_id
from pipeline.notify.notices import Notices
from pipeline.notify.payloads import (
    RUN_EVENTS,
    STATUS_EVENTS,
    Payload,
    invocation_payload,
    invocation_screening_payload,
    processed_payload,
    run_data,
    run_payload,
    run_screening_payload,
)
from pipeline.notify.subscriptions import (
    SecretEntry,
    Subscription,
    SubscriptionStore,
    callback_id,
    new_secret,
)

log = logging.getLogger(__name__)

Presign = Callable[[str, str], str | None]


class Announcer:
    def __init__(
        self,
        ledger: Ledger,
        client: redis.Redis,
        config: PipelineConfig,
        subs: SubscriptionStore,
        messages: MessageStore,
        notices: Notices,
        presign: Presign | None = None,
    ) -> None:
        self.ledger, self.r, self.config = ledger, client, config
        self.subs, self.messages, self.notices, self.presign = subs, messages, notices, presign

    def drain(self, batch: int = 200) -> int:
        """Announce up to `batch` finished invocations and runs. One drainer at a time; a drainer that dies
        midway leaves its entries for the next, and announcing twice creates no second message."""
        token = uuid.uuid4().hex
        lock = keys.WEBHOOK_DRAIN_LOCK
        if not self.r.set(lock, token, nx=True, px=30_000):
            return 0
        try:
            items = self.ledger.outbox.read(batch)
            if items:
                subs = [s for s in self.subs.all() if s.enabled and s.source != "callback"]
                for item in items:
                    if item.kind == "run":
                        self._announce_run(item.id, subs)
                    elif item.kind == "screening":
                        self._announce_screening(item.id, EventType(item.status), item.serial, subs)
                    else:
                        self._announce(item.id, Status(item.status), subs)
                self.ledger.outbox.done(len(items))
            return len(items)
        finally:
            if self.r.get(lock) == token:
                self.r.delete(lock)

    def _announce(self, inv_id: str, status: Status, subs: list[Subscription]) -> None:
        inv = self.ledger.invocations.get(inv_id)
        if inv is None:
            return
        inv = inv.model_copy(update={"status": status})
        event = STATUS_EVENTS.get(status)
        if event is not None:
            payload = invocation_payload(inv, self._presign)
            subject = f"{inv.id}:{inv.finished_at}"
            self._fan_out(
                event,
                payload,
                inv.bucket,
                inv.key,
                [inv.function],
                subject,
                subs,
                inv.callback_url,
                inv.rule,
                trace=inv.trace,
            )
        screened = invocation_screening_payload(inv) if inv.run_id is None else None
        if screened is not None:
            self._fan_out(
                EventType(screened.type),
                screened,
                inv.bucket,
                inv.key,
                [inv.function],
                f"{inv.id}:{inv.finished_at}",
                subs,
                inv.callback_url,
                inv.rule,
                trace=inv.trace,
            )
        # A flow's steps are not in the upload's join: their run is, and closes it when it ends.
        if inv.event_id and inv.run_id is None and self.ledger.outbox.close_join(inv.event_id, inv.id):
            self._processed(inv.event_id, inv.bucket, inv.key, inv.rule, subs, finished=inv)

    def _announce_run(self, run_id: str, subs: list[Subscription]) -> None:
        run = self.ledger.runs.get(run_id)
        if run is None:
            return
        flow = self.config.flows.get(run.flow)
        functions = {name: step.function for name, step in flow.steps.items()} if flow else {}
        first_steps = self.ledger.invocations.get_many(
            [i for name, s in run.steps.items() if not s.needs for i in s.invocations]
        )
        callback = next((i.callback_url for i in first_steps if i.callback_url), None)
        trace = next((i.trace for i in first_steps if i.trace), None)
        event = RUN_EVENTS.get(run.status)
        if event is not None:
            self._fan_out(
                event,
                run_payload(run, functions, self._presign),
                run.bucket,
                run.key,
                sorted(set(functions.values())),
                f"{run.id}:{run.finished_at}",
                subs,
                callback,
                run.rule,
                trace=trace,
            )
        member = keys.join_member_for_run(run.id)
        if run.event_id and self.ledger.outbox.close_join(run.event_id, member):
            self._processed(run.event_id, run.bucket, run.key, run.rule, subs)

    def _announce_screening(
        self, run_id: str, event: EventType, serial: int, subs: list[Subscription]
    ) -> None:
        run = self.ledger.runs.get(run_id)
        if run is None or run.screening is None:
            return
        flow = self.config.flows.get(run.flow)
        step = flow.steps.get(run.screening.step) if flow else None
        function = step.function if step else "screen"
        first = self.ledger.invocations.get(run.screening.invocation_id)
        self._fan_out(
            event,
            run_screening_payload(run, event, function),
            run.bucket,
            run.key,
            [function],
            f"{run.id}:{event.value}:{serial}",
            subs,
            first.callback_url if first else None,
            run.rule,
            trace=first.trace if first else None,
        )

    def _processed(
        self,
        event_id: str,
        bucket: str,
        key: str,
        rule: str,
        subs: list[Subscription],
        finished: Invocation | None = None,
    ) -> None:
        """`object.processed` for an upload whose last invocation or run has just finished. The
        event record may not be written yet (intake records it last): the object's own indexes
        find the upload's invocations and runs either way."""
        upload = [
            i
            for i in self.ledger.invocations.for_object(bucket, key)
            if i.event_id == event_id and i.run_id is None
        ]
        if finished is not None:
            upload = [finished if i.id == finished.id else i for i in upload] or [finished]
        runs = [r for r in self.ledger.runs.for_object(bucket, key) if r.event_id == event_id]
        run_datas = []
        for run in runs:
            flow = self.config.flows.get(run.flow)
            functions = {name: step.function for name, step in flow.steps.items()} if flow else {}
            run_datas.append(run_data(run, functions, self._presign))
        callback = next((i.callback_url for i in upload if i.callback_url), None)
        # The trace continues from the attempt that finished the upload.
        trace = finished.trace if finished is not None else next((i.trace for i in upload if i.trace), None)
        self._fan_out(
            EventType.OBJECT_PROCESSED,
            processed_payload(event_id, upload, self._presign, run_datas),
            bucket,
            key,
            sorted({i.function for i in upload} | {s.function for r in run_datas for s in r.steps.values()}),
            event_id,
            subs,
            callback,
            rule,
            trace=trace,
        )

    def _presign(self, bucket: str, key: str) -> str | None:
        return self.presign(bucket, key) if self.presign else None

    def _fan_out(
        self,
        event: EventType,
        payload: Payload,
        bucket: str,
        key: str,
        functions: list[str],
        subject: str,
        subs: list[Subscription],
        callback_url: str | None,
        rule: str,
        trace: dict[str, str] | None = None,
    ) -> None:
        targets = [s for s in subs if s.wants(event, bucket, key, functions)]
        if callback_url and event in self.config.callbacks.events:
            callback = self.callback_subscription(callback_url, rule)
            if callback is not None:
                targets.append(callback)
        body = payload.model_dump_json()
        for sub in targets:
            msg = Message(
                id=message_id(sub.id, event, subject),
                subscription_id=sub.id,
                event_type=event,
                body=body,
                bucket=bucket,
                key=key,
                url=sub.url,
                trace=trace,
            )
            if self.messages.add(msg):
                log.debug("webhook %s %s -> %s", msg.id, event.value, sub.url)

    def callback_subscription(self, url: str, rule: str) -> Subscription | None:
        """The subscription that carries an upload's callback to `url`, signed with that
        destination's own secret; None (and a notice) when the rule or the installation already
        has as many callback destinations as the pipeline file allows."""
        conf = self.config.callbacks
        sub_id = callback_id(url)
        now = time.time()
        pipe = self.r.pipeline(transaction=True)
        for index in (keys.callback_destinations(), keys.callback_destinations(rule)):
            pipe.zremrangebyscore(index, "-inf", now - conf.ttl_seconds)
            pipe.zscore(index, sub_id)
            pipe.zcard(index)
        _, known_all, count_all, _, known_rule, count_rule = pipe.execute()
        if known_all is None and count_all >= conf.max_destinations:
            self.notices.add(
                f"callback to {url} not sent: {count_all} callback destinations in use (max_destinations)"
            )
            return None
        if known_rule is None and count_rule >= conf.max_per_rule:
            self.notices.add(
                f"callback to {url} not sent: rule {rule} has {count_rule} callback destinations "
                "(max_per_rule)"
            )
            return None
        sub = self.subs.get(sub_id) or Subscription(
            id=sub_id,
            url=url,
            events=list(conf.events),
            source="callback",
            description="per-upload callback from object metadata",
            secrets=[SecretEntry(secret=self.callback_secret(url))],
        )
        self.subs.put(sub, ttl=conf.ttl_seconds)  # each use keeps it alive; unused, it ages out
        pipe = self.r.pipeline(transaction=True)
        for index in (keys.callback_destinations(), keys.callback_destinations(rule)):
            pipe.zadd(index, {sub_id: now})
            pipe.expire(index, int(conf.ttl_seconds))
        pipe.execute()
        return sub

    def callback_secret(self, url: str) -> str:
        """The secret that signs callbacks to `url`: its own, derived from the installation's
        callback key, so one uploader's signed message cannot be replayed to another's endpoint."""
        name = self.config.callbacks.secret_env
        if name and os.environ.get(name):
            master = os.environ[name]
        else:
            self.r.set(keys.WEBHOOK_CALLBACK_SECRET, new_secret(), nx=True)
            master = str(self.r.get(keys.WEBHOOK_CALLBACK_SECRET))
        derived = hmac.new(master.encode(), url.encode(), hashlib.sha256).digest()
        return "whsec_" + base64.b64encode(derived).decode()
