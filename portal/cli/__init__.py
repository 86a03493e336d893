"""Commands under ``flask --app app ...``: one module per group, each calling the same rules as the pages."""

from __future__ import annotations

import click
import psycopg
from flask import current_app

from .. import db
from ..access import Actor


def connect(require_schema: bool = True) -> psycopg.Connection:
    """A database connection for one command (autocommit; changes open their own transactions).

    Unless ``require_schema`` is off (the db commands), a database that is not
    upgraded to this portal's schema is refused with what to run."""
    from .. import migrate

    try:
        conn = db.connect(current_app.config)
    except psycopg.Error as exc:
        raise click.ClickException(f"cannot connect to the database: {exc}") from None
    if require_schema:
        try:
            pending = migrate.pending_migrations(conn)
        except psycopg.Error:
            pending = ["all"]
        if pending:
            conn.close()
            raise click.ClickException("the database is not at this portal's schema yet: run flask --app app db"
                                       " upgrade first")
    return conn


CLI_ACTOR = Actor.command_line()


def register(app) -> None:
    """Add every command group to the app's CLI."""
    from .alias_domains import alias_domain_cli
    from .aliases import alias_cli
    from .config import config_cli
    from .doctor import doctor_command
    from .domains import domain_cli
    from .mailboxes import mailbox_cli
    from .mailserver import mailserver_cli
    from .notices import notices_cli
    from .quota import quota_cli
    from .roles import admin_cli
    from .schema import db_cli
    from .send_as import send_as_cli
    from .transfer import export_command
    from .transfer import import_command

    for command in (admin_cli, alias_cli, alias_domain_cli, config_cli, db_cli, domain_cli, doctor_command,
                    export_command, import_command, mailbox_cli, mailserver_cli, notices_cli, quota_cli,
                    send_as_cli):
        app.cli.add_command(command)


def every_row(fetch):
    """Every row of a paged list, a thousand at a time: ``fetch(cursor, limit)`` returns a listing.Page."""
    after = None
    while True:
        page = fetch(after, 1000)
        yield from page.rows
        if page.next_after is None:
            return
        after = page.next_after


def confirm_typed(prompt: str, expected: str, yes: bool) -> None:
    """Unless ``yes``, ask for ``expected`` typed again; refuse (nothing done) if it does not match."""
    if not yes and click.prompt(prompt).strip().lower().rstrip(".") != expected:
        raise click.ClickException("it did not match; nothing deleted")


def password_options(command):
    """--password-stdin and --generate: the two ways besides the hidden prompt (never an argument)."""
    command = click.option("--password-stdin", is_flag=True,
                           help="Read the password from the first line of standard input.")(command)
    return click.option("--generate", is_flag=True, help="Generate a password and print it once.")(command)


def read_new_password(address: str, password_stdin: bool, generate: bool) -> tuple[str, bool]:
    """The new password for ``address`` and whether it was generated; policy-checked unless generated."""
    import sys

    from .. import passwords

    if password_stdin and generate:
        raise click.UsageError("use either --password-stdin or --generate")
    if generate:
        return passwords.generate_password(), True
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise click.ClickException("no password on standard input")
    else:
        password = click.prompt(f"Password for {address}", hide_input=True, confirmation_prompt="Again")
    problems = passwords.configured_policy_problems(current_app.config, password, address=address)
    if problems:
        raise click.ClickException("the password is refused: " + " ".join(problems))
    return password, False
