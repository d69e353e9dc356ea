"""Known-image matching with PDQ: edited copies of a listed image match, unrelated images do not,
flat images match nothing, and hash lists are parsed strictly."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from functions import perceptual
from functions.errors import ParamsError
from pipeline.measure.hash_bench import edits, scene


@pytest.fixture(scope="module")
def listed() -> list[Image.Image]:
    return [scene(1000 + i) for i in range(4)]


def test_every_edit_of_a_listed_image_matches_it_and_unrelated_images_do_not(
    listed: list[Image.Image],
) -> None:
    entries = [
        perceptual.Entry(perceptual.pdq(perceptual.reduced(img)).bits, f"bad-{i}")
        for i, img in enumerate(listed)
    ]
    lists = [("known-bad", entries)]
    for i, img in enumerate(listed):
        for edit, variant in edits(img).items():
            found = perceptual.best_match(
                perceptual.pdq(perceptual.reduced(variant)), lists, perceptual.DEFAULT_MAX_DISTANCE
            )
            assert found is not None and found.label == f"bad-{i}", f"{edit} of image {i} was not found"
            assert found.list_name == "known-bad"
    for seed in range(20):
        other = perceptual.pdq(perceptual.reduced(scene(90_000 + seed)))
        assert perceptual.best_match(other, lists, perceptual.DEFAULT_MAX_DISTANCE) is None


def test_a_flat_image_has_too_little_detail_to_match_anything() -> None:
    flat = perceptual.pdq(Image.new("RGB", (400, 300), (120, 130, 140)))
    assert flat.quality < perceptual.MIN_QUALITY
    assert perceptual.best_match(flat, [("all", [perceptual.Entry(flat.bits, "x")])], 256) is None


def test_a_large_jpeg_is_hashed_from_a_reduced_decode(tmp_path: Path, listed: list[Image.Image]) -> None:
    big = tmp_path / "big.jpg"
    listed[0].resize((4000, 3000)).save(big, "JPEG", quality=90)
    with Image.open(big) as img:
        small = perceptual.reduced(img)
        assert max(small.size) <= perceptual.HASH_INPUT_EDGE
    assert perceptual.hash_file(big).distance(perceptual.pdq(perceptual.reduced(listed[0])).bits) <= 16


def test_hash_lists_round_trip_and_bad_lines_name_the_list_and_line(listed: list[Image.Image]) -> None:
    hashed = perceptual.pdq(perceptual.reduced(listed[0]))
    text = f"# known-bad images\n{perceptual.format_entry(hashed, 'case 17')}\n\n"
    [entry] = perceptual.parse_list(text, "known-bad.txt")
    assert entry == perceptual.Entry(hashed.bits, "case 17")
    with pytest.raises(ParamsError, match=r"known-bad\.txt line 2: expected 64 hex digits"):
        perceptual.parse_list("# ok\nabc label\n", "known-bad.txt")
    with pytest.raises(ParamsError, match=r"line 1: .* is not hexadecimal"):
        perceptual.parse_list("z" * 64, "known-bad.txt")
