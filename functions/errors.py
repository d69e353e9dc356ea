"""Errors raised by media functions. Permanent by nature: retrying the same input fails the same way."""


class FunctionError(Exception):
    """Raised when a media function cannot produce its outputs (base class)."""


class MediaError(FunctionError):
    """Raised when the input media is damaged or otherwise unusable."""


class Rejected(MediaError):
    """Raised when screening refuses an input (type not allowed, over a limit); nothing runs."""


class UnsupportedMedia(Rejected):
    """Raised when the input's real type (by magic bytes) is not one that is allowed or accepted."""


class ParamsError(FunctionError):
    """Raised when a function's parameters are invalid."""
