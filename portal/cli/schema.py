"""flask db: the schema."""

from __future__ import annotations

import click
import psycopg
from flask.cli import AppGroup

from .. import migrate
from ..addresses import MAILBOX_LOCAL_PART_PATTERN
from ..queries import mailboxes as mailbox_queries
from . import connect

PRIVILEGES = (" The role in database_url must own the guide's tables and may create in the database and in"
              " its public schema (README, Production, step 3).")

db_cli = AppGroup("db", help="Manage the database schema.")


@db_cli.command("upgrade")
def upgrade_command():
    """Apply pending migrations (all in one transaction; safe to run twice)."""
    with connect(require_schema=False) as conn:
        try:
            applied = migrate.upgrade(conn, report=click.echo)
        except migrate.MigrationError as exc:
            hint = PRIVILEGES if "permission denied" in str(exc) else ""
            raise click.ClickException(f"{exc}\nThe database was not changed.{hint}") from None
        except psycopg.errors.InsufficientPrivilege as exc:
            raise click.ClickException(f"{str(exc).strip()}\nThe database was not changed.{PRIVILEGES}") from None
        unsafe = mailbox_queries.unsafe_names(conn, MAILBOX_LOCAL_PART_PATTERN)
    if applied:
        click.echo(f"database upgraded to version {applied[-1].version}")
    else:
        click.echo(f"database already at version {migrate.latest_version()}; nothing to do")
    if unsafe:
        # Not refused: mail keeps flowing to them. But their names are no safe folder names (or Dovecot refuses
        # them as user names): the portal will not purge their mail, and new mailboxes like them are refused.
        click.echo("warning: these mailboxes have names Dovecot refuses or that are no safe folder name (use only"
                   " letters, digits and . _ - before the @); rename them by hand, and their maildirs with them:",
                   err=True)
        for email in unsafe:
            click.echo(f"  {email}", err=True)


@db_cli.command("status")
def status_command():
    """Show pending migrations; exit status 1 when there are any."""
    with connect(require_schema=False) as conn:
        pending = migrate.pending_migrations(conn)
    if not pending:
        click.echo(f"up to date (version {migrate.latest_version()})")
        return
    for migration in pending:
        click.echo(f"pending: {migration.version:04d}_{migration.name}")
    raise SystemExit(1)
