"""flask db: the schema."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from .. import migrate
from . import connect as _connect

db_cli = AppGroup("db", help="Manage the database schema.")


@db_cli.command("upgrade")
def upgrade_command():
    """Apply pending migrations (all in one transaction; safe to run twice)."""
    with _connect() as conn:
        try:
            applied = migrate.upgrade(conn, report=click.echo)
        except migrate.MigrationError as exc:
            raise click.ClickException(f"{exc}\nThe database was not changed.") from None
    if applied:
        click.echo(f"database upgraded to version {applied[-1].version}")
    else:
        click.echo(f"database already at version {migrate.latest_version()}; nothing to do")


@db_cli.command("status")
def status_command():
    """Show pending migrations; exit status 1 when there are any."""
    with _connect() as conn:
        pending = migrate.pending_migrations(conn)
    if not pending:
        click.echo(f"up to date (version {migrate.latest_version()})")
        return
    for migration in pending:
        click.echo(f"pending: {migration.version:04d}_{migration.name}")
    raise SystemExit(1)
