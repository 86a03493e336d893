"""flask mailbox: mailboxes."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from .. import passwords
from .. import quota
from ..addresses import InvalidAddress
from ..addresses import canonical_address
from ..queries import listing
from ..queries import mailboxes as mailbox_queries
from ..rules import helpdesk as helpdesk_rules
from ..rules import mailboxes as mailbox_rules
from ..text import is_one_line
from . import CLI_ACTOR
from . import confirm_typed
from . import connect as _connect
from . import every_row
from . import password_options
from . import read_new_password
from .domains import find_domain

mailbox_cli = AppGroup("mailbox", help="Manage mailboxes.")


def _address(text: str) -> str:
    try:
        return canonical_address(text)
    except InvalidAddress as exc:
        raise click.ClickException(f"{text!r} {exc}") from None


def find_mailbox(conn, text: str) -> dict:
    """The mailbox at the address, or a ClickException that says it is missing."""
    address = _address(text)
    mailbox = mailbox_queries.get_mailbox(conn, address)
    if mailbox is None:
        raise click.ClickException(f"there is no mailbox {address}")
    return mailbox


@mailbox_cli.command("add")
@click.argument("address")
@click.option("--name", "display_name", default="", help="The owner's name.")
@click.option("--quota", "size", default="", help='Size limit, e.g. "2 GB"; empty: the domain default')
@password_options
@click.option("--final", is_flag=True, help="The owner chose this password: mail clients may use it at once. "
              "Otherwise it only signs in to the portal once, where the owner must choose a new one.")
def add_command(address: str, display_name: str, size: str, password_stdin: bool, generate: bool, final: bool):
    """Create the mailbox ADDRESS; its password is asked twice (hidden), read from stdin, or generated."""
    address = _address(address)
    display_name = display_name.strip()
    if len(display_name) > 255 or not is_one_line(display_name):
        raise click.ClickException("the name may have at most 255 printable characters")
    try:
        limit = quota.parse_size(size)
    except quota.InvalidSize as exc:
        raise click.ClickException(str(exc)) from None
    with _connect() as conn:
        domain = find_domain(conn, address.rpartition("@")[2])
        password, generated = read_new_password(address, password_stdin, generate)
        try:
            mailbox_rules.create_mailbox(
                conn, CLI_ACTOR, domain_id=domain["id"], address=address, display_name=display_name,
                quota_bytes=limit, reserved=list(current_app.config["RESERVED_LOCAL_PARTS"]),
                password_hash=passwords.hash_password(password, current_app.config["PASSWORD_SCHEME"]),
                must_change=not final,
            )
        except mailbox_rules.MailboxRuleError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"created {address}" + (
        "; its password only signs in to the portal, where it must be changed (mail clients refuse it until then)"
        if not final else ""))
    if generated:
        click.echo(f"password (shown once): {password}")


@mailbox_cli.command("passwd")
@click.argument("address")
@click.option("--final", is_flag=True, help="The owner chose this password: mail clients may use it at once. "
              "Otherwise it only signs in to the portal once, where the owner must choose a new one.")
@password_options
def passwd_command(address: str, final: bool, password_stdin: bool, generate: bool):
    """Set a mailbox's password; its portal sessions end."""
    must_change = not final
    with _connect() as conn:
        mailbox = find_mailbox(conn, address)
        password, generated = read_new_password(mailbox["email"], password_stdin, generate)
        password_hash = passwords.hash_password(password, current_app.config["PASSWORD_SCHEME"])
        mailbox_rules.update_mailbox(
            conn, CLI_ACTOR, mailbox=mailbox, quota_bytes=mailbox["quota_bytes"], active=mailbox["active"],
            password_hash=password_hash, must_change=must_change,
        )
    click.echo(f"password of {mailbox['email']} set" + (
        "; it only signs in to the portal, where it must be changed (mail clients refuse it until then)"
        if must_change else ""))
    if generated:
        click.echo(f"password (shown once): {password}")


@mailbox_cli.command("remove-second-factors")
@click.argument("address")
def remove_second_factors_command(address: str):
    """Remove every second factor and recovery code of ADDRESS (a lost phone), whatever its roles: the password
    alone signs in again; the owner is told."""
    from ..rules import second_factors as factor_rules

    with _connect() as conn:
        mailbox = find_mailbox(conn, address)
        removed = factor_rules.remove_second_factors_of(conn, CLI_ACTOR, mailbox)
    click.echo(f"second factors of {mailbox['email']} removed" if removed
               else f"{mailbox['email']} had no second factor")


@mailbox_cli.command("list")
@click.argument("domain")
@click.option("--search", default="", help="Only addresses starting with this.")
def list_command(domain: str, search: str):
    """List a domain's mailboxes: address, status, size limit, used, name (tab-separated)."""
    with _connect() as conn:
        row = find_domain(conn, domain)
        search_for = listing.Search(search.strip().lower())
        for m in every_row(lambda after, limit: listing.mailboxes(conn, row["id"], search_for, after, limit=limit)):
            limit = quota.format_size(m["limit_bytes"]) if m["limit_bytes"] else "unlimited"
            click.echo(f"{m['email']}\t{'active' if m['active'] else 'disabled'}\t{limit}\t"
                       f"{quota.format_size(m['used_bytes'])}\t{m['display_name']}")


def _set_active(address: str, active: bool, reason: str) -> None:
    with _connect() as conn:
        mailbox = find_mailbox(conn, address)
        try:
            changed = helpdesk_rules.set_active(conn, CLI_ACTOR, mailbox, active=active, reason=reason,
                                                delimiter=current_app.config["RECIPIENT_DELIMITER"])
        except helpdesk_rules.SupportRefused as exc:
            raise click.ClickException(str(exc)) from None
    state = "active" if active else "disabled"
    click.echo(f"{mailbox['email']} {'is' if changed else 'was already'} {state}")


@mailbox_cli.command("disable")
@click.argument("address")
@click.option("--reason", required=True, help="Why; shown to the helpdesk and kept in the audit log.")
def disable_command(address: str, reason: str):
    """Disable a mailbox: no sign-in, mail refused, portal and IMAP sessions ended. Nothing is deleted."""
    if not reason.strip() or not is_one_line(reason) or len(reason) > helpdesk_rules.MAX_REASON:
        raise click.ClickException(f"give a reason on one line, at most {helpdesk_rules.MAX_REASON} characters")
    _set_active(address, False, reason.strip())


@mailbox_cli.command("enable")
@click.argument("address")
def enable_command(address: str):
    """Enable a disabled mailbox again."""
    _set_active(address, True, "")


@mailbox_cli.command("delete")
@click.argument("address")
@click.option("--yes", is_flag=True, help="Do not ask for the address again.")
def delete_command(address: str, yes: bool):
    """Delete a mailbox; its mail is kept for the grace period, then removed by 'mailbox purge'."""
    grace = int(current_app.config["MAILBOX_PURGE_GRACE_DAYS"])
    with _connect() as conn:
        mailbox = find_mailbox(conn, address)
        confirm_typed("Type the address to confirm", mailbox["email"], yes)
        try:
            result = mailbox_rules.delete_mailbox(conn, CLI_ACTOR, mailbox=mailbox,
                                                  mail_root=current_app.config["MAIL_ROOT"], grace_days=grace)
        except mailbox_rules.MailboxRuleError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"deleted {mailbox['email']}; its mail is kept until {result['purge_after']:%Y-%m-%d}")
    if result["removed_aliases"]:
        click.echo("aliases left without a destination and removed: " + ", ".join(result["removed_aliases"]))


@mailbox_cli.command("set-quota")
@click.argument("address")
@click.argument("size")
def set_quota_command(address: str, size: str):
    """Set a mailbox's storage limit, e.g. '500 MB' or '2 GB'; 0 means the domain default.

    Dovecot reads the limit on the mailbox's next delivery or login: no reload needed.
    """
    from ..queries import quota as quota_queries

    try:
        limit = quota.parse_size(size)
    except quota.InvalidSize as exc:
        raise click.ClickException(str(exc)) from None
    with _connect() as conn:
        mailbox = find_mailbox(conn, address)
        try:
            mailbox_rules.update_mailbox(conn, CLI_ACTOR, mailbox=mailbox, quota_bytes=limit, active=mailbox["active"],
                                         password_hash=None)
        except mailbox_rules.MailboxRuleError as exc:
            raise click.ClickException(str(exc)) from None
        email = mailbox["email"]
        effective = quota_queries.mailbox_usage(conn, email)["limit_bytes"]
    shown = quota.format_size(effective) if effective else "unlimited"
    click.echo(f"{email}: limit {quota.format_size(limit) if limit else 'domain default'} (in effect: {shown})")


@mailbox_cli.command("purge")
@click.option("--address", help="Purge this deleted mailbox's mail now, before its grace period ends.")
def purge_command(address: str | None):
    """Remove the maildirs of deleted mailboxes whose grace period is over.

    Only the exact folder of each deleted mailbox under mail_root is removed. A
    removal whose folder is not there is reported and left pending (the mail may
    live elsewhere: check mail_root against Dovecot's mail_location), unless it is
    named with --address: then its address is released (a mailbox deleted before
    its first message never had a folder)."""
    with _connect() as conn:
        due = mailbox_rules.purge(conn, CLI_ACTOR, mail_root=current_app.config["MAIL_ROOT"],
                                  address=address.strip().lower() if address else None)
        if address and not due:
            raise click.ClickException(f"no deleted mailbox {address} is waiting to be purged")
    for result in due:
        if result["outcome"] == "purged":
            click.echo(f"purged {result['email']} ({result['maildir']})")
        elif result["outcome"] == "released":
            click.echo(f"released {result['email']}: it has no folder {result['maildir']} (it never received mail);"
                       " the address may be used again")
        elif result["outcome"] == "no maildir":
            click.echo(f"not purged {result['email']}: there is no folder {result['maildir']}; check that mail_root"
                       " is where Dovecot keeps mail (left pending)", err=True)
        else:
            click.echo(f"not purged {result['email']}: {result['problem']} (left pending)", err=True)
    if not due:
        click.echo("nothing to purge")
    left = [r for r in due if r["outcome"] not in ("purged", "released")]
    if left:
        raise click.ClickException(f"{len(left)} deleted mailboxes left pending; see above")


@mailbox_cli.command("vacation")
@click.argument("address")
@click.option("--off", is_flag=True, help="Switch the reply off (its words are kept).")
@click.option("--subject", default=None, help="The reply's subject.")
@click.option("--message", default=None, help="The reply's text ('-': read it from standard input).")
@click.option("--first-day", type=click.DateTime(formats=["%Y-%m-%d"]), default=None, help="YYYY-MM-DD")
@click.option("--last-day", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="YYYY-MM-DD: no reply after this day.")
@click.option("--days", type=click.IntRange(1, 30), default=7, show_default=True,
              help="Days before the same sender is answered again.")
def vacation_command(address: str, off: bool, subject: str | None, message: str | None, first_day, last_day,
                     days: int):
    """Switch a mailbox's out-of-office reply on or off for its owner (audited; the owner's pages say an
    administrator changed it). It answers for every address that delivers to the mailbox."""
    import sys
    from datetime import date

    from .. import sieve
    from ..queries import mail_rules as mail_rule_queries
    from ..rules import mail_rules

    if message == "-":
        message = sys.stdin.read()
    with _connect() as conn:
        mailbox = find_mailbox(conn, address)
        stored = mail_rule_queries.vacation_of(conn, mailbox["id"]) or {}
        wanted = sieve.Vacation(
            enabled=not off, subject=subject if subject is not None else stored.get("subject", ""),
            body=(message if message is not None else stored.get("body", "")).replace("\r\n", "\n").strip("\n"),
            first_day=first_day.date() if first_day else None, last_day=last_day.date() if last_day else None,
            interval_days=days, addresses=())
        try:
            mail_rules.save_vacation_of(conn, CLI_ACTOR, mailbox, wanted, config=current_app.config,
                                        today=date.today())
        except (mail_rules.MailRulesRefused, mail_rules.MailRulesUnavailable) as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"out-of-office reply of {mailbox['email']}: {'off' if off else 'on'}")
