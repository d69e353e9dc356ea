"""Extra input files a function needs besides its source (e.g. a watermark logo in a bucket).

A function names them as `s3://bucket/key` in its params; the worker adapter downloads them before
the run and maps each reference to a local file here, so the function itself never fetches."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from functions.errors import ParamsError

_local: ContextVar[Mapping[str, Path] | None] = ContextVar("assets", default=None)

PREFIX = "s3://"


def split_ref(ref: str) -> tuple[str, str]:
    bucket, _, key = ref[len(PREFIX) :].partition("/")
    if not ref.startswith(PREFIX) or not bucket or not key:
        raise ParamsError(f"asset reference {ref!r} must look like s3://bucket/key")
    return bucket, key


def path_of(ref: str) -> Path:
    """The local file for `ref`: a downloaded object for `s3://...`, otherwise a path on this host."""
    if not ref.startswith(PREFIX):
        path = Path(ref)
        if not path.is_file():
            raise ParamsError(f"asset file {ref} does not exist on this host")
        return path
    try:
        return (_local.get() or {})[ref]
    except KeyError:
        raise ParamsError(f"asset {ref} was not downloaded for this run") from None


@contextmanager
def provided(paths: Mapping[str, Path]) -> Iterator[None]:
    token = _local.set(dict(paths))
    try:
        yield
    finally:
        _local.reset(token)
