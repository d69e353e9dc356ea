"""Known-image matching with PDQ: edited copies of a listed image match, unrelated images do not,
flat images match nothing, and hash lists are parsed strictly."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
from PIL import Image

from functions import perceptual
from functions.errors import ParamsError
from pipeline.measure.hash_bench import edits, scene
from tests.helpers import need


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
    with pytest.raises(ParamsError, match=r"known-bad\.txt line 2: not a hash list entry") as bad:
        perceptual.parse_list("# ok\nSECRET-token label\n", "known-bad.txt")
    assert "SECRET" not in str(bad.value)  # an error never quotes what the file holds
    with pytest.raises(ParamsError, match=r"line 1: not a hash list entry \(not hexadecimal\)"):
        perceptual.parse_list("z" * 64, "known-bad.txt")


def _screen(tmp_path: Path, image: Image.Image, **params: object) -> dict[str, object]:
    from functions import screen

    src = tmp_path / "src.png"
    image.save(src)
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    [report] = screen.run(src, out, screen.ScreenParams.model_validate(params))
    return report.meta


def test_the_classifier_scores_an_image_once_loaded_and_its_thresholds_decide(
    tmp_path: Path, listed: list[Image.Image]
) -> None:
    from functions import nsfw

    need(nsfw.available() is None, nsfw.NOT_INSTALLED)  # the [moderation] extra is in the test install
    meta = _screen(tmp_path, listed[0])
    assert meta["verdict"] == "pass" and meta["notes"] == []
    score = meta["nsfw"]
    assert isinstance(score, float) and 0.0 <= score < 0.6
    at = math.floor(score * 10_000) / 10_000  # the report rounds to 4 places
    held = _screen(tmp_path, listed[0], review_at=at)  # at the threshold: review
    assert held["verdict"] == "review" and "nudity score" in str(held["reasons"])
    blocked = _screen(tmp_path, listed[0], review_at=0.0, block_at=at)
    assert blocked["verdict"] == "block"
    with pytest.raises(ValueError, match="block_at"):
        _screen(tmp_path, listed[0], review_at=0.5, block_at=0.4)


def test_without_the_classifier_the_report_says_so_and_the_hash_check_still_decides(
    tmp_path: Path, listed: list[Image.Image], monkeypatch: pytest.MonkeyPatch
) -> None:
    from functions import nsfw

    monkeypatch.setattr(nsfw, "model_path", lambda: None)  # as if `nudenet` were not installed
    meta = _screen(tmp_path, listed[0])
    assert meta["nsfw"] is None and meta["notes"] == [nsfw.NOT_INSTALLED]
    assert meta["verdict"] == "pass" and meta["pdq"]


def test_a_clamd_that_cannot_be_reached_sends_the_upload_to_review(
    tmp_path: Path, listed: list[Image.Image]
) -> None:
    meta = _screen(tmp_path, listed[0], clamd=f"unix://{tmp_path}/no-clamd.sock", nsfw=False)
    assert meta["verdict"] == "review" and meta["malware"] is None
    reasons = meta["reasons"]
    assert isinstance(reasons, list) and len(reasons) == 1
    assert str(reasons[0]).startswith(
        f"not scanned for malware: clamd at unix://{tmp_path}/no-clamd.sock is unreachable"
    )


def test_a_transparent_image_is_judged_as_shown_on_white() -> None:
    ring = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    ring.paste((30, 90, 220, 255), (16, 16, 48, 48))
    shown = perceptual.reduced(ring)
    assert shown.mode == "RGB" and shown.getpixel((0, 0)) == (255, 255, 255)
    assert shown.getpixel((32, 32)) == (30, 90, 220)


def test_a_missing_hash_list_holds_the_upload_for_review_unless_the_file_says_pass(
    tmp_path: Path, listed: list[Image.Image]
) -> None:
    # The worker provides no file for a list the store does not have (a typo, or a deleted list).
    ref = "s3://media/.pipeline/hashes/banned-avatar.txt"
    held = _screen(tmp_path, listed[0], hash_lists=[ref], nsfw=False)
    assert held["verdict"] == "review" and held["lists_checked"] == 0
    assert held["reasons"] == [f"hash list {ref} does not exist: nothing could be matched against it"]
    passed = _screen(tmp_path, listed[0], hash_lists=[ref], missing_list="pass", nsfw=False)
    assert passed["verdict"] == "pass" and passed["reasons"] == []
    assert passed["notes"] == [f"hash list {ref} does not exist (missing_list: pass): treated as empty"]


def _clamd_answering(tmp_path: Path, answer: bytes, then_wait: float) -> str:
    """A peer at a unix socket that reads the stream, answers `answer` and holds the line."""
    import socket
    import threading

    path = tmp_path / "peer.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            while not conn.recv(65536).endswith(b"\0\0\0\0"):
                pass
            conn.sendall(answer)
            time.sleep(then_wait)
        server.close()

    threading.Thread(target=serve, daemon=True).start()
    return f"unix://{path}"


def test_a_clamd_answer_is_bounded_in_size_and_time(tmp_path: Path) -> None:
    from functions import malware

    sample = tmp_path / "f.bin"
    sample.write_bytes(b"x" * 1000)
    endless = _clamd_answering(tmp_path, b"A" * 100_000, then_wait=5)
    with pytest.raises(malware.ScanError, match="over 1024 bytes"):
        malware.scan(sample, endless, timeout=10)
    (tmp_path / "peer.sock").unlink()
    silent = _clamd_answering(tmp_path, b"stream: ", then_wait=5)
    started = time.monotonic()
    with pytest.raises(malware.ScanError, match="did not answer in time"):
        malware.scan(sample, silent, timeout=0.5)
    assert time.monotonic() - started < 3


def test_the_hash_bench_without_the_bench_extra_names_what_it_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    from pipeline.measure import hash_bench

    monkeypatch.setitem(sys.modules, "imagehash", None)  # as if the [bench] extra were not installed
    results = hash_bench.bench_hashes(listed_n=2, unrelated_n=3)
    assert [r.name for r in results] == ["PDQ (pdqhash)"]
    table = hash_bench.render(results, "pipeline bench functions")
    assert table.count("skipped: pip install 'media-pipeline[bench]'") == 2


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_a_listed_image_in_a_later_frame_of_an_animated_image_is_found(
    tmp_path: Path, listed: list[Image.Image], fmt: str
) -> None:
    """GIF, animated WebP, APNG and multi-page TIFF: the listed image is frame 4 of 6; the first
    frame is unrelated. Sampled frames include it, and the worst frame decides."""
    from functions import assets, screen

    frames = [scene(7000 + i) for i in range(6)]
    frames[3] = listed[0]
    src = tmp_path / f"animated.{fmt.lower()}"
    # TIFF through libtiff, named: Pillow's choice of TIFF encoder otherwise depends on what
    # other tests in the same process saved before.
    options = {"compression": "tiff_adobe_deflate"} if fmt == "TIFF" else {"duration": 100}
    frames[0].save(src, fmt, save_all=True, append_images=frames[1:], **options)
    with Image.open(src) as saved:
        assert getattr(saved, "n_frames", 1) == 6
    hashed = perceptual.pdq(perceptual.reduced(listed[0]))
    lists = tmp_path / "list.txt"
    lists.write_text(perceptual.format_entry(hashed, "case 9") + "\n")
    ref = "s3://media/.pipeline/hashes/known-bad.txt"
    out = tmp_path / "out"
    out.mkdir()
    # More frames asked for than there are (10 of 6): each frame once, the listed one among them.
    params = screen.ScreenParams.model_validate({"hash_lists": [ref], "nsfw": False, "frames": 10})
    with assets.provided({ref: lists}):
        [report] = screen.run(src, out, params)
    assert report.meta["verdict"] == "block" and report.meta["frames_checked"] == 6, report.meta
    assert str(report.meta["reasons"][0]).startswith("frame 4 of 6 matches 'case 9'"), report.meta
    still = tmp_path / "still.png"
    frames[0].save(still)
    with assets.provided({ref: lists}):
        [report] = screen.run(still, out, params)
    assert report.meta["verdict"] == "pass" and report.meta["frames_checked"] == 1
