"""Claims: who does a unit of work (dedup), who runs an invocation right now (execution lease),
who holds one of a function's reserved-concurrency slots, and which invocation an idempotency key
named. Leases and slots lapse unless renewed, so a killed worker's claim frees itself."""

from __future__ import annotations

import abc
import logging
import threading
import time
import uuid

import redis

from pipeline.errors import LeaseHeld, Throttled
from pipeline.ledger import keys
from pipeline.ledger.lua import script
from pipeline.ledger.retention import record_ttl

log = logging.getLogger(__name__)

# A claim with no invocation record after this long was left by an intake that died mid-call (or
# whose Redis failed over between its two round trips): three times the client's socket timeout,
# longer than a live intake call can take between them. Until then a resent notification is
# answered 503, never acknowledged without its work recorded.
ORPHAN_CLAIM_S = 15


UNRECORDED = "!"


class Claims:
    def __init__(self, client: redis.Redis, retention: int) -> None:
        self.r = client
        self.retention = retention
        self._claim_units = script(client, "claim_units")
        self._renew_if_owner = script(client, "renew_if_owner")
        self._release_if_owner = script(client, "release_if_owner")
        self._take_slot = script(client, "take_slot")

    # --- dedup: each unit of work is claimed once ------------------------------------------
    def claim_all(self, units: list[tuple[keys.Claim, str, str, str]]) -> list[str | bool]:
        """Claim units of work at once, skipping functions switched off. A unit is (its claim,
        function, the claimant's id, the prefix of the key of a claimant's record). Per unit: True
        if claimed now, False if its function is disabled, else the id of the earlier claimant
        (prefixed with UNRECORDED when it has not written its record, or never will)."""
        if not units:
            return []
        claim_keys = [keys.function_flag("disabled"), keys.stat("duplicates")]
        claim_keys += [claim.shard for claim, _, _, _ in units]
        args: list[str | int] = [record_ttl(self.retention), ORPHAN_CLAIM_S]
        for claim, function, claimant, record_prefix in units:
            args += [claim.field, function, claimant, record_prefix]
        raw = self._claim_units(keys=claim_keys, args=args)
        return [bool(r) if isinstance(r, int) else str(r) for r in raw]

    def release(self, claim: keys.Claim) -> None:
        self.r.hdel(claim.shard, claim.field)

    def claimant(self, claim: keys.Claim) -> str | None:
        found = self.r.hget(claim.shard, claim.field)
        return str(found) if found else None

    def done(self, claim: keys.Claim, record_prefix: str | None = None) -> bool:
        """Whether the work `claim` names was claimed and its claimant recorded (its record's key
        is `record_prefix`, an invocation's by default, and its id). A claim without a record was
        left by an intake that died between its two steps: the work is not done, and the intake
        takes the claim over."""
        claimant = self.claimant(claim)
        prefix = keys.invocation("") if record_prefix is None else record_prefix
        return bool(claimant) and bool(self.r.exists(f"{prefix}{claimant}"))

    # --- the execution lease: at most one run of an invocation at a time -------------------
    def acquire_lease(self, inv_id: str, token: str, ttl_ms: int) -> bool:
        return bool(self.r.set(keys.lease(inv_id), token, nx=True, px=ttl_ms))

    def lease_held(self, inv_id: str) -> bool:
        """Whether a worker holds the invocation (it renews the lease while the attempt runs)."""
        return bool(self.r.exists(keys.lease(inv_id)))

    def renew_lease(self, inv_id: str, token: str, ttl_ms: int) -> bool:
        return bool(self._renew_if_owner(keys=[keys.lease(inv_id)], args=[token, ttl_ms]))

    def release_lease(self, inv_id: str, token: str) -> None:
        self._release_if_owner(keys=[keys.lease(inv_id)], args=[token])

    # --- reserved concurrency: at most N running invocations of a function, all workers ----
    def take_slot(self, function: str, token: str, limit: int, ttl_ms: int) -> bool:
        """Take (or renew) one of the function's `limit` slots; False when all are taken."""
        return bool(self._take_slot(keys=[keys.slots(function)], args=[token, limit, ttl_ms]))

    def release_slot(self, function: str, token: str) -> None:
        self.r.zrem(keys.slots(function), token)

    def slots_taken(self, function: str) -> int:
        return int(self.r.zcount(keys.slots(function), f"({int(time.time() * 1000)}", "+inf"))

    # --- idempotency keys of the invoke API ------------------------------------------------
    def idempotent(self, function: str, key: str) -> str | None:
        """The invocation an earlier request with this idempotency key started, if any."""
        found = self.r.get(keys.idempotency(function, key))
        return str(found) if found else None

    def remember_idempotent(self, function: str, key: str, inv_id: str) -> str:
        """Record `inv_id` for the key unless a concurrent first request did; returns the winner."""
        name = keys.idempotency(function, key)
        self.r.set(name, inv_id, nx=True, ex=self.retention)
        return str(self.r.get(name) or inv_id)


class RenewedClaim(abc.ABC):
    """A claim in Redis that lapses unless renewed: a background thread renews it while the run
    goes on, so a killed worker's claim lapses within `seconds`."""

    what = "claim"

    def __init__(self, claims: Claims, name: str, seconds: float = 30.0) -> None:
        self.claims, self.name = claims, name
        self.ttl_ms = int(seconds * 1000)
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()

    def _start_renewing(self) -> None:
        threading.Thread(target=self._renew_loop, name=f"{self.what}-{self.name}", daemon=True).start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl_ms / 3000):
            try:
                self.renew()
            except Exception as exc:  # a missed renewal must not kill the run; the next one may work
                log.warning("%s renewal for %s failed: %s", self.what, self.name, exc)

    @abc.abstractmethod
    def renew(self) -> None: ...

    @abc.abstractmethod
    def release(self) -> None: ...

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        try:
            self.release()
        except Exception as err:  # it expires on its own
            log.warning("%s release for %s failed: %s", self.what, self.name, err)


class ExecutionLease(RenewedClaim):
    """At most one execution of an invocation at a time, even if the broker redelivers its message
    while the first run is still going (a run longer than the visibility timeout)."""

    what = "lease"

    def __enter__(self) -> ExecutionLease:
        if not self.claims.acquire_lease(self.name, self.token, self.ttl_ms):
            raise LeaseHeld(f"invocation {self.name} is running elsewhere")
        self._start_renewing()
        return self

    def renew(self) -> None:
        self.claims.renew_lease(self.name, self.token, self.ttl_ms)

    def release(self) -> None:
        self.claims.release_lease(self.name, self.token)


class ConcurrencySlot(RenewedClaim):
    """One of a function's reserved-concurrency slots, shared by all workers. Waits up to `wait`
    seconds for a free one, then gives up with Throttled: the invocation is put back for later, and
    the worker process is free for other work meanwhile."""

    what = "slot"
    POLL_S = 0.02

    def __init__(self, claims: Claims, function: str, limit: int, seconds: float, wait: float) -> None:
        super().__init__(claims, function, seconds)
        self.limit, self.wait = limit, wait

    def __enter__(self) -> ConcurrencySlot:
        deadline = time.monotonic() + self.wait
        while not self.claims.take_slot(self.name, self.token, self.limit, self.ttl_ms):
            if time.monotonic() >= deadline:
                raise Throttled(f"{self.name} is at its reserved concurrency of {self.limit}")
            time.sleep(self.POLL_S)
        self._start_renewing()
        return self

    def renew(self) -> None:
        self.claims.take_slot(self.name, self.token, self.limit, self.ttl_ms)

    def release(self) -> None:
        self.claims.release_slot(self.name, self.token)
