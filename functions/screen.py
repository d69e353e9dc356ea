"""`screen`: whether an uploaded image or video may be published: pass, review or block, with the
reasons and the scores.

Three checks, each optional, on one reduced decode of the image (or of a few frames of a video):
- known images: the PDQ hash compared with the operator's hash lists (text files in the store,
  made with `pipeline hashes add`); a match within `max_distance` bits gives `on_match`;
- nudity: a score 0..1 from the classifier of the `[moderation]` extra (`functions.nsfw`); at or
  over `review_at` gives review, at or over `block_at` block. Without the extra the report says
  the classifier is not installed, and the other checks still run;
- malware: the file streamed to clamd when `clamd` is set (the pipeline file's `screening.clamd`);
  a signature found gives `on_malware`.

The verdict, reasons and scores are written to `screen.json` and reported in its `meta`, so a
flow reads them as `steps.screen.verdict` (docs/screening.md).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import ffmpeg
from PIL import Image
from pydantic import Field, model_validator

from functions import _ffmpeg, assets, malware, nsfw, perceptual
from functions._media import sniff
from functions.errors import MediaError
from functions.spec import Output, Params, media_function

log = logging.getLogger(__name__)

Verdict = Literal["pass", "review", "block"]
_RANK: dict[Verdict, int] = {"pass": 0, "review": 1, "block": 2}
# One frame, seeked to and scaled down: seconds of work at most, one small PNG out.
_FRAME_LIMITS = _ffmpeg.Limits(wall_seconds=60, cpu_seconds=60, max_output_bytes=64 * 1024**2)
# Each list is a download before the check: a caller cannot make one invocation fetch hundreds.
MAX_HASH_LISTS = 16


class ScreenParams(Params):
    hash_lists: list[str] = Field(
        default_factory=list,
        max_length=MAX_HASH_LISTS,
        description="Hash lists to match against: s3://bucket/key of each.",
    )
    missing_list: Literal["review", "pass"] = Field(
        "review",
        description="A named hash list that does not exist: review (a person looks; a typo or a "
        "deleted list never lets a listed image through) or pass (treated as empty).",
    )
    max_distance: int = Field(
        perceptual.DEFAULT_MAX_DISTANCE,
        ge=0,
        le=128,
        description="Hamming distance (of 256 bits) at or under which an image matches a listed one.",
    )
    on_match: Literal["review", "block"] = Field("block", description="The verdict for a match.")
    nsfw: bool = Field(True, description="Score nudity, when the [moderation] extra is installed.")
    review_at: float = Field(0.6, ge=0, le=1, description="A nudity score at or over this: review.")
    block_at: float | None = Field(None, ge=0, le=1, description="A nudity score at or over this: block.")
    frames: int = Field(
        5,
        ge=1,
        le=30,
        description="Frames of a video, an animated image or a multi-page TIFF checked, spread over "
        "it (the worst frame decides).",
    )
    clamd: str | None = Field(
        None,
        description="clamd's socket (unix:///... or tcp://host:port): the pipeline file's "
        "screening.clamd, never a caller's (it opens a connection from the worker).",
        json_schema_extra={"operator_only": True},
    )
    on_malware: Literal["review", "block"] = Field("block", description="The verdict for malware.")

    @model_validator(mode="after")
    def _thresholds(self) -> ScreenParams:
        if self.block_at is not None and self.block_at < self.review_at:
            raise ValueError(f"block_at ({self.block_at}) is under review_at ({self.review_at})")
        return self


def _hash_lists(params: ScreenParams) -> list[str]:
    return list(params.hash_lists)


class _Report:
    def __init__(self) -> None:
        self.verdict: Verdict = "pass"
        self.reasons: list[str] = []
        self.notes: list[str] = []
        self.scores: dict[str, Any] = {}

    def flag(self, verdict: Verdict, reason: str) -> None:
        if _RANK[verdict] > _RANK[self.verdict]:
            self.verdict = verdict
        self.reasons.append(reason)


@media_function(
    name="screen",
    accepts=("image/*", "video/*"),
    params=ScreenParams,
    data=_hash_lists,
    produces=("application/json",),
    # A score is null where its check did not run (no classifier, no match, no clamd).
    reports={
        "verdict": "pass",
        "reasons": ["a reason"],
        "notes": ["a note"],
        "nsfw": 0.5,
        "hash_match": "list name",
        "hash_distance": 1,
        "pdq": "0f" * 32,
        "pdq_quality": 100,
        "frames_checked": 1,
        "lists_checked": 1,
        "malware": "signature name",
        "reviewed": "approved by a reviewer",  # set by a review decision, not by the function
    },
)
def run(src: Path, out_dir: Path, params: ScreenParams) -> list[Output]:
    """Check an image or video against known-image lists, a nudity classifier and clamd; report
    pass, review or block."""
    report = _Report()
    if params.clamd:
        _scan_malware(src, params, report)
    lists = _read_lists(params, report)
    classify = params.nsfw and _classifier_ready(report)
    with _frames(src, params.frames) as frames:
        matches: list[tuple[perceptual.Match, str]] = []
        best_score: tuple[float, str] | None = None
        first_hash: perceptual.PerceptualHash | None = None
        for label, small in frames:
            hashed = perceptual.pdq(small)
            first_hash = first_hash or hashed
            match = perceptual.best_match(hashed, lists, params.max_distance)
            if match is not None:
                matches.append((match, label))
            if classify:
                score = nsfw.score(small)
                if best_score is None or score > best_score[0]:
                    best_score = (score, label)
        report.scores["frames_checked"] = len(frames)
    _judge_hashes(matches, lists, params, report)
    report.scores["pdq"] = first_hash.hex if first_hash else None
    report.scores["pdq_quality"] = first_hash.quality if first_hash else None
    _judge_nudity(best_score, params, report)
    body = {"verdict": report.verdict, "reasons": report.reasons, "notes": report.notes, **report.scores}
    path = out_dir / "screen.json"
    path.write_text(json.dumps(body, indent=2))
    return [Output(name="screen.json", path=path, content_type="application/json", meta=body)]


def _judge_hashes(
    matches: list[tuple[perceptual.Match, str]],
    lists: list[tuple[str, list[perceptual.Entry]]],
    params: ScreenParams,
    report: _Report,
) -> None:
    report.scores["lists_checked"] = len(lists)
    best = min(matches, key=lambda m: m[0].distance, default=None)
    report.scores["hash_match"] = best[0].label if best else None
    report.scores["hash_distance"] = best[0].distance if best else None
    if best is not None:
        match, where = best
        report.flag(
            params.on_match,
            f"{where} matches {match.label!r} in {match.list_name} ({match.distance} of 256 bits differ; "
            f"at most {params.max_distance} match)",
        )


def _read_lists(params: ScreenParams, report: _Report) -> list[tuple[str, list[perceptual.Entry]]]:
    """The hash lists that exist; a missing one is a reason for review unless the file says pass
    (a typo in a list's name, or a list deleted from the bucket, must not switch matching off)."""
    lists = []
    for ref in params.hash_lists:
        path = assets.find(ref)
        if path is not None:
            lists.append((ref, perceptual.parse_list(path.read_text("utf-8", "replace"), ref)))
        elif params.missing_list == "review":
            report.flag("review", f"hash list {ref} does not exist: nothing could be matched against it")
        else:
            report.notes.append(f"hash list {ref} does not exist (missing_list: pass): treated as empty")
    return lists


def _classifier_ready(report: _Report) -> bool:
    missing = nsfw.available()
    if missing is not None:
        report.notes.append(missing)
        report.scores["nsfw"] = None
    return missing is None


def _judge_nudity(best: tuple[float, str] | None, params: ScreenParams, report: _Report) -> None:
    if best is None:
        report.scores.setdefault("nsfw", None)
        return
    score, where = best
    report.scores["nsfw"] = round(score, 4)
    if params.block_at is not None and score >= params.block_at:
        report.flag("block", f"{where}: nudity score {score:.2f} is at or over block_at {params.block_at:g}")
    elif score >= params.review_at:
        report.flag(
            "review", f"{where}: nudity score {score:.2f} is at or over review_at {params.review_at:g}"
        )


def _scan_malware(src: Path, params: ScreenParams, report: _Report) -> None:
    assert params.clamd is not None
    try:
        result = malware.scan(src, params.clamd)
    except malware.ScanError as exc:
        # An unscanned file is not a clean one: a person looks at it.
        report.scores["malware"] = None
        report.flag("review", f"not scanned for malware: {exc}")
        return
    report.scores["malware"] = result.found
    if result.found:
        report.flag(params.on_malware, f"malware: clamd found {result.found}")


def _image_frames(img: Image.Image, count: int) -> list[tuple[str, Image.Image]]:
    """A still image, or `count` frames spread over an animated one (GIF, WebP, APNG) or the pages
    of a multi-page TIFF, the first always among them: `thumbnail animated: true` publishes every
    frame, so a listed image hidden in a later one must be seen. Screening has already checked
    every frame's size, so seeking decodes nothing unbounded."""
    total = int(getattr(img, "n_frames", 1))
    if total <= 1:
        return [("the image", perceptual.reduced(img))]
    frames = []
    sampled = min(count, total)
    for index in sorted({total * i // sampled for i in range(sampled)}):
        img.seek(index)
        frames.append((f"frame {index + 1} of {total}", perceptual.reduced(img)))
    return frames


@contextmanager
def _frames(src: Path, count: int) -> Iterator[list[tuple[str, Image.Image]]]:
    """The reduced images to check, each with a label for the reasons: the image itself, or
    `count` frames spread over a video's length."""
    media_type = sniff(src)
    if not media_type.startswith("video/"):
        with Image.open(src) as img:
            yield _image_frames(img, count)
        return
    src = src.resolve()
    probed = _ffmpeg.probe(src, media_type)
    if probed.video is None:
        raise MediaError("no video stream to screen")
    with tempfile.TemporaryDirectory(dir=src.parent, prefix="frames-") as tmp:
        frames: list[tuple[str, Image.Image]] = []
        for i in range(count):
            at = probed.duration * (i + 0.5) / count if probed.duration else 0.0
            path = Path(tmp) / f"frame-{i}.png"
            edge = perceptual.HASH_INPUT_EDGE
            inp = _ffmpeg.safe_input(src, media_type, ss=f"{at:.3f}")
            video = inp.video.filter("scale", edge, edge, force_original_aspect_ratio="decrease")
            _ffmpeg.run(ffmpeg.output(video, str(path), vframes=1), src.parent, limits=_FRAME_LIMITS)
            if path.exists():
                with Image.open(path) as img:
                    frames.append((f"frame at {at:.1f}s", img.convert("RGB")))
        if not frames:
            raise MediaError("no frame of the video could be read for screening")
        yield frames
