"""flask admin: roles."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from . import CLI_ACTOR  # noqa: E402
from . import connect as _connect

admin_cli = AppGroup("admin", help="Grant and revoke the portal's roles.")

_ROLE_CHOICES = ("domain-admin", "helpdesk", "superadmin")


def _role_change(change, role: str, address: str, domain: str | None):
    from ..rules import roles

    try:
        with _connect() as conn:
            return change(conn, CLI_ACTOR, address=address, role=role, domain=domain)
    except roles.RoleError as exc:
        raise click.ClickException(str(exc)) from None


@admin_cli.command("grant")
@click.argument("role", type=click.Choice(_ROLE_CHOICES))
@click.argument("address")
@click.argument("domain", required=False)
def grant_command(role: str, address: str, domain: str | None):
    """Give ROLE to the mailbox ADDRESS (domain-admin, and helpdesk if limited, in DOMAIN)."""
    from ..rules import roles

    granted, mailbox, _, domain_row = _role_change(roles.grant, role, address, domain)
    where = f" in {domain_row['name']}" if domain_row else ""
    click.echo(f"{mailbox['email']} {'is now' if granted else 'was already'} {role}{where}")


@admin_cli.command("revoke")
@click.argument("role", type=click.Choice(_ROLE_CHOICES))
@click.argument("address")
@click.argument("domain", required=False)
def revoke_command(role: str, address: str, domain: str | None):
    """Take ROLE back from the mailbox ADDRESS."""
    from ..rules import roles

    mailbox, _, domain_row = _role_change(roles.revoke, role, address, domain)
    click.echo(f"{mailbox['email']} is no longer {role}{' in ' + domain_row['name'] if domain_row else ''}")


@admin_cli.command("list")
def list_command():
    """List every role holder."""
    from ..queries import roles

    with _connect() as conn:
        rows = roles.all_roles(conn)
    if not rows:
        click.echo("no roles granted yet: flask --app app admin grant superadmin ADDRESS")
    for row in rows:
        click.echo(f"{row['email']}\t{row['role'].replace('_', '-')}\t{row['domain'] or '*'}")
