"""Functions over HTTP: `POST /api/functions/{name}/invoke` with a real gateway (uvicorn), Redis
and a Celery worker process, on the local store."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from pydantic import SecretStr

from pipeline.errors import ObjectNotFound
from pipeline.gateway.app import create_app
from pipeline.invocation import Status
from pipeline.measure.samples import generate
from pipeline.runtime import Runtime
from tests.helpers import THUMBNAILS_ONLY, Proc, ServedApp, load_image, pipeline_runtime, wait_until

pytestmark = pytest.mark.integration
TOKEN = "invoke-api-token"


@dataclasses.dataclass
class Api:
    runtime: Runtime
    client: httpx.Client
    image: Path


@pytest.fixture
def api(redis_url: str, tmp_path: Path) -> Iterator[Api]:
    runtime, env = pipeline_runtime(THUMBNAILS_ONLY, redis_url, tmp_path)
    settings = runtime.settings.model_copy(update={"api_token": SecretStr(TOKEN)})
    runtime = dataclasses.replace(runtime, settings=settings)
    image = generate(tmp_path / "samples")[0]
    runtime.store.ensure_bucket("media")
    # Stored outside the rules' prefix: only the API starts work on it.
    runtime.store.put_file("media", "library/cat.jpg", image, content_type="image/jpeg")
    worker = Proc(["worker", "--functions", "thumbnail", "--concurrency", "1"], env, tmp_path / "worker.log")
    try:
        wait_until(runtime.ledger.workers.live, 30, "the worker")
        with ServedApp(create_app(settings, runtime)) as client:
            client.headers["Authorization"] = f"Bearer {TOKEN}"
            yield Api(runtime, client, image)
    finally:
        worker.stop()


def test_async_invocation_answers_202_with_a_status_url(api: Api) -> None:
    body = {"bucket": "media", "key": "library/cat.jpg", "params": {"sizes": [64]}}
    response = api.client.post("/api/functions/thumbnail/invoke", json=body)
    assert response.status_code == 202, response.text
    started = response.json()
    assert started["status"] in ("queued", "running") and started["rule"] == "api"
    url = started["status_url"]
    wait_until(lambda: api.client.get(url).json()["status"] == "succeeded", 30, "the invocation")
    done = api.client.get(url).json()
    assert [o["key"] for o in done["outputs"]] == ["derived/library/cat.jpg/thumbnail/64.jpg"]
    out = api.runtime.settings.data_dir / "out.jpg"
    api.runtime.store.get_file("media", done["outputs"][0]["key"], out)
    assert max(load_image(out).size) == 64


def test_wait_returns_the_result_and_duplicates_return_the_same_invocation(api: Api) -> None:
    body = {"bucket": "media", "key": "library/cat.jpg", "params": {"sizes": [96]}}
    response = api.client.post("/api/functions/thumbnail/invoke", params={"wait": 30}, json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["status"] == "succeeded" and result["outputs"][0]["key"].endswith("/96.jpg")
    # Same object version, function and params: the dedup claim answers with the same invocation.
    again = api.client.post("/api/functions/thumbnail/invoke", json=body).json()
    assert again["id"] == result["id"]
    assert len(api.runtime.ledger.invocations.for_object("media", "library/cat.jpg")) == 1


def test_an_idempotency_key_returns_the_first_requests_invocation(api: Api) -> None:
    headers = {"Idempotency-Key": "order-42"}
    first = api.client.post(
        "/api/functions/thumbnail/invoke",
        headers=headers,
        json={"bucket": "media", "key": "library/cat.jpg", "params": {"sizes": [50]}},
    ).json()
    retried = api.client.post(
        "/api/functions/thumbnail/invoke",
        headers=headers,
        json={"bucket": "media", "key": "library/cat.jpg", "params": {"sizes": [70]}},
    ).json()
    assert retried["id"] == first["id"] and retried["params"]["sizes"] == [50]


def test_a_file_upload_is_stored_and_processed(api: Api) -> None:
    with api.image.open("rb") as fh:
        response = api.client.post(
            "/api/functions/thumbnail/invoke",
            params={"wait": 30},
            files={"file": ("holiday.jpg", fh, "image/jpeg")},
            data={"params": '{"sizes": [32]}'},
        )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["key"].startswith("invoke/") and result["key"].endswith("/holiday.jpg")
    assert result["status"] == Status.SUCCEEDED and result["outputs"][0]["key"].endswith("/32.jpg")


def test_errors_name_what_is_wrong(api: Api) -> None:
    post = api.client.post
    ref = {"bucket": "media", "key": "library/cat.jpg"}
    assert post("/api/functions/nope/invoke", json=ref).status_code == 404
    bad = post("/api/functions/thumbnail/invoke", json={**ref, "params": {"sizes": [1]}})
    assert bad.status_code == 422 and "sizes" in bad.json()["detail"]
    missing = post("/api/functions/thumbnail/invoke", json={"bucket": "media", "key": "library/none.jpg"})
    assert missing.status_code == 404 and "library/none.jpg" in missing.json()["detail"]
    assert post("/api/functions/thumbnail/invoke", json={"key": 3}).status_code == 400
    with httpx.Client(base_url=str(api.client.base_url)) as anonymous:
        assert anonymous.post("/api/functions/thumbnail/invoke", json=ref).status_code == 401
    api.runtime.ledger.flags.switch("disabled", "thumbnail", True)
    off = post("/api/functions/thumbnail/invoke", json={**ref, "params": {"sizes": [33]}})
    assert off.status_code == 409 and "disabled" in off.json()["detail"]


def test_a_caller_reaches_only_the_buckets_and_objects_the_pipeline_file_names(api: Api) -> None:
    post = api.client.post
    api.runtime.store.ensure_bucket("private")
    api.runtime.store.put_file("private", "payroll.jpg", api.image, content_type="image/jpeg")
    other = post("/api/functions/thumbnail/invoke", json={"bucket": "private", "key": "payroll.jpg"})
    assert other.status_code == 403 and "invoke.buckets" in other.json()["detail"]
    with api.image.open("rb") as fh:
        made_up = post(
            "/api/functions/thumbnail/invoke",
            files={"file": ("x.jpg", fh, "image/jpeg")},
            data={"bucket": "attacker-bucket"},
        )
    assert made_up.status_code == 403
    with pytest.raises(ObjectNotFound):  # the request created no bucket
        list(api.runtime.store.list("attacker-bucket"))
    with api.image.open("rb") as fh:  # a wrong function is refused before the upload is stored
        unknown = post("/api/functions/nope/invoke", files={"file": ("y.jpg", fh, "image/jpeg")})
    assert unknown.status_code == 404 and not list(api.runtime.store.list("media", "invoke/"))
    assert post("/api/functions/thumbnail/invoke", json=[]).status_code == 400
    assert api.runtime.ledger.invocations.query() == []


def test_assets_are_objects_never_files_of_the_worker_host(api: Api) -> None:
    def watermark(image: str) -> httpx.Response:
        params = {"steps": [{"op": "watermark", "image": image}]}
        ref = {"bucket": "media", "key": "library/cat.jpg", "params": params}
        return api.client.post("/api/functions/filter/invoke", json=ref)

    for host_file in ("/etc/passwd", "/etc/no-such-file", "../../etc/hostname"):
        refused = watermark(host_file)
        assert refused.status_code == 422 and "s3://bucket/key" in refused.json()["detail"]
        assert "exist" not in refused.json()["detail"], "the answer must not tell which host files exist"
    assert watermark("s3://private/logo.png").status_code == 403  # a bucket callers may not name
    assert api.runtime.ledger.invocations.query() == []


def _hgetall_calls(client: redis.Redis) -> int:
    return int(client.info("commandstats").get("cmdstat_hgetall", {}).get("calls", 0))


def test_waiting_listens_for_the_verdict_and_ledger_scans_are_bounded(api: Api, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    ref = {"bucket": "media", "key": "library/cat.jpg", "params": {"sizes": [40]}}
    before = _hgetall_calls(client)  # no worker serves `filter`: its invocation stays queued
    gray = {**ref, "params": {"steps": [{"op": "grayscale"}]}}
    held = api.client.post("/api/functions/filter/invoke", params={"wait": 2}, json=gray)
    assert held.status_code == 202 and held.json()["status"] == "queued"
    reads = _hgetall_calls(client) - before
    assert reads <= 6, f"a 2 s wait read the invocation {reads} times: it polls instead of listening"
    done = api.client.post("/api/functions/thumbnail/invoke", params={"wait": 60}, json=ref)
    assert done.status_code == 200 and done.json()["status"] == Status.SUCCEEDED  # woken by the verdict

    deep = api.client.get("/api/invocations", params={"offset": 10**9})
    assert deep.status_code == 422
    keyed = api.client.get("/api/invocations", params={"key": "library/cat.jpg"})
    assert keyed.status_code == 400 and "bucket" in keyed.json()["detail"]
    both = api.client.get("/api/invocations", params={"key": "library/cat.jpg", "bucket": "media"})
    assert both.status_code == 200 and len(both.json()["items"]) == 2  # the filter and the thumbnail


def test_a_caller_can_lower_the_operators_limits_never_raise_them(api: Api) -> None:
    def invoke(function: str, params: dict[str, object]) -> httpx.Response:
        ref = {"bucket": "media", "key": "library/cat.jpg", "params": params}
        return api.client.post(f"/api/functions/{function}/invoke", json=ref)

    refusals: list[tuple[str, dict[str, object], str]] = [
        ("thumbnail", {"max_pixels": 10**12}, "screening.max_pixels"),
        ("thumbnail", {"max_frames": 10**6}, "screening.max_frames"),
        ("filter", {"steps": [{"op": "resize", "width": 16000, "upscale": True}]}, "screening.max_dimension"),
        ("transcode", {"kind": "mp4", "wall_seconds": 10**6}, "time_limit"),
        ("transcode", {"kind": "mp4", "max_output_bytes": 10**15}, "screening.max_bytes"),
    ]
    for function, params, ceiling in refusals:
        refused = invoke(function, params)
        assert refused.status_code == 422 and ceiling in refused.json()["detail"], (params, refused.text)
    ratio = invoke("thumbnail", {"fit": "cover", "aspect": "0:1"})
    assert ratio.status_code == 422, "a zero ratio is refused at the request, not retried until dead"
    assert api.runtime.ledger.invocations.query() == []
    lowered = invoke("thumbnail", {"max_pixels": 1000, "sizes": [32]})
    assert lowered.status_code == 202 and lowered.json()["params"]["max_pixels"] == 1000
