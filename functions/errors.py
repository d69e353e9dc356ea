"""Errors raised by media functions. Permanent by nature: retrying the same input fails the same way.
A function that knows an error of its own to be passing (a service it calls was away) raises it
with `permanent=False`, and the function's retry policy retries it."""


class FunctionError(Exception):
    """Raised when a media function cannot produce its outputs (base class)."""

    permanent = True

    def __init__(self, *args: object, permanent: bool | None = None) -> None:
        super().__init__(*args)
        if permanent is not None:
            self.permanent = permanent


class MediaError(FunctionError):
    """Raised when the input media is damaged or otherwise unusable."""


class Rejected(MediaError):
    """Raised when screening refuses an input (type not allowed, over a limit); nothing runs."""


class UnsupportedMedia(Rejected):
    """Raised when the input's real type (by magic bytes) is not one that is allowed or accepted."""


class ParamsError(FunctionError):
    """Raised when a function's parameters are invalid."""
