"""Errors raised by media functions. Permanent by nature: retrying the same input fails the same way."""


class FunctionError(Exception):
    """Raised when a media function cannot produce its outputs (base class)."""


class MediaError(FunctionError):
    """Raised when the input media is damaged, too large or otherwise unusable."""


class UnsupportedMedia(MediaError):
    """Raised when the input's real type (by magic bytes) is not one the function accepts."""


class ParamsError(FunctionError):
    """Raised when a function's parameters are invalid."""
