"""One error tree for the whole pipeline.

`functions.errors` holds the media errors that pure functions raise; they are re-exported here so
callers need a single import.
"""

from functions.errors import FunctionError, MediaError, ParamsError, UnsupportedMedia

__all__ = [
    "BrokerUnavailable",
    "ConfigError",
    "EventError",
    "FunctionError",
    "InvalidKey",
    "LeaseHeld",
    "MediaError",
    "ObjectNotFound",
    "ParamsError",
    "PipelineError",
    "Skip",
    "StorageError",
    "UnauthorizedEvent",
    "UnsupportedMedia",
]


class PipelineError(Exception):
    """Raised for any failure the pipeline itself detects (base class)."""


class ConfigError(PipelineError):
    """Raised when settings or the pipeline file are invalid; the message names the file and path."""


class EventError(PipelineError):
    """Raised when an incoming notification cannot be parsed into object events."""


class UnauthorizedEvent(EventError):
    """Raised when a notification fails authentication (token or SNS signature)."""


class StorageError(PipelineError):
    """Raised when the object store cannot be reached or refuses an operation."""


class ObjectNotFound(StorageError):
    """Raised when a bucket or object does not exist."""


class InvalidKey(StorageError):
    """Raised when a bucket name or object key cannot be stored or fetched by this backend."""


class Skip(PipelineError):
    """Raised when an invocation must not run: its object version is stale or gone, or running it
    would continue a trigger loop. Recorded as `skipped` with the reason; never retried."""


class LeaseHeld(PipelineError):
    """Raised when another execution of the same invocation holds its lease (a redelivered message
    while the first run is still going); the message is re-scheduled, not run."""


class Throttled(PipelineError):
    """The function's reserved concurrency is used up: the invocation runs later, not as an attempt."""


class BrokerUnavailable(PipelineError):
    """Raised when Redis (ledger or queue) cannot be reached, so work cannot be accepted."""
