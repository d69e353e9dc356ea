"""Logging for every `pipeline` process: plain text, or one JSON object per line
(`PIPELINE_LOG_FORMAT=json`, formatted by python-json-logger) that log shippers index without a
parser. Every line a worker writes about an invocation carries its id, function, bucket and key:
lines from the pipeline's code get them from the invocation being run, Celery's own lines about a
task ("received", "succeeded in") from the task's `argsrepr`, which names the invocation."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass

from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass(frozen=True)
class InvocationFields:
    invocation_id: str
    function: str
    bucket: str
    key: str

    def argsrepr(self) -> str:
        """How the queue message names the invocation (what `celery inspect` shows, and what the
        log filter reads back from Celery's own lines)."""
        return f"{self.invocation_id} {self.function} {self.bucket}/{self.key}"

    @staticmethod
    def from_argsrepr(text: str) -> InvocationFields | None:
        parts = text.split(" ", 2)
        if len(parts) != 3 or "/" not in parts[2]:
            return None
        bucket, key = parts[2].split("/", 1)
        return InvocationFields(parts[0], parts[1], bucket, key)


_current: ContextVar[InvocationFields | None] = ContextVar("invocation", default=None)
# Celery's lines after a task body ("retry", "succeeded in") name only the task id: the
# invocations this process ran lately, by task id.
_by_task: OrderedDict[str, InvocationFields] = OrderedDict()
TASKS_REMEMBERED = 256


def remember_task(task_id: str, fields: InvocationFields) -> None:
    _by_task[task_id] = fields
    _by_task.move_to_end(task_id)
    while len(_by_task) > TASKS_REMEMBERED:
        _by_task.popitem(last=False)


@contextmanager
def about_invocation(fields: InvocationFields) -> Iterator[None]:
    """Lines logged inside the block are about this invocation."""
    token = _current.set(fields)
    try:
        yield
    finally:
        _current.reset(token)


class InvocationFilter(logging.Filter):
    """Adds the invocation's fields to records written about one (never drops a record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _current.get()
        if fields is None and isinstance(record.args, Mapping):
            # Celery's task lines pass a dict of the request: our argsrepr under "args" where
            # it has one, the task id always.
            repr_ = record.args.get("args")
            fields = InvocationFields.from_argsrepr(repr_) if isinstance(repr_, str) else None
            fields = fields or _by_task.get(str(record.args.get("id")))
        if fields is not None:
            for name, value in asdict(fields).items():
                setattr(record, name, value)
        return True


def configure_logging(level: int, fmt: str) -> None:
    """The root handler every process logs through (Celery's and uvicorn's loggers propagate)."""
    handler = logging.StreamHandler()
    if fmt == "json":
        logging.captureWarnings(True)  # warnings too, as log lines rather than bare text on stderr
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    handler.addFilter(InvocationFilter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
