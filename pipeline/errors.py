"""One error tree for the whole pipeline. Each error the API can return knows its HTTP status; the
gateway maps them all in one exception handler.

`functions.errors` holds the media errors that pure functions raise (they may not import the
pipeline); they are re-exported here so callers need a single import.
"""

from typing import ClassVar

from functions.errors import FunctionError, MediaError, ParamsError, Rejected, UnsupportedMedia

__all__ = [
    "BadGateway",
    "BadRequest",
    "BodyTooLarge",
    "BrokerUnavailable",
    "ConfigError",
    "Conflict",
    "DestinationRefused",
    "EventError",
    "Forbidden",
    "FunctionError",
    "InvalidKey",
    "InvalidParams",
    "LeaseHeld",
    "LedgerSchemaError",
    "MediaError",
    "NotFound",
    "ObjectNotFound",
    "ParamsError",
    "PipelineError",
    "Rejected",
    "RetryRefused",
    "Skip",
    "StorageError",
    "Throttled",
    "TooManyRequests",
    "Unauthorized",
    "UnauthorizedEvent",
    "UnsupportedMedia",
    "UnsupportedMediaType",
]


class PipelineError(Exception):
    """Raised for any failure the pipeline itself detects (base class)."""

    http_status: ClassVar[int] = 500


class ConfigError(PipelineError):
    """Raised when settings or the pipeline file are invalid; the message names the file and path."""


# --- what a caller sent ------------------------------------------------------------------------
class BadRequest(PipelineError):
    """Raised when a request is malformed: a body that is not JSON, a missing part, a bad filter."""

    http_status = 400


class EventError(BadRequest):
    """Raised when an incoming notification cannot be parsed into object events."""


class Unauthorized(PipelineError):
    """Raised when a request lacks the token its route needs, or has a wrong one."""

    http_status = 401


class Forbidden(PipelineError):
    """Raised when a request is refused whoever sends it (the dashboard with no password, say)."""

    http_status = 403


class UnauthorizedEvent(EventError, Forbidden):
    """Raised when a notification's SNS signature does not verify, or its topic is not allowed."""

    http_status = 403


class NotFound(PipelineError):
    """Raised when a record the caller named does not exist: an invocation, a function, a webhook
    subscription or message."""

    http_status = 404


class Conflict(PipelineError):
    """Raised when a request cannot be carried out in the record's current state."""

    http_status = 409


class RetryRefused(Conflict):
    """Raised when an invocation is not in a state that can be retried."""


class BodyTooLarge(PipelineError):
    """Raised when a request body is over the route's limit; refused before it is buffered."""

    http_status = 413


class UnsupportedMediaType(PipelineError):
    """Raised when a request body is not of the type its route takes (JSON routes: application/json)."""

    http_status = 415


class InvalidParams(PipelineError):
    """Raised when parameters given to a function over the API are invalid for it."""

    http_status = 422


class DestinationRefused(InvalidParams):
    """Raised when a webhook URL may not be called: not http(s), or a private or otherwise
    non-public address (the SSRF guard)."""


class TooManyRequests(PipelineError):
    """Raised when a client must wait before trying again (failed logins)."""

    http_status = 429


# --- the services the pipeline runs on ---------------------------------------------------------
class BadGateway(PipelineError):
    """Raised when a service the gateway called on a request's behalf failed or answered wrongly."""

    http_status = 502


class StorageError(BadGateway):
    """Raised when the object store cannot be reached or refuses an operation."""


class ObjectNotFound(StorageError):
    """Raised when a bucket or object does not exist."""

    http_status = 404
    permanent = True  # retrying does not bring it back


class InvalidKey(StorageError):
    """Raised when a bucket name or object key cannot be stored or fetched by this backend."""

    http_status = 400
    permanent = True


class LedgerSchemaError(PipelineError):
    """The ledger in Redis has a layout this version cannot use (`ledger/schema.py`)."""


class BrokerUnavailable(PipelineError):
    """Raised when Redis (ledger or queue) cannot be reached, so work cannot be accepted."""

    http_status = 503


# --- control flow inside a worker --------------------------------------------------------------
class Skip(PipelineError):
    """Raised when an invocation must not run: its object version is stale or gone, or running it
    would continue a trigger loop. Recorded as `skipped` with the reason; never retried."""

    permanent = True


class LeaseHeld(PipelineError):
    """Raised when another execution of the same invocation holds its lease (a redelivered message
    while the first run is still going); the message is re-scheduled, not run."""


class Throttled(PipelineError):
    """Raised when the function's reserved concurrency is used up: the invocation runs later, not
    as an attempt."""
