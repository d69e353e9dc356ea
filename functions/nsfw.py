"""The nudity score of `screen`: NudeNet's 320-pixel detector, an ONNX model shipped inside the
`nudenet` wheel (nothing is downloaded at run time), run with onnxruntime.

Optional: `pip install 'media-pipeline[moderation]'`. Without it, `available()` says so and the
screen function reports the score as missing with that reason; the hash check works either way.

The score (0..1) is the detector's highest confidence that an exposed breast, buttocks, genitalia
or anus is in the image. It is a detector's confidence, not a probability of "unsafe"; docs/screening.md
says what it misses. NudeNet's wheel says MIT in its metadata but carries an AGPL-3.0 LICENSE file:
the extra is not installed by default, and the docs tell operators to check before they ship it.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from functools import cache
from pathlib import Path
from typing import Any

from PIL import Image

log = logging.getLogger(__name__)

INPUT_EDGE = 320
MODEL_FILE = "320n.onnx"
# The model's 18 classes, in its output order (4 box values come first in each detection row).
LABELS = (
    "FEMALE_GENITALIA_COVERED",
    "FACE_FEMALE",
    "BUTTOCKS_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_BREAST_EXPOSED",
    "ANUS_EXPOSED",
    "FEET_EXPOSED",
    "BELLY_COVERED",
    "FEET_COVERED",
    "ARMPITS_COVERED",
    "ARMPITS_EXPOSED",
    "FACE_MALE",
    "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "ANUS_COVERED",
    "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
)
EXPOSED = (
    "BUTTOCKS_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "ANUS_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
)
NOT_INSTALLED = "the nudity classifier is not installed (pip install 'media-pipeline[moderation]')"


def model_path() -> Path | None:
    """The model file inside the installed `nudenet` package, found without importing it (its
    own module imports OpenCV, which the pipeline does not need)."""
    spec = importlib.util.find_spec("nudenet")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE
    return path if path.is_file() else None


def available() -> str | None:
    """None when the classifier can run, else why not."""
    if model_path() is None or importlib.util.find_spec("onnxruntime") is None:
        return NOT_INSTALLED
    return None


@cache
def _session() -> Any:
    """One inference session per worker process, loaded on first use (or by the warm-up)."""
    import onnxruntime  # noqa: PLC0415 - an optional extra

    path = model_path()
    if path is None:
        raise RuntimeError(NOT_INSTALLED)
    options = onnxruntime.SessionOptions()
    # Two threads halve the time of one image; more only contend with the other worker processes.
    options.intra_op_num_threads = min(2, os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    log.info("nudity classifier loaded from %s", path)
    return session


def preload() -> bool:
    """Load the model now (a worker's warm-up); False when the extra is not installed."""
    if available() is not None:
        return False
    _session()
    return True


def score(img: Image.Image) -> float:
    """The nudity score of an RGB image (already reduced: the model sees 320 x 320)."""
    import numpy as np  # noqa: PLC0415

    session = _session()
    rgb = img.convert("RGB")
    side = max(rgb.size)
    # As the model was trained: padded right and bottom to a square, then scaled to its input.
    square = Image.new("RGB", (side, side))
    square.paste(rgb, (0, 0))
    pixels = np.asarray(square.resize((INPUT_EDGE, INPUT_EDGE), Image.Resampling.BILINEAR), dtype=np.float32)
    blob = (pixels / 255.0).transpose(2, 0, 1)[np.newaxis]
    [detections] = session.run(None, {session.get_inputs()[0].name: blob})
    classes = detections[0, 4:, :]  # (18 classes, candidate boxes)
    exposed = [LABELS.index(name) for name in EXPOSED]
    return float(np.clip(classes[exposed].max(), 0.0, 1.0))
