"""Extra input files a function needs besides its source (e.g. a watermark logo in a bucket).

A function names them as `s3://bucket/key` in its params and declares them with `assets=`; the
worker adapter downloads them (and screens them like any input) before the run and maps each
reference to a local file here, so the function itself never fetches, and never opens a path a
caller chose: a reference nobody provided is an error that says nothing about the host's files.
(`pipeline run` on a workstation provides files of that machine, named by its own user.)"""

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
    """The local file provided for `ref` for this run."""
    try:
        return (_local.get() or {})[ref]
    except KeyError:
        raise ParamsError(f"asset {ref} was not provided for this run (assets are s3://bucket/key)") from None


def find(ref: str) -> Path | None:
    """The local file provided for `ref`, or None when the worker found no such object (a data
    file that does not exist: the function decides what that means)."""
    return (_local.get() or {}).get(ref)


@contextmanager
def provided(paths: Mapping[str, Path]) -> Iterator[None]:
    token = _local.set(dict(paths))
    try:
        yield
    finally:
        _local.reset(token)
