"""flask send-as: let a mailbox send as another address of its domain, or take that back (portal/rules/send_as.py)."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from ..queries import send_as as send_as_queries
from ..rules import send_as as send_as_rules
from . import CLI_ACTOR
from . import connect
from .mailboxes import find_mailbox

send_as_cli = AppGroup("send-as", help="Addresses a mailbox may send as on the submission service.")


@send_as_cli.command("grant")
@click.argument("mailbox")
@click.argument("address")
def grant_command(mailbox: str, address: str):
    """Let MAILBOX send as ADDRESS (an address of its domain or its alias domains, not someone's own)."""
    with connect() as conn:
        row = find_mailbox(conn, mailbox)
        try:
            granted = send_as_rules.grant_send_as(conn, CLI_ACTOR, mailbox=row, address=address,
                                                  delimiter=current_app.config["RECIPIENT_DELIMITER"])
        except send_as_rules.SendAsError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"{row['email']} may send as {granted}")


@send_as_cli.command("revoke")
@click.argument("mailbox")
@click.argument("address")
def revoke_command(mailbox: str, address: str):
    """Take back MAILBOX's right to send as ADDRESS."""
    with connect() as conn:
        row = find_mailbox(conn, mailbox)
        wanted = address.strip().lower()
        grant = next((g for g in send_as_queries.of_mailbox(conn, row["id"]) if g["address"] == wanted), None)
        if grant is None:
            raise click.ClickException(f"{row['email']} has no right to send as {wanted}")
        send_as_rules.revoke_send_as(conn, CLI_ACTOR, grant_id=grant["id"], domain_id=row["domain_id"])
    click.echo(f"{row['email']} may no longer send as {wanted}")


@send_as_cli.command("list")
@click.argument("mailbox")
def list_command(mailbox: str):
    """List the addresses MAILBOX was granted (one per line)."""
    with connect() as conn:
        row = find_mailbox(conn, mailbox)
        for grant in send_as_queries.of_mailbox(conn, row["id"]):
            click.echo(grant["address"])
