"""A side channel for progress reports: functions call `report`, the worker adapter decides where
the reports go (the ledger), so functions stay free of queues and databases."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

ProgressSink = Callable[[float, float | None], None]  # (percent 0-100, speed as a multiple of real time)

_sink: ContextVar[ProgressSink | None] = ContextVar("progress_sink", default=None)


def report(percent: float, speed: float | None = None) -> None:
    reporter()(percent, speed)


def reporter() -> ProgressSink:
    """The current sink, bound now. Use it from helper threads, which do not inherit context."""
    sink = _sink.get()

    def send(percent: float, speed: float | None = None) -> None:
        if sink is not None:
            sink(max(0.0, min(100.0, percent)), speed)

    return send


@contextmanager
def progress_to(sink: ProgressSink) -> Iterator[None]:
    token = _sink.set(sink)
    try:
        yield
    finally:
        _sink.reset(token)
