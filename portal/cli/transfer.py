"""flask import / flask export: domains, mailboxes and aliases as CSV (see portal/transfer.py for the columns)."""

from __future__ import annotations

import contextlib
import os
import sys

import click
from flask import current_app
from flask.cli import with_appcontext

from .. import transfer
from . import CLI_ACTOR
from . import connect


@click.command("import")
@with_appcontext
@click.argument("kind", type=click.Choice(transfer.KINDS))
@click.argument("source", type=click.File("r", encoding="utf-8-sig"))
@click.option("--dry-run", is_flag=True, help="Check every row and report; write nothing.")
def import_command(kind: str, source, dry_run: bool):
    """Import KIND from the CSV file SOURCE ('-' for standard input): all rows, or none.

    Every row is checked first; every problem is listed with its line number and
    nothing is written unless there are none. Then all rows go in one transaction.
    """
    with connect() as conn, contextlib.ExitStack() as bars:
        bar = None

        def progress(total: int) -> None:
            nonlocal bar
            if bar is None:  # a bar on a terminal (click prints only the label elsewhere)
                bar = bars.enter_context(click.progressbar(length=total, label="hashing passwords", file=sys.stderr))
            bar.update(1)

        try:
            rows = transfer.check(conn, kind, source, current_app.config, progress)
            if dry_run:
                click.echo(f"{len(rows)} {kind} checked; no problems; nothing written (--dry-run)")
                return
            written = transfer.write(conn, kind, rows, **CLI_ACTOR)
        except transfer.ImportRefused as exc:
            for line, message in exc.problems[: transfer.MAX_PROBLEMS_SHOWN]:
                click.echo(f"line {line}: {message}" if line else message, err=True)
            more = len(exc.problems) - transfer.MAX_PROBLEMS_SHOWN
            if more > 0:
                click.echo(f"... and {more} more", err=True)
            raise click.ClickException(f"{len(exc.problems)} problems; nothing imported") from None
    click.echo(f"imported {written} {kind}")


@click.command("export")
@with_appcontext
@click.argument("kind", type=click.Choice(transfer.KINDS))
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              help="Write to this file (made readable by its owner only); default: standard output.")
def export_command(kind: str, output: str | None):
    """Export KIND as CSV, in the columns 'import' reads. Mailbox exports hold password hashes: keep them safe."""
    import csv

    if output:
        # The mailbox export holds password hashes: never readable by others, not even for a moment.
        descriptor = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(descriptor, 0o600)
        stream = os.fdopen(descriptor, "w", encoding="utf-8", newline="")
    else:
        stream = sys.stdout
    count = -1
    try:
        with connect() as conn:
            writer = csv.writer(stream)
            for count, row in enumerate(transfer.export_rows(conn, kind)):  # noqa: B007
                writer.writerow(row)
    finally:
        if output:
            stream.close()
    if output:
        click.echo(f"exported {count} {kind} to {output}", err=True)
