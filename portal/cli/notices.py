"""flask notices: the mail the portal writes to its users."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from .. import notices
from .. import quota
from ..queries import notices as notice_queries
from ..queries import quota as quota_queries
from . import connect as _connect
from .mailboxes import find_mailbox

notices_cli = AppGroup("notices", help="Mail the portal writes to its users.")


@notices_cli.command("send")
def send_command():
    """Send the notices that wait (after a failure, with a growing delay); run it every few minutes."""
    if not notices.enabled():
        click.echo("notice_from is not set: the portal sends no mail")
        return
    result = notices.send_due(current_app._get_current_object())
    with _connect() as conn:
        notice_queries.forget_sent(conn)
        left = notice_queries.unsent(conn)
    click.echo(f"sent {result['sent']}, failed {result['failed']}, waiting {left['count']}")
    if result["failed"]:
        raise SystemExit(1)


@notices_cli.command("quota-warning")
@click.argument("percent", type=click.IntRange(1, 100))
@click.argument("address")
def quota_warning_command(percent: int, address: str):
    """Warn ADDRESS that its mailbox passed PERCENT of its limit (Dovecot's quota-warning service runs this)."""
    with _connect() as conn:
        mailbox = find_mailbox(conn, address)
        usage = quota_queries.mailbox_usage(conn, mailbox["email"]) or {}
        limit = int(usage.get("limit_bytes") or 0)
        if not limit:
            click.echo(f"{mailbox['email']} has no size limit: no warning")
            return
        with conn.transaction():
            ids = notices.queue(conn, mailbox, "quota_warning", notices.quota_warning, mailbox["email"], percent,
                                quota.format_size(limit), also_recovery=False, through_postfix=True)
    click.echo(f"warning queued for {mailbox['email']}" if ids else "notice_from is not set: no warning sent")
