"""Every Redis key the pipeline writes, in one place (no `pl:` literal anywhere else).

Records are removed with their index entries once older than the retention period, in bounded
batches (`retention.py`); their TTL, a day longer, is the safety net.
- `inv:<id>`            hash, one JSON value per Invocation field (partial updates are atomic);
                        once finished, packed: its status, attempts and one deflated field. Its
                        attempts are in it (`earlier_attempts`, and the latest its own fields)
- `att:<id>`            an invocation's attempts as earlier versions kept them (read, not written)
- `event:<id>`          an EventRecord (a notification record that matched a rule), packed JSON
- `raw:<digest>`        the start of a notification's body, once per notification, packed
- `idx:fn:<name>:<status>|bucket:<b>|obj:<digest>`  sorted sets of invocation ids by creation;
                        `idx:functions` names the functions indexed
- `idx:events`, `idx:obj-events:<digest>`  sorted sets of event ids by arrival
- `dedup:<hash>`        the invocation that claimed one unit of work (SET NX)
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
- `runclaim:<hash>`     the run that claimed (rule, object version): one run per upload and rule
- `idem:<hash>`         the invocation an API idempotency key named
- `retention:lock`      the one retention sweeper at work; `backfill` the latest backfill's progress
- `reconcile:cursor:<bucket>\\0<prefix>`  where an interrupted reconciler pass continues
- `admin:*`             dashboard signing key, sessions and failed-login counters
- `wh:*`                outgoing webhooks: subscriptions, messages, attempts, schedule, notices
"""

from __future__ import annotations

import hashlib

PREFIX = "pl:"


def object_digest(bucket: str, key: str) -> str:
    """A fixed-length name for one object, for per-object index keys (keys can be 1 KB)."""
    return hashlib.sha256(f"{bucket}\x00{key}".encode()).hexdigest()[:32]


# --- invocations ---------------------------------------------------------------------------------
def invocation(inv_id: str) -> str:
    return f"{PREFIX}inv:{inv_id}"


def attempts(inv_id: str) -> str:
    return f"{PREFIX}att:{inv_id}"


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
    """Invocations of one object."""
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


def object_events_index(bucket: str, key: str) -> str:
    """Notifications about one object."""
    return f"{PREFIX}idx:obj-events:{object_digest(bucket, key)}"


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


def run_claim(rule: str, bucket: str, key: str, version: str) -> str:
    raw = "\x00".join((rule, bucket, key, version))
    return f"{PREFIX}runclaim:" + hashlib.sha256(raw.encode()).hexdigest()[:40]


def join_member_for_run(run_id: str) -> str:
    """A run's place in its upload's join set (the set otherwise holds invocation ids)."""
    return f"run:{run_id}"


# --- claims --------------------------------------------------------------------------------------
def dedup(unit: str) -> str:
    return f"{PREFIX}dedup:{unit}"


def lease(inv_id: str) -> str:
    return f"{PREFIX}lease:{inv_id}"


def slots(function: str) -> str:
    return f"{PREFIX}slots:{function}"


def idempotency(function: str, key: str) -> str:
    return f"{PREFIX}idem:" + hashlib.sha256(f"{function}\x00{key}".encode()).hexdigest()[:40]


def reconcile_cursor(bucket: str, prefix: str) -> str:
    return f"{PREFIX}reconcile:cursor:{bucket}\x00{prefix}"


RETENTION_LOCK = f"{PREFIX}retention:lock"
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
