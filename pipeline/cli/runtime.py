"""One way for a command to open what it works with: settings -> pipeline file -> Redis -> runtime."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click

from pipeline.embedded import RedisEndpoint
from pipeline.errors import ConfigError, PipelineError
from pipeline.registry import Pipeline, load_pipeline
from pipeline.runtime import Runtime
from pipeline.settings import Settings, get_settings


def load_or_fail(settings: Settings) -> Pipeline:
    """The pipeline file, or the command fails with what is wrong in it."""
    try:
        return load_pipeline(settings)
    except ConfigError as exc:
        raise click.ClickException(f"invalid pipeline file:\n{exc}") from exc


def data_file_warnings(settings: Settings, pipeline: Pipeline) -> list[str]:
    """The data files (hash lists) the pipeline file names that the store does not have."""
    from pipeline.doctor import missing_data_files  # noqa: PLC0415 - opens the store only here
    from pipeline.storage import open_store  # noqa: PLC0415

    try:
        return missing_data_files(pipeline, open_store(settings))
    except PipelineError as exc:  # the store is away: the workers say so when they need it
        return [f"could not check the data files the pipeline file names: {exc}"]


def default_bucket(pipeline: Pipeline) -> str:
    buckets = pipeline.config.watched_buckets()
    return buckets[0] if buckets else "media"


@contextmanager
def open_redis(settings: Settings) -> Iterator[RedisEndpoint]:
    """The configured Redis, or the embedded one (started for this command if none runs)."""
    with RedisEndpoint(settings.redis_url, settings.data_dir) as endpoint:
        yield endpoint


@contextmanager
def open_runtime(settings: Settings | None = None) -> Iterator[Runtime]:
    """A runtime that enqueues through Celery, for commands that read the ledger or add work."""
    from pipeline.queue.app import queued_runtime  # noqa: PLC0415 - Celery only when a command needs it

    settings = settings or get_settings()
    pipeline = load_or_fail(settings)
    with open_redis(settings) as endpoint:
        yield queued_runtime(settings, pipeline, endpoint.url)


def refuse_public_bind(settings: Settings, host: str) -> None:
    refusal = settings.bind_refusal(host)
    if refusal:
        raise click.ClickException(refusal)
