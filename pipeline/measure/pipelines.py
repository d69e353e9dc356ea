"""The pipeline files the soak and the failover scenario run, side by side: the built-in one (what
users run: each image starts the `images` flow, screen then thumbnail and filter) and a one-rule
file (one thumbnail invocation per image, the machinery alone). What each makes of an upload, and
how to tell an upload fully processed from one lost or processed twice."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

from PIL import Image

from pipeline.invocation import Status
from pipeline.ledger import Ledger

PipelineName = Literal["built-in", "one-rule"]
PIPELINES: tuple[PipelineName, ...] = ("built-in", "one-rule")

ONE_RULE = """
version: 1
buckets: [media]
functions:
  thumbnail: {concurrency: 2, time_limit: 60, max_attempts: 5}
limits: {LIMITS}
rules:
  - name: thumbs
    bucket: media
    prefix: uploads/
    functions:
      - function: thumbnail
        params: {sizes: [64, 128]}
"""


@dataclass(frozen=True)
class PipelineUnderTest:
    name: PipelineName
    text: str
    functions: tuple[str, ...]  # what a worker must serve for an image upload
    made: tuple[str, ...]  # the outputs of one image upload, under derived/<key>/

    def outputs_of(self, key: str) -> set[str]:
        return {f"derived/{key}/{name}" for name in self.made}


def pipeline_under_test(name: PipelineName, limits: Mapping[str, float] | None = None) -> PipelineUnderTest:
    """The file `name`, with `limits` added (faults are injected in runs of seconds to minutes: the
    broker's redelivery and the leases are shortened to match)."""
    extra = dict(limits or {})
    if name == "one-rule":
        inline = "{" + ", ".join(f"{k}: {v:g}" for k, v in extra.items()) + "}"
        return PipelineUnderTest(name, ONE_RULE.replace("{LIMITS}", inline), ("thumbnail",), _THUMBS)
    text = resources.files("pipeline").joinpath("default_pipeline.yaml").read_text("utf-8")
    lines = "".join(f"  {k}: {v:g}\n" for k, v in extra.items())
    assert "\nlimits:\n" in text, "the built-in file has a limits section"
    text = text.replace("\nlimits:\n", f"\nlimits:\n{lines}", 1)
    return PipelineUnderTest(name, text, ("screen", "thumbnail", "filter"), _IMAGES_FLOW)


_THUMBS = ("thumbnail/64.jpg", "thumbnail/128.jpg")
_IMAGES_FLOW = ("screen/screen.json", "thumbnail/256.jpg", "thumbnail/1024.jpg", "filter/filtered.webp")


@dataclass
class Tally:
    processed: int = 0  # every function of the upload succeeded, each once
    lost: int = 0  # some function never succeeded
    twice: int = 0  # some function succeeded more than once (or more than one run ran)


def tally(ledger: Ledger, under_test: PipelineUnderTest, keys: list[str]) -> Tally:
    """What became of each upload, from the ledger: by its invocations and, for a flow, its runs."""
    found = Tally()
    for key in keys:
        invocations = ledger.invocations.for_object("media", key)
        succeeded = Counter(inv.function for inv in invocations if inv.status == Status.SUCCEEDED)
        runs = ledger.runs.for_object("media", key) if under_test.name == "built-in" else []
        if any(succeeded[f] > 1 for f in under_test.functions) or len(runs) > 1:
            found.twice += 1
        elif all(succeeded[f] == 1 for f in under_test.functions):
            found.processed += 1
        else:
            found.lost += 1
    return found


def undecodable(key: str, path: Path) -> bool:
    """An output that is cut short: an image that does not decode, a report that does not parse
    (told apart by the key: a store's file may have a name of its own)."""
    try:
        if key.endswith(".json"):
            json.loads(path.read_bytes())
        else:
            with Image.open(path) as img:
                img.load()
    except Exception:
        return True
    return False
