from __future__ import annotations

from typing import Any

import pytest

from pipeline.config import parse_config
from pipeline.events import ObjectEvent
from pipeline.registry import Pipeline, build_pipeline
from pipeline.routing import content_type_of, output_key, route

FANOUT = """
version: 1
rules:
  - name: thumbs
    bucket: media
    prefix: uploads/
    content_types: ["image/*"]
    functions:
      - function: thumbnail
        params: {sizes: [128]}
  - name: big-thumbs
    bucket: media
    prefix: uploads/
    suffixes: [".JPG", ".png"]
    events: ["s3:ObjectCreated:Put"]
    functions:
      - function: thumbnail
        params: {sizes: [1024], format: webp}
  - name: same-as-first
    bucket: media
    prefix: uploads/
    functions:
      - function: thumbnail
        params: {sizes: [128]}
"""


def pipeline(text: str = FANOUT) -> Pipeline:
    return build_pipeline(parse_config(text, "test.yaml"), "test.yaml")


def event(key: str, **kw: Any) -> ObjectEvent:
    fields: dict[str, Any] = {
        "source": "minio",
        "event_name": "s3:ObjectCreated:Put",
        "bucket": "media",
        "key": key,
    }
    fields.update(kw)
    return ObjectEvent(**fields)


def test_one_upload_fans_out_and_identical_calls_merge() -> None:
    planned = route(pipeline(), event("uploads/cat.jpg", content_type="image/jpeg"))
    assert sorted(p.params["sizes"][0] for p in planned) == [128, 1024]
    assert {p.rule for p in planned} == {"thumbs", "big-thumbs"}  # same-as-first merged into thumbs
    assert len({p.params_hash for p in planned}) == 2


def test_params_are_validated_with_defaults_filled() -> None:
    [first, _] = route(pipeline(), event("uploads/cat.jpg"))
    assert first.params["format"] == "jpeg" and first.params["quality"] == 82


@pytest.mark.parametrize(
    ("key", "kw", "expected_rules"),
    [
        ("other/cat.jpg", {}, set()),  # prefix
        ("uploads/cat.jpg", {"bucket": "elsewhere"}, set()),  # bucket
        ("uploads/notes.txt", {"content_type": "text/plain"}, {"same-as-first"}),  # content type
        ("uploads/cat.gif", {}, {"thumbs"}),  # suffix (gif is not listed) and merge
        ("uploads/cat.jpg", {"event_name": "s3:ObjectCreated:CompleteMultipartUpload"}, {"thumbs"}),
        ("uploads/cat.jpg", {"event_name": "s3:ObjectRemoved:Delete"}, set()),  # default events
        ("derived/uploads/cat.jpg/thumbnail/128.jpg", {}, set()),  # outputs never trigger
    ],
)
def test_rule_filters(key: str, kw: dict[str, Any], expected_rules: set[str]) -> None:
    assert {p.rule for p in route(pipeline(), event(key, **kw))} == expected_rules


def test_content_type_guessed_from_key_when_event_has_none() -> None:
    assert content_type_of(event("uploads/a b.PNG")) == "image/png"
    assert content_type_of(event("uploads/x", content_type="Image/JPEG; charset=x")) == "image/jpeg"
    assert content_type_of(event("uploads/noext")) == "application/octet-stream"


TEMPLATE = "derived/{key}/{function}/{name}"


def test_output_keys_are_deterministic_and_bounded() -> None:
    assert (
        output_key(TEMPLATE, "uploads/a.jpg", "thumbnail", "256.jpg")
        == "derived/uploads/a.jpg/thumbnail/256.jpg"
    )
    long_key = "uploads/" + "é" * 500
    key = output_key(TEMPLATE, long_key, "thumbnail", "256.jpg")
    assert len(key.encode()) <= 1024
    assert key == output_key(TEMPLATE, long_key, "thumbnail", "256.jpg")
    assert key.startswith("derived/_long/")


def test_output_template_fields() -> None:
    assert (
        output_key("archive/{stem}-{name}", "uploads/cat.photo.jpg", "copy", "o.jpg")
        == "archive/uploads/cat.photo-o.jpg"
    )
    assert output_key("x/{ext}/{name}", "uploads/a.png", "f", "n") == "x/png/n"
    assert (
        output_key("x/{ext}/{name}", "up.loads/noext", "f", "n") == "x//n"
    )  # a dot in a folder is no extension


WHOLE_BUCKET = """
version: 1
rules:
  - name: everything
    bucket: media
    functions:
      - function: thumbnail
      - function: copy
        output: {bucket: media, template: "archive/{key}"}
screening:
  rejected_prefix: rejected/
"""


@pytest.mark.parametrize(
    ("key", "routed"),
    [
        ("photos/cat.jpg", True),
        ("derived/photos/cat.jpg/thumbnail/256.jpg", False),  # the default outputs prefix
        ("archive/photos/cat.jpg", False),  # a step's own output template
        ("rejected/photos/cat.jpg", False),  # rejected copies
        ("quarantine/photos/cat.jpg", False),  # quarantined (blocked) uploads
    ],
)
def test_output_areas_never_trigger_even_a_whole_bucket_rule(key: str, routed: bool) -> None:
    assert bool(route(pipeline(WHOLE_BUCKET), event(key))) is routed


def test_presets_merge_under_params() -> None:
    text = """
presets:
  transcode:
    small: {kind: mp4, heights: [240]}
rules:
  - name: v
    bucket: media
    functions:
      - {function: transcode, preset: small, params: {crf: 30}}
      - {function: transcode, preset: hls}
"""
    planned = route(pipeline(text), event("clip.mp4", content_type="video/mp4"))
    params = sorted((p.params["kind"], p.params["heights"], p.params.get("crf")) for p in planned)
    assert params == [("hls", [720, 360], None), ("mp4", [240], 30)]  # crf is the mp4 ladder's only
