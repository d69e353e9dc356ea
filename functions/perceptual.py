"""Perceptual hashes for matching images against a list of known ones (e.g. known-bad images).

PDQ (Meta's 256-bit perceptual hash, via `pdqhash`) is used: in `pipeline bench functions` it
found every resized, recompressed, cropped and watermarked variant of a listed image with a wide
gap to unrelated images, where the 64-bit pHash and dHash did not (docs/screening.md).

A hash list is a text file, one entry per line: 64 hex digits, then an optional label; `#` starts
a comment. Two images match when the Hamming distance of their hashes is at most a threshold.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from functions.errors import ParamsError

BITS = 256
HEX_DIGITS = BITS // 4
# PDQ hashes every image at 64x64 luminance: decoding more than this many pixels on a side only
# costs time (a 12 MP JPEG is decoded at an eighth of its size by the JPEG decoder itself).
HASH_INPUT_EDGE = 512
# Distances up to this match. Edited copies of a listed image came within 68 bits and unrelated
# images no nearer than 96 in `pipeline bench functions`; Meta suggests 31 for near-exact copies.
DEFAULT_MAX_DISTANCE = 80
# PDQ's own quality score (0-100): below it, an image has too little detail (flat colour) for its
# hash to mean much, and it matches nothing.
MIN_QUALITY = 50


@dataclass(frozen=True)
class PerceptualHash:
    bits: int
    quality: int

    @property
    def hex(self) -> str:
        return f"{self.bits:0{HEX_DIGITS}x}"

    def distance(self, other: int) -> int:
        return (self.bits ^ other).bit_count()


@dataclass(frozen=True)
class Entry:
    bits: int
    label: str


@dataclass(frozen=True)
class Match:
    label: str
    distance: int
    list_name: str


def reduced(img: Image.Image, edge: int = HASH_INPUT_EDGE) -> Image.Image:
    """An upright RGB copy no larger than `edge` on its longer side: what hashing and a
    classifier need, decoded once (for a JPEG, at a reduced scale by the decoder)."""
    if img.format == "JPEG":
        img.draft("RGB", (edge, edge))
    upright = ImageOps.exif_transpose(img)
    if upright.mode in ("RGBA", "LA", "PA") or (upright.mode == "P" and "transparency" in upright.info):
        # Transparent areas as a page shows them (on white), not as whatever colour they hide.
        backdrop = Image.new("RGBA", upright.size, "white")
        backdrop.alpha_composite(upright.convert("RGBA"))
        upright = backdrop
    upright = upright.convert("RGB")
    upright.thumbnail((edge, edge), Image.Resampling.BILINEAR)
    return upright


def pdq(img: Image.Image) -> PerceptualHash:
    """The PDQ hash of an (already reduced) RGB image."""
    # Imported here: every process that loads the pipeline file loads this module, few hash.
    import numpy as np  # noqa: PLC0415
    import pdqhash  # noqa: PLC0415 - a C++ binding without type information

    vector, quality = pdqhash.compute(np.asarray(img.convert("RGB")))
    bits = int("".join("1" if b else "0" for b in vector.astype(bool)), 2)
    return PerceptualHash(bits, int(quality))


def hash_file(path: Path) -> PerceptualHash:
    with Image.open(path) as img:
        return pdq(reduced(img))


def parse_list(text: str, source: str) -> list[Entry]:
    """The entries of a hash list; a malformed line is an error naming the list and the line."""
    entries = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        digits, _, label = line.partition(" ")
        # The line itself is never quoted: a caller who names any object as a list would read
        # its content back in the error.
        if len(digits) != HEX_DIGITS:
            raise ParamsError(
                f"{source} line {number}: not a hash list entry (expected {HEX_DIGITS} hex digits, a "
                f"space and a label; got {len(digits)} characters)"
            )
        try:
            bits = int(digits, 16)
        except ValueError:
            raise ParamsError(f"{source} line {number}: not a hash list entry (not hexadecimal)") from None
        entries.append(Entry(bits, label.strip() or digits[:12]))
    return entries


def format_entry(hashed: PerceptualHash, label: str) -> str:
    return f"{hashed.hex} {label}".rstrip()


def best_match(
    hashed: PerceptualHash, lists: Iterable[tuple[str, list[Entry]]], max_distance: int
) -> Match | None:
    """The closest listed hash within `max_distance`, or None (also for a low-quality hash)."""
    if hashed.quality < MIN_QUALITY:
        return None
    best: Match | None = None
    for name, entries in lists:
        for entry in entries:
            distance = hashed.distance(entry.bits)
            if distance <= max_distance and (best is None or distance < best.distance):
                best = Match(entry.label, distance, name)
    return best
