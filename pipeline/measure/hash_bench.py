"""Known-image matching: which perceptual hash finds edited copies of a listed image and nothing
else. Part of `pipeline bench functions`: PDQ (what the pipeline uses) beside pHash and dHash
(`imagehash`, the bench extra), on the same generated images in the same run.

Listed images get each edit the screening promises to survive: resized to 50%, JPEG quality 60,
a 5% crop (2.5% off each edge) and a small watermark (a white label with text in a corner), and
all four at once. Unrelated images are 200 more generated ones: none of them may match.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from functions import perceptual
from pipeline.measure.docs import DocSection

SECTION = DocSection("bench:hashes", "Known-image matching: perceptual hashes")
EDITS = ("resize 50%", "JPEG q60", "crop 5%", "watermark", "all four")


def scene(seed: int, width: int = 1024, height: int = 768) -> Image.Image:
    """A generated photo-like image: a gradient, shapes of random colours, grain, a slight blur."""
    rng = random.Random(seed)  # noqa: S311 - test images, not secrets
    top = np.array([rng.randrange(256) for _ in range(3)])
    bottom = np.array([rng.randrange(256) for _ in range(3)])
    sky = np.linspace(top, bottom, height)[:, None, :].repeat(width, axis=1).astype(np.uint8)
    img = Image.fromarray(sky)
    draw = ImageDraw.Draw(img)
    for _ in range(rng.randrange(5, 25)):
        x0, y0 = rng.randrange(width), rng.randrange(height)
        box = [x0, y0, x0 + rng.randrange(20, width // 2), y0 + rng.randrange(20, height // 2)]
        colour = tuple(rng.randrange(256) for _ in range(3))
        kind = rng.choice(["ellipse", "rectangle", "line", "polygon"])
        if kind == "ellipse":
            draw.ellipse(box, fill=colour)
        elif kind == "rectangle":
            draw.rectangle(box, fill=colour)
        elif kind == "line":
            draw.line(box, fill=colour, width=rng.randrange(3, 30))
        else:
            points = [(rng.randrange(width), rng.randrange(height)) for _ in range(rng.randrange(3, 7))]
            draw.polygon(points, fill=colour)
    grain = np.random.default_rng(seed).integers(-12, 12, (height, width, 3))
    noisy = (np.asarray(img).astype(np.int16) + grain).clip(0, 255).astype(np.uint8)
    return Image.fromarray(noisy).filter(ImageFilter.GaussianBlur(1))


def _jpeg(img: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def edits(img: Image.Image) -> dict[str, Image.Image]:
    w, h = img.size
    crop_box = (w // 40, h // 40, w - w // 40, h - h // 40)
    marked = img.copy()
    draw = ImageDraw.Draw(marked)
    draw.rectangle([w - w // 5, h - h // 12, w - 10, h - 10], fill=(255, 255, 255))
    font = ImageFont.load_default(size=max(10, h // 30))
    draw.text((w - w // 5 + 8, h - h // 12 + 4), "(c) brand", fill=(0, 0, 0), font=font)
    return {
        "resize 50%": img.resize((w // 2, h // 2), Image.Resampling.LANCZOS),
        "JPEG q60": _jpeg(img, 60),
        "crop 5%": img.crop(crop_box),
        "watermark": marked,
        "all four": _jpeg(marked.crop(crop_box).resize((w // 2, h // 2), Image.Resampling.LANCZOS), 60),
    }


@dataclass
class HashResult:
    name: str
    bits: int
    threshold: int
    found: dict[str, int]  # per edit: listed images matched
    farthest: dict[str, int]  # per edit: the largest distance of a variant to its original
    false_matches: int
    nearest_unrelated: int
    listed: int
    unrelated: int


def _contenders() -> list[tuple[str, int, int | None, Callable[[Image.Image], int]]]:
    """(name, bits, threshold, hash as an int) for each hash compared. PDQ is held to the
    pipeline's default threshold; the others get the least that finds every edited copy. pHash
    and dHash only with the bench extra (`imagehash`); without it their rows say so."""
    pdq = (
        "PDQ (pdqhash)",
        perceptual.BITS,
        perceptual.DEFAULT_MAX_DISTANCE,
        lambda i: perceptual.pdq(i).bits,
    )
    try:
        import imagehash  # noqa: PLC0415 - the bench extra; only for the comparison
    except ImportError:
        return [pdq]

    def as_int(h: imagehash.ImageHash) -> int:
        return int(str(h), 16)

    return [
        pdq,
        ("pHash (imagehash)", 64, None, lambda i: as_int(imagehash.phash(i))),
        ("dHash (imagehash)", 64, None, lambda i: as_int(imagehash.dhash(i))),
    ]


def bench_hashes(listed_n: int = 20, unrelated_n: int = 200) -> list[HashResult]:
    listed = [scene(1000 + i) for i in range(listed_n)]
    unrelated = [scene(50_000 + i) for i in range(unrelated_n)]
    variants = [edits(img) for img in listed]
    results = []
    for name, bits, fixed, hashed in _contenders():
        originals = [hashed(perceptual.reduced(img)) for img in listed]
        distances: dict[str, list[int]] = {edit: [] for edit in EDITS}
        for original, edited in zip(originals, variants, strict=True):
            for edit, img in edited.items():
                distances[edit].append((original ^ hashed(perceptual.reduced(img))).bit_count())
        farthest = {edit: max(values) for edit, values in distances.items()}
        threshold = fixed if fixed is not None else max(farthest.values())
        found = {edit: sum(d <= threshold for d in values) for edit, values in distances.items()}
        nearest = [min((o ^ hashed(perceptual.reduced(u))).bit_count() for o in originals) for u in unrelated]
        results.append(
            HashResult(
                name,
                bits,
                threshold,
                found,
                farthest,
                sum(d <= threshold for d in nearest),
                min(nearest),
                listed_n,
                unrelated_n,
            )
        )
    return results


def render(results: list[HashResult], command: str) -> str:
    header = ["hash", "threshold", *[f"found: {e}" for e in EDITS], "false matches", "nearest unrelated"]
    rows = [
        [
            f"{r.name}, {r.bits} bits",
            f"<= {r.threshold}",
            *[f"{r.found[e]}/{r.listed} (farthest {r.farthest[e]})" for e in EDITS],
            f"{r.false_matches}/{r.unrelated}",
            str(r.nearest_unrelated),
        ]
        for r in results
    ]
    if len(results) == 1:  # imagehash missing: the comparison rows are named, not silently dropped
        skipped = "skipped: pip install 'media-pipeline[bench]'"
        rows += [
            [name, skipped, *["" for _ in EDITS], "", ""]
            for name in ("pHash (imagehash)", "dHash (imagehash)")
        ]
    return SECTION.render(
        f"Command: `{command}`. {results[0].listed} listed and {results[0].unrelated} unrelated "
        "generated images; distances in bits (Hamming).",
        header,
        rows,
    )
