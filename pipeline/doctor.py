"""`pipeline doctor`: check the environment and say clearly what is missing."""

from __future__ import annotations

import importlib
import shutil
import subprocess
from collections.abc import Callable

import redis

from functions.assets import split_ref
from pipeline.embedded import EmbeddedRedis, redis_server_binary
from pipeline.errors import PipelineError
from pipeline.ledger import endpoints
from pipeline.registry import Pipeline, load_pipeline
from pipeline.settings import Settings, redacted
from pipeline.storage import open_store
from pipeline.storage.base import ObjectStore

Check = tuple[str, str, str]  # (level: ok|warn|FAIL, what, detail)


def _packages() -> list[Check]:
    out: list[Check] = []
    for module in ("celery", "redis", "minio", "PIL", "ffmpeg", "fastapi", "uvicorn", "pydantic_settings"):
        try:
            mod = importlib.import_module(module)
            out.append(("ok", f"python package {module}", str(getattr(mod, "__version__", "installed"))))
        except ImportError as exc:
            out.append(("FAIL", f"python package {module}", f"not importable: {exc}"))
    return out


def _binaries() -> list[Check]:
    out: list[Check] = []
    for tool in ("ffmpeg", "ffprobe"):
        path = shutil.which(tool)
        if not path:
            out.append(("warn", tool, "not found; video functions need it (apt-get install -y ffmpeg)"))
            continue
        result = subprocess.run([path, "-version"], capture_output=True, text=True, timeout=10, check=False)
        out.append(("ok", tool, result.stdout.splitlines()[0] if result.stdout else path))
    return out


def _redis(settings: Settings) -> Check:
    if settings.redis_url:
        try:
            endpoints.connect(settings.redis_url).ping()  # a Sentinel URL too
        except redis.RedisError as exc:
            return ("FAIL", "redis", f"{redacted(settings.redis_url)}: {exc}")
        return ("ok", "redis", redacted(settings.redis_url))
    running = EmbeddedRedis(settings.data_dir).running_url()
    try:
        binary = redis_server_binary()
    except PipelineError as exc:
        return ("FAIL", "redis", str(exc))
    state = f"running at {running}" if running else "started on demand"
    return ("ok", "redis", f"embedded ({binary}), {state}")


def missing_data_files(pipeline: Pipeline, store: ObjectStore) -> list[str]:
    """A warning for each data file (hash list) the pipeline file names that the store does not
    have: a typo in its name would otherwise go unnoticed until uploads are held for review."""
    warnings = []
    for ref, where in sorted(pipeline.data_files.items()):
        bucket, key = split_ref(ref)
        try:
            store.stat(bucket, key)
        except PipelineError:  # missing, or a bucket it cannot read: either way not there
            warnings.append(f"{where}: {ref} does not exist (`pipeline hashes add` makes a list)")
    return warnings


def _guarded(name: str, check: Callable[[], str]) -> Check:
    try:
        return ("ok", name, check())
    except PipelineError as exc:
        return ("FAIL", name, str(exc))


def run_checks(settings: Settings) -> list[Check]:
    checks = [*_packages(), *_binaries(), _redis(settings)]
    # What the two checks below opened, for the data-file check after them.
    pipeline: Pipeline | None = None
    store: ObjectStore | None = None

    def pipeline_file() -> str:
        nonlocal pipeline
        pipeline = load_pipeline(settings)
        names = ", ".join(pipeline.functions)
        return f"{pipeline.source}: {len(pipeline.config.rules)} rules, functions {names}"

    def object_store() -> str:
        nonlocal store
        opened = open_store(settings)
        opened.check()
        store = opened
        return opened.describe()

    checks.append(_guarded("pipeline file", pipeline_file))
    checks.append(_guarded("object store", object_store))
    if pipeline is not None and store is not None:  # otherwise they failed above, with the reason
        checks += [("warn", "data file", warning) for warning in missing_data_files(pipeline, store)]
    if settings.events_token is None:
        checks.append(("warn", "PIPELINE_EVENTS_TOKEN", "unset: development mode, gateway stays on loopback"))
    if settings.api_token is None:
        checks.append(("warn", "PIPELINE_API_TOKEN", "unset: /api is open, gateway stays on loopback"))
    return checks
