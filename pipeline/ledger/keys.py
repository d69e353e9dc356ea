"""Every Redis key the pipeline writes, in one place (no `pl:` literal anywhere else).

Records are removed with their index entries once older than the retention period, in bounded
batches (`retention.py`); their TTL, a day longer, is the safety net.
- `inv:<id>`            hash, one JSON value per Invocation field (partial updates are atomic);
                        once finished, packed: its status, attempts and one deflated field. Its
                        attempts are in it (`earlier_attempts`, and the latest its own fields)
- `event:<id>`          an EventRecord (a notification record that matched a rule), packed JSON
- `raw:<digest>`        the start of a notification's body, once per notification, packed
- `idx:fn:<name>:<status>|bucket:<b>|obj:<digest>`  sorted sets of invocation ids by creation;
                        `idx:functions` names the functions indexed
- `idx:events`          sorted set of event ids by arrival (and `idx:obj:<digest>` per object)
- `claims:<hex4>`       hashes of claims: the invocation that claimed one unit of work, the run
                        that claimed (rule, object version); removed with their record
- `lease:<id>`          the execution holding an invocation; `slots:<fn>` reserved-concurrency holders
- `outbox`              finished invocations not yet announced to webhooks (same transaction as
                        the verdict, so no outcome goes unannounced)
- `join:<event>`        the invocations of one upload still running (gone once all have finished)
- `worker:<hostname>`   a worker's heartbeat (expires unless renewed); `workers` names them all
- `fn:paused|disabled`  the operator's function switches (kept until changed)
- `stat:<name>`, `tp:<minute>`  counters, and finished invocations per minute (kept 3 hours)
- `usage:totals|h:<hour>|m:<minute>|w:<window>`  usage counters (see ledger/usage.py)
- `run:<id>`            JSON of a flow run (one document, changed in WATCH/MULTI transactions)
- `idx:runs|runs:status:<s>|runs:flow:<name>|runs:obj:<digest>`  sorted sets of run ids by start
- `idem:<hash>`         the invocation an API idempotency key named
- `schema`              the ledger's layout version (`schema.py`; `schema:lock` while upgrading)
- `retention:lock`      the one retention sweeper at work; `backfill` the latest backfill's progress
- `reconcile:cursor:<bucket>\\0<prefix>`  where an interrupted reconciler pass continues
- `admin:*`             dashboard signing key, sessions and failed-login counters
- `wh:*`                outgoing webhooks: subscriptions, messages, attempts, schedule, notices
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

PREFIX = "pl:"


def object_digest(bucket: str, key: str) -> str:
    """A fixed-length name for one object, for per-object index keys (keys can be 1 KB)."""
    return hashlib.sha256(f"{bucket}\x00{key}".encode()).hexdigest()[:32]


# --- invocations ---------------------------------------------------------------------------------
def invocation(inv_id: str) -> str:
    return f"{PREFIX}inv:{inv_id}"


INDEXED_FUNCTIONS = f"{PREFIX}idx:functions"  # the functions that have invocation indexes


def invocation_index_prefix(function: str) -> str:
    """The start of `invocation_index`'s names (the Lua status transition adds the status)."""
    return f"{PREFIX}idx:fn:{function}:"


def invocation_index(function: str, status: str) -> str:
    """Invocations of one function in one status, by creation: listings by status, by function
    or of all invocations merge these (one entry per invocation instead of one in each of three)."""
    return f"{invocation_index_prefix(function)}{status}"


def bucket_index(bucket: str) -> str:
    return f"{PREFIX}idx:bucket:{bucket}"


def object_index(bucket: str, key: str) -> str:
    """Invocations and notifications (`object_event`) of one object: one key per object."""
    return f"{PREFIX}idx:obj:{object_digest(bucket, key)}"


def finished_channel(inv_id: str) -> str:
    """Pub/sub channel told when an invocation finishes (`?wait=` listens instead of polling)."""
    return f"{PREFIX}finished:{inv_id}"


def throughput(minute: int) -> str:
    return f"{PREFIX}tp:{minute}"


# --- usage ---------------------------------------------------------------------------------------
USAGE_TOTALS = f"{PREFIX}usage:totals"


def usage_hour(hour: int) -> str:
    return f"{PREFIX}usage:h:{hour}"


def usage_minute(minute: int) -> str:
    return f"{PREFIX}usage:m:{minute}"


def usage_window(window: int) -> str:
    return f"{PREFIX}usage:w:{window}"


# --- events --------------------------------------------------------------------------------------
def event(event_id: str) -> str:
    return f"{PREFIX}event:{event_id}"


EVENTS_INDEX = f"{PREFIX}idx:events"


def raw_notification(digest: str) -> str:
    """The start of a notification's body, stored once however many records it carried."""
    return f"{PREFIX}raw:{digest}"


EVENT_MEMBER = "e:"  # notifications share their object's index with its invocations


def object_event(event_id: str) -> str:
    """A notification's member of its object's index (`object_index`)."""
    return f"{EVENT_MEMBER}{event_id}"


# --- flow runs -----------------------------------------------------------------------------------
def run(run_id: str) -> str:
    return f"{PREFIX}run:{run_id}"


RUNS_INDEX = f"{PREFIX}idx:runs"


def run_status_index(status: str) -> str:
    return f"{PREFIX}idx:runs:status:{status}"


def run_flow_index(flow: str) -> str:
    return f"{PREFIX}idx:runs:flow:{flow}"


def run_object_index(bucket: str, key: str) -> str:
    return f"{PREFIX}idx:runs:obj:{object_digest(bucket, key)}"


def run_claim(rule: str, bucket: str, key: str, version: str) -> Claim:
    """The claim that makes one run per (rule, object version)."""
    digest = hashlib.sha256("\x00".join((rule, bucket, key, version)).encode()).hexdigest()[:40]
    return _claim(digest)


def join_member_for_run(run_id: str) -> str:
    """A run's place in its upload's join set (the set otherwise holds invocation ids)."""
    return f"run:{run_id}"


# --- claims --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Claim:
    """Where the claim on one unit of work (or one flow run) is kept: a field of one of 65,536
    hashes, chosen by the first four hex digits of its digest. Redis keeps a hash of up to 128
    fields as one compact listpack, so a claim costs about 60 B up to some 8 million claims, where
    a key of its own with an expiry costs about 190 B."""

    shard: str
    field: str  # the next 28 hex digits: 128 bits of the digest in all


def _claim(digest: str) -> Claim:
    return Claim(f"{PREFIX}claims:{digest[:4]}", digest[4:32])


def dedup(unit: str) -> Claim:
    """The claim on one unit of work (`invocation.dedup_key`)."""
    return _claim(unit)


def lease(inv_id: str) -> str:
    return f"{PREFIX}lease:{inv_id}"


def slots(function: str) -> str:
    return f"{PREFIX}slots:{function}"


def idempotency(function: str, key: str) -> str:
    return f"{PREFIX}idem:" + hashlib.sha256(f"{function}\x00{key}".encode()).hexdigest()[:40]


def reconcile_cursor(bucket: str, prefix: str) -> str:
    return f"{PREFIX}reconcile:cursor:{bucket}\x00{prefix}"


RETENTION_LOCK = f"{PREFIX}retention:lock"
SCHEMA = f"{PREFIX}schema"  # the ledger's layout version (`schema.py`)
SCHEMA_LOCK = f"{PREFIX}schema:lock"
BACKFILL = f"{PREFIX}backfill"  # the progress of the latest backfill (`backfill.py`)


# --- outbox and joins ----------------------------------------------------------------------------
OUTBOX = f"{PREFIX}outbox"


def join(event_id: str) -> str:
    return f"{PREFIX}join:{event_id}"


# --- workers, switches, counters -----------------------------------------------------------------
def worker(hostname: str) -> str:
    return f"{PREFIX}worker:{hostname}"


WORKERS_REGISTRY = f"{PREFIX}workers"  # hostname -> when its heartbeat runs out


def function_flag(flag: str) -> str:
    """`paused` or `disabled`: a set of function names."""
    return f"{PREFIX}fn:{flag}"


def stat(name: str) -> str:
    return f"{PREFIX}stat:{name}"


# --- the dashboard -------------------------------------------------------------------------------
ADMIN_SIGNING_KEY = f"{PREFIX}admin:key"


def admin_session(session_id: str) -> str:
    return f"{PREFIX}admin:session:{session_id}"


def admin_login_tries(client: str) -> str:
    return f"{PREFIX}admin:tries:{client}"


# --- outgoing webhooks ---------------------------------------------------------------------------
WEBHOOK_PREFIX = f"{PREFIX}wh:"
WEBHOOK_SUBSCRIPTIONS = f"{WEBHOOK_PREFIX}subs"
WEBHOOK_MESSAGES_INDEX = f"{WEBHOOK_PREFIX}idx:all"
WEBHOOK_DUE = f"{WEBHOOK_PREFIX}due"
WEBHOOK_NOTICES = f"{WEBHOOK_PREFIX}notices"
WEBHOOK_DRAIN_LOCK = f"{WEBHOOK_PREFIX}drain-lock"
WEBHOOK_CALLBACK_SECRET = f"{WEBHOOK_PREFIX}callback-secret"


def callback_destinations(rule: str | None = None) -> str:
    """Callback subscriptions in use (sorted set by last use), in all or of one rule."""
    return f"{WEBHOOK_PREFIX}callbacks" + (f":rule:{rule}" if rule is not None else "")


def webhook_subscription(sub_id: str) -> str:
    return f"{WEBHOOK_PREFIX}sub:{sub_id}"


def webhook_message(msg_id: str) -> str:
    return f"{WEBHOOK_PREFIX}msg:{msg_id}"


def webhook_attempts(msg_id: str) -> str:
    return f"{WEBHOOK_PREFIX}att:{msg_id}"


def webhook_sending(msg_id: str) -> str:
    return f"{WEBHOOK_PREFIX}sending:{msg_id}"


def webhook_subscription_index(sub_id: str) -> str:
    return f"{WEBHOOK_PREFIX}idx:sub:{sub_id}"


def webhook_object_index(bucket: str, key: str) -> str:
    return f"{WEBHOOK_PREFIX}idx:obj:{object_digest(bucket, key)}"
