"""Regenerate the sample media in samples/media/: `python samples/make_samples.py`."""

from pathlib import Path

from pipeline.measure.samples import generate

if __name__ == "__main__":
    for path in generate(Path(__file__).resolve().parent / "media"):
        print(path)
