"""Fast start: a new worker's first invocation costs what later ones do.

The parent process registers Pillow's plugins and puts ffmpeg in the page cache before it forks its
pool; each pool process then runs its built-in image functions once on a generated 1 MP JPEG, with
the parameters the pipeline's rules give them, so imports, codec set-up and large buffers are paid for
at start instead of by the first upload.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import tempfile
from pathlib import Path

from PIL import Image

from functions import nsfw
from functions.admission import admit
from functions.perceptual import pdq
from pipeline.config import FunctionCall
from pipeline.flows.spec import FlowStep
from pipeline.registry import Pipeline, merged_params

log = logging.getLogger(__name__)


def preload(functions: list[str]) -> None:
    """In the worker's parent process, before it forks: inherited by every pool process."""
    Image.init()
    sample = Image.new("RGB", (16, 16), "gray")
    for fmt in ("JPEG", "PNG", "WEBP"):
        buf = io.BytesIO()
        sample.save(buf, fmt)
        buf.seek(0)
        Image.open(buf).load()
    if "screen" in functions:
        # numpy and the PDQ binding load on first use (most processes never hash): here, once.
        with contextlib.suppress(Exception):
            pdq(sample)
    if "transcode" in functions:
        for tool in ("ffmpeg", "ffprobe"):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run([tool, "-version"], capture_output=True, timeout=10, check=False)


def warm_photo(path: Path, width: int = 1224, height: int = 816) -> Path:
    """A 1 MP JPEG with detail in every block, so the decoder and resampler do full work: gradients
    under a layer of soft noise, as a photo has (made in about 20 ms)."""
    noise = Image.effect_noise((width // 8, height // 8), 40).resize(
        (width, height), Image.Resampling.BILINEAR
    )
    ramp = Image.linear_gradient("L").resize((width, height))
    Image.merge("RGB", (ramp, noise, ramp.transpose(Image.Transpose.ROTATE_180))).save(
        path, "JPEG", quality=88
    )
    return path


def warm_functions(pipeline: Pipeline, functions: list[str], work_dir: Path) -> None:
    """In each pool process as it starts. Best effort: a function that cannot run on the sample
    (it needs an asset from the bucket, say) is simply not warmed."""
    config = pipeline.config
    candidates: list[FunctionCall | FlowStep] = [s for f in config.flows.values() for s in f.steps.values()]
    candidates += [call for rule in config.rules for call in rule.functions]
    calls = {
        call.function: call
        for call in candidates
        # Built-in functions only: they write nothing but their outputs. A user function may have
        # side effects (or sleep, or crash) and runs only for real work.
        if call.function in functions and not config.function_settings(call.function).module
    }
    work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work_dir, prefix=f"warm-{os.getpid()}-") as tmp:
        src = warm_photo(Path(tmp) / "photo.jpg")
        with contextlib.suppress(Exception):
            admit(src, pipeline.config.screening)  # every invocation is screened first
        if "screen" in functions:
            # The nudity model (after the fork: onnxruntime's threads do not survive one).
            with contextlib.suppress(Exception):
                nsfw.preload()
        for name, call in calls.items():
            spec = pipeline.function(name)
            if not spec.accepts_type("image/jpeg"):
                continue  # video functions: ffmpeg is a separate process, warmed by preload()
            out = Path(tmp) / name
            out.mkdir()
            try:
                params = spec.parse_params(merged_params(pipeline.config, spec, call))
                if not spec.asset_refs(params) and not spec.data_refs(params):  # from the bucket: not now
                    spec(src, out, params)
            except Exception as exc:  # warming must never stop a worker from starting
                log.debug("could not warm %s: %s", name, exc)
