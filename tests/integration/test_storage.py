"""One contract, both backends: the local directory and S3 (moto's server through the minio SDK)."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest

from pipeline.errors import InvalidKey, ObjectNotFound, StorageError
from pipeline.events import ObjectEvent
from pipeline.flows.model import Quarantine, Run, RunStatus
from pipeline.flows.quarantine import quarantine
from pipeline.output_target import prefixed_key
from pipeline.settings import Settings
from pipeline.storage import LocalStore, ObjectStore, open_store
from pipeline.storage.base import ObjectInfo
from pipeline.storage.s3 import S3Store

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


def blocked_run(info: ObjectInfo, pinned_version: bool = False) -> Run:
    return Run(
        id=f"r-{uuid.uuid4().hex[:8]}", flow="f", rule="r", bucket=info.bucket, key=info.key,
        version=info.version_tag, version_id=info.version_id if pinned_version else None,
        etag=info.etag, status=RunStatus.BLOCKED, reason="blocked by screen: matches x",
    )  # fmt: skip


def never_download(store: ObjectStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The quarantine copies inside the store: a download through this process fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the quarantine downloaded the object")

    monkeypatch.setattr(store, "_get_file", refuse)


@pytest.mark.parametrize("mode", ["move", "copy"])
def test_quarantine_moves_or_copies_and_tags_and_is_safe_to_repeat(
    store: ObjectStore,
    bucket: str,
    tmp_path: Path,
    mode: Literal["move", "copy"],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    info = store.put_file(bucket, "up/bad.jpg", write(tmp_path, b"bad bytes"), content_type="image/jpeg")
    run = blocked_run(info)
    target = Quarantine(bucket=bucket, key=prefixed_key("quarantine/", "up/bad.jpg"), mode=mode)
    never_download(store, monkeypatch)
    assert isinstance(quarantine(store, run, target), float)
    copy = store.stat(bucket, "quarantine/up/bad.jpg")
    assert copy.size == 9 and copy.metadata["pipeline-blocked"] == "blocked by screen: matches x"
    assert copy.content_type == "image/jpeg" and copy.metadata["pipeline-source-key"] == "up/bad.jpg"
    if mode == "move":
        with pytest.raises(ObjectNotFound):
            store.stat(bucket, "up/bad.jpg")
    else:
        assert store.get_tags(bucket, "up/bad.jpg") == {"pipeline-screen": "blocked", "pipeline-run": run.id}
    assert isinstance(quarantine(store, run, target), float)  # a repeat finds it done


def test_quarantine_leaves_a_newer_version_alone(
    store: ObjectStore, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pinned by ETag: the version screened is the one copied, or nothing is."""
    info = store.put_file(bucket, "up/bad.jpg", write(tmp_path, b"bad bytes"), content_type="image/jpeg")
    newer = store.put_file(bucket, "up/bad.jpg", write(tmp_path, b"fixed"), content_type="image/jpeg")
    target = Quarantine(bucket=bucket, key="quarantine/up/bad.jpg", mode="move")
    never_download(store, monkeypatch)
    outcome = quarantine(store, blocked_run(info), target)
    assert isinstance(outcome, str) and "replaced by a newer version" in outcome
    assert store.stat(bucket, "up/bad.jpg").etag == newer.etag
    with pytest.raises(ObjectNotFound):
        store.stat(bucket, "quarantine/up/bad.jpg")


def test_quarantine_of_a_key_of_1024_bytes(
    store: ObjectStore, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The longest key S3 allows: its quarantine key is shortened as output keys are."""
    key = "up/" + "é" * 400 + "x" * (1024 - 3 - 800)
    assert len(key.encode()) == 1024
    info = store.put_file(bucket, key, write(tmp_path, b"bad bytes"), content_type="image/jpeg")
    target = Quarantine(bucket=bucket, key=prefixed_key("quarantine/", key), mode="move")
    assert target.key.startswith("quarantine/_long/") and len(target.key.encode()) < 1024
    never_download(store, monkeypatch)
    assert isinstance(quarantine(store, blocked_run(info), target), float)
    kept = store.stat(bucket, target.key)
    assert kept.metadata["pipeline-source-key-sha256"] == hashlib.sha256(key.encode()).hexdigest()
    with pytest.raises(ObjectNotFound):
        store.stat(bucket, key)


def test_quarantine_on_a_versioned_bucket_removes_the_blocked_version(
    moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pinned by version id: the blocked version is copied and deleted for good, so it cannot be
    read by its id afterwards; a newer version uploaded meanwhile stays current and untouched."""
    from minio.commonconfig import ENABLED
    from minio.versioningconfig import VersioningConfig

    settings = Settings(
        s3_endpoint=moto_endpoint, s3_access_key="test", s3_secret_key="test", s3_region="us-east-1"
    )
    store = open_store(settings)
    assert isinstance(store, S3Store)
    bucket = f"v-{uuid.uuid4().hex[:12]}"
    store.ensure_bucket(bucket)
    store.client.set_bucket_versioning(bucket, VersioningConfig(ENABLED))
    blocked = store.put_file(bucket, "up/a.jpg", write(tmp_path, b"blocked bytes"), content_type="image/jpeg")
    newer = store.put_file(bucket, "up/a.jpg", write(tmp_path, b"newer"), content_type="image/jpeg")
    assert blocked.version_id and newer.version_id and blocked.version_id != newer.version_id
    target = Quarantine(bucket=bucket, key="quarantine/up/a.jpg", mode="move")
    never_download(store, monkeypatch)
    run = blocked_run(blocked, pinned_version=True)
    assert isinstance(quarantine(store, run, target), float)
    monkeypatch.undo()
    store.get_file(bucket, "quarantine/up/a.jpg", tmp_path / "kept")
    assert (tmp_path / "kept").read_bytes() == b"blocked bytes"
    with pytest.raises(ObjectNotFound):
        store.stat(bucket, "up/a.jpg", version_id=blocked.version_id)
    assert store.stat(bucket, "up/a.jpg").version_id == newer.version_id  # the newer one is current
    assert isinstance(quarantine(store, run, target), float)  # a repeat finds it done
    # on_block: copy tags the blocked version, not the current one.
    again = store.put_file(bucket, "up/b.jpg", write(tmp_path, b"blocked"), content_type="image/jpeg")
    store.put_file(bucket, "up/b.jpg", write(tmp_path, b"later"), content_type="image/jpeg")
    tagged = Quarantine(bucket=bucket, key="quarantine/up/b.jpg", mode="copy")
    run_b = blocked_run(again, pinned_version=True)
    assert isinstance(quarantine(store, run_b, tagged), float)
    assert store.get_tags(bucket, "up/b.jpg") == {}
    tags = store.client.get_object_tags(bucket, "up/b.jpg", version_id=again.version_id)
    assert dict(tags or {}) == {"pipeline-screen": "blocked", "pipeline-run": run_b.id}
