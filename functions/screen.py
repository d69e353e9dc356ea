"""`screen`: whether an uploaded image may be published: pass, review or block, with the reasons.

Known-image matching: the image's PDQ hash is compared with the operator's hash lists (text files
in the store, made with `pipeline hashes add`); a match within `max_distance` bits gives the
verdict `on_match`. The image is decoded once, reduced, for every check.

The verdict, the reasons and the scores are written to `screen.json` and reported in its `meta`,
so a flow reads them as `steps.screen.verdict` (docs/screening.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from PIL import Image
from pydantic import Field

from functions import assets, perceptual
from functions.spec import Output, Params, media_function

Verdict = Literal["pass", "review", "block"]


class ScreenParams(Params):
    hash_lists: list[str] = Field(
        default_factory=list, description="Hash lists to match against: s3://bucket/key of each."
    )
    max_distance: int = Field(
        perceptual.DEFAULT_MAX_DISTANCE,
        ge=0,
        le=128,
        description="Hamming distance (of 256 bits) at or under which an image matches a listed one.",
    )
    on_match: Literal["review", "block"] = Field("block", description="The verdict for a match.")


def _hash_lists(params: ScreenParams) -> list[str]:
    return list(params.hash_lists)


@media_function(
    name="screen",
    accepts=("image/*",),
    params=ScreenParams,
    data=_hash_lists,
    produces=("application/json",),
)
def run(src: Path, out_dir: Path, params: ScreenParams) -> list[Output]:
    """Match the image against known-image hash lists; report pass, review or block."""
    with Image.open(src) as img:
        small = perceptual.reduced(img)
    hashed = perceptual.pdq(small)
    lists = [(ref, perceptual.parse_list(assets.path_of(ref).read_text(), ref)) for ref in params.hash_lists]
    match = perceptual.best_match(hashed, lists, params.max_distance)
    verdict: Verdict = "pass"
    reasons: list[str] = []
    if match is not None:
        verdict = params.on_match
        reasons.append(
            f"matches {match.label!r} in {match.list_name} ({match.distance} of 256 bits differ; "
            f"at most {params.max_distance} match)"
        )
    report = {
        "verdict": verdict,
        "reasons": reasons,
        "hash_match": match.label if match else None,
        "hash_distance": match.distance if match else None,
        "pdq": hashed.hex,
        "pdq_quality": hashed.quality,
        "lists_checked": len(lists),
    }
    path = out_dir / "screen.json"
    path.write_text(json.dumps(report, indent=2))
    return [Output(name="screen.json", path=path, content_type="application/json", meta=report)]
