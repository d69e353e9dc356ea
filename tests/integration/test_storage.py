"""One contract, both backends: the local directory and S3 (moto's server through the minio SDK)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest

from pipeline.errors import InvalidKey, ObjectNotFound, StorageError
from pipeline.events import ObjectEvent
from pipeline.settings import Settings
from pipeline.storage import LocalStore, ObjectStore, open_store

pytestmark = pytest.mark.integration


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "local":
        yield LocalStore(tmp_path / "store")
        return
    endpoint = request.getfixturevalue("moto_endpoint")
    settings = Settings(
        s3_endpoint=endpoint, s3_access_key="test", s3_secret_key="test", s3_region="us-east-1"
    )
    yield open_store(settings)


@pytest.fixture
def bucket(store: ObjectStore) -> str:
    name = f"b-{uuid.uuid4().hex[:12]}"
    store.ensure_bucket(name)
    store.ensure_bucket(name)  # idempotent
    return name


def write(tmp_path: Path, data: bytes, name: str = "src.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_round_trip_with_metadata(store: ObjectStore, bucket: str, tmp_path: Path) -> None:
    src = write(tmp_path, b"\x89PNG" + bytes(range(256)) * 1000)
    meta = {"pipeline-source-key": "uploads/été photo.jpg", "pipeline-generation": "1"}
    put = store.put_file(bucket, "uploads/a b+c.png", src, content_type="image/png", metadata=meta)
    assert put.size == src.stat().st_size and put.etag
    got = store.get_file(bucket, "uploads/a b+c.png", tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == src.read_bytes()
    assert got.content_type == "image/png"
    assert got.metadata == meta  # unicode survives the header round trip
    stat = store.stat(bucket, "uploads/a b+c.png")
    assert stat.etag == got.etag and stat.size == put.size


def test_overwrite_replaces_and_lists_once(store: ObjectStore, bucket: str, tmp_path: Path) -> None:
    first = store.put_file(bucket, "k/one", write(tmp_path, b"first"))
    second = store.put_file(bucket, "k/one", write(tmp_path, b"second version"))
    assert first.etag != second.etag
    assert store.stat(bucket, "k/one").size == len(b"second version")
    store.put_file(bucket, "k/two", write(tmp_path, b"2"))
    store.put_file(bucket, "other", write(tmp_path, b"3"))
    assert [i.key for i in store.list(bucket, "k/")] == ["k/one", "k/two"]
    assert len(list(store.list(bucket))) == 3


def test_missing_objects_and_buckets(store: ObjectStore, bucket: str, tmp_path: Path) -> None:
    with pytest.raises(ObjectNotFound):
        store.stat(bucket, "nope")
    with pytest.raises(ObjectNotFound):
        store.get_file(bucket, "nope", tmp_path / "x")
    assert not (tmp_path / "x").exists()
    with pytest.raises(ObjectNotFound):
        store.stat(f"missing-{uuid.uuid4().hex[:8]}", "k")


def test_delete(store: ObjectStore, bucket: str, tmp_path: Path) -> None:
    store.put_file(bucket, "gone", write(tmp_path, b"x"))
    store.delete(bucket, "gone")
    with pytest.raises(ObjectNotFound):
        store.stat(bucket, "gone")


@pytest.mark.parametrize(
    "key", ["../../etc/passwd", "%2e%2e/%2e%2e/x", "a//b/./c/../d", "ünïcödé/ファイル.jpg", "k" * 1000]
)
def test_hostile_keys_are_just_keys(store: ObjectStore, bucket: str, tmp_path: Path, key: str) -> None:
    if not isinstance(store, LocalStore) and any(s in (".", "..") for s in key.split("/")):
        with pytest.raises(
            InvalidKey, match=re.escape("'.' or '..'")
        ):  # the minio SDK's own refusal, made clear
            store.put_file(bucket, key, write(tmp_path, b"data"))
        return
    store.put_file(bucket, key, write(tmp_path, b"data"))
    assert store.stat(bucket, key).key == key
    assert [i.key for i in store.list(bucket)] == [key]
    if isinstance(store, LocalStore):
        assert not list(tmp_path.glob("etc*")) and not (tmp_path.parent / "etc").exists()
        assert store.path_of(bucket, key).resolve().is_relative_to(store.root.resolve())


@pytest.mark.parametrize("key", ["", "a\x00b", "k" * 1025])
def test_invalid_keys_refused(store: ObjectStore, bucket: str, tmp_path: Path, key: str) -> None:
    with pytest.raises(StorageError, match="invalid object key"):
        store.put_file(bucket, key, write(tmp_path, b"x"))


def test_invalid_bucket_name(store: ObjectStore) -> None:
    with pytest.raises(StorageError, match="invalid bucket name"):
        store.ensure_bucket("../x")


def test_local_store_reports_writes_and_deletes(tmp_path: Path) -> None:
    seen: list[ObjectEvent] = []
    store = LocalStore(tmp_path / "store", on_write=seen.append)
    store.ensure_bucket("media")
    info = store.put_file(
        "media", "uploads/a.jpg", write(tmp_path, b"\xff\xd8\xff"), content_type="image/jpeg"
    )
    store.delete("media", "uploads/a.jpg")
    assert [(e.event_name, e.key) for e in seen] == [
        ("s3:ObjectCreated:Put", "uploads/a.jpg"),
        ("s3:ObjectRemoved:Delete", "uploads/a.jpg"),
    ]
    assert seen[0].version_id == info.version_id and seen[0].etag == info.etag and seen[0].size == 3


def test_local_write_is_atomic_old_version_until_complete(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.ensure_bucket("media")
    store.put_file("media", "k", write(tmp_path, b"old"))
    obj_dir = store.path_of("media", "k").parent
    # A half-written temp file (a crash mid-upload) is never visible as the object.
    (obj_dir / ".tmp-crashed").write_bytes(b"partial")
    store.get_file("media", "k", tmp_path / "read")
    assert (tmp_path / "read").read_bytes() == b"old"
    store.put_file("media", "k", write(tmp_path, b"new"))
    assert len(list(obj_dir.glob("*.data"))) == 1  # the previous version is cleaned up


def test_object_tags_belong_to_the_current_version(store: ObjectStore, bucket: str, tmp_path: Path) -> None:
    store.put_file(bucket, "a/tagged.jpg", write(tmp_path, b"one"))
    assert store.get_tags(bucket, "a/tagged.jpg") == {}
    store.set_tags(bucket, "a/tagged.jpg", {"pipeline-screen": "blocked", "pipeline-run": "r1"})
    assert store.get_tags(bucket, "a/tagged.jpg") == {"pipeline-screen": "blocked", "pipeline-run": "r1"}
    store.put_file(bucket, "a/tagged.jpg", write(tmp_path, b"two"))  # a new version starts untagged
    assert store.get_tags(bucket, "a/tagged.jpg") == {}
    with pytest.raises(ObjectNotFound):
        store.set_tags(bucket, "a/missing.jpg", {"k": "v"})


@pytest.mark.parametrize("mode", ["move", "copy"])
def test_quarantine_moves_or_copies_and_tags_and_is_safe_to_repeat(
    store: ObjectStore, bucket: str, tmp_path: Path, mode: Literal["move", "copy"]
) -> None:
    from pipeline.flows.model import Quarantine, Run, RunStatus
    from pipeline.flows.quarantine import quarantine

    info = store.put_file(bucket, "up/bad.jpg", write(tmp_path, b"bad bytes"), content_type="image/jpeg")
    run = Run(
        id="r1", flow="f", rule="r", bucket=bucket, key="up/bad.jpg", version=info.version_tag,
        etag=info.etag, status=RunStatus.BLOCKED, reason="blocked by screen: matches x",
    )  # fmt: skip
    target = Quarantine(bucket=bucket, key="quarantine/up/bad.jpg", mode=mode)
    assert isinstance(quarantine(store, run, target), float)
    copy = store.stat(bucket, "quarantine/up/bad.jpg")
    assert copy.size == 9 and copy.metadata["pipeline-blocked"] == "blocked by screen: matches x"
    if mode == "move":
        with pytest.raises(ObjectNotFound):
            store.stat(bucket, "up/bad.jpg")
    else:
        assert store.get_tags(bucket, "up/bad.jpg") == {"pipeline-screen": "blocked", "pipeline-run": "r1"}
    assert isinstance(quarantine(store, run, target), float)  # a repeat finds it done
    # A newer version uploaded meanwhile is left alone.
    newer = store.put_file(bucket, "up/bad.jpg", write(tmp_path, b"fixed"), content_type="image/jpeg")
    assert newer.etag != info.etag
    outcome = quarantine(store, run, target)
    assert isinstance(outcome, str) and "replaced by a newer version" in outcome
    assert store.stat(bucket, "up/bad.jpg").etag == newer.etag
