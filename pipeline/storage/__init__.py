"""Object stores: `ObjectStore` with a local-directory and an S3 backend."""

from __future__ import annotations

from collections.abc import Callable

from pipeline.events.model import ObjectEvent
from pipeline.settings import Settings
from pipeline.storage.base import ObjectInfo, ObjectStore
from pipeline.storage.local import LocalStore

__all__ = ["LocalStore", "ObjectInfo", "ObjectStore", "open_store"]


def open_store(settings: Settings, on_write: Callable[[ObjectEvent], object] | None = None) -> ObjectStore:
    """The configured store. `on_write` receives the local store's events; an S3 server sends its own
    notifications to the gateway instead."""
    s3 = settings.s3()
    if s3 is None:
        return LocalStore(settings.data_dir / "store", on_write=on_write)
    from pipeline.storage.s3 import S3Store  # noqa: PLC0415 - only S3 deployments need the minio SDK

    return S3Store(s3)
