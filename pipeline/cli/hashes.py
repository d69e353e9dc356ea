"""`pipeline hashes add | show`: lists of known images (PDQ hashes) for the `screen` function,
kept in the store at `<bucket>/.pipeline/hashes/<list>.txt` (a key no rule is ever run on)."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import click

from functions.errors import MediaError, ParamsError
from pipeline.cli.runtime import default_bucket, open_runtime
from pipeline.errors import ObjectNotFound
from pipeline.routing import hash_list_key
from pipeline.runtime import Runtime

_LIST_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def _read_list(runtime: Runtime, bucket: str, key: str) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "list.txt"
        try:
            runtime.store.get_file(bucket, key, path)
        except ObjectNotFound:
            return ""
        return path.read_text()


@click.group()
def hashes() -> None:
    """Known-image hash lists the `screen` function matches uploads against."""


@hashes.command("add")
@click.argument(
    "images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--list", "list_name", default="known-bad", show_default=True, help="The list to add to.")
@click.option("--bucket", default=None, help="Bucket of the list (default: the pipeline's first bucket).")
@click.option("--label", default=None, help="Label of the entries (default: each image's file name).")
def add(images: tuple[Path, ...], list_name: str, bucket: str | None, label: str | None) -> None:
    """Hash IMAGES (PDQ) and add them to a list in the store. The images themselves are not
    stored: only their hashes, so a list of known-bad images holds none of them."""
    from functions import perceptual  # noqa: PLC0415 - numpy and pdqhash only when hashing

    if not _LIST_NAME.match(list_name):
        raise click.BadParameter("lowercase letters, digits, - and _ only", param_hint="--list")
    added: list[str] = []
    for image in images:
        try:
            hashed = perceptual.hash_file(image)
        except (OSError, MediaError) as exc:
            raise click.ClickException(f"{image}: not an image this can hash ({exc})") from exc
        if hashed.quality < perceptual.MIN_QUALITY:
            raise click.ClickException(
                f"{image}: too little detail to hash reliably (PDQ quality {hashed.quality}, "
                f"at least {perceptual.MIN_QUALITY}); it would match nothing"
            )
        added.append(perceptual.format_entry(hashed, label or image.name))
    with open_runtime() as runtime:
        bucket = bucket or default_bucket(runtime.pipeline)
        key = hash_list_key(list_name)
        text = _read_list(runtime, bucket, key)
        known = {entry.bits for entry in perceptual.parse_list(text, f"{bucket}/{key}")}
        fresh = [line for line in added if int(line.split(" ", 1)[0], 16) not in known]
        body = text if not text or text.endswith("\n") else text + "\n"
        body += "".join(f"{line}\n" for line in fresh)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "list.txt"
            path.write_text(body)
            runtime.store.ensure_bucket(bucket)
            runtime.store.put_file(bucket, key, path, content_type="text/plain")
    click.echo(f"{len(fresh)} added, {len(added) - len(fresh)} already listed: s3://{bucket}/{key}")
    click.echo(f'screen with it: params: {{hash_lists: ["s3://{bucket}/{key}"]}}')


@hashes.command("show")
@click.option("--list", "list_name", default="known-bad", show_default=True)
@click.option("--bucket", default=None, help="Bucket of the list (default: the pipeline's first bucket).")
def show(list_name: str, bucket: str | None) -> None:
    """The entries of a list: hash and label."""
    from functions import perceptual  # noqa: PLC0415 - numpy and pdqhash only when hashing

    with open_runtime() as runtime:
        bucket = bucket or default_bucket(runtime.pipeline)
        key = hash_list_key(list_name)
        text = _read_list(runtime, bucket, key)
    try:
        entries = perceptual.parse_list(text, f"{bucket}/{key}")
    except ParamsError as exc:
        raise click.ClickException(str(exc)) from exc
    for entry in entries:
        click.echo(f"{entry.bits:064x}  {entry.label}")
    click.echo(f"{len(entries)} entries in s3://{bucket}/{key}")


COMMANDS = [hashes]
