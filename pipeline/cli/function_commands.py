"""`pipeline functions | run`: the registered functions, and one function run on a local file."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from pipeline.cli.runtime import load_or_fail
from pipeline.settings import get_settings


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def functions(as_json: bool) -> None:
    """List the registered functions."""
    pipeline = load_or_fail(get_settings())
    config = pipeline.config
    rows: list[dict[str, Any]] = [
        {
            "name": name,
            "accepts": list(spec.accepts),
            "queue": config.queue_for(name),
            "concurrency": config.function_settings(name).concurrency,
            "time_limit": config.time_limit_for(name),
            "module": spec.module,
            "summary": spec.summary,
        }
        for name, spec in sorted(pipeline.functions.items())
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(
            f"{row['name']:<12} {','.join(row['accepts']):<12} queue={row['queue']:<16} "
            f"concurrency={row['concurrency']} time_limit={row['time_limit']:g}s  {row['summary']}"
        )


def _params(params_json: str | None, items: tuple[str, ...]) -> dict[str, Any]:
    raw: dict[str, Any] = json.loads(params_json) if params_json else {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            raw[name] = json.loads(value)
        except json.JSONDecodeError:
            raw[name] = value
    return raw


@click.command("run")
@click.argument("function")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--params", "params_json", default=None, help="Parameters as a JSON object.")
@click.option(
    "--param", "param_items", multiple=True, metavar="K=V", help="One parameter (V parsed as JSON)."
)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
def run_function(
    function: str, file: Path, params_json: str | None, param_items: tuple[str, ...], out_dir: Path
) -> None:
    """Run one function on a local file, without the queue (same code as the worker)."""
    from pydantic import ValidationError  # noqa: PLC0415 - keeps `pipeline --help` fast

    from functions import FunctionError  # noqa: PLC0415
    from functions.admission import admit  # noqa: PLC0415
    from functions.assets import provided  # noqa: PLC0415

    pipeline = load_or_fail(get_settings())
    if function not in pipeline.functions:
        raise click.ClickException(f"unknown function {function!r}; known: {', '.join(pipeline.functions)}")
    spec = pipeline.function(function)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        # Screening first, exactly as in the worker.
        media = admit(file, pipeline.config.screening)
        if not spec.accepts_type(media.media_type):
            raise click.ClickException(
                f"{file} is {media.media_type}; {function} accepts {', '.join(spec.accepts)}"
            )
        params = spec.parse_params(_params(params_json, param_items))
        # On a workstation its user names files of that machine as assets; s3:// needs the store.
        refs = spec.asset_refs(params)
        if any(ref.startswith("s3://") for ref in refs):
            raise click.ClickException("s3:// assets need the store: use `pipeline upload` or a local file")
        missing = [ref for ref in refs if not Path(ref).is_file()]
        if missing:
            raise click.ClickException(f"asset file(s) not found: {', '.join(missing)}")
        started = time.perf_counter()
        with provided({ref: Path(ref) for ref in refs}):
            outputs = spec(file, out_dir, params)
    except (ValidationError, FunctionError) as exc:
        raise click.ClickException(f"{function} refused or failed on {file}: {exc}") from exc
    took = (time.perf_counter() - started) * 1000
    for out in outputs:
        click.echo(f"{out.path} ({out.content_type}, {out.path.stat().st_size} bytes) {out.meta or ''}")
    click.echo(f"{function}: {len(outputs)} outputs in {took:.0f} ms")


COMMANDS = [functions, run_function]
