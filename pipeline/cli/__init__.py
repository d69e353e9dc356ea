"""The `pipeline` command: one module per command group, each opening its runtime the same way
(`pipeline.cli.runtime`)."""

from __future__ import annotations

import logging
import sys

import click
from pydantic import ValidationError

from pipeline.cli import (
    demo,
    flows,
    function_commands,
    hashes,
    measure,
    objects,
    operate,
    serve,
    system,
    usage,
    webhooks,
)
from pipeline.errors import LedgerSchemaError
from pipeline.logs import configure_logging
from pipeline.settings import get_settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log debug details.")
def cli(verbose: bool) -> None:
    """Event-driven media processing: uploads trigger functions through a queue."""
    try:
        fmt = get_settings().log_format
    except ValidationError:
        fmt = "text"  # the command itself reports the bad setting
    configure_logging(logging.DEBUG if verbose else logging.INFO, fmt)


for module in (
    demo,
    serve,
    objects,
    operate,
    flows,
    usage,
    hashes,
    function_commands,
    measure,
    system,
    webhooks,
):
    for command in module.COMMANDS:
        cli.add_command(command)


def main() -> None:
    try:
        cli()
    except LedgerSchemaError as exc:  # any command that opens the ledger: one line, no traceback
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
