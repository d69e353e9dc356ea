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
    "MediaError",
    "ObjectNotFound",
    "ParamsError",
    "PipelineError",
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


class BrokerUnavailable(PipelineError):
    """Raised when Redis (ledger or queue) cannot be reached, so work cannot be accepted."""
