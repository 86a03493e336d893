"""flask import / flask export: domains, mailboxes and aliases as CSV (see portal/transfer.py for the columns)."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

import click
from flask import current_app
from flask.cli import with_appcontext

from ..rules import csv_transfer as transfer
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
            written = transfer.write(conn, kind, rows, reserved=current_app.config["RESERVED_LOCAL_PARTS"],
                                     delimiter=current_app.config["RECIPIENT_DELIMITER"], dry_run=dry_run,
                                     actor=CLI_ACTOR)
            if dry_run:
                click.echo(f"{written} {kind} checked; no problems; nothing written (--dry-run)")
                return
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
    """Export KIND as CSV, in the columns 'import' reads. Mailbox exports hold password hashes: keep them safe.

    The file is data for 'import', written as stored: open it as text, not in a spreadsheet program
    (which would run a name such as =HYPERLINK(...) as a formula)."""
    import csv

    if output:
        # The mailbox export holds password hashes: a new 0600 file next to the target, renamed over it
        # only once complete, so a failed export never empties an earlier one or follows a link.
        descriptor, temporary = tempfile.mkstemp(prefix=".export-", suffix=".csv",
                                                 dir=os.path.dirname(os.path.abspath(output)))
        stream = os.fdopen(descriptor, "w", encoding="utf-8", newline="")
    else:
        stream = sys.stdout
    count = -1
    try:
        with connect() as conn:
            writer = csv.writer(stream)
            for count, row in enumerate(transfer.export_rows(conn, kind)):  # noqa: B007
                writer.writerow(row)
    except BaseException:
        if output:
            stream.close()
            os.unlink(temporary)
        raise
    if output:
        stream.close()
        os.replace(temporary, output)
        click.echo(f"exported {count} {kind} to {output}", err=True)
